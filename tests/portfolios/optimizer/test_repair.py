"""Tests of the repair: closed forms, round lots, the lots relieved, gains and cash after
rounding, ESG sell-outs and wash-sale round trips, each worked out by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from portfolios.optimizer import (
    AccountProblem,
    Infeasible,
    Lots,
    Mode,
    ProblemInvalid,
    Securities,
    optimize,
    solve_relaxed,
)
from portfolios.optimizer.problem import problem_arrays


def book(
    securities: list[tuple[str, float, float]],
    lots: list[tuple[int, float, float, bool]],
    *,
    cash: float,
    round_lot: tuple[float, ...] | None = None,
    sell_out: tuple[bool, ...] | None = None,
    **kwargs: object,
) -> AccountProblem:
    """An account from ``(symbol, price, target)`` rows and ``(security, shares, basis,
    long_term)`` lots; no costs, no limits unless given."""
    n, count = len(securities), len(lots)
    sec = Securities(
        price=np.array([s[1] for s in securities]),
        target=np.array([s[2] for s in securities]),
        band_lower=np.full(n, 0.02),
        band_upper=np.full(n, 0.02),
        min_weight=np.zeros(n),
        max_weight=np.ones(n),
        sector=np.zeros(n, dtype=np.int64),
        no_buy=np.zeros(n, dtype=bool),
        no_sell=np.zeros(n, dtype=bool),
        half_spread=np.zeros(n),
        symbols=tuple(s[0] for s in securities),
        round_lot=None if round_lot is None else np.array(round_lot),
        sell_out=None if sell_out is None else np.array(sell_out),
    )
    lot = Lots(
        security=np.array([x[0] for x in lots], dtype=np.int64),
        quantity=np.array([x[1] for x in lots]),
        basis=np.array([x[2] for x in lots]),
        long_term=np.array([x[3] for x in lots], dtype=bool),
        no_sell=np.zeros(count, dtype=bool),
    )
    return replace(AccountProblem(securities=sec, lots=lot, cash=cash), **kwargs)


def with_securities(problem: AccountProblem, **kwargs: object) -> AccountProblem:
    return replace(problem, securities=replace(problem.securities, **kwargs))


def two_and_cash(**kwargs: object) -> AccountProblem:
    """V = $100,000: AAA $100 x 555 (55.5% vs 50%), BBB $50 x 710 (35.5% vs 40%), $9,000."""
    return book(
        [("AAA", 100.0, 0.5), ("BBB", 50.0, 0.4)],
        [(0, 555.0, 80.0, True), (1, 710.0, 40.0, True)],
        cash=9000.0,
        commission_rate=0.01,
        **kwargs,
    )


def test_two_securities_and_cash_stop_short_of_target_by_cost_over_twice_the_drift_weight():
    # Minimising (d_A - x)^2 + (d_B - y)^2 + k (x + y) with the cash reserve slack gives
    # x = d_A - k/2 and y = d_B - k/2: with k = 1%, AAA sells 5.5% - 0.5% = 5% of $100,000
    # (50 shares) and BBB buys 4.5% - 0.5% = 4% (80 shares); each stays 0.5% from target.
    # (The solver's 1e-7 tie-breaking cost moves this by 5e-8 of V.)
    fractional = optimize(two_and_cash(fractional=True))
    np.testing.assert_allclose(fractional.sell_shares, [50.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(fractional.buy_shares, [0.0, 80.0], atol=1e-3)
    whole = optimize(two_and_cash())
    np.testing.assert_array_equal(whole.sell_shares, [50.0, 0.0])
    np.testing.assert_array_equal(whole.buy_shares, [0.0, 80.0])
    # Cash: 9,000 + 5,000 (1 - 1%) - 4,000 (1 + 1%) = 9,910.
    assert whole.cash_after == pytest.approx(9910.0)
    assert whole.terms_after.drift == pytest.approx(2 * 0.005**2)
    assert whole.terms_after.cost == pytest.approx(90.0)


def test_the_drift_weight_scales_the_shortfall():
    # Twice the drift weight halves the distance left: k / (2 * 2) = 0.25%.
    result = optimize(two_and_cash(drift_weight=2.0, fractional=True))
    np.testing.assert_allclose(result.sell_shares, [52.5, 0.0], atol=1e-3)
    np.testing.assert_allclose(result.buy_shares, [0.0, 85.0], atol=1e-3)


def round_lot_account(**kwargs: object) -> AccountProblem:
    """V = $100,000: LOT $10 x 5,000 ($50,000; round lot 100) with a loss lot of 2,000
    (basis $15, short-term) and a gain lot of 3,000 (basis $5, long-term); ODD $20 (no round
    lot, not held); $50,000 cash."""
    return book(
        [("LOT", 10.0, 0.3137), ("ODD", 20.0, 0.6)],
        [(0, 2000.0, 15.0, False), (0, 3000.0, 5.0, True)],
        cash=50_000.0,
        round_lot=(100.0, 1.0),
        **kwargs,
    )


def test_a_round_lot_sale_rounds_to_the_nearest_multiple_from_the_loss_lot():
    # LOT must fall from 50% to 31.37%. With a drift weight of 100 the loss lot's tax of
    # 30% x (1 - 15/10) = -0.15 per unit of V sells past target until 2 * 100 * d = 0.15,
    # d = 0.075%: 18.705% of V, 1,870.5 shares, all from the loss lot (the long-term gain lot
    # would cost +0.075). The nearest multiple of 100 is 1,900, still from the loss lot.
    # (The relaxation first sells the whole loss lot and buys LOT back; the repair forbids
    # that wash sale and re-solves.)
    problem = round_lot_account(
        taxable=True, tax_rate_short=0.3, tax_rate_long=0.15, drift_weight=100.0
    )
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, [1900.0, 0.0])
    assert result.buy_shares[0] == 0.0
    fractional = optimize(replace(problem, fractional=True))
    np.testing.assert_allclose(fractional.sell_shares, [1900.0, 0.0])
    # Without the round lot the fractional sale is the relaxed one.
    no_lot = replace(problem, securities=replace(problem.securities, round_lot=None))
    relaxed = optimize(replace(no_lot, fractional=True))
    np.testing.assert_allclose(relaxed.sell_shares, [1870.5, 0.0], atol=0.01)


def test_a_round_lot_sale_rounds_down_when_that_is_nearer():
    # Non-taxable: 1,863 shares to sell, nearest multiple 1,900; at a 31.0% target it is
    # 1,900 too, at 31.5% (1,850 shares exactly half-way) down to 1,800.
    problem = round_lot_account()
    assert optimize(problem).sell_shares.sum() == 1900.0
    halfway = replace(
        problem, securities=replace(problem.securities, target=np.array([0.315, 0.6]))
    )
    assert optimize(halfway).sell_shares.sum() == 1800.0


def test_a_round_lot_sale_that_closes_the_position_needs_no_multiple():
    problem = round_lot_account()
    problem = replace(problem, lots=replace(problem.lots, quantity=np.array([20.0, 1230.0])))
    problem = replace(problem, securities=replace(problem.securities, target=np.array([0, 0.6])))
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, [20.0, 1230.0])


def test_a_round_lot_buy_rounds_down_unless_cash_covers_the_nearest_lot():
    # BUY $25 (round lot 100) should be 31.59% of $100,000: 1,263.6 shares. The nearest
    # multiple is 1,300 ($32,500); with $40,000 cash it fits, with a $10,000 reserve it does
    # not ($40,000 - $32,500 < $10,000), so 1,200.
    problem = book(
        [("HELD", 100.0, 0.6), ("BUY", 25.0, 0.3159)],
        [(0, 600.0, 100.0, True)],
        cash=40_000.0,
        round_lot=(1.0, 100.0),
        fractional=True,
    )
    assert optimize(problem).buy_shares[1] == 1300.0
    result = optimize(replace(problem, reserve=10_000.0))
    assert result.buy_shares[1] == 1200.0
    assert result.cash_after >= 10_000.0


def test_a_fractional_account_buys_fractions_but_whole_round_lots():
    problem = book(
        [("HELD", 100.0, 0.55), ("FRAC", 30.0, 0.2), ("LOT", 25.0, 0.2)],
        [(0, 600.0, 100.0, True)],
        cash=40_000.0,
        round_lot=(1.0, 1.0, 10.0),
        fractional=True,
    )
    result = optimize(problem)
    # FRAC: 20% of $100,000 / $30 = 666.67 shares, kept fractional; LOT: 800 exactly.
    assert result.buy_shares[1] == pytest.approx(20_000 / 30, abs=1e-3)
    assert result.buy_shares[2] == 800.0
    # Selling HELD from 60% to 55% is 50 shares: a fraction of its lot, exact.
    assert result.sell_shares[0] == pytest.approx(50.0, abs=1e-3)


def test_a_round_lot_buy_does_not_round_up_past_the_maximum_weight():
    problem = book(
        [("HELD", 100.0, 0.6), ("BUY", 25.0, 0.3159)],
        [(0, 600.0, 100.0, True)],
        cash=40_000.0,
        round_lot=(1.0, 100.0),
    )
    problem = replace(
        problem, securities=replace(problem.securities, max_weight=np.array([1, 0.32]))
    )
    # 1,300 shares would be 32.5% > 32%: the buy stays at 1,200.
    assert optimize(problem).buy_shares[1] == 1200.0


def test_rounding_up_a_sale_never_breaks_the_gains_budget():
    # GAIN $100 x 100 (basis $50) must fall to 20% of $20,000: 60 shares, $3,000 of gains.
    # A $2,975 budget allows 59.5 shares; rounding to nearest would sell 60 and break it.
    problem = book(
        [("GAIN", 100.0, 0.2), ("CASHY", 10.0, 0.75)],
        [(0, 100.0, 50.0, True)],
        cash=10_000.0,
        gains_budget=2975.0,
    )
    result = optimize(problem)
    assert result.sell_shares[0] == 59.0
    assert result.warnings == ()


def test_cash_stays_above_the_reserve_after_rounding_round_lots():
    problem = round_lot_account(reserve=49_990.0, commission_rate=0.001)
    result = optimize(problem)
    assert result.cash_after >= 49_990.0
    assert result.sell_shares.sum() % 100 == 0
    assert result.warnings == ()


def test_a_loss_sale_is_never_bought_back_in_the_same_rebalance():
    # WASH $10 (two lots: 1,000 at a $20 basis, 1,000 at a $5 basis) is at its 20% target. In
    # a taxable account the relaxation sells the loss lot for its $10,000 x 37% tax saving and
    # buys WASH back to stay on target: a wash sale, whose loss would not count.
    problem = book(
        [("WASH", 10.0, 0.2), ("OTHER", 50.0, 0.7)],
        [(0, 1000.0, 20.0, False), (0, 1000.0, 5.0, True), (1, 1400.0, 50.0, True)],
        cash=10_000.0,
        taxable=True,
        tax_rate_short=0.37,
        tax_rate_long=0.2,
        commission_rate=0.0005,
    )
    relaxed = solve_relaxed(problem)
    # The round trip the repair must undo:
    assert relaxed.x[0] > 0
    assert relaxed.y[0] > 0
    result = optimize(problem)
    # Harvesting wins (a 7.4% tax saving per unit against a drift of 10%^2 = 1%): the loss
    # lot is sold and WASH is not bought back.
    assert result.sell_shares[0] == 1000.0
    assert result.buy_shares[0] == 0.0
    assert result.terms_after.tax == pytest.approx(-1000 * 10 * 0.37)


def test_an_esg_sell_out_sells_every_lot_and_buys_nothing():
    problem = book(
        [("KEEP", 100.0, 0.5), ("XOM", 50.0, 0.3), ("NEW", 20.0, 0.15)],
        [(0, 400.0, 90.0, True), (1, 333.0, 60.0, True), (1, 0.5, 40.0, False)],
        cash=43_325.0,
        sell_out=(False, True, False),
    )
    arrays = problem_arrays(problem)
    assert (arrays.target[1], arrays.w_max[1], arrays.buy_cap[1]) == (0.0, 0.0, 0.0)
    result = optimize(problem)
    # Both lots, the half share included (closing a lot is always a whole trade).
    np.testing.assert_array_equal(result.sell_shares, [0.0, 333.0, 0.5])
    assert result.buy_shares[1] == 0.0
    assert result.shares_after[1] == 0.0


def test_an_esg_sell_out_in_tolerance_mode_is_sold_even_inside_its_band():
    problem = book(
        [("KEEP", 100.0, 0.6), ("XOM", 50.0, 0.3)],
        [(0, 600.0, 90.0, True), (1, 600.0, 60.0, True)],
        cash=10_000.0,
        sell_out=(False, True),
        mode=Mode.TOLERANCE,
    )
    result = optimize(problem)
    assert result.sell_shares[1] == 600.0
    assert result.sell_shares[0] == 0.0  # KEEP is inside its 58%-62% band


def test_cash_invest_only_stops_buying_a_sell_out():
    problem = book(
        [("KEEP", 100.0, 0.5), ("XOM", 50.0, 0.3)],
        [(0, 400.0, 90.0, True), (1, 400.0, 60.0, True)],
        cash=40_000.0,
        sell_out=(False, True),
        mode=Mode.CASH_INVEST,
    )
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, [0.0, 0.0])
    assert result.buy_shares[1] == 0.0
    assert result.buy_shares[0] > 0


def test_an_esg_sell_out_of_a_no_sell_security_is_named_as_the_conflict():
    problem = book(
        [("KEEP", 100.0, 0.5), ("XOM", 50.0, 0.3)],
        [(0, 400.0, 90.0, True), (1, 400.0, 60.0, True)],
        cash=40_000.0,
        sell_out=(False, True),
    )
    blocked = replace(
        problem, securities=replace(problem.securities, no_sell=np.array([0, 1], bool))
    )
    with pytest.raises(Infeasible) as info:
        optimize(blocked)
    assert info.value.message == (
        "The constraints of this account conflict: ESG sell-out of XOM cannot be met: "
        "a no-sell restriction applies to XOM"
    )
    conflict = info.value.extra["conflicts"][0]
    assert (conflict["constraint"], conflict["causes"]) == ("sell_out", ["no_sell"])
    # XOM stays at 400 x $50 of $100,000.
    assert conflict["reachable"] == pytest.approx(0.2, abs=1e-6)


def test_an_esg_sell_out_blocked_by_a_lot_restriction_and_a_wash_sale_names_both():
    problem = book(
        [("KEEP", 100.0, 0.5), ("XOM", 50.0, 0.3)],
        [(0, 400.0, 90.0, True), (1, 200.0, 60.0, True), (1, 100.0, 40.0, True)],
        cash=40_000.0,
        sell_out=(False, True),
        wash_sell_blocked=np.array([False, True, True]),
    )
    problem = replace(problem, lots=replace(problem.lots, no_sell=np.array([False, False, True])))
    with pytest.raises(Infeasible) as info:
        optimize(problem)
    # Lot 1 is at a loss ($60 basis) and wash-sale blocked; lot 2 is at a gain, so its
    # wash-sale flag does not matter, but it is no-sell.
    assert info.value.message == (
        "The constraints of this account conflict: ESG sell-out of XOM cannot be met: "
        "a no-sell restriction applies to 1 lot of XOM and a wash-sale block applies to "
        "1 loss lot of XOM"
    )


def test_round_lots_must_be_positive() -> None:
    problem = round_lot_account()
    bad = replace(problem, securities=replace(problem.securities, round_lot=np.array([0.0, 1.0])))
    with pytest.raises(ProblemInvalid) as info:
        optimize(bad)
    assert info.value.message == "Every round lot must be positive; 1 are not."


def test_constraints_met_only_by_a_wash_sale_are_infeasible() -> None:
    # Selling out GAIN realizes $10,000 of gains against a $1,000 budget: the only losses are
    # LOSS's ($10 a share), and LOSS may not fall below its 50% minimum weight. The
    # relaxation sells LOSS's lot and buys it back; without that wash sale nothing fits.
    problem = book(
        [("LOSS", 10.0, 0.5), ("GAIN", 100.0, 0.4)],
        [(0, 1000.0, 20.0, True), (1, 100.0, 0.0, True)],
        cash=0.0,
        sell_out=(False, True),
        gains_budget=1000.0,
        taxable=True,
        tax_rate_long=0.2,
    )
    problem = with_securities(problem, min_weight=np.array([0.5, 0.0]))
    relaxed = solve_relaxed(problem)
    assert relaxed.x[0] > 0
    assert relaxed.y[0] > 0
    with pytest.raises(Infeasible) as info:
        optimize(problem)
    assert info.value.message.startswith(
        "The constraints of this account conflict once a security sold at a loss may not be "
        "bought back in the same rebalance (a wash sale): "
    )
    names = {c["constraint"] for c in info.value.extra["conflicts"]}
    assert names <= {"w_min", "gains_budget", "sell_out"}
    assert names


def test_a_loss_sale_rounded_down_is_rounded_up_when_the_gains_budget_needs_it() -> None:
    # Selling out GAIN realizes 100 x $10 = $1,000 against a $101.90 budget, so $898.10 of
    # losses must be realized: 1,283 LOSS shares at a $0.70 loss. LOSS trades in lots of 10:
    # the nearest, 1,280, would break the budget by $2.10, so 1,290 are sold.
    problem = book(
        [("LOSS", 10.0, 0.75), ("GAIN", 100.0, 0.2)],
        [(0, 3000.0, 10.7, True), (1, 100.0, 90.0, True)],
        cash=0.0,
        round_lot=(10.0, 1.0),
        sell_out=(False, True),
        gains_budget=101.9,
    )
    fractional = optimize(
        with_securities(replace(problem, fractional=True), round_lot=np.array([1.0, 1.0]))
    )
    np.testing.assert_allclose(fractional.sell_shares, [1283.0, 100.0], atol=1e-3)
    result = optimize(problem)
    np.testing.assert_array_equal(result.sell_shares, [1290.0, 100.0])
    assert result.warnings == ()
