"""Infeasibility diagnosis: re-solve with slacks and name the constraints that give way.

The slack variant of the compiled problem (``solve._build(slack=True)``) relaxes the soft-able
constraints (cash reserve or cash-raise amount, minimum and maximum weights, sector limits,
turnover, realized-gains budget) with non-negative slacks priced far above any objective term.
Trades stay within the hard bounds (no shorts, restrictions, wash-sale blocks), so the slack
problem is always feasible (not trading at all satisfies it); the slacks that are non-zero at
its optimum are the constraints in conflict, reported in words a PM reads. An ESG sell-out is
a maximum weight of 0, so when its slack gives way the message names the sell-out and what
keeps the position (a no-sell restriction on the security or some of its lots, a wash-sale
block on its loss lots).
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from portfolios.optimizer.errors import Infeasible
from portfolios.optimizer.problem import AccountProblem, Mode, ProblemArrays
from portfolios.optimizer.solve import compiled_get, compiled_set, compiled_solve

SLACK_TOLERANCE = 1e-7  # fraction of account value; below this a slack is solver noise

MSG_INFEASIBLE = "The constraints of this account conflict: {details}"
MSG_RESERVE = (
    "cash reserve {reserve} cannot be met: the account can reach at most {reachable} in cash "
    "({blocked_text}cash is {cash})"
)
MSG_RAISE = (
    "cash raise of {amount} (on top of the {reserve} reserve) cannot be met: the account can "
    "reach at most {reachable} in cash ({blocked_text}cash is {cash})"
)
MSG_BLOCKED = "no-sell or wash-sale restriction on {symbols}; "
MSG_MODE_LIMITS = {
    Mode.CASH_INVEST: "cash invest mode sells nothing; ",
    Mode.TOLERANCE: "tolerance mode trades only positions outside their bands; ",
    Mode.TLH: "tax-loss harvest sells only lots at a loss beyond the threshold; ",
}
MSG_MIN_WEIGHT = "minimum weight {limit} of {symbol} cannot be met (reachable {reached})"
MSG_MAX_WEIGHT = "maximum weight {limit} of {symbol} cannot be met (reachable {reached})"
MSG_SECTOR = "sector {sector} maximum weight {limit} cannot be met (reachable {reached})"
MSG_TURNOVER = "turnover limit {limit} is too tight (needs {reached})"
MSG_GAINS = "realized-gains budget {limit} is too small (needs at least {reached} of gains)"
MSG_UNKNOWN = "no single constraint gives way; check the inputs"
MSG_SELL_OUT = "ESG sell-out of {symbol} cannot be met: {causes}"
MSG_SELL_OUT_NO_SELL = "a no-sell restriction applies to {symbol}"
MSG_SELL_OUT_LOT_NO_SELL = "a no-sell restriction applies to {lots} of {symbol}"
MSG_SELL_OUT_WASH = "a wash-sale block applies to {lots} of {symbol}"
MSG_SELL_OUT_OTHER = "{symbol} can only fall to {reached}"


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _cash_conflict(
    arrays: ProblemArrays, problem: AccountProblem, slack: float
) -> tuple[str, dict[str, Any]]:
    value = arrays.value
    reachable = (arrays.cash_min - slack) * value
    lots = problem.lots
    restricted = lots.no_sell | problem.securities.no_sell[lots.security]
    if problem.wash_sell_blocked is not None:
        restricted |= problem.wash_sell_blocked & (arrays.gain_lot < 0)
    blocked_securities = sorted({int(j) for j in lots.security[restricted & (lots.quantity > 0)]})
    symbols = ", ".join(problem.symbol(j) for j in blocked_securities[:5])
    if len(blocked_securities) > 5:
        symbols += f" and {len(blocked_securities) - 5} more"
    blocked_text = MSG_BLOCKED.format(symbols=symbols) if blocked_securities else ""
    blocked_text = MSG_MODE_LIMITS.get(problem.mode, "") + blocked_text
    fields = {
        "reserve": _money(problem.reserve),
        "reachable": _money(reachable),
        "blocked_text": blocked_text,
        "cash": _money(problem.cash),
    }
    template = MSG_RESERVE
    if problem.mode == Mode.CASH_RAISE:
        template = MSG_RAISE
        fields["amount"] = _money(problem.cash_amount)
    detail = {
        "constraint": "cash_raise" if problem.mode == Mode.CASH_RAISE else "cash_reserve",
        "required": arrays.cash_min * value,
        "reachable": reachable,
        "shortfall": slack * value,
        "blocked": [problem.symbol(j) for j in blocked_securities],
    }
    return template.format(**fields), detail


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _sell_out_conflict(
    arrays: ProblemArrays, problem: AccountProblem, j: int, reached: float
) -> tuple[str, dict[str, Any]]:
    """Why security ``j`` cannot be sold out: its own restriction, its lots', wash sales."""
    symbol = problem.symbol(j)
    lots = problem.lots
    held = (lots.security == j) & (lots.quantity > 0)
    causes: list[str] = []
    kinds: list[str] = []
    if problem.securities.no_sell[j]:
        causes.append(MSG_SELL_OUT_NO_SELL.format(symbol=symbol))
        kinds.append("no_sell")
    else:
        lot_blocked = held & lots.no_sell
        if lot_blocked.any():
            count = _count(int(lot_blocked.sum()), "lot")
            causes.append(MSG_SELL_OUT_LOT_NO_SELL.format(lots=count, symbol=symbol))
            kinds.append("lot_no_sell")
        if problem.wash_sell_blocked is not None:
            wash = held & ~lots.no_sell & problem.wash_sell_blocked & (arrays.gain_lot < 0)
            if wash.any():
                count = _count(int(wash.sum()), "loss lot")
                causes.append(MSG_SELL_OUT_WASH.format(lots=count, symbol=symbol))
                kinds.append("wash_sale")
    if not causes:
        causes.append(MSG_SELL_OUT_OTHER.format(symbol=symbol, reached=_pct(reached)))
    text = MSG_SELL_OUT.format(symbol=symbol, causes=" and ".join(causes))
    detail = {
        "constraint": "sell_out",
        "security": symbol,
        "causes": kinds,
        "limit": 0.0,
        "reachable": float(reached),
    }
    return text, detail


