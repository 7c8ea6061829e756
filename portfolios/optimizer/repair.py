"""From the convex solution to tradeable orders: minimum trade, rounding, cash repair.

:func:`optimize` solves the relaxation, then (DESIGN 5, "repair"):

1. cancels a buy against sells of the same security (a round trip), then drops trades under
   the minimum trade amount (a security's net sells, or its buy) and re-solves with them held
   at zero (same shape, so the compiled problem is reused), up to ``MAX_DROP_ROUNDS`` times;
   when holding them at zero makes the constraints conflict (a band or limit needs the small
   trade), they are kept and a warning says why;
2. rounds to whole shares unless the account allows fractions: sells to the nearest share,
   never above the lot (no shorts), buys to the nearest share;
3. restores cash at least the required level (reserve, plus the amount in cash-raise mode) by
   trimming buys, largest first, then, if that is not enough, selling a little more of lots
   the solution already sells;
4. reports the objective of the relaxed and the final solution and their gap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from portfolios.optimizer.errors import Infeasible
from portfolios.optimizer.problem import AccountProblem, FloatArray, problem_arrays
from portfolios.optimizer.solve import (
    DEFAULT_SOLVER,
    ObjectiveTerms,
    arrays_fix,
    objective_terms,
    solve_arrays,
)

MAX_DROP_ROUNDS = 3
CASH_TOLERANCE = 1e-6  # currency; rounding noise below a millionth of a cent-ish is ignored

MSG_SMALL_KEPT = "Trades under the minimum were kept: without them, {reason}"
MSG_CASH_SHORT = "After rounding, cash is {short} below the required {required}."


@dataclass(frozen=True, eq=False)
class OptimizeResult:
    """Tradeable result for one account.

    ``sell_shares`` (L) per lot and ``buy_shares`` (N) per security; holdings and weights before
    and after (weights over the account value before and after trading, respectively); the
    objective terms before trading, at the relaxed optimum and after repair, and
    ``objective_gap = final - relaxed`` in objective units.
    """

    sell_shares: FloatArray
    buy_shares: FloatArray
    shares_before: FloatArray
    shares_after: FloatArray
    weights_before: FloatArray
    weights_after: FloatArray
    cash_before: float
    cash_after: float
    terms_before: ObjectiveTerms
    terms_relaxed: ObjectiveTerms
    terms_after: ObjectiveTerms
    objective_gap: float
    solver: str
    status: str
    solve_time: float
    cache_hit: bool
    discrete: str
    dropped: int
    warnings: tuple[str, ...]


def _round(shares: FloatArray, fractional: bool) -> FloatArray:
    return shares.copy() if fractional else np.round(shares)


def _net(
    x: FloatArray, y: FloatArray, lot_sec: np.ndarray, tax_lot: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Cancel a buy against sells of the same security (a round trip; with zero costs the
    relaxation may contain one). The lots with the highest tax per unit are un-sold first."""
    x, y = x.copy(), y.copy()
    overlap = np.minimum(np.bincount(lot_sec, weights=x, minlength=y.shape[0]), y)
    if not np.any(overlap > 0):
        return x, y
    y -= overlap
    for i in np.argsort(-tax_lot, kind="stable"):
        j = lot_sec[i]
        if overlap[j] > 0 and x[i] > 0:
            cut = min(x[i], overlap[j])
            x[i] -= cut
            overlap[j] -= cut
    return x, y


