"""Infeasibility diagnosis: re-solve with slacks and name the constraints that give way.

The slack variant of the compiled problem (``solve._build(slack=True)``) relaxes the soft-able
constraints (cash reserve or cash-raise amount, minimum and maximum weights, sector limits,
turnover, realized-gains budget) with non-negative slacks priced far above any objective term.
Trades stay within the hard bounds (no shorts, restrictions, wash-sale blocks), so the slack
problem is always feasible (not trading at all satisfies it); the slacks that are non-zero at
its optimum are the constraints in conflict, reported in words a PM reads.
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
