"""Tests of the solve and repair: hand-checked small problems, identities and properties."""

from __future__ import annotations

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portfolios.optimizer import (
    AccountProblem,
    Infeasible,
    Lots,
    Mode,
    Securities,
    SolverFailed,
    cache_clear,
    cache_stats,
    optimize,
    solve_relaxed,
)
from portfolios.optimizer import solve as solve_module
from portfolios.optimizer.problem import problem_arrays


def account(
    *,
    price: tuple[float, ...] = (100.0, 50.0, 20.0),
    target: tuple[float, ...] = (0.3, 0.3, 0.3),
    lot_security: tuple[int, ...] = (0, 0, 1),
    quantity: tuple[float, ...] = (50.0, 50.0, 40.0),
    basis: tuple[float, ...] = (50.0, 150.0, 50.0),
    long_term: tuple[bool, ...] = (True, True, True),
    cash: float = 1000.0,
    **kwargs: object,
) -> AccountProblem:
    """AAA $100 (lots at basis $50 and $150), BBB $50, CCC $20 (not held); $1,000 cash."""
    n, count = len(price), len(lot_security)
    securities = Securities(
        price=np.array(price),
        target=np.array(target),
        band_lower=np.full(n, 0.02),
        band_upper=np.full(n, 0.02),
        min_weight=np.zeros(n),
        max_weight=np.ones(n),
        sector=np.zeros(n, dtype=np.int64),
        no_buy=np.zeros(n, dtype=bool),
        no_sell=np.zeros(n, dtype=bool),
        half_spread=np.zeros(n),
        symbols=("AAA", "BBB", "CCC", "DDD", "EEE")[:n],
    )
    lots = Lots(
        security=np.array(lot_security, dtype=np.int64),
        quantity=np.array(quantity),
        basis=np.array(basis),
        long_term=np.array(long_term),
        no_sell=np.zeros(count, dtype=bool),
    )
    return replace(AccountProblem(securities=securities, lots=lots, cash=cash), **kwargs)


def with_lots(problem: AccountProblem, **kwargs: object) -> AccountProblem:
    return replace(problem, lots=replace(problem.lots, **kwargs))


def with_securities(problem: AccountProblem, **kwargs: object) -> AccountProblem:
    return replace(problem, securities=replace(problem.securities, **kwargs))


def realized_gain(problem: AccountProblem, sell_shares: np.ndarray) -> float:
    lot_price = problem.securities.price[problem.lots.security]
    return float(np.sum(sell_shares * (lot_price - problem.lots.basis)))


def test_before_plus_trades_equals_after() -> None:
    problem = account(commission_rate=0.001)
    result = optimize(problem)
    sold = np.bincount(problem.lots.security, weights=result.sell_shares, minlength=3)
    np.testing.assert_allclose(result.shares_before - sold + result.buy_shares, result.shares_after)
    price = problem.securities.price
    proceeds = np.sum(result.sell_shares * price[problem.lots.security]) * (1 - 0.001)
    spent = np.sum(result.buy_shares * price) * (1 + 0.001)
    assert result.cash_after == pytest.approx(problem.cash + proceeds - spent)


def test_a_full_rebalance_without_costs_reaches_the_target_weights() -> None:
    result = optimize(account())
    # V = 1,000 + 10,000 + 2,000 = 13,000: 30% each is 39 AAA, 78 BBB and 195 CCC.
    np.testing.assert_allclose(result.shares_after, [39.0, 78.0, 195.0])
    np.testing.assert_allclose(result.weights_after, [0.3, 0.3, 0.3])
    assert result.cash_after == pytest.approx(1300.0)
    assert result.terms_after.drift == pytest.approx(0.0, abs=1e-12)
    assert result.terms_before.drift == pytest.approx(
        (10_000 / 13_000 - 0.3) ** 2 + (2_000 / 13_000 - 0.3) ** 2 + 0.3**2
    )


