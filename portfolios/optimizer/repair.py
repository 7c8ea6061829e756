"""From the convex solution to tradeable orders: wash sales, minimum trade, rounding, cash.

:func:`optimize` solves the relaxation, then (DESIGN 5, "repair"):

1. forbids wash-sale round trips: where the relaxation sells a lot of a security at a loss and
   buys the security back (rewarded by the tax term and by the gains budget, which counts the
   loss), it re-solves with one side held at zero: the buy for a net seller, the loss sales
   for a net buyer (and the other way round if that conflicts; if both conflict, the
   constraints were met only through the wash sale and :class:`Infeasible` says so). Held
   sides are values (zero caps), so the compiled problem is reused;
2. cancels a buy against sells of the same security (a round trip left by a cost-free
   relaxation), then drops trades under the minimum trade amount (a security's net sells, or
   its buy) and re-solves with them held at zero, up to ``MAX_DROP_ROUNDS`` times; when
   holding them at zero makes the constraints conflict (a band or limit needs the small
   trade), they are kept and a warning says why;
3. rounds each security's sells to a valid quantity: whole shares unless the account allows
   fractions, and a multiple of the round lot where it is above 1 (fractional accounts too),
   except that selling every sellable share of a security that closes the position (or
   carries out an ESG sell-out) is always valid. The nearest valid quantity is taken; the
   larger one when the smaller would leave the security or its sector above its limit, the
   smaller one when the larger would break the turnover limit. Lots keep the relaxed
   solution's choice: a rounding up first completes the lot the relaxation was partly
   selling, then takes lots in relief order (lowest tax per unit first: losses, then
   long-term gains, then short-term ones), and a rounding down un-sells in reverse order;
4. rounds buys: to the nearest whole share (down when up would break the maximum weight, the
   sector or the turnover limit), or for a round lot down to a multiple, and up to the
   nearest multiple only while cash stays at least the required level and the limits hold;
5. keeps the realized-gains budget: when rounding pushed realized gains above it, un-sells
   gain lots (the shares rounding added first, then the largest gain per share) until it
   holds, and keeps the turnover limit by trimming buys;
6. restores cash at least the required level (reserve, plus the amount in cash-raise mode) by
   trimming buys, largest first, then, if that is not enough, selling more: first of the
   securities the solution (or the relaxation, before rounding) sells, then of the others,
   the most overweight first (lots in relief order, within the gains budget);
7. reports the objective of the relaxed and the final solution and their gap, and warns about
   any limit the rounding could not keep (cash, gains budget, maximum weight, sector,
   turnover), in the words ``explain.portfolio_metrics`` uses for its violations.

Quantities in this module are shares (``sell`` per lot, ``buy`` per security) and money in
the account currency; the solver's fractions of ``V`` appear only at the two ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from portfolios.optimizer.diagnose import MSG_INFEASIBLE
from portfolios.optimizer.errors import Infeasible
from portfolios.optimizer.problem import (
    AccountProblem,
    FloatArray,
    Mode,
    ProblemArrays,
    problem_arrays,
    problem_round_lot,
)
from portfolios.optimizer.solve import (
    DEFAULT_SOLVER,
    ObjectiveTerms,
    RelaxedResult,
    arrays_fix,
    objective_terms,
    solve_arrays,
)

MAX_DROP_ROUNDS = 3
CASH_TOLERANCE = 1e-6  # currency; rounding noise below a millionth of a cent-ish is ignored
# The realized-gains budget holds after rounding up to the solver's own accuracy: its
# feasibility tolerance is about 1e-8 of V, so a fractional sale can exceed the budget by
# that much; 1e-7 of V (a cent per $100,000) with a floor of a millionth of a cent.
GAINS_TOLERANCE = 1e-6
GAINS_RELATIVE_TOLERANCE = 1e-7
WEIGHT_TOLERANCE = 1e-9  # fraction of V, for maximum weights after rounding
SHARE_EPSILON = 1e-9  # shares: float noise when comparing share counts
FULL_LOT = 1e-9  # relative: a relaxed sale this close to the whole lot sells the whole lot
NET_DUST = 1e-12  # fraction of V left by netting a round trip: nothing
ROUND_TRIP_TOLERANCE = 1e-6  # fraction of V: a smaller overlap of loss sale and buy is noise

MSG_SMALL_KEPT = "Trades under the minimum were kept: without them, {reason}"
MSG_WASH_INFEASIBLE = (
    "The constraints of this account conflict once a security sold at a loss may not be "
    "bought back in the same rebalance (a wash sale): {details}"
)
MSG_CASH_SHORT = "After rounding, cash is {short} below the required {required}."
MSG_GAINS_OVER = "After rounding, realized gains are {over} over the {budget} budget."
MSG_WEIGHT_OVER = "After rounding, {symbol} is over its {limit} maximum weight."
MSG_SECTOR_OVER = "After rounding, sector {sector} is over its {limit} maximum."
MSG_TURNOVER_OVER = "After rounding, turnover is over its {limit} limit."


@dataclass(frozen=True, eq=False)
class OptimizeResult:
    """Tradeable result for one account.

    ``sell_shares`` (L) per lot and ``buy_shares`` (N) per security; holdings and weights before
    and after (weights over the account value before and after trading, respectively); the
    objective terms before trading, at the relaxed optimum and after repair, and
    ``objective_gap = final - relaxed`` in objective units. ``discrete`` is ``"repair"``
    (whole shares) or ``"fractional"``; round lots apply in both. ``resolves`` counts the
    re-solves (wash-sale round trips and trades under the minimum held at zero),
    ``repair_time`` the seconds spent rounding after the last solve (``solve_time`` is the
    whole call).
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
    resolves: int = 0
    repair_time: float = 0.0


