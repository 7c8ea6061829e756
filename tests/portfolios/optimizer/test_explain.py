"""Tests of trade explanations and portfolio metrics: hand-worked numbers, exact sentences,
identities (before + trades = after; no trades = before) and violations of edited trades."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from portfolios.optimizer import (
    LotRelief,
    Mode,
    ProblemInvalid,
    optimize,
    portfolio_metrics,
    trades_explain,
)
from portfolios.optimizer.explain import DRIVERS, REASONS

from .test_repair import book, two_and_cash
from .test_solve import account, with_lots, with_securities


def explain(problem):
    result = optimize(problem)
    return result, {(t.symbol, t.side): t for t in trades_explain(problem, result)}


def test_the_closed_form_trades_are_explained_in_plain_words() -> None:
    # AAA 55.5% -> 50.5% of V' = $99,910 (50,500 / 99,910); BBB 35.5% -> 39.5%.
    _, trades = explain(two_and_cash())
    assert set(trades) == {("AAA", "sell"), ("BBB", "buy")}
    sell, buy = trades["AAA", "sell"], trades["BBB", "buy"]
    assert (sell.security, sell.shares, sell.price, sell.notional) == (0, 50.0, 100.0, 5000.0)
    assert (sell.reason, sell.drivers) == ("drift", ("drift", "cost"))
    assert sell.weight_before == pytest.approx(0.555)
    assert sell.weight_after == pytest.approx(50_500 / 99_910)
    assert sell.target == 0.5
    assert sell.explanation == (
        "AAA is 5.5 pp over its 50.0% target; selling 50 shares brings it to 50.5%. "
        "The lots sold realize a gain of $1,000.00, not taxed in this account."
    )
    assert sell.lots == (LotRelief(lot=0, shares=50.0, gain=1000.0, long_term=True, tax=0.0),)
    assert (buy.reason, buy.drivers, buy.lots) == ("drift", ("drift", "cost"), ())
    assert buy.explanation == (
        "BBB is 4.5 pp under its 40.0% target; buying 80 shares brings it to 39.5%. "
        "Going all the way to the target would cost more than the drift it removes."
    )


def test_a_loss_lot_sale_reports_its_tax_saving_and_its_lots() -> None:
    problem = account(taxable=True, tax_rate_short=0.5, tax_rate_long=0.4)
    _, trades = explain(problem)
    sell = trades["AAA", "sell"]
    # 50 shares of the $150-basis lot: a $2,500 loss, long-term, 40% of it saved.
    assert sell.lots == (LotRelief(lot=1, shares=50.0, gain=-2500.0, long_term=True, tax=-1000.0),)
    assert sell.drivers == ("drift", "tax")
    assert sell.explanation == (
        "AAA is 46.9 pp over its 30.0% target; selling 50 shares brings it to 38.5%. "
        "Lots sold first are those at a loss (tax saving $1,000.00)."
    )


def test_a_long_term_lot_sold_before_a_short_term_one_is_said_so() -> None:
    problem = account(
        target=(0.55, 0.2, 0.2),
        basis=(50.0, 50.0, 50.0),
        long_term=(False, True, True),
        taxable=True,
        tax_rate_short=0.4,
        tax_rate_long=0.2,
        drift_weight=100.0,
    )
    _, trades = explain(problem)
    sell = trades["AAA", "sell"]
    assert sell.lots == (LotRelief(lot=1, shares=28.0, gain=1400.0, long_term=True, tax=280.0),)
    assert sell.explanation.endswith(
        "Long-term lots are sold before short-term ones (estimated tax $280.00)."
    )


def test_an_active_maximum_weight_is_a_driver_and_named() -> None:
    problem = with_securities(account(), max_weight=np.array([1.0, 1.0, 0.25]))
    _, trades = explain(problem)
    buy = trades["CCC", "buy"]
    assert "max_weight" in buy.drivers
    assert "brings it to 24.9% (its maximum weight)." in buy.explanation


def test_a_binding_reserve_stops_the_buys() -> None:
    _, trades = explain(account(reserve=3000.0))
    assert "cash_reserve" in trades["AAA", "sell"].drivers  # $1,000 cash was below it
    buy = trades["BBB", "buy"]
    assert buy.drivers == ("drift", "cash_reserve")
    assert buy.explanation.endswith(
        "Buying stops there because cash is down to the $3,000.00 required."
    )


def test_a_binding_gains_budget_is_named() -> None:
    problem = book(
        [("GAIN", 100.0, 0.2), ("CASHY", 10.0, 0.75)],
        [(0, 100.0, 50.0, True)],
        cash=10_000.0,
        gains_budget=2975.0,
    )
    _, trades = explain(problem)
    assert trades["GAIN", "sell"].drivers == ("drift", "gains_budget")


def test_a_full_mode_loss_sale_away_from_target_is_a_harvest() -> None:
    problem = book(
        [("WASH", 10.0, 0.2), ("OTHER", 50.0, 0.7)],
        [(0, 1000.0, 20.0, False), (0, 1000.0, 5.0, True), (1, 1400.0, 50.0, True)],
        cash=10_000.0,
        taxable=True,
        tax_rate_short=0.37,
        tax_rate_long=0.2,
        commission_rate=0.0005,
    )
    _, trades = explain(problem)
    sell = trades["WASH", "sell"]
    assert (sell.reason, sell.drivers) == ("tlh", ("tax",))
    assert sell.explanation == (
        "Selling 1,000 shares of WASH realizes a loss of $10,000.00 (tax saving $3,700.00); "
        "it goes from 20.0% to 10.0% against a 20.0% target."
    )


def test_tax_loss_harvest_trades_and_their_substitute() -> None:
    problem = account(
        taxable=True,
        tax_rate_short=0.4,
        tax_rate_long=0.2,
        mode=Mode.TLH,
        tlh_loss_threshold=0.1,
        substitutes={0: 2},
        commission_rate=0.0005,
    )
    _, trades = explain(problem)
    sell, buy = trades["AAA", "sell"], trades["CCC", "buy"]
    assert (sell.reason, sell.drivers) == ("tlh", ("tax",))
    assert sell.explanation == (
        "Selling 50 shares of AAA harvests a loss of $2,500.00 (tax saving $500.00); "
        "CCC is bought to keep the exposure."
    )
    assert (buy.reason, buy.drivers) == ("tlh", ("substitute",))
    assert buy.explanation == (
        "CCC is bought as the substitute for AAA, whose lots at a loss are sold, to keep the "
        "exposure: 250 shares for $5,000.00."
    )


def test_each_mode_gives_its_reason() -> None:
    _, raised = explain(account(mode=Mode.CASH_RAISE, cash_amount=4000.0, reserve=500.0))
    assert raised["AAA", "sell"].reason == "cash_raise"
    assert raised["AAA", "sell"].drivers == ("drift", "cash_raise")
    assert raised["AAA", "sell"].explanation.startswith(
        "Selling 73 shares of AAA raises $7,300.00 toward the $4,000.00 cash raise;"
    )
    # The targets apply to what stays after the raise, so the buys stop at BBB's share of it,
    # before the reserve plus the raise ($4,500) binds.
    assert raised["BBB", "buy"].drivers == ("drift",)
    problem = account(mode=Mode.CASH_RAISE, cash_amount=4000.0, reserve=500.0)
    result = optimize(problem)
    assert portfolio_metrics(problem, result.sell_shares, result.buy_shares).cash_after >= 4500
    _, invested = explain(account(cash=6000.0, mode=Mode.CASH_INVEST))
    assert {t.reason for t in invested.values()} == {"cash_invest"}
    assert invested["CCC", "buy"].explanation.endswith(
        "Buying stops there because the cash is fully invested."
    )
    _, banded = explain(account(target=(0.6, 0.15, 0.2), mode=Mode.TOLERANCE))
    assert banded["AAA", "sell"].reason == "drift"
    assert banded["AAA", "sell"].drivers == ("drift", "band")
    assert banded["AAA", "sell"].explanation.startswith(
        "AAA is 16.9 pp over its 60.0% target, outside its 58.0% to 62.0% band; "
        "selling 22 shares brings it to 60.0%."
    )
    _, edge = explain(
        account(target=(0.6, 0.15, 0.2), mode=Mode.TOLERANCE, tolerance_to_target=False)
    )
    # The band edge is 62%: 80.6 shares kept, so 20 sold (19.4 would leave it above).
    assert "selling 20 shares brings it to 61.5% (the edge of its band)." in (
        edge["AAA", "sell"].explanation
    )


def test_an_esg_sell_out_is_a_restriction() -> None:
    problem = with_securities(account(), sell_out=np.array([False, True, False]))
    _, trades = explain(problem)
    sell = trades["BBB", "sell"]
    assert (sell.reason, sell.drivers, sell.target) == ("restriction", ("drift", "sell_out"), 0.0)
    assert sell.explanation == (
        "BBB is excluded by the ESG screen and sold out: selling 40 shares takes it from "
        "15.4% to 0.0%."
    )


def test_the_tracking_error_gradient_is_a_driver_when_it_agrees() -> None:
    # Before trading d = (5.5%, -4.5%); with B = (1, 0.5), F = 0.04 and D = (0.01, 0.02) the
    # gradient of d' Sigma d is 2 (0.04 * 0.0325 * B + D d) = (+0.0037, -0.0005): both
    # trades lower the tracking error.
    problem = two_and_cash(
        exposures=np.array([[1.0], [0.5]]),
        factor_cov=np.array([[0.04]]),
        specific_var=np.array([0.01, 0.02]),
    )
    _, trades = explain(problem)
    assert "tracking" in trades["AAA", "sell"].drivers
    assert "tracking" in trades["BBB", "buy"].drivers
    every = set(REASONS)
    assert {t.reason for t in trades.values()} <= every
    assert all(set(t.drivers) <= set(DRIVERS) for t in trades.values())


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_of_the_closed_form_are_worked_out_by_hand() -> None:
    problem = two_and_cash()
    result = optimize(problem)
    m = portfolio_metrics(problem, result.sell_shares, result.buy_shares)
    assert (m.value_before, m.cash_before) == (100_000.0, 9000.0)
    # Costs: 1% of $5,000 sold and $4,000 bought.
    assert m.cost_estimate == pytest.approx(90.0)
    assert m.value_after == pytest.approx(100_000.0 - 90.0)
    assert m.cash_after == pytest.approx(9000.0 + 5000.0 - 4000.0 - 90.0)
    np.testing.assert_allclose(m.weights_before, [0.555, 0.355])
    np.testing.assert_allclose(m.weights_after, [50_500 / 99_910, 39_500 / 99_910])
    assert m.cash_weight_after == pytest.approx(9910 / 99_910)
    # Total drift counts cash against its 10% target; maximum drift only securities.
    assert m.total_drift_before == pytest.approx(0.5 * (0.055 + 0.045 + 0.01))
    after = (50_500 / 99_910 - 0.5, 39_500 / 99_910 - 0.4, 9910 / 99_910 - 0.1)
    assert m.total_drift_after == pytest.approx(0.5 * sum(abs(d) for d in after))
    assert (m.max_drift_before, m.max_drift_after) == pytest.approx((0.055, after[0]))
    assert (m.realized_st, m.realized_lt, m.tax_estimate) == (0.0, 1000.0, 0.0)
    assert m.turnover == pytest.approx(0.09)
    assert m.terms_before["drift"] == pytest.approx(0.055**2 + 0.045**2)
    assert m.terms_after == dataclasses.asdict(result.terms_after)
    assert (m.tracking_error_before, m.tracking_error_after) == (0.0, 0.0)
    assert m.violations == ()


def test_tracking_error_is_the_factor_and_specific_risk_of_the_deviation() -> None:
    problem = two_and_cash(
        exposures=np.array([[1.0], [0.5]]),
        factor_cov=np.array([[0.04]]),
        specific_var=np.array([0.01, 0.02]),
    )
    m = portfolio_metrics(problem, np.zeros(2), np.zeros(2))
    # d = (0.055, -0.045): 0.04 (0.055 - 0.0225)^2 + 0.01 * 0.055^2 + 0.02 * 0.045^2.
    variance = 0.04 * 0.0325**2 + 0.01 * 0.055**2 + 0.02 * 0.045**2
    assert m.tracking_error_before == pytest.approx(np.sqrt(variance))


def test_metrics_of_no_trades_equal_before() -> None:
    problem = account(
        taxable=True, tax_rate_short=0.4, tax_rate_long=0.2, commission_rate=0.001, reserve=500
    )
    m = portfolio_metrics(problem, np.zeros(3), np.zeros(3))
    assert (m.value_after, m.cash_after) == (m.value_before, m.cash_before)
    np.testing.assert_array_equal(m.weights_after, m.weights_before)
    assert m.cash_weight_after == m.cash_weight_before
    assert m.total_drift_after == m.total_drift_before
    assert m.max_drift_after == m.max_drift_before
    assert m.terms_after == m.terms_before
    assert (m.realized_st, m.realized_lt, m.tax_estimate, m.cost_estimate, m.turnover) == (
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    )
    assert m.violations == ()


def test_metrics_agree_with_the_optimizer_in_every_mode() -> None:
    cases = [
        account(taxable=True, tax_rate_short=0.4, tax_rate_long=0.2, commission_rate=0.001),
        account(mode=Mode.CASH_RAISE, cash_amount=4000.0, reserve=500.0),
        account(cash=6000.0, mode=Mode.CASH_INVEST),
        account(target=(0.6, 0.15, 0.2), mode=Mode.TOLERANCE),
        account(
            taxable=True,
            tax_rate_short=0.4,
            tax_rate_long=0.2,
            mode=Mode.TLH,
            tlh_loss_threshold=0.1,
            substitutes={0: 2},
        ),
    ]
    for problem in cases:
        result = optimize(problem)
        m = portfolio_metrics(problem, result.sell_shares, result.buy_shares)
        assert m.cash_after == pytest.approx(result.cash_after)
        np.testing.assert_allclose(m.weights_after, result.weights_after)
        np.testing.assert_allclose(m.weights_before, result.weights_before)
        assert m.terms_before == dataclasses.asdict(result.terms_before)
        assert m.terms_after == dataclasses.asdict(result.terms_after)
        assert m.tax_estimate == pytest.approx(result.terms_after.tax)
        assert m.cost_estimate == pytest.approx(result.terms_after.cost)
        # Before + trades = after: the value lost is the cost.
        assert m.value_after == pytest.approx(m.value_before - m.cost_estimate)
        assert m.violations == ()


# -- violations --------------------------------------------------------------------------------


def test_an_edit_that_oversells_or_goes_negative_is_named() -> None:
    m = portfolio_metrics(two_and_cash(), np.array([600.0, 0.0]), np.array([0.0, -5.0]))
    assert m.violations == (
        "The buy of BBB is negative (-5 shares).",
        "Selling 600 shares of AAA from lot 0 exceeds the 555 it holds.",
    )


def test_removing_the_sale_that_funds_the_reserve_is_named() -> None:
    problem = account(reserve=3000.0)
    result = optimize(problem)
    m = portfolio_metrics(problem, np.zeros(3), result.buy_shares)
    # $1,000 cash less 27 BBB at $50 and 167 CCC at $20: 1,000 - 1,350 - 3,340.
    assert m.violations == ("Cash after trading is -$3,690.00, below the $3,000.00 reserve.",)


def test_a_cash_raise_shortfall_names_both_amounts() -> None:
    problem = account(mode=Mode.CASH_RAISE, cash_amount=4000.0, reserve=500.0)
    m = portfolio_metrics(problem, np.zeros(3), np.zeros(3))
    assert m.violations == (
        "Cash after trading is $1,000.00, below the $4,500.00 required "
        "(the $500.00 reserve plus the $4,000.00 cash raise).",
    )


def test_trading_restricted_names_is_named() -> None:
    problem = with_securities(
        two_and_cash(), no_buy=np.array([False, True]), no_sell=np.array([True, False])
    )
    m = portfolio_metrics(problem, np.array([10.0, 0.0]), np.array([0.0, 10.0]))
    assert m.violations == (
        "BBB may not be bought: a no-buy restriction applies.",
        "AAA may not be sold: a no-sell restriction applies.",
    )
    lot_blocked = with_lots(two_and_cash(), no_sell=np.array([False, True]))
    m = portfolio_metrics(lot_blocked, np.array([0.0, 10.0]), np.zeros(2))
    assert m.violations == ("Lot 1 of BBB may not be sold: a no-sell restriction applies.",)


def test_wash_sales_in_both_directions_are_named() -> None:
    problem = with_lots(two_and_cash(), basis=np.array([120.0, 40.0]))
    problem = replace(
        problem,
        wash_buy_blocked=np.array([False, True]),
        wash_sell_blocked=np.array([True, True]),
    )
    m = portfolio_metrics(problem, np.array([10.0, 10.0]), np.array([0.0, 5.0]))
    # Lot 1 (BBB, basis $40 under the $50 price) is at a gain: selling it is no wash sale.
    assert m.violations == (
        "Buying BBB is a wash sale: a loss on it was realized in the household in the last "
        "30 days.",
        "Selling lot 0 of AAA at a loss is a wash sale: it was bought in the household in the "
        "last 30 days.",
    )


def test_limits_broken_by_an_edit_are_named() -> None:
    problem = with_securities(
        two_and_cash(gains_budget=500.0, turnover_limit=0.05, sector_max=np.array([0.9])),
        max_weight=np.array([1.0, 0.4]),
    )
    m = portfolio_metrics(problem, np.array([50.0, 0.0]), np.array([0.0, 200.0]))
    # BBB: (710 + 200) x $50 = 45.5% of the $100,000 before trading; with AAA's 505 x $100
    # the sector holds 96%.
    assert m.violations == (
        "BBB would be 45.5% of the account, over its 40.0% maximum weight.",
        "Sector 0 would be 96.0% of the account, over its 90.0% maximum.",
        "Turnover would be 15.0%, over the 5.0% limit.",
        "Realized gains of $1,000.00 exceed the $500.00 budget.",
    )


def test_an_incomplete_sell_out_is_named() -> None:
    problem = with_securities(account(), sell_out=np.array([False, True, False]))
    m = portfolio_metrics(problem, np.array([0.0, 0.0, 30.0]), np.array([0.0, 1.0, 0.0]))
    assert m.violations == (
        "BBB may not be bought: it is an ESG sell-out.",
        "The ESG sell-out of BBB is incomplete: 10 sellable shares remain.",
    )


def test_trades_of_the_wrong_shape_are_rejected_with_a_message() -> None:
    with pytest.raises(ProblemInvalid) as info:
        portfolio_metrics(two_and_cash(), np.zeros(3), np.zeros(2))
    assert info.value.message == "sell_shares has shape (3,), expected (2,)."
    with pytest.raises(ProblemInvalid) as info:
        portfolio_metrics(two_and_cash(), np.zeros(2), np.array([0.0, np.nan]))
    assert info.value.message == "buy_shares contains NaN or infinite values."
