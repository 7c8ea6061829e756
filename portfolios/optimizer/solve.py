"""The convex rebalancing problem: build once per shape, re-solve by setting parameters.

Variables (fractions of ``V``, see ``problem.py``): ``x`` (L) lot sells, ``y`` (N) buys,
``e = r * d`` (N) the scaled deviation ``d = w - w*`` (``r`` below) and ``t = G d`` (K).
Minimise

    tracking_weight * (||G d||^2 + ||sqrt(D) * d||^2) + drift_weight * ||d||^2
    + k_lot' x + k' y + tax' x

subject to ``0 <= x <= lot_cap`` (no shorts; no-sell and wash-sale blocks are a zero cap),
``0 <= y <= buy_cap`` (no-buy, wash-sale and mode blocks), cash ``>= cash_min``,
``w_min <= w <= w_max``, sector weights ``<= sector_max``, turnover ``1'x + 1'y <= T`` and
realized gains ``g' x <= G / V``, where ``r = sqrt(drift_weight + tracking_weight * D)``
scales the deviation so that the diagonal terms are ``||e||^2``. Every daily input is a
``cp.Parameter`` (the problem is DPP), so a shape compiles once; compiled problems are cached
by :meth:`ProblemArrays.shape_key`.

The sector constraint is written on the deviation, ``M (e / r) <= sector_max - M w*``, with
the 0/1 sector map ``M`` as structure (part of the shape key): ``N`` non-zeros, where a
parameter ``M`` would put ``n_sectors x N`` (mostly zero) entries into the KKT system.

Clarabel is the default solver, with its iterative refinement off (``SOLVER_OPTIONS``: the
refinement took about 40% of the solve time and moves the optimum by under 1e-8 in objective,
see ``bench/optimizer_bench.py``); an answer it reports inaccurate is re-solved once with the
refinement on before OSQP, the fallback, is tried once. The slack variant used by
``diagnose.py`` adds non-negative slacks to the soft-able constraints.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from portfolios.optimizer.errors import SolverFailed
from portfolios.optimizer.problem import (
    AccountProblem,
    FloatArray,
    Mode,
    ProblemArrays,
    problem_arrays,
)

DEFAULT_SOLVER = "CLARABEL"
FALLBACK_SOLVER = "OSQP"
CACHE_SIZE = 64
MIN_DIAGONAL = 1e-8  # floor of drift_weight + tracking_weight * D: keeps 1/r finite
TRADE_EPSILON = 1e-7  # per unit of V traded: $0.001 per $10,000, breaks round-trip ties
SLACK_PENALTY = 1e4
# Clarabel's iterative refinement of each KKT solve takes about 40% of its time on these
# problems and changes the optimal objective by under 1e-8 (bench/optimizer_bench.py measures
# both); an inaccurate answer without it is retried with it before the fallback solver runs.
SOLVER_OPTIONS: dict[str, dict[str, object]] = {
    "CLARABEL": {"iterative_refinement_enable": False},
    "OSQP": {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iter": 50_000, "polishing": True},
}
ACCURATE_OPTIONS: dict[str, dict[str, object]] = {
    "CLARABEL": {"iterative_refinement_enable": True},
}
SOFT_CONSTRAINTS = ("cash", "w_min", "w_max", "sector", "turnover", "gains")

MSG_SOLVER_FAILED = (
    "The optimizer could not solve this account ({solver} returned {status}); "
    "try again, and report it if it persists."
)


@dataclass
class Compiled:
    """A compiled cvxpy problem and its handles (one per shape key, reused)."""

    problem: cp.Problem
    params: dict[str, cp.Parameter]
    x: cp.Variable
    y: cp.Variable
    slacks: dict[str, cp.Variable] = field(default_factory=dict)


@dataclass
class _Cache:
    entries: OrderedDict[tuple[object, ...], Compiled] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0


_CACHE = _Cache()


def cache_stats() -> dict[str, int]:
    """Hits, misses and size of the compiled-problem cache (this process)."""
    return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE.entries)}


def cache_clear() -> None:
    """Forget every compiled problem and reset the counters."""
    _CACHE.entries.clear()
    _CACHE.hits = 0
    _CACHE.misses = 0


def _build(arrays: ProblemArrays, *, slack: bool) -> Compiled:
    n, count = arrays.w0.shape[0], arrays.lot_security.shape[0]
    k, n_sec = arrays.g.shape[0], arrays.sector_matrix.shape[0]
    par = {
        "w0": cp.Parameter(n),
        "target": cp.Parameter(n),
        "lot_cap": cp.Parameter(count, nonneg=True),
        "buy_cap": cp.Parameter(n, nonneg=True),
        "cost_sec": cp.Parameter(n, nonneg=True),
        "cost_lot": cp.Parameter(count, nonneg=True),
        "tax_lot": cp.Parameter(count),
        "gain_lot": cp.Parameter(count),
        "bound_lo": cp.Parameter(n),
        "bound_hi": cp.Parameter(n),
        "inv_r": cp.Parameter(n, nonneg=True),
        "cash0": cp.Parameter(nonneg=True),
        "cash_min": cp.Parameter(),
        "turnover": cp.Parameter(nonneg=True),
        "gains": cp.Parameter(),
    }
    x = cp.Variable(count, nonneg=True)
    y = cp.Variable(n, nonneg=True)
    lot_map = sp.csr_matrix(
        (np.ones(count), (arrays.lot_security, np.arange(count))), shape=(n, count)
    )
    w = par["w0"] - lot_map @ x + y
    merged = w if arrays.merge is None else sp.csr_matrix(arrays.merge) @ w
    costs = par["cost_lot"] @ x + par["cost_sec"] @ y
    cash = par["cash0"] + cp.sum(x) - cp.sum(y) - costs

    slacks: dict[str, cp.Variable] = {}
    if slack:
        slacks = {
            "cash": cp.Variable(nonneg=True),
            "w_min": cp.Variable(n, nonneg=True),
            "w_max": cp.Variable(n, nonneg=True),
            "turnover": cp.Variable(nonneg=True),
            "gains": cp.Variable(nonneg=True),
        }
        if n_sec:
            slacks["sector"] = cp.Variable(n_sec, nonneg=True)

    def soft(name: str) -> cp.Expression | float:
        return slacks.get(name, 0.0)

    # The variable is the scaled deviation e = r * d, r = sqrt(drift_weight + tracking_weight
    # * D) > 0, so specific risk plus drift is the parameter-free ||e||^2 (cvxpy extracts a
    # parametrised quadratic slowly) and d = e / r needs no variable of its own. G, the sector
    # matrix and the weight bounds are scaled by 1/r or r in their values.
    e = cp.Variable(n)
    quadratic = cp.sum_squares(e)
    bounded = e if arrays.merge is None else w
    constraints = [
        cp.multiply(par["inv_r"], e) + par["target"] == merged,
        x <= par["lot_cap"],
        y <= par["buy_cap"],
        cash >= par["cash_min"] - soft("cash"),
        bounded >= par["bound_lo"] - soft("w_min"),
        bounded <= par["bound_hi"] + soft("w_max"),
        cp.sum(x) + cp.sum(y) <= par["turnover"] + soft("turnover"),
        par["gain_lot"] @ x <= par["gains"] + soft("gains"),
    ]
    if k:
        par["g"] = cp.Parameter((k, n))
        t = cp.Variable(k)
        constraints.append(t == par["g"] @ e)
        quadratic = quadratic + cp.sum_squares(t)
    if n_sec:
        par["sector_room"] = cp.Parameter(n_sec)
        # M d <= sector_max - M w* with d = e / r: the sector map M (0/1, one entry per
        # security) is structure, so the block has N non-zeros; written on w0 - S x + y it
        # would touch the L lot columns, and a parameter times the parameter w0 is not DPP.
        sector_map = sp.csr_matrix(arrays.sector_matrix)
        constraints.append(
            sector_map @ cp.multiply(par["inv_r"], e) <= par["sector_room"] + soft("sector")
        )
    objective = quadratic + costs + par["tax_lot"] @ x
    if slacks:
        objective = objective + SLACK_PENALTY * sum(cp.sum(s) for s in slacks.values())
    problem = cp.Problem(cp.Minimize(objective), constraints)
    assert problem.is_dcp(dpp=True), "the rebalancing problem must be DPP"  # noqa: S101
    return Compiled(problem=problem, params=par, x=x, y=y, slacks=slacks)


def compiled_get(
    arrays: ProblemArrays, mode: Mode, *, slack: bool = False
) -> tuple[Compiled, bool]:
    """The compiled problem for this shape (built on a miss) and whether it was a cache hit."""
    key = (*arrays.shape_key(mode), slack)
    found = _CACHE.entries.get(key)
    if found is not None:
        _CACHE.hits += 1
        _CACHE.entries.move_to_end(key)
        return found, True
    _CACHE.misses += 1
    compiled = _build(arrays, slack=slack)
    _CACHE.entries[key] = compiled
    while len(_CACHE.entries) > CACHE_SIZE:
        _CACHE.entries.popitem(last=False)
    return compiled, False


def compiled_set(compiled: Compiled, arrays: ProblemArrays) -> None:
    """Copy the day's values into the parameters (no recompilation).

    ``TRADE_EPSILON`` is added to the costs so that a cost-free account has no round trips
    (buying and selling the same security) in a degenerate optimum. The tracking weight is
    folded into ``G`` and the diagonal; a parameter times a parameter would not be DPP.
    """
    r = np.sqrt(
        np.maximum(arrays.drift_weight + arrays.tracking_weight * arrays.sqrt_d**2, MIN_DIAGONAL)
    )
    merged = arrays.merge is not None
    derived = {
        "inv_r": lambda: 1.0 / r,
        "sector_room": lambda: arrays.sector_max - arrays.sector_matrix @ arrays.target,
        "g": lambda: np.sqrt(arrays.tracking_weight) * arrays.g / r,
        "bound_lo": lambda: arrays.w_min if merged else r * (arrays.w_min - arrays.target),
        "bound_hi": lambda: arrays.w_max if merged else r * (arrays.w_max - arrays.target),
    }
    for name, param in compiled.params.items():
        if name in derived:
            param.value = derived[name]()
            continue
        value = getattr(arrays, name)
        if name in ("cost_sec", "cost_lot"):
            value = value + TRADE_EPSILON
        param.value = value


@dataclass(frozen=True)
class ObjectiveTerms:
    """Objective terms: tracking variance and drift (sum of squared deviations) in weight
    units, cost and tax in currency, and the scaled objective the solver minimised."""

    tracking: float
    drift: float
    cost: float
    tax: float
    objective: float


def objective_terms(arrays: ProblemArrays, x: FloatArray, y: FloatArray) -> ObjectiveTerms:
    """Evaluate every objective term at the trades ``x``, ``y`` (fractions of ``V``)."""
    w = weights_after(arrays, x, y)
    merged = w if arrays.merge is None else arrays.merge @ w
    d = merged - arrays.target
    tracking = float(np.sum((arrays.g @ d) ** 2) + np.sum((arrays.sqrt_d * d) ** 2))
    drift = float(d @ d)
    cost = float(arrays.cost_lot @ x + arrays.cost_sec @ y)
    tax = float(arrays.tax_lot @ x)
    objective = arrays.tracking_weight * tracking + arrays.drift_weight * drift + cost + tax
    return ObjectiveTerms(
        tracking=tracking,
        drift=drift,
        cost=cost * arrays.value,
        tax=tax * arrays.value,
        objective=objective,
    )


def weights_after(arrays: ProblemArrays, x: FloatArray, y: FloatArray) -> FloatArray:
    """Post-trade security weights ``w = w0 - S x + y`` (fractions of the pre-trade ``V``)."""
    n = arrays.w0.shape[0]
    return arrays.w0 - np.bincount(arrays.lot_security, weights=x, minlength=n) + y


def cash_after(arrays: ProblemArrays, x: FloatArray, y: FloatArray) -> float:
    """Post-trade cash in currency: cash plus sells minus buys minus costs."""
    frac = arrays.cash0 + x.sum() - y.sum() - arrays.cost_lot @ x - arrays.cost_sec @ y
    return float(frac * arrays.value)


@dataclass(frozen=True, eq=False)
class RelaxedResult:
    """The convex (continuous) solution: trades as fractions of ``V`` and diagnostics."""

    arrays: ProblemArrays
    x: FloatArray
    y: FloatArray
    status: str
    solver: str
    solve_time: float
    cache_hit: bool
    terms_before: ObjectiveTerms
    terms_after: ObjectiveTerms


def _solve_once(compiled: Compiled, solver: str) -> tuple[str, float]:
    start = time.perf_counter()
    retry = solver in ACCURATE_OPTIONS
    with warnings.catch_warnings():
        if retry:  # an inaccurate first answer is retried below, so cvxpy need not warn
            warnings.simplefilter("ignore", UserWarning)
        compiled.problem.solve(solver=solver, warm_start=True, **SOLVER_OPTIONS.get(solver, {}))
    status = str(compiled.problem.status)
    if status not in (cp.OPTIMAL, cp.INFEASIBLE) and retry:
        compiled.problem.solve(solver=solver, warm_start=True, **ACCURATE_OPTIONS[solver])
        status = str(compiled.problem.status)
    return status, time.perf_counter() - start


def compiled_solve(compiled: Compiled, *, solver: str) -> tuple[str, str, float]:
    """Solve with ``solver``; on an error or a non-optimal, non-infeasible status try the
    fallback once. Returns (status, solver used, seconds); raises :class:`SolverFailed`."""
    tried: list[tuple[str, str]] = []
    original: Exception | None = None
    for name in dict.fromkeys((solver, FALLBACK_SOLVER)):
        try:
            status, seconds = _solve_once(compiled, name)
        except Exception as exc:  # any solver crash counts as a failure; the cause is kept
            original = original or exc
            tried.append((name, "an error"))
            continue
        if status in (cp.OPTIMAL, cp.INFEASIBLE) or (
            status == cp.OPTIMAL_INACCURATE and name == FALLBACK_SOLVER
        ):
            return status, name, seconds
        tried.append((name, status))
    first_solver, first_status = tried[0]
    message = MSG_SOLVER_FAILED.format(solver=first_solver, status=first_status)
    raise SolverFailed(message, {"attempts": tried}) from original


def solve_arrays(
    arrays: ProblemArrays, problem: AccountProblem, *, solver: str = DEFAULT_SOLVER
) -> RelaxedResult:
    """Solve the scaled problem; raise :class:`Infeasible` with a diagnosis if it has none."""
    compiled, hit = compiled_get(arrays, problem.mode)
    compiled_set(compiled, arrays)
    status, used, seconds = compiled_solve(compiled, solver=solver)
    if status == cp.INFEASIBLE:
        from portfolios.optimizer.diagnose import (
            infeasible_raise,
        )  # imported here: diagnose imports this module

        infeasible_raise(arrays, problem, solver=solver)
    x = np.clip(np.asarray(compiled.x.value, dtype=float), 0.0, arrays.lot_cap)
    y = np.clip(np.asarray(compiled.y.value, dtype=float), 0.0, arrays.buy_cap)
    # Solver noise below a millionth of V is not a trade.
    x[x < 1e-9] = 0.0
    y[y < 1e-9] = 0.0
    zero_x, zero_y = np.zeros_like(x), np.zeros_like(y)
    return RelaxedResult(
        arrays=arrays,
        x=x,
        y=y,
        status=status,
        solver=used,
        solve_time=seconds,
        cache_hit=hit,
        terms_before=objective_terms(arrays, zero_x, zero_y),
        terms_after=objective_terms(arrays, x, y),
    )


def solve_relaxed(problem: AccountProblem, *, solver: str = DEFAULT_SOLVER) -> RelaxedResult:
    """Build (or reuse) the compiled problem for ``problem`` and solve its convex relaxation."""
    return solve_arrays(problem_arrays(problem), problem, solver=solver)


def arrays_fix(
    arrays: ProblemArrays, *, lots_fixed: np.ndarray, buys_fixed: np.ndarray
) -> ProblemArrays:
    """The same problem with the given lot sells and buys held at zero (caps set to 0)."""
    return replace(
        arrays,
        lot_cap=np.where(lots_fixed, 0.0, arrays.lot_cap),
        buy_cap=np.where(buys_fixed, 0.0, arrays.buy_cap),
    )