def optimize(problem: AccountProblem, *, solver: str = DEFAULT_SOLVER) -> OptimizeResult:
    """Solve ``problem`` and repair the solution to whole (or fractional) shares.

    Raises :class:`Infeasible` (with the conflicting constraints), :class:`SolverFailed` or
    :class:`ProblemInvalid`.
    """
    start = time.perf_counter()
    arrays = problem_arrays(problem)
    relaxed = solve_arrays(arrays, problem, solver=solver)
    first = relaxed
    value = arrays.value
    lot_sec = arrays.lot_security
    n = arrays.w0.shape[0]
    price = problem.securities.price
    lot_price = price[lot_sec]

    warnings: list[str] = []
    dropped = 0
    if problem.min_trade > 0:
        current = arrays
        for _ in range(MAX_DROP_ROUNDS):
            x_net, y_net = _net(relaxed.x, relaxed.y, lot_sec, arrays.tax_lot)
            sold = np.bincount(lot_sec, weights=x_net, minlength=n) * value
            bought = y_net * value
            small_sell = (sold > 0) & (sold < problem.min_trade)
            small_buy = (bought > 0) & (bought < problem.min_trade)
            if not (small_sell.any() or small_buy.any()):
                break
            candidate = arrays_fix(
                current,
                lots_fixed=small_sell[lot_sec] | (current.lot_cap == 0),
                buys_fixed=small_buy | (current.buy_cap == 0),
            )
            try:
                relaxed = solve_arrays(candidate, problem, solver=solver)
            except Infeasible as exc:
                warnings.append(MSG_SMALL_KEPT.format(reason=exc.message))
                break
            current = candidate
            dropped += int(small_sell.sum() + small_buy.sum())

    x_net, y_net = _net(relaxed.x, relaxed.y, lot_sec, arrays.tax_lot)
    fractional = problem.fractional
    held = problem.lots.quantity
    sell = np.minimum(_round(x_net * value / lot_price, fractional), held)
    sell = np.maximum(sell, 0.0)
    buy = np.maximum(_round(y_net * value / price, fractional), 0.0)

    cost_sec, cost_lot = arrays.cost_sec, arrays.cost_lot
    required = arrays.cash_min * value

    def cash_of(sell: FloatArray, buy: FloatArray) -> float:
        proceeds = float(np.sum(sell * lot_price * (1 - cost_lot)))
        spent = float(np.sum(buy * price * (1 + cost_sec)))
        return problem.cash + proceeds - spent

    short = required - cash_of(sell, buy)
    if short > CASH_TOLERANCE:
        for j in np.argsort(-(buy * price)):
            if short <= CASH_TOLERANCE or buy[j] <= 0:
                break
            unit = price[j] * (1 + cost_sec[j])
            need = short / unit if fractional else math.ceil(short / unit - 1e-12)
            cut = min(buy[j], need)
            buy[j] -= cut
            short -= cut * unit
    if short > CASH_TOLERANCE:
        room = held - sell
        for i in np.argsort(-(sell * lot_price)):
            if short <= CASH_TOLERANCE or sell[i] <= 0:
                break
            unit = lot_price[i] * (1 - cost_lot[i])
            need = short / unit if fractional else math.ceil(short / unit - 1e-12)
            extra = min(room[i], need)
            sell[i] += extra
            short -= extra * unit
    if short > CASH_TOLERANCE:
        warnings.append(MSG_CASH_SHORT.format(short=f"${short:,.2f}", required=f"${required:,.2f}"))

    x = sell * lot_price / value
    y = buy * price / value
    final_terms = objective_terms(arrays, x, y)
    shares_before = np.bincount(lot_sec, weights=held, minlength=n).astype(float)
    shares_after = shares_before - np.bincount(lot_sec, weights=sell, minlength=n) + buy
    cash_after = cash_of(sell, buy)
    value_after = cash_after + float(price @ shares_after)
    return OptimizeResult(
        sell_shares=sell,
        buy_shares=buy,
        shares_before=shares_before,
        shares_after=shares_after,
        weights_before=arrays.w0,
        weights_after=price * shares_after / value_after if value_after > 0 else shares_after * 0,
        cash_before=problem.cash,
        cash_after=cash_after,
        terms_before=first.terms_before,
        terms_relaxed=first.terms_after,
        terms_after=final_terms,
        objective_gap=final_terms.objective - first.terms_after.objective,
        solver=relaxed.solver,
        status=relaxed.status,
        solve_time=time.perf_counter() - start,
        cache_hit=first.cache_hit,
        discrete="fractional" if fractional else "repair",
        dropped=dropped,
        warnings=tuple(warnings),
    )