def test_a_portfolio_at_target_trades_nothing() -> None:
    problem = account(target=(10_000 / 13_000, 2_000 / 13_000, 0.0), commission_rate=0.001)
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, np.zeros(3))
    np.testing.assert_array_equal(result.buy_shares, np.zeros(3))


def test_a_no_sell_lot_is_never_sold() -> None:
    problem = with_lots(account(), no_sell=np.array([True, False, False]))
    result = optimize(problem)
    assert result.sell_shares[0] == 0
    assert result.sell_shares[1] == 50  # the other AAA lot is sold out (target needs 61)


def test_a_no_buy_security_is_never_bought() -> None:
    problem = with_securities(account(), no_buy=np.array([False, False, True]))
    result = optimize(problem)
    assert result.buy_shares[2] == 0
    assert result.buy_shares[1] > 0


def test_cash_stays_at_least_the_reserve() -> None:
    result = optimize(account(reserve=3000.0, commission_rate=0.002))
    assert result.cash_after >= 3000.0


def test_a_taxable_account_sells_the_loss_lot_before_the_gain_lot() -> None:
    problem = account(taxable=True, tax_rate_short=0.5, tax_rate_long=0.4)
    result = optimize(problem)
    # Selling the $150-basis lot (at a loss) earns 0.4 * 0.5 = 0.2 per unit of weight, so it is
    # sold out; the $50-basis lot would cost 0.2 while the drift gain at w = 0.385 against
    # 0.3 is only 2 * 0.085 = 0.17, so it is untouched.
    np.testing.assert_array_equal(result.sell_shares, [0.0, 50.0, 0.0])
    assert result.terms_after.tax == pytest.approx(-50 * 50 * 0.4)


def test_a_long_term_lot_is_sold_before_a_short_term_lot_at_equal_gain() -> None:
    problem = account(
        target=(0.55, 0.2, 0.2),
        basis=(50.0, 50.0, 50.0),
        long_term=(False, True, True),
        taxable=True,
        tax_rate_short=0.4,
        tax_rate_long=0.2,
        drift_weight=100.0,
    )
    result = optimize(problem)
    # Long-term tax 0.1 per unit of weight balances 2 * 100 * d at d = 0.0005, w = 0.5505:
    # 71.565 AAA shares kept, 28.435 sold from the long-term lot; the short-term lot (0.2)
    # never pays.
    assert result.sell_shares[1] == 28
    assert result.sell_shares[0] == 0


def test_a_non_taxable_account_ignores_tax_rates() -> None:
    taxed_rates = account(tax_rate_short=0.4, tax_rate_long=0.2, commission_rate=0.001)
    no_rates = account(commission_rate=0.001)
    with_rates = optimize(taxed_rates)
    assert with_rates.terms_after.tax == 0.0
    np.testing.assert_allclose(
        np.bincount([0, 0, 1], weights=with_rates.sell_shares, minlength=3),
        np.bincount([0, 0, 1], weights=optimize(no_rates).sell_shares, minlength=3),
    )


def test_the_gains_budget_is_respected() -> None:
    problem = account(
        basis=(50.0, 50.0, 10.0), taxable=True, tax_rate_long=0.01, gains_budget=300.0
    )
    result = optimize(problem)
    assert realized_gain(problem, result.sell_shares) <= 300.0
    unbounded = optimize(replace(problem, gains_budget=None))
    assert realized_gain(problem, unbounded.sell_shares) > 300.0


def test_wash_sale_blocks_stop_the_buy_and_the_loss_lot_sale() -> None:
    problem = account(
        taxable=True,
        tax_rate_short=0.5,
        tax_rate_long=0.4,
        wash_buy_blocked=np.array([False, False, True]),
        wash_sell_blocked=np.array([True, True, False]),
    )
    result = optimize(problem)
    assert result.buy_shares[2] == 0
    assert result.sell_shares[1] == 0  # the $150-basis lot is at a loss: blocked
    assert result.sell_shares[0] > 0  # the gain lot is not a wash sale: still sellable


