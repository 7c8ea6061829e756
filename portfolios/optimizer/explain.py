"""Why each trade is there, and what any set of trades does to an account (pure, no Django).

:func:`portfolio_metrics` evaluates *any* trades (the optimizer's, or a PM's edit of them)
on an :class:`AccountProblem`: values, cash and weights before and after, the ex-ante
tracking error, total and maximum drift, realized gains by holding period, the tax and cost
estimates, turnover, the objective terms of ``solve.objective_terms`` and the rules the trades
break, in words a PM reads. :func:`trades_explain` turns an :class:`OptimizeResult` into one
:class:`TradeExplanation` per traded security: its reason (an ``orders.OrderReason`` value),
the terms and constraints that drive it, one or two sentences, and for a sell the lots
relieved with their gains and estimated tax.

Definitions (``V`` the value before trading, ``V'`` after; shares ``h``, prices ``p``):

- weights before ``p h0 / V``, after ``p h1 / V'`` (as ``OptimizeResult.weights_after``); the
  limits (maximum weight, sector, turnover) are checked on ``p h1 / V`` like the optimizer's
  constraints, so trading costs never make an exact optimum look like a breach;
- the target ``w*`` is the model's, with 0 for an ESG sell-out, and the cash target is
  ``1 - sum(w*)``; ``d = w - w*`` over securities;
- tracking error ``sqrt(d' Sigma d)`` with ``Sigma = B F B' + D`` (annualised when the risk
  model is, as ``portfolios.risk`` builds it; 0 without a risk model); cash carries no risk;
- total drift ``0.5 * (sum_j |d_j| + |cash weight - cash target|)``; maximum drift
  ``max_j |d_j|`` over securities (the drift engine's definitions, DESIGN 4);
- realized gain of lot ``i`` ``s_i (p - basis_i)`` (negative: a loss), tax ``gain * rate`` by
  holding period in taxable accounts (0 otherwise), cost ``commission + half spread`` on the
  traded notional, turnover ``(sold + bought) / V``.

Drivers (``DRIVERS``) are read off the numbers, never guessed: ``drift`` when the trade moves
the security toward the target the optimizer used, ``tracking`` when the tracking-error
gradient before trading points the same way, ``tax`` for a sale with a tax effect, ``cost``
when costs make the trade stop short of the target, a limit (``max_weight``, ``min_weight``,
``sector``, ``turnover``, ``gains_budget``, ``cash_reserve``) when it is active after trading
within one trading unit, and the mode's own reasons (``cash_raise``, ``cash_invest``,
``band``, ``sell_out``, ``substitute``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from portfolios.optimizer.errors import ProblemInvalid
from portfolios.optimizer.problem import (
    MSG_NOT_FINITE,
    MSG_SHAPE,
    AccountProblem,
    FloatArray,
    Mode,
    ProblemArrays,
    problem_arrays,
    problem_round_lot,
    problem_sell_out,
)
from portfolios.optimizer.repair import OptimizeResult, gains_tolerance
from portfolios.optimizer.solve import objective_terms

REASONS = ("drift", "tlh", "cash_raise", "cash_invest", "restriction")
DRIVERS = (
    "drift",
    "tracking",
    "tax",
    "cost",
    "cash_reserve",
    "cash_raise",
    "cash_invest",
    "max_weight",
    "min_weight",
    "sector",
    "turnover",
    "gains_budget",
    "sell_out",
    "substitute",
    "band",
)
SHARES_TOLERANCE = 1e-9  # shares: below this a trade or an excess is float noise
CASH_TOLERANCE = 1e-6  # currency, as in repair.py
LIMIT_TOLERANCE = 1e-6  # fraction of V: the repair keeps limits to 1e-9, noise stays below
GAINS_TOLERANCE = 1e-6  # currency: below this a gain is float noise
WASH_DAYS = 30

# Violations: the rules a set of trades breaks.
MSG_OVERSELL = "Selling {shares} shares of {symbol} from lot {lot} exceeds the {held} it holds."
MSG_NEGATIVE_SELL = "The sale of {symbol} from lot {lot} is negative ({shares} shares)."
MSG_NEGATIVE_BUY = "The buy of {symbol} is negative ({shares} shares)."
MSG_CASH_RESERVE = "Cash after trading is {cash}, below the {required} reserve."
MSG_CASH_RAISE = (
    "Cash after trading is {cash}, below the {required} required "
    "(the {reserve} reserve plus the {amount} cash raise)."
)
MSG_NO_BUY = "{symbol} may not be bought: a no-buy restriction applies."
MSG_SELL_OUT_BUY = "{symbol} may not be bought: it is an ESG sell-out."
MSG_NO_SELL = "{symbol} may not be sold: a no-sell restriction applies."
MSG_LOT_NO_SELL = "Lot {lot} of {symbol} may not be sold: a no-sell restriction applies."
MSG_WASH_BUY = (
    "Buying {symbol} is a wash sale: a loss on it was realized in the household in the last "
    "{days} days."
)
MSG_WASH_SELL = (
    "Selling lot {lot} of {symbol} at a loss is a wash sale: it was bought in the household "
    "in the last {days} days."
)
MSG_MAX_WEIGHT = "{symbol} would be {weight} of the account, over its {limit} maximum weight."
MSG_SECTOR = "Sector {sector} would be {weight} of the account, over its {limit} maximum."
MSG_TURNOVER = "Turnover would be {turnover}, over the {limit} limit."
MSG_GAINS = "Realized gains of {gains} exceed the {budget} budget."
MSG_SELL_OUT_LEFT = "The ESG sell-out of {symbol} is incomplete: {shares} sellable shares remain."

# Explanations: the first sentence says where the security stands and where the trade takes
# it; the second says which lots a sale relieves, or what stops the trade where it is.
EXPLAIN_OVER = (
    "{symbol} is {gap} pp over its {target} target; {verb} {shares} brings it to {after}."
)
EXPLAIN_UNDER = (
    "{symbol} is {gap} pp under its {target} target; {verb} {shares} brings it to {after}."
)
EXPLAIN_AT = "{symbol} is at its {target} target; {verb} {shares} brings it to {after}."
EXPLAIN_BAND = (
    "{symbol} is {gap} pp {side} its {target} target, outside its {lo} to {hi} band; "
    "{verb} {shares} brings it to {after}."
)
EXPLAIN_SELL_OUT = (
    "{symbol} is excluded by the ESG screen and sold out: selling {shares} takes it from "
    "{before} to {after}."
)
EXPLAIN_TLH_SELL = (
    "Selling {shares} of {symbol} harvests a loss of {loss} (tax saving {saving}){keep}."
)
EXPLAIN_TLH_KEEP = "; {substitute} is bought to keep the exposure"
EXPLAIN_TLH_BUY = (
    "{symbol} is bought as the substitute for {original}, whose lots at a loss are sold, to "
    "keep the exposure: {shares} for {notional}."
)
EXPLAIN_CASH_RAISE = (
    "Selling {shares} of {symbol} raises {notional} toward the {amount} cash raise; it goes "
    "from {before} to {after} against a {target} target."
)
EXPLAIN_CASH_INVEST = (
    "Buying {shares} of {symbol} invests available cash; it goes from {before} to {after} "
    "against a {target} target."
)
EXPLAIN_HARVEST = (
    "Selling {shares} of {symbol} realizes a loss of {loss} (tax saving {saving}); it goes "
    "from {before} to {after} against a {target} target."
)
EXPLAIN_RESERVE = (
    "Selling {shares} of {symbol} raises {notional} for the {reserve} cash reserve; it goes "
    "from {before} to {after} against a {target} target."
)
EXPLAIN_TRACKING = (
    "{verb_cap} {shares} of {symbol} lowers the tracking error to the model; it goes from "
    "{before} to {after} against a {target} target."
)
NOTE_MAX = " (its maximum weight)"
NOTE_MIN = " (its minimum weight)"
NOTE_SECTOR = " (its sector is at its {limit} limit)"
NOTE_BAND = " (the edge of its band)"
LOTS_LOSS_FIRST = "Lots sold first are those at a loss (tax saving {saving})."
LOTS_LOSS = "The lots sold realize a loss of {loss}."
LOTS_LONG_FIRST = "Long-term lots are sold before short-term ones (estimated tax {tax})."
LOTS_GAIN_TAX = "The lots sold realize a gain of {gain} (estimated tax {tax})."
LOTS_GAIN = "The lots sold realize a gain of {gain}, not taxed in this account."
STOP_CASH = "Buying stops there because cash is down to the {required} required."
STOP_CASH_ALL = "Buying stops there because the cash is fully invested."
STOP_TURNOVER = "The {limit} turnover limit stops it there."
STOP_GAINS = "The {budget} realized-gains budget stops it there."
STOP_COST = "Going all the way to the target would cost more than the drift it removes."
VISIBLE_WEIGHT = 0.0005  # half of the 0.1% the sentences show


@dataclass(frozen=True)
class LotRelief:
    """One lot relieved by a sell: ``gain`` in currency (negative: a loss), ``tax`` the
    estimated tax on it (``gain * rate`` by holding period; 0 in a non-taxable account)."""

    lot: int
    shares: float
    gain: float
    long_term: bool
    tax: float


@dataclass(frozen=True)
class TradeExplanation:
    """One trade of one security: what, why (``reason``, ``drivers``), and for a sell the
    lots relieved. Weights as in :class:`Metrics` (before over ``V``, after over ``V'``)."""

    security: int
    symbol: str
    side: str
    shares: float
    price: float
    notional: float
    reason: str
    weight_before: float
    weight_after: float
    target: float
    drivers: tuple[str, ...]
    explanation: str
    lots: tuple[LotRelief, ...] = ()


@dataclass(frozen=True, eq=False)
class Metrics:
    """What a set of trades does to an account (see the module docstring for definitions).

    Money in the account currency; weights, drift, tracking error and turnover as fractions;
    ``terms_before``/``terms_after`` are ``ObjectiveTerms`` as dicts.
    """

    value_before: float
    value_after: float
    cash_before: float
    cash_after: float
    weights_before: FloatArray
    weights_after: FloatArray
    cash_weight_before: float
    cash_weight_after: float
    tracking_error_before: float
    tracking_error_after: float
    total_drift_before: float
    total_drift_after: float
    max_drift_before: float
    max_drift_after: float
    realized_st: float
    realized_lt: float
    tax_estimate: float
    cost_estimate: float
    turnover: float
    terms_before: dict[str, float]
    terms_after: dict[str, float]
    violations: tuple[str, ...]


def _money(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _pp(value: float) -> str:
    return f"{100 * abs(value):.1f}" if abs(value) >= 0.001 else f"{100 * abs(value):.2f}"


def _shares(shares: float) -> str:
    text = f"{shares:,.0f}" if float(shares).is_integer() else f"{shares:,.4f}".rstrip("0")
    text = text.rstrip(".")
    return f"{text} share" if shares == 1 else f"{text} shares"


def policy_target(problem: AccountProblem) -> FloatArray:
    """The model's target weights with 0 for ESG sell-outs: shape ``(N,)``."""
    return np.where(problem_sell_out(problem), 0.0, np.asarray(problem.securities.target, float))


def _tracking_error(arrays: ProblemArrays, d: FloatArray) -> float:
    variance = float(np.sum((arrays.g @ d) ** 2) + np.sum((arrays.sqrt_d * d) ** 2))
    return float(np.sqrt(max(variance, 0.0)))


def _drifts(weights: FloatArray, cash_weight: float, target: FloatArray) -> tuple[float, float]:
    d = weights - target
    cash_drift = cash_weight - (1.0 - float(target.sum()))
    total = 0.5 * (float(np.abs(d).sum()) + abs(cash_drift))
    return total, float(np.abs(d).max()) if d.size else 0.0


@dataclass(frozen=True, eq=False)
class _Evaluation:
    """Everything :func:`portfolio_metrics` and :func:`trades_explain` share."""

    arrays: ProblemArrays
    sell: FloatArray
    buy: FloatArray
    lot_price: FloatArray
    gain: FloatArray  # per lot, currency
    tax: FloatArray  # per lot, currency
    w_pre: FloatArray  # post-trade weights over V (the optimizer's)
    metrics: Metrics


def _limits_max(problem: AccountProblem, arrays: ProblemArrays) -> FloatArray:
    """Maximum weights as a PM set them, relaxed where the mode leaves a position alone."""
    raw = np.asarray(problem.securities.max_weight, dtype=float)
    return np.maximum(raw, arrays.w_max)


def _violations(problem: AccountProblem, ev: _Evaluation) -> tuple[str, ...]:
    arrays, sell, buy, m = ev.arrays, ev.sell, ev.buy, ev.metrics
    sec, lots = problem.securities, problem.lots
    lot_sec = arrays.lot_security
    n = problem.n_securities

    def lot_symbol(i: int) -> str:
        return problem.symbol(int(lot_sec[i]))

    out = [
        MSG_NEGATIVE_SELL.format(symbol=lot_symbol(i), lot=int(i), shares=f"{sell[i]:g}")
        for i in np.flatnonzero(sell < -SHARES_TOLERANCE)
    ]
    out += [
        MSG_NEGATIVE_BUY.format(symbol=problem.symbol(int(j)), shares=f"{buy[j]:g}")
        for j in np.flatnonzero(buy < -SHARES_TOLERANCE)
    ]
    out += [
        MSG_OVERSELL.format(
            shares=f"{sell[i]:g}", symbol=lot_symbol(i), lot=int(i), held=f"{lots.quantity[i]:g}"
        )
        for i in np.flatnonzero(sell > lots.quantity + SHARES_TOLERANCE)
    ]
    required = arrays.cash_min * arrays.value
    if m.cash_after < required - CASH_TOLERANCE:
        cash, needed = _money(m.cash_after), _money(required)
        if problem.mode == Mode.CASH_RAISE:
            reserve, amount = _money(problem.reserve), _money(problem.cash_amount)
            out.append(
                MSG_CASH_RAISE.format(cash=cash, required=needed, reserve=reserve, amount=amount)
            )
        else:
            out.append(MSG_CASH_RESERVE.format(cash=cash, required=needed))

    sell_out = problem_sell_out(problem)
    bought = buy > SHARES_TOLERANCE
    wash_buy = problem.wash_buy_blocked
    for j in np.flatnonzero(bought):
        symbol = problem.symbol(int(j))
        if sec.no_buy[j]:
            out.append(MSG_NO_BUY.format(symbol=symbol))
        elif sell_out[j]:
            out.append(MSG_SELL_OUT_BUY.format(symbol=symbol))
        if wash_buy is not None and wash_buy[j]:
            out.append(MSG_WASH_BUY.format(symbol=symbol, days=WASH_DAYS))
    sold = sell > SHARES_TOLERANCE
    sold_any = np.bincount(lot_sec, weights=sold.astype(float), minlength=n) > 0
    out += [
        MSG_NO_SELL.format(symbol=problem.symbol(int(j)))
        for j in np.flatnonzero(sold_any & sec.no_sell)
    ]
    out += [
        MSG_LOT_NO_SELL.format(lot=int(i), symbol=lot_symbol(i))
        for i in np.flatnonzero(sold & lots.no_sell & ~sec.no_sell[lot_sec])
    ]
    if problem.wash_sell_blocked is not None:
        wash = sold & problem.wash_sell_blocked & (arrays.gain_lot < 0)
        out += [
            MSG_WASH_SELL.format(lot=int(i), symbol=lot_symbol(i), days=WASH_DAYS)
            for i in np.flatnonzero(wash)
        ]

    limit = _limits_max(problem, arrays)
    out += [
        MSG_MAX_WEIGHT.format(
            symbol=problem.symbol(int(j)), weight=_pct(ev.w_pre[j]), limit=_pct(limit[j])
        )
        for j in np.flatnonzero((ev.w_pre > limit + LIMIT_TOLERANCE) & ~sell_out)
    ]
    if arrays.sector_matrix.shape[0]:
        merged = ev.w_pre if arrays.merge is None else arrays.merge @ ev.w_pre
        sector_w = arrays.sector_matrix @ merged
        out += [
            MSG_SECTOR.format(
                sector=int(s), weight=_pct(sector_w[s]), limit=_pct(arrays.sector_max[s])
            )
            for s in np.flatnonzero(sector_w > arrays.sector_max + LIMIT_TOLERANCE)
        ]
    turnover_limit = problem.turnover_limit
    if turnover_limit is not None and m.turnover > turnover_limit + LIMIT_TOLERANCE:
        out.append(MSG_TURNOVER.format(turnover=_pct(m.turnover), limit=_pct(turnover_limit)))
    realized = m.realized_st + m.realized_lt
    budget = problem.gains_budget
    if budget is not None and realized > budget + gains_tolerance(arrays.value):
        out.append(MSG_GAINS.format(gains=_money(realized), budget=_money(budget)))
    if arrays.sell_out is not None:
        left = np.where(arrays.lot_cap > 0, lots.quantity - np.maximum(sell, 0.0), 0.0)
        remaining = np.bincount(lot_sec, weights=left, minlength=n)
        out += [
            MSG_SELL_OUT_LEFT.format(symbol=problem.symbol(int(j)), shares=f"{remaining[j]:g}")
            for j in np.flatnonzero(arrays.sell_out & (remaining > SHARES_TOLERANCE))
        ]
    return tuple(out)


def _evaluate(
    problem: AccountProblem, sell_shares: FloatArray, buy_shares: FloatArray
) -> _Evaluation:
    arrays = problem_arrays(problem)
    sell = np.asarray(sell_shares, dtype=float)
    buy = np.asarray(buy_shares, dtype=float)
    for name, arr, size in (
        ("sell_shares", sell, problem.n_lots),
        ("buy_shares", buy, problem.n_securities),
    ):
        want = (size,)
        if arr.shape != want:
            raise ProblemInvalid(MSG_SHAPE.format(name=name, got=arr.shape, want=want))
        if not np.all(np.isfinite(arr)):
            raise ProblemInvalid(MSG_NOT_FINITE.format(name=name))
    sec, lots = problem.securities, problem.lots
    value = arrays.value
    price = np.asarray(sec.price, dtype=float)
    lot_sec = arrays.lot_security
    lot_price = price[lot_sec]
    n = problem.n_securities

    x = sell * lot_price / value
    y = buy * price / value
    proceeds = float(np.sum(sell * lot_price * (1 - arrays.cost_lot)))
    spent = float(np.sum(buy * price * (1 + arrays.cost_sec)))
    cash_after = problem.cash + proceeds - spent
    shares_before = np.bincount(lot_sec, weights=lots.quantity, minlength=n).astype(float)
    shares_after = shares_before - np.bincount(lot_sec, weights=sell, minlength=n) + buy
    value_after = cash_after + float(price @ shares_after)
    weights_before = arrays.w0
    weights_after = price * shares_after / value_after if value_after > 0 else shares_after * 0

    target = policy_target(problem)
    cash_w_before = problem.cash / value
    cash_w_after = cash_after / value_after if value_after > 0 else 0.0
    total_before, max_before = _drifts(weights_before, cash_w_before, target)
    total_after, max_after = _drifts(weights_after, cash_w_after, target)

    gain = sell * (lot_price - lots.basis)
    rate = np.where(lots.long_term, problem.tax_rate_long, problem.tax_rate_short)
    tax = gain * rate if problem.taxable else np.zeros_like(gain)
    cost = float(np.sum(sell * lot_price * arrays.cost_lot) + np.sum(buy * price * arrays.cost_sec))
    zeros_x, zeros_y = np.zeros_like(x), np.zeros_like(y)
    metrics = Metrics(
        value_before=value,
        value_after=value_after,
        cash_before=problem.cash,
        cash_after=cash_after,
        weights_before=weights_before,
        weights_after=weights_after,
        cash_weight_before=cash_w_before,
        cash_weight_after=cash_w_after,
        tracking_error_before=_tracking_error(arrays, weights_before - target),
        tracking_error_after=_tracking_error(arrays, weights_after - target),
        total_drift_before=total_before,
        total_drift_after=total_after,
        max_drift_before=max_before,
        max_drift_after=max_after,
        realized_st=float(gain[~lots.long_term].sum()),
        realized_lt=float(gain[lots.long_term].sum()),
        tax_estimate=float(tax.sum()),
        cost_estimate=cost,
        turnover=float(np.sum(np.abs(sell) * lot_price) + np.sum(np.abs(buy) * price)) / value,
        terms_before=dataclasses.asdict(objective_terms(arrays, zeros_x, zeros_y)),
        terms_after=dataclasses.asdict(objective_terms(arrays, x, y)),
        violations=(),
    )
    sold_w = np.bincount(lot_sec, weights=x, minlength=n)
    evaluation = _Evaluation(
        arrays=arrays,
        sell=sell,
        buy=buy,
        lot_price=lot_price,
        gain=gain,
        tax=tax,
        w_pre=arrays.w0 - sold_w + y,
        metrics=metrics,
    )
    violations = _violations(problem, evaluation)
    return dataclasses.replace(
        evaluation, metrics=dataclasses.replace(metrics, violations=violations)
    )


def portfolio_metrics(
    problem: AccountProblem, sell_shares: FloatArray, buy_shares: FloatArray
) -> Metrics:
    """Metrics of the trades ``sell_shares`` (L, per lot) and ``buy_shares`` (N) on ``problem``.

    Works for any trades, the optimizer's or a PM's edit of them: rules they break are listed
    in ``violations`` (selling more than a lot holds, negative quantities, cash below the
    required level, no-buy / no-sell / ESG sell-out restrictions, wash sales, maximum weight,
    sector, turnover and gains-budget limits, an incomplete ESG sell-out). For
    ``optimize(problem)``'s own trades, cash, weights and objective terms equal those of the
    :class:`OptimizeResult`. Raises ``ProblemInvalid`` like :func:`optimize`.
    """
    return _evaluate(problem, sell_shares, buy_shares).metrics


# -- explanations ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Context:
    """Per-account quantities every trade's explanation reads (shapes ``(N,)`` unless said)."""

    problem: AccountProblem
    ev: _Evaluation
    mode: Mode
    target: FloatArray  # the policy target (what the PM sees)
    enforced: np.ndarray  # ESG sell-outs this mode carries out
    step: FloatArray  # trading unit in shares
    unit_w: FloatArray  # one trading unit as a weight (plus noise)
    d_before: FloatArray  # deviation from the optimizer's target, before and after
    d_after: FloatArray
    grad: FloatArray  # tracking-error gradient before trading (0 without a risk model)
    required: float  # cash the account must keep (reserve, plus a cash raise)
    sector_active: np.ndarray
    sector_limit: FloatArray
    turnover_active: bool
    substitute_of: dict[int, int]


def _context(problem: AccountProblem, ev: _Evaluation) -> _Context:
    arrays, m = ev.arrays, ev.metrics
    n = problem.n_securities
    price = np.asarray(problem.securities.price, dtype=float)
    round_lot = problem_round_lot(problem)
    step = np.where(round_lot > 1, round_lot, 1.0)
    unit_w = step * price / arrays.value + LIMIT_TOLERANCE
    merge = arrays.merge
    before = arrays.w0 if merge is None else merge @ arrays.w0
    after = ev.w_pre if merge is None else merge @ ev.w_pre
    d_before, d_after = before - arrays.target, after - arrays.target
    grad = np.zeros(n)
    if problem.tracking_weight > 0:
        grad = arrays.g.T @ (arrays.g @ d_before) + arrays.sqrt_d**2 * d_before
        if merge is not None:
            grad = merge.T @ grad
    sector_active = np.zeros(n, dtype=bool)
    sector_limit = np.zeros(n)
    if arrays.sector_matrix.shape[0]:
        # The sector a security's weight counts in (its substitute target's, in TLH mode).
        matrix = arrays.sector_matrix if merge is None else arrays.sector_matrix @ merge
        sector_of = np.argmax(matrix, axis=0)
        counted = matrix.any(axis=0)
        sector_limit = arrays.sector_max[sector_of]
        sector_active = counted & (
            (arrays.sector_matrix @ after)[sector_of] >= sector_limit - unit_w
        )
    limit = problem.turnover_limit
    return _Context(
        problem=problem,
        ev=ev,
        mode=Mode(problem.mode),
        target=policy_target(problem),
        enforced=(arrays.sell_out if arrays.sell_out is not None else np.zeros(n, dtype=bool)),
        step=step,
        unit_w=unit_w,
        d_before=d_before,
        d_after=d_after,
        grad=grad,
        required=arrays.cash_min * arrays.value,
        sector_active=sector_active,
        sector_limit=sector_limit,
        turnover_active=limit is not None and m.turnover >= limit - 2 * float(unit_w.max()),
        substitute_of={k: j for j, k in problem.substitutes.items()},
    )


@dataclass(frozen=True)
class _Trade:
    """One side of one security's trade, with the facts its explanation needs."""

    j: int
    side: str
    shares: float
    notional: float
    reliefs: tuple[LotRelief, ...]
    toward: bool  # moves the security toward the optimizer's target
    lot_tax: float
    lot_gain: float
    at_max: bool
    at_min: bool
    cash_binding: bool
    gains_binding: bool


def _reliefs(ctx: _Context, j: int) -> tuple[LotRelief, ...]:
    ev, lots = ctx.ev, ctx.problem.lots
    mine = np.flatnonzero((ev.arrays.lot_security == j) & (ev.sell > SHARES_TOLERANCE))
    tax_lot, gain_lot = ev.arrays.tax_lot[mine], ev.arrays.gain_lot[mine]
    order = mine[np.lexsort((mine, gain_lot, tax_lot))]
    return tuple(
        LotRelief(
            lot=int(i),
            shares=float(ev.sell[i]),
            gain=float(ev.gain[i]),
            long_term=bool(lots.long_term[i]),
            tax=float(ev.tax[i]),
        )
        for i in order
    )


def _trade(ctx: _Context, j: int, side: str, shares: float) -> _Trade:
    problem, ev = ctx.problem, ctx.ev
    price = float(problem.securities.price[j])
    reliefs = _reliefs(ctx, j) if side == "sell" else ()
    lot_gain = sum(r.gain for r in reliefs)
    raw_max = float(problem.securities.max_weight[j])
    raw_min = float(problem.securities.min_weight[j])
    w = float(ev.w_pre[j])
    unit = float(ctx.unit_w[j])
    one_more = ctx.step[j] * price * (1 + ev.arrays.cost_sec[j])
    budget = problem.gains_budget
    gains_binding = False
    if budget is not None and side == "sell" and lot_gain > 0:
        largest = max(ctx.step[j] * max(r.gain / r.shares for r in reliefs), GAINS_TOLERANCE)
        gains_binding = ev.metrics.realized_st + ev.metrics.realized_lt >= budget - largest
    return _Trade(
        j=j,
        side=side,
        shares=shares,
        notional=shares * price,
        reliefs=reliefs,
        toward=abs(ctx.d_after[j]) < abs(ctx.d_before[j]) - 1e-12,
        lot_tax=sum(r.tax for r in reliefs),
        lot_gain=lot_gain,
        at_max=raw_max < 1 and abs(w - raw_max) <= unit and not ctx.enforced[j],
        at_min=raw_min > 0 and abs(w - raw_min) <= unit,
        cash_binding=ev.metrics.cash_after <= ctx.required + one_more,
        gains_binding=gains_binding,
    )


def _reason(ctx: _Context, t: _Trade) -> str:
    problem, mode = ctx.problem, ctx.mode
    if t.side == "sell" and ctx.enforced[t.j]:
        return "restriction"
    if mode == Mode.TLH:
        return "tlh"
    if mode == Mode.TOLERANCE:
        return "drift"
    if mode == Mode.CASH_RAISE and t.side == "sell":
        return "cash_raise"
    if mode == Mode.CASH_INVEST and t.side == "buy":
        return "cash_invest"
    if t.side == "sell" and not t.toward:
        if problem.taxable and t.lot_tax < 0:
            return "tlh"
        if problem.cash < problem.reserve - CASH_TOLERANCE:
            return "cash_raise"
    return "drift"


def _drivers(ctx: _Context, t: _Trade) -> tuple[str, ...]:
    problem, mode, ev, j = ctx.problem, ctx.mode, ctx.ev, t.j
    sell = t.side == "sell"
    found: set[str] = set()
    if t.toward and mode != Mode.TLH:
        found.add("drift")
    if (-1.0 if sell else 1.0) * ctx.grad[j] < -1e-12:
        found.add("tracking")
    if sell and problem.taxable and t.lot_tax != 0:
        found.add("tax")
    if sell and problem.cash < problem.reserve - CASH_TOLERANCE:
        found.add("cash_reserve")
    if not sell and t.cash_binding and ctx.required > CASH_TOLERANCE:
        # The cash a buy may not spend: the cash raise's amount, or else the reserve.
        found.add("cash_raise" if mode == Mode.CASH_RAISE else "cash_reserve")
    if sell and mode == Mode.CASH_RAISE:
        found.add("cash_raise")
    cash_target = 1.0 - float(ctx.target.sum())
    if not sell and (
        mode == Mode.CASH_INVEST or ev.metrics.cash_weight_before > cash_target + LIMIT_TOLERANCE
    ):
        found.add("cash_invest")
    if t.at_max:
        found.add("max_weight")
    if t.at_min:
        found.add("min_weight")
    if ctx.sector_active[j]:
        found.add("sector")
    if ctx.turnover_active:
        found.add("turnover")
    if t.gains_binding:
        found.add("gains_budget")
    if sell and ctx.enforced[j]:
        found.add("sell_out")
    if not sell and mode == Mode.TLH and j in ctx.substitute_of:
        found.add("substitute")
    if mode == Mode.TOLERANCE:
        found.add("band")
    # Costs (and the tax on gains) explain stopping short of the target only when no limit
    # does: same side of the target, more than one trading unit away.
    limited = (
        t.at_max
        or t.at_min
        or ctx.sector_active[j]
        or ctx.turnover_active
        or t.gains_binding
        or (not sell and t.cash_binding)
    )
    short = (
        np.sign(ctx.d_after[j]) == np.sign(ctx.d_before[j]) and abs(ctx.d_after[j]) > ctx.unit_w[j]
    )
    friction = t.notional * float(ev.arrays.cost_sec[j]) + max(t.lot_tax, 0.0)
    if short and friction > 0 and not limited and t.toward:
        found.add("cost")
    return tuple(code for code in DRIVERS if code in found)


def _lot_sentence(problem: AccountProblem, t: _Trade) -> str:
    reliefs = t.reliefs
    losses = [r for r in reliefs if r.gain < 0]
    if losses:
        saving = -sum(r.tax for r in losses)
        if problem.taxable and saving > 0:
            return LOTS_LOSS_FIRST.format(saving=_money(saving))
        if t.lot_gain < 0:
            return LOTS_LOSS.format(loss=_money(-t.lot_gain))
    if t.lot_gain <= 0:
        return ""
    if not problem.taxable:
        return LOTS_GAIN.format(gain=_money(t.lot_gain))
    lots = problem.lots
    sold = {r.lot for r in reliefs}
    short_term = np.flatnonzero((lots.security == t.j) & ~lots.long_term & (lots.quantity > 0))
    kept_short = [i for i in short_term.tolist() if i not in sold]
    if kept_short and all(r.long_term for r in reliefs):
        return LOTS_LONG_FIRST.format(tax=_money(t.lot_tax))
    return LOTS_GAIN_TAX.format(gain=_money(t.lot_gain), tax=_money(t.lot_tax))


def _note(ctx: _Context, t: _Trade) -> str:
    """What the post-trade weight is pinned to, if anything (a parenthesis)."""
    j = t.j
    if t.at_max:
        return NOTE_MAX
    if t.at_min:
        return NOTE_MIN
    if ctx.sector_active[j]:
        return NOTE_SECTOR.format(limit=_pct(float(ctx.sector_limit[j])))
    if ctx.mode == Mode.TOLERANCE:
        sec = ctx.problem.securities
        edges = (sec.target[j] - sec.band_lower[j], sec.target[j] + sec.band_upper[j])
        if any(abs(ctx.ev.w_pre[j] - edge) <= ctx.unit_w[j] for edge in edges):
            return NOTE_BAND
    return ""


def _first_sentence(ctx: _Context, t: _Trade, reason: str, drivers: tuple[str, ...]) -> str:
    problem, mode, m, j = ctx.problem, ctx.mode, ctx.ev.metrics, t.j
    sell = t.side == "sell"
    gap = float(m.weights_before[j] - ctx.target[j])
    fields = {
        "symbol": problem.symbol(j),
        "shares": _shares(t.shares),
        "verb": "selling" if sell else "buying",
        "verb_cap": "Selling" if sell else "Buying",
        "before": _pct(m.weights_before[j]),
        "after": _pct(m.weights_after[j]) + _note(ctx, t),
        "target": _pct(ctx.target[j]),
        "notional": _money(t.notional),
        "gap": _pp(gap),
    }
    loss, saving = _money(max(-t.lot_gain, 0.0)), _money(max(-t.lot_tax, 0.0))
    if sell and ctx.enforced[j]:
        return EXPLAIN_SELL_OUT.format(**fields)
    if mode == Mode.TLH and sell:
        k = problem.substitutes.get(j)
        keep = ""
        if k is not None and ctx.ev.buy[k] > SHARES_TOLERANCE:
            keep = EXPLAIN_TLH_KEEP.format(substitute=problem.symbol(k))
        return EXPLAIN_TLH_SELL.format(loss=loss, saving=saving, keep=keep, **fields)
    if mode == Mode.TLH and j in ctx.substitute_of:
        return EXPLAIN_TLH_BUY.format(original=problem.symbol(ctx.substitute_of[j]), **fields)
    if mode == Mode.CASH_RAISE and sell:
        return EXPLAIN_CASH_RAISE.format(amount=_money(problem.cash_amount), **fields)
    if mode == Mode.TOLERANCE:
        sec = problem.securities
        lo, hi = sec.target[j] - sec.band_lower[j], sec.target[j] + sec.band_upper[j]
        side = "over" if gap > 0 else "under"
        return EXPLAIN_BAND.format(side=side, lo=_pct(lo), hi=_pct(hi), **fields)
    if reason == "tlh":
        return EXPLAIN_HARVEST.format(loss=loss, saving=saving, **fields)
    if reason == "cash_raise":
        return EXPLAIN_RESERVE.format(reserve=_money(problem.reserve), **fields)
    if not t.toward and "tracking" in drivers:
        return EXPLAIN_TRACKING.format(**fields)
    if not sell and gap >= 0 and "cash_invest" in drivers:
        return EXPLAIN_CASH_INVEST.format(**fields)
    if abs(gap) < 5e-5:
        return EXPLAIN_AT.format(**fields)
    return (EXPLAIN_OVER if gap > 0 else EXPLAIN_UNDER).format(**fields)


def _second_sentence(ctx: _Context, t: _Trade, reason: str, drivers: tuple[str, ...]) -> str:
    problem = ctx.problem
    if t.side == "sell" and reason != "tlh":
        lots = _lot_sentence(problem, t)
        if lots:
            return lots
    if t.side == "buy" and t.cash_binding:
        if ctx.required <= CASH_TOLERANCE:
            return STOP_CASH_ALL
        return STOP_CASH.format(required=_money(ctx.required))
    if ctx.turnover_active and problem.turnover_limit is not None:
        return STOP_TURNOVER.format(limit=_pct(problem.turnover_limit))
    if t.gains_binding and problem.gains_budget is not None:
        return STOP_GAINS.format(budget=_money(problem.gains_budget))
    # Short of the target by less than the 0.1% the sentence shows reads as "at target".
    short = abs(float(ctx.ev.metrics.weights_after[t.j] - ctx.target[t.j]))
    if "cost" in drivers and short >= VISIBLE_WEIGHT:
        return STOP_COST
    return ""


def trades_explain(problem: AccountProblem, result: OptimizeResult) -> tuple[TradeExplanation, ...]:
    """One :class:`TradeExplanation` per traded security of ``result``, by security index
    (the optimizer nets a security's buys against its sells, so each is a buy or a sell; trades
    that were not netted give one explanation per side).

    ``reason`` is an ``orders.OrderReason`` value: ``restriction`` for an ESG sell-out,
    ``tlh`` in tax-loss-harvest mode (and for a full-mode sale that moves a security away from
    its target to realize a loss), ``cash_raise`` for cash-raise sells (and a full-mode sale
    away from target that restores the reserve), ``cash_invest`` for cash-invest buys, and
    ``drift`` otherwise (tolerance mode included). ``drivers`` are codes from ``DRIVERS``;
    ``explanation`` is one or two sentences for the PM.
    """
    ev = _evaluate(problem, result.sell_shares, result.buy_shares)
    ctx = _context(problem, ev)
    n = problem.n_securities
    sold = np.bincount(ev.arrays.lot_security, weights=np.maximum(ev.sell, 0.0), minlength=n)
    price = np.asarray(problem.securities.price, dtype=float)
    out: list[TradeExplanation] = []
    for j in range(n):
        for side, shares in (("sell", float(sold[j])), ("buy", float(ev.buy[j]))):
            if shares <= SHARES_TOLERANCE:
                continue
            t = _trade(ctx, j, side, shares)
            reason = _reason(ctx, t)
            drivers = _drivers(ctx, t)
            first = _first_sentence(ctx, t, reason, drivers)
            second = _second_sentence(ctx, t, reason, drivers)
            out.append(
                TradeExplanation(
                    security=j,
                    symbol=problem.symbol(j),
                    side=side,
                    shares=shares,
                    price=float(price[j]),
                    notional=t.notional,
                    reason=reason,
                    weight_before=float(ev.metrics.weights_before[j]),
                    weight_after=float(ev.metrics.weights_after[j]),
                    target=float(ctx.target[j]),
                    drivers=drivers,
                    explanation=f"{first} {second}".strip(),
                    lots=t.reliefs,
                )
            )
    return tuple(out)
