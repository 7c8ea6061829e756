"""Pure tax- and cost-aware portfolio optimizer (numpy + cvxpy, no Django).

Public entry points: build an :class:`AccountProblem`, call :func:`optimize` (convex solve,
then the repair to tradeable orders: wash-sale round trips, minimum trade, whole shares and
round lots, cash) or :func:`solve_relaxed` (convex solve only); then
:func:`trades_explain` gives each trade its reason, drivers, sentences and lots relieved, and
:func:`portfolio_metrics` evaluates any trades (the optimizer's or a PM's edit) with the
rules they break. Errors: :class:`ProblemInvalid`, :class:`Infeasible` (naming the
conflicting constraints), :class:`SolverFailed`. See ``problem.py`` for the notation,
``solve.py`` for the formulation (DESIGN sections 5 and 12), ``repair.py``, ``diagnose.py``
and ``explain.py`` for the rest.
"""

from __future__ import annotations

from portfolios.optimizer.errors import Infeasible, OptimizerError, ProblemInvalid, SolverFailed
from portfolios.optimizer.explain import (
    LotRelief,
    Metrics,
    TradeExplanation,
    portfolio_metrics,
    trades_explain,
)
from portfolios.optimizer.problem import AccountProblem, Lots, Mode, Securities
from portfolios.optimizer.repair import OptimizeResult, optimize
from portfolios.optimizer.solve import RelaxedResult, cache_clear, cache_stats, solve_relaxed

__all__ = [
    "AccountProblem",
    "Infeasible",
    "LotRelief",
    "Lots",
    "Metrics",
    "Mode",
    "OptimizeResult",
    "OptimizerError",
    "ProblemInvalid",
    "RelaxedResult",
    "Securities",
    "SolverFailed",
    "TradeExplanation",
    "cache_clear",
    "cache_stats",
    "optimize",
    "portfolio_metrics",
    "solve_relaxed",
    "trades_explain",
]
