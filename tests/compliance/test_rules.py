"""The pure compliance rules on hand-built post-trade views: one test per rule type (a basket
that passes and one that fails, with the exact message), the view's arithmetic, and parameter
validation. No database."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from compliance.rules import (
    ACCOUNT_LEVEL_RULES,
    RULES,
    AccountView,
    BasketView,
    HouseholdTrade,
    LotRelief,
    OrderLine,
    PendingOrder,
    RestrictionView,
    RuleFinding,
    RuleParameterError,
    SecurityView,
    TargetView,
    basket_view_build,
    rule_parameters_validate,
    rule_run,
)

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 25)
SESSIONS = (
    date(2026, 11, 18),
    date(2026, 11, 19),
    date(2026, 11, 20),
    date(2026, 11, 23),
    date(2026, 11, 24),
)
FRESH = date(2026, 11, 24)
A10 = "Account ACC10 (Alpha Taxable)"
A11 = "Account ACC11 (Alpha IRA)"
A12 = "Account ACC12 (Beta Joint)"

SECURITIES = {
    1: SecurityView(1, "AAA", "Tech", 55.0, (), "", 1_000_000, 100.0, FRESH),
    2: SecurityView(2, "BBB", "Energy", 15.0, ("fossil_fuels",), "", 1000, 50.0, FRESH),
    3: SecurityView(3, "CCC", "Tech", None, (), "", None, 20.0, FRESH),
    4: SecurityView(4, "DDD", "Health", 60.0, (), "", 5000, None, None),
}
ACCOUNTS = {
    10: AccountView(
        10,
        "ACC10 (Alpha Taxable)",
        household_id=1,
        model_id=7,
        cash_before=1000.0,
        cash_reserve=100.0,
        min_trade_amount=100.0,
    ),
    11: AccountView(11, "ACC11 (Alpha IRA)", household_id=1, taxable=False, cash_before=500.0),
    12: AccountView(12, "ACC12 (Beta Joint)", household_id=2, min_trade_amount=100.0),
}
HOLDINGS = {(10, 1): 40.0, (10, 2): 20.0, (11, 1): 5.0, (12, 2): 1.0}


def order(account: int, security: int, side: str, qty: float, **kw: Any) -> OrderLine:
    price = SECURITIES[security].price or kw.pop("price", 10.0)
    return OrderLine(None, account, security, side, qty, price, qty * price, **kw)


def view(
    orders: list[OrderLine],
    *,
    accounts: dict[int, AccountView] | None = None,
    securities: dict[int, SecurityView] | None = None,
    **kw: Any,
) -> BasketView:
    return basket_view_build(
        orders=orders,
        accounts=list((accounts or ACCOUNTS).values()),
        holdings_before=kw.pop("holdings", HOLDINGS),
        securities=list((securities or SECURITIES).values()),
        today=TODAY,
        stale_cutoff=SESSIONS[-4],
        sessions=SESSIONS,
        basket_id=1,
        **kw,
    )


def run(rule: str, v: BasketView, **params: Any) -> list[RuleFinding]:
    return rule_run(rule, v, params)


def messages(findings: list[RuleFinding]) -> list[tuple[bool, str]]:
    return [(f.passed, f.message) for f in findings]


# ---------------------------------------------------------------------------
# Purity, registry and the view
# ---------------------------------------------------------------------------


def test_rules_module_does_not_import_django() -> None:
    code = "import compliance.rules, sys; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)  # noqa: S603


def test_registry_holds_every_rule_of_design_6() -> None:
    assert set(RULES) == {
        "restricted_list",
        "esg",
        "short_sale",
        "cash_overdraft",
        "concentration",
        "post_trade_drift",
        "wash_sale",
        "min_trade",
        "adv",
        "stale_price",
        "duplicate_order",
        "account_status",
        "gains_budget",
    }
    assert set(RULES) >= ACCOUNT_LEVEL_RULES


def test_view_holdings_after_are_holdings_before_plus_trades() -> None:
    v = view([order(10, 1, "sell", 10), order(10, 2, "buy", 4), order(12, 3, "buy", 5)])
    assert v.holdings_after[(10, 1)] == 30
    assert v.holdings_after[(10, 2)] == 24
    assert v.holdings_after[(12, 3)] == 5
    a = v.accounts[10]
    assert a.cash_after == 1000 + 1000 - 200
    assert a.value_before == 1000 + 4000 + 1000
    assert a.value_after == pytest.approx(1800 + 3000 + 1200)
    assert v.weights_after[(10, 1)] == pytest.approx(0.5)
    assert v.sector_weights_after[(10, "Energy")] == pytest.approx(0.2)
    assert v.accounts[12].cash_after == -100


# ---------------------------------------------------------------------------
# One test per rule type
# ---------------------------------------------------------------------------


def test_restricted_list_blocks_the_restricted_side_at_every_scope() -> None:
    restrictions = [
        RestrictionView(1, "firm", "no_buy", "Under review", security_id=1),
        RestrictionView(
            2, "household", "no_trade", "Client request", sector="Energy", household_id=2
        ),
        RestrictionView(3, "account", "no_sell", "Pledged", esg_tag="fossil_fuels", account_id=10),
    ]
    v = view(
        [
            order(10, 1, "buy", 5),
            order(10, 1, "sell", 5),
            order(12, 2, "sell", 1),
            order(10, 2, "sell", 2),
            order(10, 2, "buy", 2),
        ],
        restrictions=restrictions,
    )
    assert messages(run("restricted_list", v)) == [
        (False, f"{A10}: buy 5 AAA is restricted: firm-wide no-buy on AAA (Under review)."),
        (True, f"{A10}: sell 5 AAA is on no restricted list."),
        (
            False,
            f"{A12}: sell 1 BBB is restricted: household no-trade on sector Energy "
            "(Client request).",
        ),
        (
            False,
            f"{A10}: sell 2 BBB is restricted: account no-sell on ESG tag 'fossil_fuels' "
            "(Pledged).",
        ),
        (True, f"{A10}: buy 2 BBB is on no restricted list."),
    ]
    only_accounts = run("restricted_list", v, scopes=["account"])
    assert [f.passed for f in only_accounts] == [True, True, True, False, True]
    assert run("restricted_list", v)[0].details["restrictions"] == [1]


def test_esg_fails_buys_with_excluded_tags_or_a_low_score() -> None:
    v = view(
        [
            order(10, 2, "buy", 10),
            order(10, 1, "buy", 1),
            order(10, 2, "sell", 1),
            order(10, 3, "buy", 5),
        ]
    )
    assert messages(run("esg", v, excluded_tags=["fossil_fuels"], min_score=20)) == [
        (
            False,
            f"{A10}: buy 10 BBB fails the ESG screen: tagged fossil_fuels; ESG score 15 is "
            "below the minimum 20.",
        ),
        (True, f"{A10}: buy 1 AAA passes the ESG screen."),
        (True, f"{A10}: sell 1 BBB is a sale: the ESG screen applies to buys."),
        (True, f"{A10}: buy 5 CCC passes the ESG screen."),
    ]
    strict = run("esg", v, min_score=20, fail_missing_score=True)
    assert strict[3].message == (
        f"{A10}: buy 5 CCC fails the ESG screen: no ESG score on file (minimum 20)."
    )
    assert all(f.passed for f in run("esg", v))


def test_short_sale_fails_sells_beyond_the_shares_held() -> None:
    v = view(
        [
            order(10, 1, "sell", 30),
            order(10, 1, "sell", 20),
            order(10, 2, "sell", 20),
            order(10, 3, "buy", 1),
        ]
    )
    assert messages(run("short_sale", v)) == [
        (
            False,
            f"{A10}: sell 30 AAA would leave -10 shares: the basket sells 50 but the account "
            "holds 40.",
        ),
        (
            False,
            f"{A10}: sell 20 AAA would leave -10 shares: the basket sells 50 but the account "
            "holds 40.",
        ),
        (True, f"{A10}: sell 20 BBB is covered by 20 shares held."),
        (True, f"{A10}: buy 1 CCC is not a sale."),
    ]


def test_cash_overdraft_fails_below_zero_and_below_the_reserve() -> None:
    below_zero = view([order(10, 1, "buy", 12)])
    assert messages(run("cash_overdraft", below_zero)) == [
        (
            False,
            f"{A10}: cash after the trades would be -$200.00, below zero (cash now $1,000.00, "
            "buys $1,200.00, sells $0.00).",
        )
    ]
    below_reserve = view([order(10, 1, "buy", 9.5)])
    assert messages(run("cash_overdraft", below_reserve)) == [
        (False, f"{A10}: cash after the trades would be $50.00, below its reserve of $100.00.")
    ]
    assert messages(run("cash_overdraft", below_reserve, respect_reserve=False)) == [
        (True, f"{A10}: cash after the trades would be $50.00 (reserve $100.00).")
    ]
    findings = run("cash_overdraft", view([order(10, 1, "buy", 12), order(10, 2, "sell", 10)]))
    assert messages(findings) == [
        (True, f"{A10}: cash after the trades would be $300.00 (reserve $100.00).")
    ]
    assert findings[0].order is None
    assert findings[0].account_id == 10


def test_concentration_fails_buys_over_the_security_or_sector_limit() -> None:
    v = view([order(10, 1, "buy", 10), order(10, 2, "sell", 1)])
    assert messages(run("concentration", v, max_security_weight=0.25, max_sector_weight=0.4)) == [
        (
            False,
            f"{A10}: after buy 10 AAA, AAA would be 83.3% of the account, over the 25.0% limit "
            "per security and the Tech sector would be 83.3% of the account, over the 40.0% "
            "limit per sector.",
        ),
        (True, f"{A10}: sell 1 BBB is a sale: it adds no concentration."),
    ]
    loose = run("concentration", v, max_security_weight=0.9, max_sector_weight=0.9)
    assert loose[0].message == (
        f"{A10}: after buy 10 AAA, AAA would be 83.3% and the Tech sector 83.3% of the "
        "account (limits 90.0% and 90.0%)."
    )
    assert loose[0].passed
    exempt = run("concentration", v, exempt_tickers=["aaa"])
    assert messages(exempt)[0] == (True, f"{A10}: AAA is exempt from the concentration limits.")


def test_post_trade_drift_fails_accounts_still_outside_their_bands() -> None:
    targets = {10: [TargetView(1, 0.5, 0.02), TargetView(2, 0.4, 0.02)]}
    partial = view([order(10, 1, "sell", 10)], targets=targets)
    assert messages(run("post_trade_drift", partial)) == [
        (
            False,
            f"{A10}: after the trades 1 position would still be outside its band: BBB 16.7% "
            "against 40.0% ± 2.0%.",
        )
    ]
    full = view([order(10, 1, "sell", 10), order(10, 2, "buy", 28)], targets=targets)
    assert messages(run("post_trade_drift", full)) == [
        (True, f"{A10}: every position would be within its band after the trades.")
    ]
    # A holding outside the model counts against a zero target with the default band.
    stray = view([order(10, 3, "buy", 30)], targets=targets, default_band=0.03)
    finding = run("post_trade_drift", stray)[0]
    assert not finding.passed
    assert "CCC 10.0% against 0.0% ± 3.0%" in finding.message
    # Accounts without targets are not checked.
    assert run("post_trade_drift", view([order(12, 2, "sell", 1)], targets=targets)) == []


def test_wash_sale_blocks_buys_after_a_loss_sale_in_the_household() -> None:
    recent = [
        HouseholdTrade(1, 11, "ACC11 (Alpha IRA)", "AAA", "AAA", "sell", date(2026, 11, 10), -50.0),
        HouseholdTrade(2, 12, "ACC12 (Beta Joint)", "BBB", "BBB", "sell", date(2026, 11, 10), -9),
        HouseholdTrade(1, 11, "ACC11 (Alpha IRA)", "BBB", "BBB", "sell", date(2026, 10, 1), -9),
    ]
    v = view([order(10, 1, "buy", 5), order(10, 2, "buy", 5)], recent_trades=recent)
    assert messages(run("wash_sale", v)) == [
        (
            False,
            f"{A10}: buy 5 AAA would be a wash sale: AAA was sold on 2026-11-10 in account "
            "ACC11 (Alpha IRA) at a loss in the household.",
        ),
        (True, f"{A10}: buy 5 BBB triggers no wash sale."),
    ]
    # The same wash-sale group counts as the same security.
    grouped = {**SECURITIES, 3: replace(SECURITIES[3], wash_sale_group="AAA")}
    v = view([order(10, 3, "buy", 5)], recent_trades=recent, securities=grouped)
    assert not run("wash_sale", v)[0].passed


def test_wash_sale_blocks_loss_sales_after_a_purchase_and_within_the_basket() -> None:
    loss_lot = (LotRelief(1, 5, -200.0),)
    recent = [
        HouseholdTrade(1, 11, "ACC11 (Alpha IRA)", "AAA", "AAA", "buy", date(2026, 11, 20), 0.0)
    ]
    v = view([order(10, 1, "sell", 5, lots=loss_lot)], recent_trades=recent)
    assert messages(run("wash_sale", v)) == [
        (
            False,
            f"{A10}: sell 5 AAA realizes a loss of $200.00 and would be a wash sale: AAA was "
            "bought on 2026-11-20 in account ACC11 (Alpha IRA) in the household.",
        )
    ]
    gain_lot = (LotRelief(1, 5, 300.0),)
    v = view([order(10, 1, "sell", 5, lots=gain_lot)], recent_trades=recent)
    assert run("wash_sale", v)[0].passed
    # Both sides in one basket, in two accounts of one household.
    v = view([order(10, 1, "sell", 5, lots=loss_lot), order(11, 1, "buy", 5)])
    assert messages(run("wash_sale", v)) == [
        (
            False,
            f"{A10}: sell 5 AAA realizes a loss of $200.00 and would be a wash sale: AAA is "
            "bought in this basket by account ACC11 (Alpha IRA) in the household.",
        ),
        (
            False,
            f"{A11}: buy 5 AAA would be a wash sale: AAA is sold in this basket by account "
            "ACC10 (Alpha Taxable) at a loss in the household.",
        ),
    ]
    # Another household's buy is no wash sale.
    v = view([order(10, 1, "sell", 5, lots=loss_lot), order(12, 1, "buy", 5)])
    assert all(f.passed for f in run("wash_sale", v))


def test_min_trade_fails_orders_below_the_account_minimum() -> None:
    v = view([order(10, 1, "buy", 0.5), order(10, 1, "buy", 2), order(12, 2, "sell", 1)])
    assert messages(run("min_trade", v)) == [
        (False, f"{A10}: buy 0.5 AAA is $50.00, below the minimum trade amount of $100.00."),
        (True, f"{A10}: buy 2 AAA is $200.00 (minimum $100.00)."),
        (
            True,
            f"{A12}: sell 1 BBB is $50.00, below the minimum of $100.00, but it sells out the "
            "whole position.",
        ),
    ]
    strict = run("min_trade", v, allow_full_liquidation=False)
    assert [f.passed for f in strict] == [False, True, False]
    assert [f.passed for f in run("min_trade", v, min_amount=10)] == [True, True, True]


def test_adv_fails_orders_above_a_share_of_average_daily_volume() -> None:
    v = view([order(10, 2, "buy", 100), order(10, 2, "sell", 10), order(10, 3, "buy", 5)])
    assert messages(run("adv", v)) == [
        (
            False,
            f"{A10}: buy 100 BBB is 10.00% of the average daily volume of 1,000 shares, over "
            "the 5.0% limit.",
        ),
        (True, f"{A10}: sell 10 BBB is 1.00% of the average daily volume (5.0% allowed)."),
        (True, f"{A10}: CCC has no average daily volume on file."),
    ]
    assert [f.passed for f in run("adv", v, max_adv_fraction=0.2, fail_when_missing=True)] == [
        True,
        True,
        False,
    ]


def test_stale_price_fails_old_or_missing_prices() -> None:
    old = {**SECURITIES, 2: replace(SECURITIES[2], price_date=date(2026, 11, 18))}
    v = view(
        [order(10, 1, "buy", 1), order(10, 2, "sell", 1), order(10, 4, "buy", 1, price=10.0)],
        securities=old,
    )
    assert messages(run("stale_price", v)) == [
        (True, f"{A10}: AAA is priced as of 2026-11-24."),
        (
            False,
            f"{A10}: the price of BBB is from 2026-11-18, older than 3 trading days (cutoff "
            "2026-11-19).",
        ),
        (False, f"{A10}: DDD has no price: import one before trading."),
    ]
    assert [f.passed for f in run("stale_price", v, trading_days=4)] == [True, True, False]
    assert run("stale_price", v, trading_days=0)[1].message == (
        f"{A10}: the price of BBB is from 2026-11-18, older than 0 trading days (cutoff "
        "2026-11-24)."
    )


def test_duplicate_order_fails_orders_pending_elsewhere_or_twice_here() -> None:
    pending = [
        PendingOrder(99, "Monday rebalance", "pending_approval", 10, 1, "buy", 3.0),
        PendingOrder(98, "Other", "approved", 10, 1, "sell", 3.0),
    ]
    v = view(
        [
            order(10, 1, "buy", 5),
            order(10, 2, "buy", 1),
            order(10, 2, "buy", 2),
            order(12, 2, "sell", 1),
        ],
        pending_orders=pending,
    )
    assert messages(run("duplicate_order", v)) == [
        (
            False,
            f"{A10}: a buy of AAA is already pending in basket 99 'Monday rebalance' "
            "(pending approval).",
        ),
        (False, f"{A10}: the buy of BBB appears 2 times in this basket."),
        (False, f"{A10}: the buy of BBB appears 2 times in this basket."),
        (True, f"{A12}: no other pending sell of BBB."),
    ]


def test_account_status_fails_frozen_and_closed_accounts() -> None:
    accounts = {**ACCOUNTS, 12: replace(ACCOUNTS[12], status="frozen")}
    v = view(
        [order(10, 1, "buy", 1), order(12, 2, "sell", 1), order(10, 2, "buy", 1)], accounts=accounts
    )
    assert messages(run("account_status", v)) == [
        (True, f"{A10} is active."),
        (False, f"{A12} is frozen: it cannot trade."),
    ]
    closed = {**ACCOUNTS, 10: replace(ACCOUNTS[10], status="closed")}
    assert messages(run("account_status", view([order(10, 1, "buy", 1)], accounts=closed))) == [
        (False, f"{A10} is closed: it cannot trade.")
    ]


def test_gains_budget_fails_when_the_basket_realizes_more_than_is_left() -> None:
    accounts = {
        **ACCOUNTS,
        10: replace(ACCOUNTS[10], gains_budget=1000.0, gains_used=700.0),
        11: replace(ACCOUNTS[11], gains_budget=10.0),  # not taxable: never checked
    }
    lots = (LotRelief(1, 3, 600.0), LotRelief(2, 2, -100.0))
    v = view(
        [order(10, 1, "sell", 5, lots=lots), order(11, 1, "sell", 5, lots=lots)],
        accounts=accounts,
    )
    assert messages(run("gains_budget", v)) == [
        (
            False,
            f"{A10}: the basket realizes an estimated $500.00 of gains, over the $300.00 left "
            "of its $1,000.00 realized-gains budget this year.",
        )
    ]
    assert messages(run("gains_budget", v, tolerance=250)) == [
        (
            True,
            f"{A10}: the basket realizes an estimated $500.00 of gains, within the $300.00 "
            "left of its $1,000.00 budget this year.",
        )
    ]


# ---------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------


def test_parameters_are_completed_with_their_defaults() -> None:
    assert rule_parameters_validate("concentration", {"max_security_weight": "0.3"}) == {
        "max_security_weight": 0.3,
        "max_sector_weight": 0.4,
        "exempt_tickers": [],
    }
    assert rule_parameters_validate("short_sale", None) == {}
    assert rule_parameters_validate("stale_price", {"trading_days": 5}) == {"trading_days": 5}


@pytest.mark.parametrize(
    ("rule_type", "params", "message"),
    [
        (
            "concentration",
            {"max_security_weight": "abc"},
            "Rule 'concentration': max_security_weight must be a number between 0 and 1 "
            "(got 'abc').",
        ),
        (
            "concentration",
            {"max_sector_weight": 1.5},
            "Rule 'concentration': max_sector_weight must be a number between 0 and 1 (got 1.5).",
        ),
        (
            "concentration",
            {"max_weight": 0.2},
            "Rule 'concentration': unknown parameter 'max_weight'; allowed: exempt_tickers, "
            "max_sector_weight, max_security_weight.",
        ),
        (
            "short_sale",
            {"limit": 1},
            "Rule 'short_sale': unknown parameter 'limit'; allowed: none.",
        ),
        (
            "esg",
            {"min_score": 120},
            "Rule 'esg': min_score must be a number between 0 and 100 (got 120).",
        ),
        (
            "esg",
            {"excluded_tags": "tobacco"},
            "Rule 'esg': excluded_tags must be a list of words (got 'tobacco').",
        ),
        (
            "cash_overdraft",
            {"respect_reserve": "yes"},
            "Rule 'cash_overdraft': respect_reserve must be true or false (got 'yes').",
        ),
        (
            "stale_price",
            {"trading_days": 2.5},
            "Rule 'stale_price': trading_days must be a whole number between 0 and 60 (got 2.5).",
        ),
        (
            "min_trade",
            {"min_amount": -5},
            "Rule 'min_trade': min_amount must be a number of at least 0 (got -5).",
        ),
        (
            "restricted_list",
            {"scopes": ["firm", "team"]},
            "Rule 'restricted_list': scopes may contain only firm, household, account "
            "(got 'team').",
        ),
        (
            "adv",
            ["max_adv_fraction", 0.1],
            "Rule 'adv': parameters must be an object of name: value (got ['max_adv_fraction', "
            "0.1]).",
        ),
        (
            "insider",
            {},
            "Unknown rule type 'insider': choose one of account_status, adv, cash_overdraft, "
            "concentration, duplicate_order, esg, gains_budget, min_trade, post_trade_drift, "
            "restricted_list, short_sale, stale_price, wash_sale.",
        ),
    ],
)
def test_invalid_parameters_are_refused_with_a_message_naming_the_problem(
    rule_type: str, params: Any, message: str
) -> None:
    with pytest.raises(RuleParameterError) as excinfo:
        rule_parameters_validate(rule_type, params)
    assert excinfo.value.message == message
