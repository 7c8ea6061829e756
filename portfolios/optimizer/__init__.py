"""Pure tax- and cost-aware portfolio optimizer (numpy + cvxpy, no Django).

Public entry points: build an :class:`AccountProblem`, call :func:`optimize` (convex solve,
then discreteness repair) or :func:`solve_relaxed` (convex solve only). See ``problem.py`` for
the notation and ``solve.py`` for the formulation (DESIGN sections 5 and 12).
"""

from __future__ import annotations

from portfolios.optimizer.errors import Infeasible, OptimizerError, ProblemInvalid, SolverFailed
from portfolios.optimizer.problem import AccountProblem, Lots, Mode, Securities
from portfolios.optimizer.repair import OptimizeResult, optimize
from portfolios.optimizer.solve import RelaxedResult, cache_clear, cache_stats, solve_relaxed

__all__ = [
    "AccountProblem",
    "Infeasible",
    "Lots",
    "Mode",
    "OptimizeResult",
    "OptimizerError",
    "ProblemInvalid",
    "RelaxedResult",
    "Securities",
    "SolverFailed",
    "cache_clear",
    "cache_stats",
    "optimize",
    "solve_relaxed",
]