def gains_tolerance(value: float) -> float:
    """How far realized gains may exceed the budget for an account worth ``value``."""
    return max(GAINS_TOLERANCE, GAINS_RELATIVE_TOLERANCE * value)


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
    # The subtraction leaves float dust (1e-21) that a fractional account would trade.
    x[x < NET_DUST] = 0.0
    y[y < NET_DUST] = 0.0
    return x, y


class _Repair:
    """Rounding state of one account: lots, steps, caps and the running sells and buys."""

    def __init__(self, problem: AccountProblem, arrays: ProblemArrays, caps: ProblemArrays):
        self.problem = problem
        self.arrays = arrays
        self.value = arrays.value
        self.fractional = problem.fractional
        n = arrays.w0.shape[0]
        self.lot_sec = arrays.lot_security
        self.price = problem.securities.price
        self.lot_price = self.price[self.lot_sec]
        self.held = np.asarray(problem.lots.quantity, dtype=float)
        self.gain_ps = self.lot_price - problem.lots.basis
        self.sellable = caps.lot_cap > 0
        self.buyable = caps.buy_cap > 0
        self.round_lot = problem_round_lot(problem)
        self.sell_out = arrays.sell_out if arrays.sell_out is not None else np.zeros(n, dtype=bool)
        self.position = np.bincount(self.lot_sec, weights=self.held, minlength=n)
        self.room = np.bincount(
            self.lot_sec, weights=np.where(self.sellable, self.held, 0.0), minlength=n
        )
        # Relief order: lowest tax per unit first (losses, long-term, short-term gains),
        # then the smaller gain (the gains budget), then the lot index (deterministic).
        order = np.lexsort((np.arange(self.held.shape[0]), arrays.gain_lot, arrays.tax_lot))
        self.rank = np.empty_like(order)
        self.rank[order] = np.arange(order.shape[0])
        by_security = np.lexsort((self.rank, self.lot_sec))
        bounds = np.searchsorted(self.lot_sec[by_security], np.arange(n + 1))
        self.lots_of = [by_security[bounds[j] : bounds[j + 1]] for j in range(n)]
        self.required = arrays.cash_min * self.value
        self.budget = problem.gains_budget
        # Sector weights from security weights (through the substitute merge in TLH mode).
        self.sector_of_weights = (
            arrays.sector_matrix if arrays.merge is None else arrays.sector_matrix @ arrays.merge
        )

    # -- valid quantities ------------------------------------------------------------------

    def lots(self, j: int) -> np.ndarray:
        """Lots of security ``j`` in relief order."""
        return self.lots_of[j]

    def step(self, j: int) -> float:
        """The trading unit of ``j`` in shares; 0 means any (fractional, no round lot)."""
        if self.round_lot[j] > 1:
            return float(self.round_lot[j])
        return 0.0 if self.fractional else 1.0

    def _all_valid(self, j: int) -> bool:
        """Whether selling every sellable share of ``j`` is valid whatever the step."""
        room = self.room[j]
        closes = room >= self.position[j] - SHARE_EPSILON
        return bool(room > 0 and (closes or self.sell_out[j] or self.round_lot[j] <= 1))

    def sell_down(self, j: int, total: float) -> float:
        """The largest valid total sell of ``j`` not above ``total``."""
        room = self.room[j]
        total = min(total, room)
        step = self.step(j)
        if step == 0:
            return max(total, 0.0)
        best = math.floor(total / step + SHARE_EPSILON) * step
        if self._all_valid(j) and room <= total + SHARE_EPSILON:
            best = max(best, room)
        return max(best, 0.0)

    def sell_up(self, j: int, total: float) -> float | None:
        """The smallest valid total sell of ``j`` not below ``total`` (None if none)."""
        room = self.room[j]
        step = self.step(j)
        if step == 0:
            return total if total <= room + SHARE_EPSILON else None
        candidates = []
        up = math.ceil(total / step - SHARE_EPSILON) * step
        if up <= room + SHARE_EPSILON:
            candidates.append(up)
        if self._all_valid(j) and room >= total - SHARE_EPSILON:
            candidates.append(room)
        return min(candidates) if candidates else None

    def weight_after(self, j: int, sell: FloatArray, buy: FloatArray) -> float:
        """Post-trade weight of ``j`` over the pre-trade value (the solver's definition)."""
        sold = float(sell[self.lots(j)].sum())
        return (self.position[j] - sold + buy[j]) * self.price[j] / self.value

    def weights_ok(self, j: int, sell: FloatArray, buy: FloatArray) -> bool:
        """Whether ``j`` is within its maximum weight and its sector within its limit."""
        w_j = self.weight_after(j, sell, buy)
        if w_j > self.arrays.w_max[j] + WEIGHT_TOLERANCE:
            return False
        matrix = self.sector_of_weights
        if matrix.shape[0] == 0:
            return True
        sold = np.bincount(self.lot_sec, weights=sell, minlength=self.price.shape[0])
        w = (self.position - sold + buy) * self.price / self.value
        sectors = matrix[:, j] > 0
        return bool(
            np.all(matrix[sectors] @ w <= self.arrays.sector_max[sectors] + WEIGHT_TOLERANCE)
        )

    def turnover_ok(self, sell: FloatArray, buy: FloatArray) -> bool:
        traded = float(sell @ self.lot_price + buy @ self.price) / self.value
        return traded <= self.arrays.turnover + WEIGHT_TOLERANCE

    def cash(self, sell: FloatArray, buy: FloatArray) -> float:
        proceeds = float(np.sum(sell * self.lot_price * (1 - self.arrays.cost_lot)))
        spent = float(np.sum(buy * self.price * (1 + self.arrays.cost_sec)))
        return self.problem.cash + proceeds - spent

    def realized(self, sell: FloatArray) -> float:
        return float(sell @ self.gain_ps)

    # -- moving shares between lots -----------------------------------------------------------

    def _valid_lot(self, i: int, shares: float) -> float:
        """A lot sell is a whole number of shares or the whole lot (whole-share accounts)."""
        if self.fractional or shares >= self.held[i] - SHARE_EPSILON:
            return min(shares, self.held[i])
        return float(math.floor(shares + SHARE_EPSILON))

    def add(
        self, sell: FloatArray, j: int, amount: float, *, first: np.ndarray | None = None
    ) -> float:
        """Sell up to ``amount`` more shares of ``j`` (lots in ``first`` first, then relief
        order), within each lot and, when a budget is set, within the realized-gains budget.
        Returns the shares added."""
        order = self.lots(j)
        if first is not None and first.size:
            order = np.concatenate([first, order[~np.isin(order, first)]])
        added = 0.0
        for i in order:
            left = amount - added
            if left <= SHARE_EPSILON:
                break
            if not self.sellable[i]:
                continue
            take = min(self.held[i] - sell[i], left)
            if self.budget is not None and self.gain_ps[i] > 0:
                gain_room = self.budget - self.realized(sell)
                take = min(take, max(gain_room, 0.0) / self.gain_ps[i])
            if take <= SHARE_EPSILON:
                continue
            new = self._valid_lot(int(i), sell[i] + take)
            added += new - sell[i]
            sell[i] = new
        return added

    def remove(self, sell: FloatArray, j: int, amount: float, order: np.ndarray) -> float:
        """Un-sell up to ``amount`` shares of ``j`` from its lots in ``order``; returns the
        shares removed (possibly a little more, to keep lots whole)."""
        removed = 0.0
        for i in order:
            left = amount - removed
            if left <= SHARE_EPSILON:
                break
            if sell[i] <= 0:
                continue
            new = sell[i] - min(sell[i], left)
            if not self.fractional and new > SHARE_EPSILON:
                new = float(math.floor(new + SHARE_EPSILON))
            removed += sell[i] - new
            sell[i] = new
        return removed

    # -- the repair steps ---------------------------------------------------------------------

    def round_sells(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Valid sells per lot from the relaxed sells ``x`` (fractions of V); the relaxed buys
        ``y`` stand in for the buys when checking limits."""
        buys = y * self.value / self.price
        shares = x * self.value / self.lot_price
        # A sale closer to the whole lot than to nothing (within a relative FULL_LOT when
        # fractional, half a share when not) sells the whole lot.
        slack = 0.0 if self.fractional else 0.5
        near_full = (shares > 0) & (
            shares >= np.maximum(self.held * (1 - FULL_LOT) - slack, self.held / 2)
        )
        base = np.where(near_full, self.held, shares if self.fractional else np.floor(shares))
        sell = np.where(self.sellable, np.clip(base, 0.0, self.held), 0.0)
        totals = np.bincount(self.lot_sec, weights=shares, minlength=self.price.shape[0])
        for j in np.flatnonzero((totals > 0) | (self.sell_out & (self.room > 0))):
            j = int(j)
            if self.sell_out[j]:
                wanted = self.room[j]
            else:
                wanted = self._nearest(j, float(totals[j]), sell, buys)
            mine = self.lots(j)
            have = float(sell[mine].sum())
            if wanted > have + SHARE_EPSILON:
                # Complete the lots the relaxation was partly selling, largest part first.
                part = shares[mine] - sell[mine]
                partial = mine[(part > SHARE_EPSILON) & (sell[mine] < self.held[mine])]
                partial = partial[np.argsort(-(shares[partial] - sell[partial]), kind="stable")]
                self.add(sell, j, wanted - have, first=partial)
            elif wanted < have - SHARE_EPSILON:
                self.remove(sell, j, have - wanted, mine[::-1])
            self.settle(sell, j)
        return sell

    def settle(self, sell: FloatArray, j: int) -> None:
        """Round ``j``'s total sell down to a valid quantity (in place): the gains budget may
        have stopped an addition between two valid quantities."""
        mine = self.lots(j)
        have = float(sell[mine].sum())
        valid = self.sell_down(j, have)
        if valid < have - SHARE_EPSILON:
            self.remove(sell, j, have - valid, mine[::-1])

    def _nearest(self, j: int, total: float, sell: FloatArray, buys: FloatArray) -> float:
        """The valid total sell of ``j`` nearest ``total``: down if up breaks the turnover
        limit, up if down leaves ``j`` or its sector above its limit."""
        if self.step(j) == 0:
            return min(total, self.room[j])
        down = self.sell_down(j, total)
        up = self.sell_up(j, total)
        if up is None or up - down <= SHARE_EPSILON:
            return down

        def trial(amount: float) -> FloatArray:
            trial_sell = sell.copy()
            mine = self.lots(j)
            have = float(trial_sell[mine].sum())
            if amount > have:
                self.add(trial_sell, j, amount - have)
            else:
                self.remove(trial_sell, j, have - amount, mine[::-1])
            return trial_sell

        if up - total < total - down:
            if self.turnover_ok(trial(up), buys) or not self.weights_ok(j, trial(down), buys):
                return up
            return down
        if self.weights_ok(j, trial(down), buys):
            return down
        return up

    def round_buys(self, y: FloatArray, sell: FloatArray) -> FloatArray:
        """Valid buys per security from the relaxed buys ``y`` (fractions of V)."""
        shares = np.where(self.buyable, y * self.value / self.price, 0.0)
        buy = np.zeros_like(shares)
        lots_up: list[tuple[float, int]] = []
        for j in np.flatnonzero(shares > 0):
            j = int(j)
            step = self.step(j)
            if step == 0:
                buy[j] = shares[j]
                continue
            down = math.floor(shares[j] / step + SHARE_EPSILON) * step
            buy[j] = down
            if shares[j] - down < step / 2:
                continue
            if step > 1:
                lots_up.append((shares[j] - down, j))
                continue
            buy[j] = down + step
            if not (self.weights_ok(j, sell, buy) and self.turnover_ok(sell, buy)):
                buy[j] = down
        if lots_up:
            cash = self.cash(sell, buy)
            for _, j in sorted(lots_up, key=lambda item: (-item[0], item[1])):
                step = self.step(j)
                cost = step * self.price[j] * (1 + self.arrays.cost_sec[j])
                if cash - cost < self.required + CASH_TOLERANCE:
                    continue
                buy[j] += step
                if not (self.weights_ok(j, sell, buy) and self.turnover_ok(sell, buy)):
                    buy[j] -= step
                    continue
                cash -= cost
        return buy

    def keep_gains_budget(self, sell: FloatArray, shares: FloatArray) -> None:
        """Bring realized gains back within the budget after rounding (in place): first sell
        the loss shares rounding dropped (up to the next valid quantity), then un-sell the
        gain shares rounding added, then whole gain sales, largest gain per share first.
        ``shares`` are the relaxed sells per lot."""
        tolerance = gains_tolerance(self.value)
        if self.budget is None or self.realized(sell) - self.budget <= tolerance:
            return
        dropped = np.flatnonzero((sell < shares - SHARE_EPSILON) & (self.gain_ps < 0))
        for i in dropped[np.argsort(self.gain_ps[dropped], kind="stable")]:
            if self.realized(sell) - self.budget <= tolerance:
                return
            j = int(self.lot_sec[i])
            mine = self.lots(j)
            total = float(sell[mine].sum())
            step = self.step(j)
            if step == 0:
                continue
            wanted = self.sell_up(j, total + step / 2)
            if wanted is None or wanted - total > step + shares[i] - sell[i]:
                continue
            before, realized = sell[mine].copy(), self.realized(sell)
            self.add(sell, j, wanted - total, first=np.array([i]))
            self.settle(sell, j)
            if self.realized(sell) > realized:
                sell[mine] = before
        rounded_up = sell > shares + SHARE_EPSILON
        candidates = np.flatnonzero((sell > 0) & (self.gain_ps > 0) & ~self.sell_out[self.lot_sec])
        candidates = candidates[np.argsort(-self.gain_ps[candidates], kind="stable")]
        # The shares rounding added first, then whole sales, largest gain per share first.
        for rounding_only in (True, False):
            for i in candidates:
                excess = self.realized(sell) - self.budget
                if excess <= tolerance:
                    return
                if sell[i] <= 0 or (rounding_only and not rounded_up[i]):
                    continue
                j = int(self.lot_sec[i])
                need = excess / self.gain_ps[i]
                if rounding_only:
                    need = min(need, sell[i] - shares[i])
                total = float(sell[self.lots(j)].sum())
                target = self.sell_down(j, total - need)
                if target < total - SHARE_EPSILON:
                    mine = self.lots(j)
                    by_gain = mine[np.argsort(-self.gain_ps[mine], kind="stable")]
                    by_gain = np.concatenate([[i], by_gain[by_gain != i]])
                    self.remove(sell, j, total - target, by_gain)

    def keep_turnover(self, sell: FloatArray, buy: FloatArray) -> None:
        """Trim buys, largest first, until turnover is within its limit (in place)."""
        limit = self.problem.turnover_limit
        if limit is None:
            return
        for j in np.argsort(-(buy * self.price), kind="stable"):
            excess = float(sell @ self.lot_price + buy @ self.price) - limit * self.value
            if excess <= WEIGHT_TOLERANCE * self.value or buy[j] <= 0:
                return
            step = self.step(int(j))
            need = excess / self.price[j]
            need = need if step == 0 else math.ceil(need / step - 1e-12) * step
            buy[j] -= min(buy[j], need)

    def limit_warnings(self, sell: FloatArray, buy: FloatArray) -> list[str]:
        """Limits the repaired trades still break (maximum weight, sector, turnover), in the
        words and with the limits ``explain.portfolio_metrics`` uses."""
        out: list[str] = []
        arrays, problem = self.arrays, self.problem
        sold = np.bincount(self.lot_sec, weights=sell, minlength=self.price.shape[0])
        w = (self.position - sold + buy) * self.price / self.value
        limit = np.maximum(np.asarray(problem.securities.max_weight, dtype=float), arrays.w_max)
        over = (w > limit + WEIGHT_TOLERANCE) & ~self.sell_out
        out += [
            MSG_WEIGHT_OVER.format(symbol=problem.symbol(int(j)), limit=f"{100 * limit[j]:.2f}%")
            for j in np.flatnonzero(over)
        ]
        if arrays.sector_matrix.shape[0]:
            merged = w if arrays.merge is None else arrays.merge @ w
            sector_w = arrays.sector_matrix @ merged
            out += [
                MSG_SECTOR_OVER.format(sector=int(s), limit=f"{100 * arrays.sector_max[s]:.2f}%")
                for s in np.flatnonzero(sector_w > arrays.sector_max + WEIGHT_TOLERANCE)
            ]
        if problem.turnover_limit is not None and not self.turnover_ok(sell, buy):
            out.append(MSG_TURNOVER_OVER.format(limit=f"{100 * problem.turnover_limit:.2f}%"))
        return out

    def restore_cash(self, sell: FloatArray, buy: FloatArray, relaxed: FloatArray) -> float:
        """Trim buys, largest first, then sell more until cash covers the required level
        (in place): first of the securities the solution or the relaxation (``relaxed``, sells
        per lot) sells, then of the others, the most overweight first. Returns the remaining
        shortfall (0 when met)."""
        short = self.required - self.cash(sell, buy)
        if short <= CASH_TOLERANCE:
            return 0.0
        for j in np.argsort(-(buy * self.price), kind="stable"):
            if short <= CASH_TOLERANCE or buy[j] <= 0:
                break
            unit = self.price[j] * (1 + self.arrays.cost_sec[j])
            step = self.step(int(j))
            need = short / unit if step == 0 else math.ceil(short / unit / step - 1e-12) * step
            buy[j] -= min(buy[j], need)
            short = self.required - self.cash(sell, buy)
        if short <= CASH_TOLERANCE:
            return 0.0
        n = self.price.shape[0]
        traded = np.bincount(self.lot_sec, weights=sell + relaxed, minlength=n) > 0
        spare = self.sellable & (sell < self.held - SHARE_EPSILON)
        spare_sec = np.bincount(self.lot_sec, weights=spare.astype(float), minlength=n) > 0
        # Lots in relief order pick the order of the sold securities; then the others.
        first = spare & traded[self.lot_sec]
        ranked = self.lot_sec[np.flatnonzero(first)[np.argsort(self.rank[first], kind="stable")]]
        over = self.arrays.w0 - self.arrays.target
        others = np.flatnonzero(spare_sec & ~traded)
        order = [*dict.fromkeys(ranked.tolist()), *others[np.argsort(-over[others])].tolist()]
        for j in order:
            if short <= CASH_TOLERANCE:
                break
            mine = self.lots(j)
            unit = self.price[j] * (1 - self.arrays.cost_sec[j])
            total = float(sell[mine].sum())
            wanted = self.sell_up(j, total + short / unit)
            if wanted is None:
                wanted = self.sell_down(j, self.room[j])
            if wanted <= total + SHARE_EPSILON:
                continue
            before = sell[mine].copy()
            self.add(sell, j, wanted - total)
            self.settle(sell, j)
            if float(sell[mine].sum()) <= total + SHARE_EPSILON:
                sell[mine] = before
            short = self.required - self.cash(sell, buy)
        return max(short, 0.0) if short > CASH_TOLERANCE else 0.0


def _wash_round_trips(
    relaxed: RelaxedResult, problem: AccountProblem, *, by_direction: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Lots and buys to hold at zero so that no security is both sold at a loss and bought,
    and whether the relaxed solution has such a round trip.

    The relaxation may sell a lot at a loss and buy the security back: the tax term rewards
    the loss and the gains budget counts it, while the drift term keeps the position. That is
    a wash sale in a taxable account (the loss does not count), and the netting of round trips
    would undo it anyway, breaking the tax or gains-budget trade-off it was part of.

    For a round trip, with ``by_direction`` a net seller keeps its loss sales and loses the
    buy and a net buyer the reverse; without it, the opposite. A security that only buys has
    its loss lots held too, and one that only sells losses its buy: those are zero already
    (the solution stays feasible), and holding them stops the next solve from moving the
    round trip there, which would take another re-solve.
    """
    arrays = relaxed.arrays
    lot_sec = arrays.lot_security
    n = arrays.w0.shape[0]
    if not problem.taxable and problem.gains_budget is None:
        return np.zeros(lot_sec.shape[0], dtype=bool), np.zeros(n, dtype=bool), False
    loss = arrays.gain_lot < 0
    loss_sold = np.bincount(lot_sec, weights=np.where(loss, relaxed.x, 0.0), minlength=n)
    sold = np.bincount(lot_sec, weights=relaxed.x, minlength=n)
    bought = relaxed.y > ROUND_TRIP_TOLERANCE
    trips = np.minimum(loss_sold, relaxed.y) > ROUND_TRIP_TOLERANCE
    keep_buy = np.where(trips, (relaxed.y > sold) == by_direction, bought)
    buys_fixed = np.where(trips, ~keep_buy, loss_sold > ROUND_TRIP_TOLERANCE)
    return loss & keep_buy[lot_sec], buys_fixed, bool(trips.any())


@dataclass
class _Resolves:
    """The relaxed solution as trades are held at zero and the problem re-solved."""

    problem: AccountProblem
    solver: str
    relaxed: RelaxedResult
    current: ProblemArrays
    warnings: list[str] = field(default_factory=list)
    dropped: int = 0
    resolves: int = 0

    def fixed(self, lots: np.ndarray, buys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``lots`` and ``buys`` plus what is already held at zero."""
        return lots | (self.current.lot_cap == 0), buys | (self.current.buy_cap == 0)

    def resolve(self, lots_fixed: np.ndarray, buys_fixed: np.ndarray) -> None:
        """Re-solve with these held at zero (same shape: the compiled problem is reused);
        raises :class:`Infeasible` and keeps the previous solution if that conflicts."""
        self.resolves += 1
        candidate = arrays_fix(self.current, lots_fixed=lots_fixed, buys_fixed=buys_fixed)
        self.relaxed = solve_arrays(candidate, self.problem, solver=self.solver)
        self.current = candidate

    def undo_round_trips(self) -> None:
        """Re-solve until no security is both sold at a loss and bought (``_wash_round_trips``).

        Raises :class:`Infeasible` when neither choice is feasible: the constraints were met
        only through the round trip (typically losses offsetting gains in the budget)."""
        for _ in range(MAX_DROP_ROUNDS):
            lots, buys, found = _wash_round_trips(self.relaxed, self.problem, by_direction=True)
            if not found:
                return
            try:
                self.resolve(*self.fixed(lots, buys))
            except Infeasible:
                lots, buys, _ = _wash_round_trips(self.relaxed, self.problem, by_direction=False)
                try:
                    self.resolve(*self.fixed(lots, buys))
                except Infeasible as exc:
                    details = exc.message.removeprefix(MSG_INFEASIBLE.format(details=""))
                    raise Infeasible(
                        MSG_WASH_INFEASIBLE.format(details=details), exc.extra
                    ) from exc

    def hold_unpaired_substitutes(self) -> None:
        """Tax-loss harvest: a substitute is bought only to replace the security it stands in
        for, so hold at zero the buy of any substitute whose original is not sold, and
        re-solve. (With a risk model, buying a substitute of an unsold security can lower
        tracking error by standing in for another harvested, correlated one: a trade a PM
        would not recognise as harvesting.) Holding buys at zero is always feasible here."""
        problem = self.problem
        if problem.mode != Mode.TLH or not problem.substitutes:
            return
        n = self.relaxed.arrays.w0.shape[0]
        lot_sec = self.relaxed.arrays.lot_security
        for _ in range(MAX_DROP_ROUNDS):
            sold = np.bincount(lot_sec, weights=self.relaxed.x, minlength=n)
            unpaired = np.zeros(n, dtype=bool)
            for substitute in problem.substitutes.values():
                unpaired[substitute] = self.relaxed.y[substitute] > ROUND_TRIP_TOLERANCE
            for original, substitute in problem.substitutes.items():
                if sold[original] > ROUND_TRIP_TOLERANCE:
                    unpaired[substitute] = False
            if not unpaired.any():
                return
            self.resolve(*self.fixed(np.zeros(lot_sec.shape[0], dtype=bool), unpaired))

    def drop_small_trades(self) -> None:
        """Hold trades under the minimum at zero and re-solve (with round trips held too);
        if that conflicts, they are kept and a warning says why."""
        problem, arrays = self.problem, self.relaxed.arrays
        if problem.min_trade <= 0:
            return
        lot_sec = arrays.lot_security
        n = arrays.w0.shape[0]
        for _ in range(MAX_DROP_ROUNDS):
            x_net, y_net = _net(self.relaxed.x, self.relaxed.y, lot_sec, arrays.tax_lot)
            sold = np.bincount(lot_sec, weights=x_net, minlength=n) * arrays.value
            bought = y_net * arrays.value
            small_sell = (sold > 0) & (sold < problem.min_trade)
            small_buy = (bought > 0) & (bought < problem.min_trade)
            if not (small_sell.any() or small_buy.any()):
                return
            lots, buys, _ = _wash_round_trips(self.relaxed, problem, by_direction=True)
            try:
                self.resolve(*self.fixed(lots | small_sell[lot_sec], buys | small_buy))
            except Infeasible as exc:
                self.warnings.append(MSG_SMALL_KEPT.format(reason=exc.message))
                return
            self.dropped += int(small_sell.sum() + small_buy.sum())


def optimize(problem: AccountProblem, *, solver: str = DEFAULT_SOLVER) -> OptimizeResult:
    """Solve ``problem`` and repair the solution to whole (or fractional) shares and round lots.

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

    state = _Resolves(problem=problem, solver=solver, relaxed=relaxed, current=arrays)
    state.undo_round_trips()
    state.hold_unpaired_substitutes()
    state.drop_small_trades()
    relaxed, current, warnings = state.relaxed, state.current, state.warnings

    repair_start = time.perf_counter()
    x_net, y_net = _net(relaxed.x, relaxed.y, lot_sec, arrays.tax_lot)
    repair = _Repair(problem, arrays, current)
    sell = repair.round_sells(x_net, y_net)
    buy = repair.round_buys(y_net, sell)
    repair.keep_gains_budget(sell, x_net * value / lot_price)
    repair.keep_turnover(sell, buy)
    if problem.mode == Mode.TLH:
        # Rounding and the limits above may undo a harvest; its substitute buy goes too
        # (dropping a buy only raises cash and lowers turnover: every limit still holds).
        sold = np.bincount(lot_sec, weights=sell, minlength=n)
        paired = {k for j, k in problem.substitutes.items() if sold[j] > 0}
        for k in set(problem.substitutes.values()) - paired:
            buy[k] = 0.0
    short = repair.restore_cash(sell, buy, x_net * value / lot_price)
    if short > CASH_TOLERANCE:
        required = repair.required
        warnings.append(MSG_CASH_SHORT.format(short=f"${short:,.2f}", required=f"${required:,.2f}"))
    if problem.gains_budget is not None:
        over = repair.realized(sell) - problem.gains_budget
        if over > gains_tolerance(value):
            warnings.append(
                MSG_GAINS_OVER.format(over=f"${over:,.2f}", budget=f"${problem.gains_budget:,.2f}")
            )
    warnings += repair.limit_warnings(sell, buy)
    # Moving shares between lots leaves float dust (1e-15 shares) that is not a trade.
    sell[sell < SHARE_EPSILON] = 0.0
    buy[buy < SHARE_EPSILON] = 0.0

    x = sell * lot_price / value
    y = buy * price / value
    final_terms = objective_terms(arrays, x, y)
    held = problem.lots.quantity
    shares_before = np.bincount(lot_sec, weights=held, minlength=n).astype(float)
    shares_after = shares_before - np.bincount(lot_sec, weights=sell, minlength=n) + buy
    cash_after = repair.cash(sell, buy)
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
        discrete="fractional" if problem.fractional else "repair",
        dropped=state.dropped,
        warnings=tuple(warnings),
        resolves=state.resolves,
        repair_time=time.perf_counter() - repair_start,
    )