def test_max_weight_and_sector_limits_hold_after_trading() -> None:
    problem = with_securities(
        account(sector_max=np.array([0.5, 1.0])),
        sector=np.array([0, 0, 1]),
        max_weight=np.array([1.0, 0.2, 1.0]),
    )
    result = optimize(replace(problem, fractional=True))
    value = 13_000.0
    weights = result.shares_after * problem.securities.price / value
    assert weights[1] <= 0.2 + 1e-9
    assert weights[0] + weights[1] <= 0.5 + 1e-9


def test_tolerance_mode_leaves_positions_inside_their_band_alone() -> None:
    # BBB is at 2,000 / 13,000 = 15.4%: inside 15% +- 2%; AAA (76.9%) and CCC (0%) are not.
    problem = account(target=(0.6, 0.15, 0.2), mode=Mode.TOLERANCE)
    result = optimize(problem)
    assert result.sell_shares[2] == 0
    assert result.buy_shares[1] == 0
    assert result.sell_shares[:2].sum() > 0
    assert result.buy_shares[2] > 0


def test_a_cash_raise_produces_at_least_the_amount() -> None:
    problem = account(mode=Mode.CASH_RAISE, cash_amount=4000.0, reserve=500.0)
    result = optimize(problem)
    assert result.cash_after >= 4500.0


def test_cash_invest_only_buys() -> None:
    problem = account(cash=6000.0, mode=Mode.CASH_INVEST)
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, np.zeros(3))
    assert result.buy_shares.sum() > 0
    assert result.cash_after >= 0


def test_tax_loss_harvest_sells_the_loss_lot_and_buys_the_substitute() -> None:
    problem = account(
        taxable=True,
        tax_rate_short=0.4,
        tax_rate_long=0.2,
        mode=Mode.TLH,
        tlh_loss_threshold=0.1,
        substitutes={0: 2},
        commission_rate=0.0005,
    )
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, [0.0, 50.0, 0.0])
    assert result.buy_shares[2] == 250  # $5,000 of CCC at $20 replaces the sold AAA
    assert result.buy_shares[1] == 0


def test_trades_under_the_minimum_are_dropped_and_the_rest_re_solved() -> None:
    # Relaxed: sell $780 of AAA, buy $26 of BBB and $650 of CCC; the BBB buy is under $200.
    problem = account(target=(10_000 / 13_000 - 0.06, 2_000 / 13_000 + 0.002, 0.05))
    result = optimize(replace(problem, min_trade=200.0))
    assert result.dropped >= 1
    assert result.buy_shares[1] == 0
    assert result.sell_shares[:2].sum() * 100 >= 200.0
    assert result.buy_shares[2] * 20 >= 200.0


def test_an_unreachable_cash_reserve_is_named_in_the_message() -> None:
    problem = with_lots(account(), no_sell=np.array([True, True, False]))
    with pytest.raises(Infeasible) as info:
        optimize(replace(problem, reserve=5000.0))
    assert info.value.message == (
        "The constraints of this account conflict: cash reserve $5,000.00 cannot be met: "
        "the account can reach at most $3,000.00 in cash (no-sell or wash-sale restriction "
        "on AAA; cash is $1,000.00)"
    )
    conflict = info.value.extra["conflicts"][0]
    assert conflict["constraint"] == "cash_reserve"
    assert conflict["shortfall"] == pytest.approx(2000.0, abs=1e-3)


def test_a_too_tight_turnover_and_minimum_weight_are_both_named() -> None:
    problem = with_securities(account(), min_weight=np.array([0.0, 0.0, 0.25]))
    with pytest.raises(Infeasible) as info:
        optimize(replace(problem, turnover_limit=0.1))
    names = [c["constraint"] for c in info.value.extra["conflicts"]]
    assert names in (["w_min"], ["turnover"], ["w_min", "turnover"])


