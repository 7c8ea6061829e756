"""One account's rebalancing problem as arrays, and its scaled form (fractions of value).

Notation (DESIGN 5). ``N`` securities ``j``, ``L`` tax lots ``i`` (lot ``i`` holds ``q_i``
shares of security ``sec_i``), ``K`` risk factors. ``p`` prices, ``w*`` target weights, ``c0``
cash, ``V = c0 + sum_i p_{sec_i} q_i`` the account value before trading.

The solver works in fractions of ``V`` (DESIGN 12): ``x_i`` is the value sold from lot ``i``
over ``V`` and ``y_j`` the value bought of security ``j`` over ``V``, so prices and holdings
enter only through vectors (parameter values) and never the constraint matrix. With ``S`` the
``N x L`` 0/1 lot-to-security matrix:

- post-trade weights ``w = w0 - S x + y`` with ``w0 = p * h0 / V``;
- deviation ``d = w - w*`` (in tax-loss-harvest mode ``d = P w - w*`` where ``P`` adds each
  substitute's weight to the security it replaces);
- tracking ``||G d||^2 + sum_j D_j d_j^2`` with ``G = F^(1/2) B'`` (``K x N``), so the dense
  ``N x N`` covariance ``Sigma = B F B' + D`` is never formed;
- drift penalty ``lambda ||d||^2``;
- costs ``k_lot' x + k' y`` with ``k_j = commission rate + half_spread_j / p_j``;
- tax ``t' x`` with ``t_i = rate_i (1 - basis_i / p_{sec_i})`` (taxable accounts only; a lot at
  a loss has a negative tax, so harvesting arises on its own);
- cash ``c = c0/V + 1'x - 1'y - costs >= reserve/V`` (plus the amount in cash-raise mode).

:func:`problem_arrays` turns an :class:`AccountProblem` into these scaled vectors; every mode,
restriction and wash-sale block becomes a bound (a value), not a change of structure. An ESG
sell-out (``Securities.sell_out``) is target 0, maximum weight 0 and no buys in the modes
that sell, and no buys elsewhere. Round lots (``Securities.round_lot``) are not part of the
convex problem: the repair (``repair.py``) rounds to them.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from portfolios.optimizer.errors import ProblemInvalid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Limits that do not bind, in fractions of V, chosen just above any reachable value (buys
# cannot exceed cash plus everything sold, <= 1; turnover <= 2) rather than huge: huge
# bounds hurt the conditioning of OSQP.
BUY_CAP = 2.0
NO_TURNOVER_LIMIT = 4.0

MSG_SHAPE = "{name} has shape {got}, expected {want}."
MSG_NOT_FINITE = "{name} contains NaN or infinite values."
MSG_NEGATIVE = "{name} must not be negative."
MSG_PRICE = "Every price must be positive; {count} are not."
MSG_LOT_INDEX = "Lot security indexes must lie in [0, {n})."
MSG_SECTOR_INDEX = "Sector indexes must lie in [0, {n})."
MSG_EMPTY = "The account has no value to rebalance (cash and holdings are zero)."
MSG_CASH_RAISE = "A cash raise needs a positive amount."
MSG_TLH_TAXABLE = "Tax-loss harvesting applies to taxable accounts only."
MSG_SUBSTITUTE = "Substitute map entries must be distinct security indexes in [0, {n})."
MSG_ROUND_LOT = "Every round lot must be positive; {count} are not."


class Mode(enum.StrEnum):
    """Rebalancing modes of DESIGN 5."""

    FULL = "full"
    TOLERANCE = "tolerance"
    CASH_RAISE = "cash_raise"
    CASH_INVEST = "cash_invest"
    TLH = "tlh"


# Modes that sell, and so carry out an ESG sell-out (target and maximum weight 0).
SELL_OUT_MODES = frozenset({Mode.FULL, Mode.TOLERANCE, Mode.CASH_RAISE})


@dataclass(frozen=True, eq=False)
class Securities:
    """Per-security inputs, each of shape ``(N,)``.

    Weights are fractions of account value; ``band_lower``/``band_upper`` are the tolerance
    band half-widths around the target; ``half_spread`` is in currency per share.
    ``round_lot`` (shares; ``None`` or a value of 1 means single shares) makes the repair trade
    that security in multiples of its lot, fractional accounts included (a sell that closes
    the position is exempt). ``sell_out`` marks ESG sell-outs: no buys, and in the modes that
    sell (full, tolerance, cash raise) target and maximum weight 0, so every lot that can be
    sold is sold (an unsellable lot makes the problem infeasible, and the diagnosis says why);
    cash invest and tax-loss harvest only stop buying them. An ESG screen that only forbids
    buys is ``no_buy``.
    """

    price: FloatArray
    target: FloatArray
    band_lower: FloatArray
    band_upper: FloatArray
    min_weight: FloatArray
    max_weight: FloatArray
    sector: IntArray
    no_buy: BoolArray
    no_sell: BoolArray
    half_spread: FloatArray
    symbols: tuple[str, ...] = ()
    round_lot: FloatArray | None = None
    sell_out: BoolArray | None = None


@dataclass(frozen=True, eq=False)
class Lots:
    """Per-lot inputs, each of shape ``(L,)``; ``basis`` is cost basis per share."""

    security: IntArray
    quantity: FloatArray
    basis: FloatArray
    long_term: BoolArray
    no_sell: BoolArray


@dataclass(frozen=True, eq=False)
class AccountProblem:
    """Everything the optimizer needs for one account.

    ``exposures`` ``B`` is ``(N, K)``, ``factor_cov`` ``F`` is ``(K, K)`` and
    ``specific_var`` ``D`` is ``(N,)``; with ``exposures=None`` there is no factor term and
    with ``specific_var=None`` no specific term (the drift penalty remains, DESIGN 5's
    fallback when no price history exists). ``sector_max`` has one entry per sector
    (``n_sectors`` of them). Limits that are ``None`` do not bind. ``wash_buy_blocked`` (N)
    and ``wash_sell_blocked`` (L) come from the household's recent trades; a blocked sell
    applies to loss lots only. ``turnover_limit`` is ``(bought + sold) / V``; money
    amounts (cash, reserve, gains budget, cash amount, min trade) are in the account currency.
    """

    securities: Securities
    lots: Lots
    cash: float
    reserve: float = 0.0
    commission_rate: float = 0.0
    tax_rate_short: float = 0.0
    tax_rate_long: float = 0.0
    taxable: bool = False
    exposures: FloatArray | None = None
    factor_cov: FloatArray | None = None
    specific_var: FloatArray | None = None
    sector_max: FloatArray | None = None
    turnover_limit: float | None = None
    gains_budget: float | None = None
    wash_buy_blocked: BoolArray | None = None
    wash_sell_blocked: BoolArray | None = None
    mode: Mode = Mode.FULL
    cash_amount: float = 0.0
    tolerance_to_target: bool = True
    tlh_loss_threshold: float = 0.0
    substitutes: dict[int, int] = field(default_factory=dict)
    tracking_weight: float = 1.0
    drift_weight: float = 1.0
    fractional: bool = False
    min_trade: float = 0.0

    @property
    def n_securities(self) -> int:
        return int(self.securities.price.shape[0])

    @property
    def n_lots(self) -> int:
        return int(self.lots.security.shape[0])

    @property
    def n_factors(self) -> int:
        return 0 if self.exposures is None else int(self.exposures.shape[1])

    @property
    def n_sectors(self) -> int:
        return 0 if self.sector_max is None else int(self.sector_max.shape[0])

    def symbol(self, j: int) -> str:
        """The ticker of security ``j`` for messages (``#j`` when none was given)."""
        symbols = self.securities.symbols
        return symbols[j] if j < len(symbols) else f"#{j}"


@dataclass(frozen=True, eq=False)
class ProblemArrays:
    """The scaled problem (fractions of ``V``) the compiled cvxpy problem is fed with."""

    value: float
    lot_security: IntArray
    w0: FloatArray
    target: FloatArray
    lot_cap: FloatArray
    buy_cap: FloatArray
    cost_sec: FloatArray
    cost_lot: FloatArray
    tax_lot: FloatArray
    gain_lot: FloatArray
    w_min: FloatArray
    w_max: FloatArray
    sector_matrix: FloatArray
    sector_max: FloatArray
    g: FloatArray
    sqrt_d: FloatArray
    cash0: float
    cash_min: float
    turnover: float
    gains: float
    tracking_weight: float
    drift_weight: float
    merge: FloatArray | None
    sell_out: BoolArray | None = None

    def shape_key(self, mode: Mode) -> tuple[object, ...]:
        """Cache key of the compiled problem: sizes, mode and the lot-to-security map.

        The lot map is structure (the sparse ``S``), as is the substitute merge ``P`` in
        tax-loss-harvest mode; everything else is a parameter value.
        """
        digest = hashlib.blake2b(self.lot_security.tobytes(), digest_size=12)
        if self.merge is not None:
            digest.update(np.ascontiguousarray(self.merge).tobytes())
        if self.sector_matrix.shape[0]:
            digest.update(np.ascontiguousarray(self.sector_matrix).tobytes())
        n = self.w0.shape[0]
        return (
            n,
            self.lot_security.shape[0],
            self.g.shape[0],
            self.sector_matrix.shape[0],
            str(mode),
            digest.hexdigest(),
        )


def _check(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ProblemInvalid(MSG_SHAPE.format(name=name, got=arr.shape, want=shape))
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ProblemInvalid(MSG_NOT_FINITE.format(name=name))


def problem_validate(problem: AccountProblem) -> None:
    """Raise :class:`ProblemInvalid` when shapes, signs or indexes do not fit together."""
    sec, lots = problem.securities, problem.lots
    n, count = problem.n_securities, problem.n_lots
    for name in ("price", "target", "band_lower", "band_upper", "min_weight", "max_weight"):
        _check(name, np.asarray(getattr(sec, name), dtype=float), (n,))
    for name in ("sector", "no_buy", "no_sell", "half_spread"):
        _check(name, np.asarray(getattr(sec, name)), (n,))
    for name in ("security", "quantity", "basis", "long_term", "no_sell"):
        _check(f"lots.{name}", np.asarray(getattr(lots, name)), (count,))
    if np.any(sec.price <= 0):
        raise ProblemInvalid(MSG_PRICE.format(count=int(np.sum(sec.price <= 0))))
    for name, arr in (("lots.quantity", lots.quantity), ("lots.basis", lots.basis)):
        if np.any(arr < 0):
            raise ProblemInvalid(MSG_NEGATIVE.format(name=name))
    if np.any(sec.half_spread < 0) or problem.commission_rate < 0:
        raise ProblemInvalid(MSG_NEGATIVE.format(name="costs"))
    if count and (lots.security.min() < 0 or lots.security.max() >= n):
        raise ProblemInvalid(MSG_LOT_INDEX.format(n=n))
    if (
        problem.sector_max is not None
        and n
        and (sec.sector.min() < 0 or sec.sector.max() >= problem.n_sectors)
    ):
        raise ProblemInvalid(MSG_SECTOR_INDEX.format(n=problem.n_sectors))
    k = problem.n_factors
    if problem.exposures is not None:
        _check("exposures", problem.exposures, (n, k))
        if problem.factor_cov is None:
            raise ProblemInvalid(MSG_SHAPE.format(name="factor_cov", got=None, want=(k, k)))
        _check("factor_cov", problem.factor_cov, (k, k))
    if problem.specific_var is not None:
        _check("specific_var", problem.specific_var, (n,))
    if sec.round_lot is not None:
        _check("round_lot", np.asarray(sec.round_lot, dtype=float), (n,))
        if np.any(np.asarray(sec.round_lot) <= 0):
            raise ProblemInvalid(MSG_ROUND_LOT.format(count=int(np.sum(sec.round_lot <= 0))))
    if sec.sell_out is not None:
        _check("sell_out", np.asarray(sec.sell_out), (n,))
    if problem.wash_buy_blocked is not None:
        _check("wash_buy_blocked", problem.wash_buy_blocked, (n,))
    if problem.wash_sell_blocked is not None:
        _check("wash_sell_blocked", problem.wash_sell_blocked, (count,))
    if problem.cash < 0 or problem.reserve < 0:
        raise ProblemInvalid(MSG_NEGATIVE.format(name="cash and reserve"))
    if problem.mode == Mode.CASH_RAISE and problem.cash_amount <= 0:
        raise ProblemInvalid(MSG_CASH_RAISE)
    if problem.mode == Mode.TLH:
        if not problem.taxable:
            raise ProblemInvalid(MSG_TLH_TAXABLE)
        for j, k_sub in problem.substitutes.items():
            if not (0 <= j < n and 0 <= k_sub < n) or j == k_sub:
                raise ProblemInvalid(MSG_SUBSTITUTE.format(n=n))


def _sqrt_psd(f: FloatArray) -> FloatArray:
    """Symmetric square root of a covariance (negative eigenvalues from noise clipped)."""
    vals, vecs = np.linalg.eigh((f + f.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def problem_value(problem: AccountProblem) -> float:
    """Account value ``V`` before trading: cash plus every lot at its price."""
    p = problem.securities.price
    return float(problem.cash + np.dot(p[problem.lots.security], problem.lots.quantity))


def problem_round_lot(problem: AccountProblem) -> FloatArray:
    """Round lot per security in shares (1 where none is set): shape ``(N,)``."""
    lot = problem.securities.round_lot
    if lot is None:
        return np.ones(problem.n_securities)
    return np.maximum(np.asarray(lot, dtype=float), 1.0)


def problem_sell_out(problem: AccountProblem) -> BoolArray:
    """ESG sell-out flags (all False when none is set): shape ``(N,)``."""
    flags = problem.securities.sell_out
    if flags is None:
        return np.zeros(problem.n_securities, dtype=bool)
    return np.asarray(flags, dtype=bool)


def problem_arrays(problem: AccountProblem) -> ProblemArrays:
    """Scale the problem to fractions of ``V`` and turn modes and restrictions into bounds."""
    problem_validate(problem)
    sec, lots = problem.securities, problem.lots
    n, count = problem.n_securities, problem.n_lots
    value = problem_value(problem)
    if value <= 0:
        raise ProblemInvalid(MSG_EMPTY)
    p = sec.price
    lot_p = p[lots.security]
    lot_w = lot_p * lots.quantity / value
    w0 = np.bincount(lots.security, weights=lot_w, minlength=n).astype(float)
    target = np.asarray(sec.target, dtype=float).copy()

    cost_sec = problem.commission_rate + sec.half_spread / p
    cost_lot = cost_sec[lots.security]
    gain_frac = np.where(lot_p > 0, 1.0 - lots.basis / lot_p, 0.0)
    rate = np.where(lots.long_term, problem.tax_rate_long, problem.tax_rate_short)
    tax_lot = gain_frac * rate if problem.taxable else np.zeros(count)

    sell_ok = ~lots.no_sell & ~sec.no_sell[lots.security]
    if problem.wash_sell_blocked is not None:
        sell_ok &= ~(problem.wash_sell_blocked & (gain_frac < 0))
    sell_out = problem_sell_out(problem)
    buy_ok = ~sec.no_buy & ~sell_out
    if problem.wash_buy_blocked is not None:
        buy_ok &= ~problem.wash_buy_blocked

    w_min = np.asarray(sec.min_weight, dtype=float).copy()
    w_max = np.asarray(sec.max_weight, dtype=float).copy()
    merge: FloatArray | None = None
    cash_min = problem.reserve / value
    if problem.mode == Mode.TOLERANCE:
        lo, hi = target - sec.band_lower, target + sec.band_upper
        # A sell-out is a restriction, not a drift: it trades whatever its band says.
        outside = (w0 < lo - 1e-12) | (w0 > hi + 1e-12) | sell_out
        buy_ok &= outside
        sell_ok &= outside[lots.security]
        w_min = np.where(outside, np.maximum(w_min, lo), w_min)
        w_max = np.where(outside, np.minimum(w_max, hi), w_max)
        if not problem.tolerance_to_target:
            target = np.where(outside, np.clip(w0, lo, hi), target)
        # Positions inside their band do not trade, so their bounds must not bind either.
        w_min = np.where(outside, w_min, np.minimum(w_min, w0))
        w_max = np.where(outside, w_max, np.maximum(w_max, w0))
    elif problem.mode == Mode.CASH_INVEST:
        sell_ok[:] = False
    elif problem.mode == Mode.CASH_RAISE:
        cash_min += problem.cash_amount / value
        # The amount leaves the account: the targets apply to what remains, V - amount, so
        # over V (the solver's unit) each security aims at w* (V - amount) / V.
        target = target * max(0.0, 1.0 - problem.cash_amount / value)
    elif problem.mode == Mode.TLH:
        sell_ok &= gain_frac <= -problem.tlh_loss_threshold
        harvested = np.zeros(n, dtype=bool)
        harvested[lots.security[sell_ok]] = True
        substitutes = np.zeros(n, dtype=bool)
        merge = np.eye(n)
        for j, k_sub in problem.substitutes.items():
            merge[k_sub, k_sub] = 0.0
            merge[j, k_sub] = 1.0
            substitutes[k_sub] = harvested[j]
        buy_ok &= substitutes
        # Harvesting keeps today's exposure: the merged weights track their current value.
        target = merge @ w0
        w_min = np.minimum(w_min, w0)
        w_max = np.maximum(w_max, w0)

    if problem.mode in SELL_OUT_MODES:
        target[sell_out] = 0.0
        w_min[sell_out] = 0.0
        w_max[sell_out] = 0.0
    elif problem.mode == Mode.CASH_INVEST:
        # Buy-only: the position cannot shrink, but the rest is invested as if it were gone.
        target[sell_out] = 0.0
        w_min[sell_out] = 0.0

    n_sec = problem.n_sectors
    sector_matrix = np.zeros((n_sec, n))
    if n_sec:
        sector_matrix[sec.sector, np.arange(n)] = 1.0
    sector_max = np.asarray(problem.sector_max, dtype=float) if n_sec else np.zeros(0, dtype=float)

    if problem.exposures is not None and problem.factor_cov is not None:
        g = _sqrt_psd(np.asarray(problem.factor_cov, dtype=float)) @ problem.exposures.T
    else:
        g = np.zeros((0, n))
    specific = problem.specific_var if problem.specific_var is not None else np.zeros(n)

    return ProblemArrays(
        value=value,
        lot_security=np.asarray(lots.security, dtype=np.int64),
        w0=w0,
        target=target,
        lot_cap=np.where(sell_ok, lot_w, 0.0),
        buy_cap=np.where(buy_ok, BUY_CAP, 0.0),
        cost_sec=cost_sec,
        cost_lot=cost_lot,
        tax_lot=tax_lot,
        gain_lot=gain_frac,
        w_min=w_min,
        w_max=w_max,
        sector_matrix=sector_matrix,
        sector_max=sector_max,
        g=np.ascontiguousarray(g),
        sqrt_d=np.sqrt(np.clip(specific, 0, None)),
        cash0=problem.cash / value,
        cash_min=cash_min,
        turnover=NO_TURNOVER_LIMIT if problem.turnover_limit is None else problem.turnover_limit,
        gains=(
            float(np.sum(np.clip(gain_frac, 0, None) * lot_w)) + 1.0
            if problem.gains_budget is None
            else problem.gains_budget / value
        ),
        tracking_weight=problem.tracking_weight,
        drift_weight=problem.drift_weight,
        merge=merge,
        sell_out=sell_out & (problem.mode in SELL_OUT_MODES),
    )