def infeasible_conflicts(
    arrays: ProblemArrays, problem: AccountProblem, *, solver: str = "CLARABEL"
) -> list[tuple[str, dict[str, Any]]]:
    """Solve the slack variant and return (sentence, details) for every non-zero slack."""
    compiled, _ = compiled_get(arrays, problem.mode, slack=True)
    compiled_set(compiled, arrays)
    compiled_solve(compiled, solver=solver)
    value = {
        name: np.atleast_1d(np.asarray(v.value, dtype=float)) for name, v in compiled.slacks.items()
    }
    conflicts: list[tuple[str, dict[str, Any]]] = []
    if value["cash"][0] > SLACK_TOLERANCE:
        conflicts.append(_cash_conflict(arrays, problem, float(value["cash"][0])))
    for name, template, limits, sign in (
        ("w_min", MSG_MIN_WEIGHT, arrays.w_min, -1.0),
        ("w_max", MSG_MAX_WEIGHT, arrays.w_max, 1.0),
    ):
        for j in np.flatnonzero(value[name] > SLACK_TOLERANCE):
            reached = limits[j] + sign * value[name][j]
            if name == "w_max" and arrays.sell_out is not None and arrays.sell_out[j]:
                conflicts.append(_sell_out_conflict(arrays, problem, int(j), float(reached)))
                continue
            text = template.format(
                limit=_pct(limits[j]), symbol=problem.symbol(int(j)), reached=_pct(reached)
            )
            conflicts.append(
                (
                    text,
                    {
                        "constraint": name,
                        "security": problem.symbol(int(j)),
                        "limit": float(limits[j]),
                        "reachable": float(reached),
                    },
                )
            )
    for s in np.flatnonzero(value.get("sector", np.zeros(0)) > SLACK_TOLERANCE):
        reached = arrays.sector_max[s] + value["sector"][s]
        text = MSG_SECTOR.format(
            sector=int(s), limit=_pct(arrays.sector_max[s]), reached=_pct(reached)
        )
        conflicts.append(
            (
                text,
                {
                    "constraint": "sector",
                    "sector": int(s),
                    "limit": float(arrays.sector_max[s]),
                    "reachable": float(reached),
                },
            )
        )
    if value["turnover"][0] > SLACK_TOLERANCE:
        reached = arrays.turnover + value["turnover"][0]
        text = MSG_TURNOVER.format(limit=_pct(arrays.turnover), reached=_pct(reached))
        conflicts.append(
            (
                text,
                {"constraint": "turnover", "limit": arrays.turnover, "reachable": float(reached)},
            )
        )
    if value["gains"][0] > SLACK_TOLERANCE:
        reached = (arrays.gains + value["gains"][0]) * arrays.value
        text = MSG_GAINS.format(limit=_money(arrays.gains * arrays.value), reached=_money(reached))
        conflicts.append(
            (
                text,
                {
                    "constraint": "gains_budget",
                    "limit": arrays.gains * arrays.value,
                    "reachable": float(reached),
                },
            )
        )
    return conflicts


def infeasible_raise(
    arrays: ProblemArrays, problem: AccountProblem, *, solver: str = "CLARABEL"
) -> NoReturn:
    """Raise :class:`Infeasible` naming the conflicting constraints (always raises)."""
    conflicts = infeasible_conflicts(arrays, problem, solver=solver)
    details = "; ".join(text for text, _ in conflicts) or MSG_UNKNOWN
    raise Infeasible(
        MSG_INFEASIBLE.format(details=details),
        {"conflicts": [detail | {"message": text} for text, detail in conflicts]},
    )