def test_an_unreachable_gains_budget_is_named_in_the_message() -> None:
    # Both AAA lots at a gain; the max weight forces sales, the gains budget forbids them. The
    # slack re-solve gives way on the cheaper side (gains), which is the one named.
    problem = with_securities(
        account(basis=(50.0, 50.0, 50.0), taxable=True, gains_budget=100.0),
        max_weight=np.array([0.5, 1.0, 1.0]),
    )
    with pytest.raises(Infeasible) as info:
        optimize(problem)
    # AAA must fall to 50% of $13,000: $3,500 sold at a 50% gain is $1,750 of gains.
    assert info.value.message == (
        "The constraints of this account conflict: realized-gains budget $100.00 is too small "
        "(needs at least $1,750.00 of gains)"
    )
    assert [c["constraint"] for c in info.value.extra["conflicts"]] == ["gains_budget"]


def test_a_same_shape_second_solve_reuses_the_compiled_problem() -> None:
    cache_clear()
    first = solve_relaxed(account(cash=1000.0))
    second = solve_relaxed(account(cash=3000.0, commission_rate=0.001))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert cache_stats() == {"hits": 1, "misses": 1, "size": 1}
    cache_clear()
    fresh = solve_relaxed(account(cash=3000.0, commission_rate=0.001))
    assert not fresh.cache_hit
    # Weights are unique (the drift term is strictly convex); the split between two equal
    # lots is not, so compare per-security sells.
    lots = np.array([0, 0, 1])
    np.testing.assert_allclose(
        np.bincount(lots, weights=second.x, minlength=3),
        np.bincount(lots, weights=fresh.x, minlength=3),
        atol=1e-7,
    )
    np.testing.assert_allclose(second.y, fresh.y, atol=1e-7)


def factor_account(seed: int, n: int = 8, count: int = 20, k: int = 3) -> AccountProblem:
    rng = np.random.default_rng(seed)
    price = rng.uniform(10, 200, n)
    target = rng.dirichlet(np.ones(n)) * 0.97
    lot_security = rng.integers(0, n, count)
    quantity = rng.integers(1, 100, count).astype(float)
    basis = price[lot_security] * rng.uniform(0.5, 1.5, count)
    exposures = rng.normal(0, 1, (n, k))
    a = rng.normal(0, 0.1, (k, k))
    problem = account(
        price=tuple(price),
        target=tuple(target),
        lot_security=tuple(int(i) for i in lot_security),
        quantity=tuple(quantity),
        basis=tuple(basis),
        long_term=tuple(bool(b) for b in rng.random(count) < 0.5),
        cash=float(rng.uniform(0, 5000)),
        taxable=True,
        tax_rate_short=0.37,
        tax_rate_long=0.2,
        commission_rate=0.0005,
        exposures=exposures,
        factor_cov=a @ a.T + 0.01 * np.eye(k),
        specific_var=rng.uniform(0.01, 0.05, n),
        reserve=100.0,
    )
    symbols = tuple(f"S{j}" for j in range(n))
    return with_securities(
        problem,
        band_lower=np.full(n, 0.02),
        band_upper=np.full(n, 0.02),
        min_weight=np.zeros(n),
        max_weight=np.ones(n),
        sector=np.zeros(n, dtype=np.int64),
        no_buy=np.zeros(n, dtype=bool),
        no_sell=np.zeros(n, dtype=bool),
        half_spread=np.full(n, 0.01),
        symbols=symbols,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clarabel_and_osqp_agree_on_the_objective(seed: int) -> None:
    problem = factor_account(seed)
    clarabel = solve_relaxed(problem, solver="CLARABEL")
    osqp = solve_relaxed(problem, solver="OSQP")
    assert (clarabel.solver, osqp.solver) == ("CLARABEL", "OSQP")
    assert osqp.terms_after.objective == pytest.approx(clarabel.terms_after.objective, abs=1e-6)


def test_a_failing_solver_falls_back_once_then_raises_from_the_original(monkeypatch) -> None:
    calls: list[str] = []

    def broken(compiled: object, solver: str) -> tuple[str, float]:
        calls.append(solver)
        raise cp.SolverError(f"{solver} broke")

    monkeypatch.setattr(solve_module, "_solve_once", broken)
    with pytest.raises(SolverFailed) as info:
        solve_relaxed(account())
    assert calls == ["CLARABEL", "OSQP"]
    assert info.value.message == (
        "The optimizer could not solve this account (CLARABEL returned an error); "
        "try again, and report it if it persists."
    )
    assert str(info.value.__cause__) == "CLARABEL broke"


def test_the_fallback_answers_when_the_default_solver_fails(monkeypatch) -> None:
    real = solve_module._solve_once

    def clarabel_breaks(compiled: solve_module.Compiled, solver: str) -> tuple[str, float]:
        if solver == "CLARABEL":
            raise cp.SolverError("no")
        return real(compiled, solver)

    monkeypatch.setattr(solve_module, "_solve_once", clarabel_breaks)
    assert solve_relaxed(account()).solver == "OSQP"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    mode=st.sampled_from([Mode.FULL, Mode.TOLERANCE, Mode.CASH_INVEST, Mode.CASH_RAISE]),
    fractional=st.booleans(),
)
def test_after_repair_holdings_are_non_negative_and_cash_covers_the_reserve(
    seed: int, mode: Mode, fractional: bool
) -> None:
    problem = factor_account(seed)
    value = problem_arrays(problem).value
    problem = replace(problem, mode=mode, fractional=fractional, min_trade=50.0)
    if mode == Mode.CASH_RAISE:
        problem = replace(problem, cash_amount=0.1 * value)
    if mode == Mode.CASH_INVEST and problem.cash < problem.reserve:
        with pytest.raises(Infeasible) as info:
            optimize(problem)
        assert info.value.message.startswith(
            "The constraints of this account conflict: cash reserve $100.00 cannot be met: "
        )
        assert "(cash invest mode sells nothing; " in info.value.message
        return
    result = optimize(problem)
    assert np.all(result.sell_shares <= problem.lots.quantity)
    assert np.all(result.shares_after >= 0)
    required = problem.reserve + (problem.cash_amount if mode == Mode.CASH_RAISE else 0.0)
    assert result.cash_after >= required - 1e-6
    if not fractional:
        np.testing.assert_array_equal(result.buy_shares, np.round(result.buy_shares))
        np.testing.assert_array_equal(result.sell_shares, np.round(result.sell_shares))
    if mode == Mode.CASH_INVEST:
        assert result.sell_shares.sum() == 0


