"""Valuation reads: market values of many accounts in constant queries, drift rows, lot rows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from portfolios.selectors import account_holdings, account_lots
from portfolios.valuation import (
    LONG_TERM,
    SHORT_TERM,
    AccountValue,
    account_market_values,
    holding_rows,
    holdings_unrealized,
    lot_holding_period,
    lot_rows,
)
from tests import factories

pytestmark = pytest.mark.django_db


def test_account_market_values_sums_lots_at_the_latest_price(account_a, account_b, security):
    factories.PriceFactory(security=security, as_of=date(2026, 11, 1), price=Decimal("1"))
    factories.TaxLotFactory(account=account_a, security=security, quantity=Decimal("0.5"))
    values = account_market_values(account_ids=[account_a.pk, account_b.pk])
    # account_a: 10.5 AAPL x 150; account_b: 5 AAPL x 150
    assert values == {
        account_a.pk: AccountValue(Decimal("1575.00"), 0),
        account_b.pk: AccountValue(Decimal("750.00"), 0),
    }


def test_account_market_values_counts_unpriced_positions_as_nothing(account_a):
    factories.TaxLotFactory(account=account_a, security=factories.SecurityFactory(ticker="NOPX"))
    assert account_market_values(account_ids=[account_a.pk]) == {
        account_a.pk: AccountValue(Decimal("1500.00"), 1)
    }


def test_account_market_values_answers_zero_for_an_account_without_lots(household_a):
    empty = factories.AccountFactory(household=household_a)
    assert account_market_values(account_ids=[empty.pk]) == {
        empty.pk: AccountValue(Decimal("0.00"), 0)
    }
    assert account_market_values(account_ids=[]) == {}


@pytest.mark.parametrize("size", [2, 20])
def test_account_market_values_takes_two_queries_whatever_the_number_of_accounts(
    household_a, django_assert_num_queries, size
):
    accounts = factories.AccountFactory.create_batch(size, household=household_a)
    for i, account in enumerate(accounts):
        sec = factories.SecurityFactory(ticker=f"V{i}")
        factories.PriceFactory(security=sec, price=Decimal("2"))
        factories.TaxLotFactory(account=account, security=sec, quantity=Decimal("3"))
    with django_assert_num_queries(2):
        values = account_market_values(account_ids=[a.pk for a in accounts])
    assert {v.market_value for v in values.values()} == {Decimal("6.00")}


def test_holding_rows_add_cash_and_drift_against_target(account_a):
    holdings = account_holdings(account=account_a)
    rows = holding_rows(holdings=holdings)
    assert [r.label for r in rows] == ["AAPL", "Cash"]
    # no model: every target is absent, drift is measured against 0 for positions
    assert rows[0].weight == pytest.approx(0.6)
    assert rows[0].drift == pytest.approx(0.6)
    assert rows[1].target is None
    assert rows[1].drift is None
    assert holdings_unrealized(holdings=holdings) == Decimal("700.00")


@pytest.mark.parametrize(
    ("acquired_on", "period"),
    [
        (date(2025, 11, 25), SHORT_TERM),  # exactly 365 days: not more than one year
        (date(2025, 11, 24), LONG_TERM),
        (date(2026, 11, 1), SHORT_TERM),
    ],
)
def test_lot_holding_period_is_long_term_after_more_than_365_days(acquired_on, period):
    assert lot_holding_period(acquired_on=acquired_on, today=date(2026, 11, 25)) == period


def test_lot_rows_value_each_lot_with_the_holdings_prices(account_a):
    holdings = account_holdings(account=account_a)
    (row,) = lot_rows(
        lots=account_lots(account=account_a), holdings=holdings, today=date(2026, 11, 25)
    )
    assert (row.price, row.market_value, row.cost, row.unrealized) == (
        Decimal("150"),
        Decimal("1500.00"),
        Decimal("800.00"),
        Decimal("700.00"),
    )
    assert row.holding_period == LONG_TERM