def test_clarabel_without_refinement_gives_the_same_trades_as_with_it(monkeypatch) -> None:
    # SOLVER_OPTIONS turns Clarabel's iterative refinement off for speed; it must not change
    # the answer beyond solver tolerance, nor the repaired trades.
    problems = [factor_account(seed) for seed in range(4, 10)]
    fast = [optimize(problem) for problem in problems]
    relaxed_fast = [solve_relaxed(problem).terms_after.objective for problem in problems]
    monkeypatch.setitem(solve_module.SOLVER_OPTIONS, "CLARABEL", {})
    cache_clear()
    for problem, result, objective in zip(problems, fast, relaxed_fast, strict=True):
        accurate = optimize(problem)
        assert solve_relaxed(problem).terms_after.objective == pytest.approx(objective, abs=1e-8)
        lots = problem.lots.security
        np.testing.assert_array_equal(
            np.bincount(lots, weights=result.sell_shares, minlength=8),
            np.bincount(lots, weights=accurate.sell_shares, minlength=8),
        )
        np.testing.assert_array_equal(result.buy_shares, accurate.buy_shares)
    cache_clear()


def test_an_inaccurate_clarabel_answer_is_retried_with_refinement(monkeypatch) -> None:
    # One interior-point iteration cannot converge; the retry (with enough iterations here)
    # answers before the fallback solver is tried.
    monkeypatch.setitem(solve_module.SOLVER_OPTIONS, "CLARABEL", {"max_iter": 1})
    monkeypatch.setitem(
        solve_module.ACCURATE_OPTIONS,
        "CLARABEL",
        {"max_iter": 200, "iterative_refinement_enable": True},
    )
    cache_clear()
    result = solve_relaxed(account())
    assert (result.solver, result.status) == ("CLARABEL", cp.OPTIMAL)
    cache_clear()
