"""The compliance check service on a hand-built basket: the default rules, results stored per
rule and order with their check-run number, rule scopes (firm, model, account), bulk reads
whatever the basket's size, the audit trail; overrides (Compliance only, a written
justification, failed hard results of the latest check only) and rule edits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule, Override, Restriction
from compliance.rules import ACCOUNT_LEVEL_RULES, RULES, rule_parameters_validate
from compliance.selectors import compliance_results_for_basket
from compliance.services.checks import (
    ACTION_CHECK,
    ACTION_OVERRIDE,
    ACTION_RULE_CHANGED,
    ACTION_RULE_CREATED,
    MSG_ALREADY_OVERRIDDEN,
    MSG_JUSTIFICATION,
    MSG_NOT_LATEST,
    MSG_OVERRIDE_ROLE,
    MSG_RESULT_PASSED,
    MSG_RESULT_WARNING,
    MSG_RULE_ROLE,
    MSG_RULE_TARGET,
    MSG_RULE_TYPE_FIXED,
    basket_compliance_check,
    compliance_override_create,
    compliance_rule_create,
    compliance_rule_update,
)
from orders.models import BasketState, Order, OrderLot, TradeBasket
from portfolios.models import TaxLot
from rebalance_app.exceptions import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests import factories
from tests.portfolios.rebalance_book import build_book

pytestmark = pytest.mark.django_db

PER_ORDER_RULES = set(RULES) - ACCOUNT_LEVEL_RULES
JUSTIFICATION = "Client instruction on file, approved by the CCO."


@pytest.fixture
def book(household_a, household_b):
    return build_book(household_a, household_b)


def make_basket(pm: Any, state: str = BasketState.SUBMITTED) -> TradeBasket:
    return TradeBasket.objects.create(name="Test basket", created_by=pm, state=state)


def add_order(
    basket: TradeBasket, account: Any, security: Any, side: str, qty: str, price: str
) -> Order:
    q, p = Decimal(qty), Decimal(price)
    return Order.objects.create(
        basket=basket,
        account=account,
        security=security,
        side=side,
        quantity=q,
        est_price=p,
        est_notional=q * p,
        reason="manual",
    )


def breached_basket(pm: Any, book: Any) -> tuple[TradeBasket, Order, Order]:
    """Sell 20 AAA (from the $120 short-term lot: a $400 loss), buy 10 BBB."""
    basket = make_basket(pm)
    sell = add_order(basket, book.breached, book.sec["AAA"], "sell", "20", "100")
    loss_lot = TaxLot.objects.get(account=book.breached, security=book.sec["AAA"], cost_basis=120)
    OrderLot.objects.create(order=sell, lot=loss_lot, quantity=20, est_gain=Decimal("-400"))
    buy = add_order(basket, book.breached, book.sec["BBB"], "buy", "10", "50")
    return basket, sell, buy


def only_rules(*rules: ComplianceRule) -> None:
    ComplianceRule.objects.exclude(pk__in=[r.pk for r in rules]).update(enabled=False)


# ---------------------------------------------------------------------------
# Default rules
# ---------------------------------------------------------------------------


def test_default_rules_are_one_enabled_firm_rule_per_type() -> None:
    rules = list(ComplianceRule.objects.filter(scope="firm"))
    assert sorted(r.rule_type for r in rules) == sorted(RULES)
    hard = {r.rule_type for r in rules if r.severity == "hard"}
    assert hard == {
        "restricted_list",
        "short_sale",
        "cash_overdraft",
        "account_status",
        "wash_sale",
        "stale_price",
    }
    for r in rules:
        assert r.enabled
        assert rule_parameters_validate(r.rule_type, r.parameters) == r.parameters
    by_type = {r.rule_type: r.parameters for r in rules}
    assert by_type["concentration"]["max_security_weight"] == 0.25
    assert by_type["concentration"]["max_sector_weight"] == 0.40
    assert by_type["adv"]["max_adv_fraction"] == 0.05


# ---------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------


def test_check_stores_one_result_per_rule_and_order_and_numbers_the_runs(pm, book) -> None:
    basket, sell, buy = breached_basket(pm, book)
    outcome = basket_compliance_check(basket=basket, actor=pm)
    assert outcome.check_run == 1
    # 9 per-order rules x 2 orders, plus cash, status and drift for the one account (it has no
    # gains budget, so that rule has nothing to check).
    assert len(outcome.results) == len(PER_ORDER_RULES) * 2 + 3
    stored = ComplianceResult.objects.filter(basket=basket, check_run=1)
    assert stored.count() == len(outcome.results)
    for rule_type in PER_ORDER_RULES:
        orders = set(stored.filter(rule__rule_type=rule_type).values_list("order_id", flat=True))
        assert orders == {sell.pk, buy.pk}, rule_type
    drift = stored.get(rule__rule_type="post_trade_drift")
    assert drift.order is None
    assert drift.severity == "warning"
    assert not drift.passed
    assert drift.message == (
        f"Account {book.breached.account_number} (Breached): after the trades 1 position "
        "would still be outside its band: BBB 25.0% against 40.0% ± 2.0%."
    )
    assert outcome.hard_failures == 0
    assert outcome.warnings == 1
    assert [r.pk for r in stored.filter(passed=False)] == [drift.pk]

    again = basket_compliance_check(basket=basket, actor=pm, stage="route")
    assert again.check_run == 2
    assert ComplianceResult.objects.filter(basket=basket, check_run=2).count() == len(
        outcome.results
    )
    stages = ComplianceResult.objects.filter(basket=basket).values_list("check_run", "details")
    assert {(run, d["stage"]) for run, d in stages} == {(1, "submit"), (2, "route")}


def test_check_is_audited_with_its_counts(pm, book) -> None:
    basket, _, _ = breached_basket(pm, book)
    outcome = basket_compliance_check(basket=basket, actor=pm)
    event = AuditEvent.objects.get(action=ACTION_CHECK)
    assert event.object_type == "orders.tradebasket"
    assert event.object_id == str(basket.pk)
    assert event.actor == pm
    assert event.after == {
        "stage": "submit",
        "check_run": 1,
        "rules": len(RULES),
        "results": len(outcome.results),
        "failed": 1,
        "hard_failures": 0,
        "warnings": 1,
    }


def test_restricted_security_is_a_hard_failure_on_its_order(pm, compliance, book) -> None:
    Restriction.objects.create(
        scope="firm", security=book.sec["BBB"], kind="no_buy", reason="Pending merger"
    )
    basket, _sell, buy = breached_basket(pm, book)
    outcome = basket_compliance_check(basket=basket, actor=pm)
    assert outcome.hard_failures == 1
    failed = ComplianceResult.objects.get(basket=basket, passed=False, severity="hard")
    assert failed.rule.rule_type == "restricted_list"
    assert failed.order == buy
    assert failed.message == (
        f"Account {book.breached.account_number} (Breached): buy 10 BBB is restricted: "
        "firm-wide no-buy on BBB (Pending merger)."
    )


def test_wash_sale_within_the_basket_fails_both_orders(pm, household_a, book) -> None:
    sister = factories.AccountFactory(household=household_a, name="Sister", cash_balance=5000)
    basket, sell, _ = breached_basket(pm, book)
    buy_back = add_order(basket, sister, book.sec["AAA"], "buy", "5", "100")
    basket_compliance_check(basket=basket, actor=pm)
    failed = ComplianceResult.objects.filter(
        basket=basket, rule__rule_type="wash_sale", passed=False
    )
    assert set(failed.values_list("order_id", flat=True)) == {sell.pk, buy_back.pk}


def test_duplicate_order_sees_other_live_baskets_only(pm, book) -> None:
    only_rules(ComplianceRule.objects.get(scope="firm", rule_type="duplicate_order"))
    pending = make_basket(pm, BasketState.PENDING_APPROVAL)
    pending.name = "Monday"
    pending.save()
    add_order(pending, book.breached, book.sec["BBB"], "buy", "3", "50")
    cancelled = make_basket(pm, BasketState.CANCELLED)
    add_order(cancelled, book.breached, book.sec["AAA"], "sell", "3", "100")
    basket, sell, buy = breached_basket(pm, book)
    outcome = basket_compliance_check(basket=basket, actor=pm)
    by_order = {r.order_id: r for r in outcome.results}
    assert by_order[sell.pk].passed
    assert not by_order[buy.pk].passed
    assert by_order[buy.pk].message == (
        f"Account {book.breached.account_number} (Breached): a buy of BBB is already pending "
        f"in basket {pending.pk} 'Monday' (pending approval)."
    )
    assert outcome.warnings == 1


def test_rules_apply_by_scope_firm_model_and_account(pm, household_a, book) -> None:
    other_model = factories.ModelPortfolioFactory(name="Income")
    plain = factories.AccountFactory(household=household_a, name="Plain", cash_balance=5000)
    strict = {"min_amount": 100000}
    rules = [
        compliance_rule_create(
            actor="system:test",
            rule_type="min_trade",
            name="Core minimum",
            parameters=strict,
            scope="model",
            model=book.core,
        ),
        compliance_rule_create(
            actor="system:test",
            rule_type="min_trade",
            name="Income minimum",
            parameters=strict,
            scope="model",
            model=other_model,
        ),
        compliance_rule_create(
            actor="system:test",
            rule_type="account_status",
            name="Plain status",
            scope="account",
            account=plain,
        ),
        ComplianceRule.objects.get(scope="firm", rule_type="short_sale"),
    ]
    only_rules(*rules)
    basket, sell, buy = breached_basket(pm, book)
    plain_buy = add_order(basket, plain, book.sec["CCC"], "buy", "10", "20")
    outcome = basket_compliance_check(basket=basket, actor=pm)
    got = {(r.rule.name, r.order_id, r.details.get("account_id")) for r in outcome.results}
    assert got == {
        ("Core minimum", sell.pk, book.breached.pk),
        ("Core minimum", buy.pk, book.breached.pk),
        ("Plain status", None, plain.pk),
        ("No short sales", sell.pk, book.breached.pk),
        ("No short sales", buy.pk, book.breached.pk),
        ("No short sales", plain_buy.pk, plain.pk),
    }
    assert outcome.hard_failures == 2  # the Core minimum, hard by default, on both orders


def test_check_reads_in_bulk_whatever_the_number_of_orders(pm, household_a, book) -> None:
    def queries(basket: TradeBasket) -> int:
        with CaptureQueriesContext(connection) as ctx:
            basket_compliance_check(basket=basket, actor=pm)
        return len(ctx.captured_queries)

    small, _, _ = breached_basket(pm, book)
    large, _, _ = breached_basket(pm, book)
    for i in range(4):
        extra = factories.AccountFactory(household=household_a, model=book.core, name=f"X{i}")
        add_order(large, extra, book.sec["CCC"], "buy", "10", "20")
        add_order(large, extra, book.sec["BBB"], "buy", "3", "50")
    assert queries(large) == queries(small)


def test_rule_with_invalid_stored_parameters_fails_closed(pm, book) -> None:
    rule = ComplianceRule.objects.get(scope="firm", rule_type="concentration")
    ComplianceRule.objects.filter(pk=rule.pk).update(parameters={"max_security_weight": "abc"})
    basket, _, _ = breached_basket(pm, book)
    basket_compliance_check(basket=basket, actor=pm)
    result = ComplianceResult.objects.get(basket=basket, rule=rule)
    assert not result.passed
    assert result.order is None
    assert result.message == (
        "Rule 'concentration': max_security_weight must be a number between 0 and 1 (got 'abc')."
    )


def test_results_selector_follows_the_baskets_accounts(pm, other_pm, compliance, book) -> None:
    basket, _, _ = breached_basket(pm, book)
    basket_compliance_check(basket=basket, actor=pm)
    assert compliance_results_for_basket(user=pm, basket_id=basket.pk).count() > 0
    assert compliance_results_for_basket(user=compliance, basket_id=basket.pk).count() > 0
    with pytest.raises(NotFound):
        compliance_results_for_basket(user=other_pm, basket_id=basket.pk)


# ---------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------


@pytest.fixture
def held(pm, book):
    """A basket on compliance hold: its buy of BBB is on the firm's no-buy list."""
    Restriction.objects.create(
        scope="firm", security=book.sec["BBB"], kind="no_buy", reason="Pending merger"
    )
    basket, _, _ = breached_basket(pm, book)
    basket_compliance_check(basket=basket, actor=pm)
    TradeBasket.objects.filter(pk=basket.pk).update(state=BasketState.COMPLIANCE_HOLD)
    basket.refresh_from_db()
    failed = ComplianceResult.objects.get(basket=basket, passed=False, severity="hard")
    return basket, failed


@pytest.mark.parametrize("persona", ["pm", "ops", "admin_user"])
def test_only_compliance_may_override(request, held, persona) -> None:
    _, failed = held
    with pytest.raises(PermissionDenied) as excinfo:
        compliance_override_create(
            actor=request.getfixturevalue(persona),
            result_id=failed.pk,
            justification=JUSTIFICATION,
        )
    assert excinfo.value.message == MSG_OVERRIDE_ROLE
    assert not Override.objects.exists()


@pytest.mark.parametrize("text", ["", "   ", "ok fine"])
def test_override_needs_a_justification(compliance, held, text) -> None:
    _, failed = held
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_override_create(actor=compliance, result_id=failed.pk, justification=text)
    assert excinfo.value.message == MSG_JUSTIFICATION
    assert excinfo.value.message == (
        "Write a justification of at least 10 characters for overriding this compliance failure."
    )
    assert not Override.objects.exists()


def test_override_only_of_a_failed_hard_result(compliance, held) -> None:
    basket, _ = held
    passed = ComplianceResult.objects.filter(basket=basket, passed=True).first()
    warning = ComplianceResult.objects.get(basket=basket, passed=False, severity="warning")
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_override_create(
            actor=compliance, result_id=passed.pk, justification=JUSTIFICATION
        )
    assert excinfo.value.message == MSG_RESULT_PASSED.format(id=passed.pk)
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_override_create(
            actor=compliance, result_id=warning.pk, justification=JUSTIFICATION
        )
    assert excinfo.value.message == (
        f"Result {warning.pk} is a warning: warnings are acknowledged by the approver, not "
        "overridden."
    )
    assert excinfo.value.message == MSG_RESULT_WARNING.format(id=warning.pk)
    with pytest.raises(NotFound):
        compliance_override_create(actor=compliance, result_id=10**9, justification=JUSTIFICATION)
    assert not Override.objects.exists()


def test_override_is_audited_and_releases_the_hold(compliance, held) -> None:
    basket, failed = held
    override = compliance_override_create(
        actor=compliance, result_id=failed.pk, justification=f"  {JUSTIFICATION}  "
    )
    assert override.result == failed
    assert override.overridden_by == compliance
    assert override.justification == JUSTIFICATION
    event = AuditEvent.objects.get(action=ACTION_OVERRIDE)
    assert event.object_type == "orders.tradebasket"
    assert event.object_id == str(basket.pk)
    assert event.reason == JUSTIFICATION
    assert event.after["result"] == failed.pk
    assert event.after["override"] == override.pk
    basket.refresh_from_db()
    assert basket.state == BasketState.PENDING_APPROVAL
    assert AuditEvent.objects.filter(action="basket.hold_released").count() == 1

    with pytest.raises(InvalidTransition) as excinfo:
        compliance_override_create(
            actor=compliance, result_id=failed.pk, justification=JUSTIFICATION
        )
    assert excinfo.value.message == MSG_ALREADY_OVERRIDDEN.format(
        id=failed.pk, user="compliance", day=override.created_at.date()
    )
    assert Override.objects.count() == 1


def test_override_keeps_the_hold_while_other_hard_failures_are_open(compliance, pm, book) -> None:
    for ticker in ("AAA", "BBB"):
        Restriction.objects.create(
            scope="firm", security=book.sec[ticker], kind="no_trade", reason="Blackout"
        )
    basket, _, _ = breached_basket(pm, book)
    basket_compliance_check(basket=basket, actor=pm)
    TradeBasket.objects.filter(pk=basket.pk).update(state=BasketState.COMPLIANCE_HOLD)
    first, second = ComplianceResult.objects.filter(
        basket=basket, passed=False, severity="hard"
    ).order_by("pk")
    compliance_override_create(actor=compliance, result_id=first.pk, justification=JUSTIFICATION)
    basket.refresh_from_db()
    assert basket.state == BasketState.COMPLIANCE_HOLD
    compliance_override_create(actor=compliance, result_id=second.pk, justification=JUSTIFICATION)
    basket.refresh_from_db()
    assert basket.state == BasketState.PENDING_APPROVAL


def test_override_refuses_a_result_of_an_earlier_check(compliance, pm, held) -> None:
    basket, failed = held
    basket_compliance_check(basket=basket, actor=pm, stage="route")
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_override_create(
            actor=compliance, result_id=failed.pk, justification=JUSTIFICATION
        )
    assert excinfo.value.message == MSG_NOT_LATEST.format(
        id=failed.pk, run=1, basket=basket.pk, latest=2
    )
    assert not Override.objects.exists()


def test_overridden_failure_no_longer_counts_as_a_hard_failure(compliance, held) -> None:
    basket, failed = held
    compliance_override_create(actor=compliance, result_id=failed.pk, justification=JUSTIFICATION)
    open_hard = ComplianceResult.objects.filter(
        basket=basket, check_run=1, passed=False, severity="hard", override__isnull=True
    )
    assert not open_hard.exists()


# ---------------------------------------------------------------------------
# Rule edits
# ---------------------------------------------------------------------------


def test_compliance_creates_a_rule_with_validated_parameters(compliance, book) -> None:
    rule = compliance_rule_create(
        actor=compliance,
        rule_type="concentration",
        name="Core concentration",
        parameters={"max_security_weight": 0.2},
        severity="hard",
        scope="model",
        model=book.core,
    )
    assert rule.parameters == {
        "max_security_weight": 0.2,
        "max_sector_weight": 0.4,
        "exempt_tickers": [],
    }
    event = AuditEvent.objects.get(action=ACTION_RULE_CREATED)
    assert event.object_id == str(rule.pk)
    assert event.after["parameters"] == rule.parameters
    assert event.after["model"] == book.core.pk


def test_rule_with_invalid_parameters_is_refused_and_nothing_changes(compliance) -> None:
    count = ComplianceRule.objects.count()
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_rule_create(
            actor=compliance,
            rule_type="concentration",
            name="Bad",
            parameters={"max_security_weight": "abc"},
        )
    assert excinfo.value.message == (
        "Rule 'concentration': max_security_weight must be a number between 0 and 1 (got 'abc')."
    )
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_rule_create(actor=compliance, rule_type="min_trade", name="x", scope="model")
    assert excinfo.value.message == MSG_RULE_TARGET["model"]
    assert ComplianceRule.objects.count() == count
    assert not AuditEvent.objects.filter(action=ACTION_RULE_CREATED).exists()


@pytest.mark.parametrize("persona", ["pm", "ops", "outsider"])
def test_only_compliance_edits_rules(request, persona) -> None:
    rule = ComplianceRule.objects.get(scope="firm", rule_type="adv")
    with pytest.raises(PermissionDenied) as excinfo:
        compliance_rule_update(
            actor=request.getfixturevalue(persona), rule_id=rule.pk, data={"enabled": False}
        )
    assert excinfo.value.message == MSG_RULE_ROLE
    rule.refresh_from_db()
    assert rule.enabled


def test_rule_change_is_audited_with_before_and_after(compliance) -> None:
    rule = ComplianceRule.objects.get(scope="firm", rule_type="adv")
    updated = compliance_rule_update(
        actor=compliance,
        rule_id=rule.pk,
        data={"parameters": {"max_adv_fraction": 0.1}, "severity": "hard"},
    )
    assert updated.parameters == {"max_adv_fraction": 0.1, "fail_when_missing": False}
    event = AuditEvent.objects.get(action=ACTION_RULE_CHANGED)
    assert event.before["parameters"]["max_adv_fraction"] == 0.05
    assert event.before["severity"] == "warning"
    assert event.after["parameters"]["max_adv_fraction"] == 0.1
    assert event.after["severity"] == "hard"
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_rule_update(
            actor=compliance, rule_id=rule.pk, data={"parameters": {"max_adv_fraction": 2}}
        )
    assert excinfo.value.message == (
        "Rule 'adv': max_adv_fraction must be a number between 0 and 1 (got 2)."
    )
    with pytest.raises(ValidationFailed) as excinfo:
        compliance_rule_update(actor=compliance, rule_id=rule.pk, data={"rule_type": "esg"})
    assert excinfo.value.message == MSG_RULE_TYPE_FIXED
    rule.refresh_from_db()
    assert rule.parameters["max_adv_fraction"] == 0.1
    assert rule.rule_type == "adv"
    assert AuditEvent.objects.filter(action=ACTION_RULE_CHANGED).count() == 1
    # Sending the unchanged type along (as a form or PATCH may) is fine.
    compliance_rule_update(
        actor=compliance, rule_id=rule.pk, data={"rule_type": "adv", "enabled": False}
    )
    rule.refresh_from_db()
    assert not rule.enabled


def test_stale_price_rule_uses_trading_days(pm, book) -> None:
    only_rules(ComplianceRule.objects.get(scope="firm", rule_type="stale_price"))
    old = book.fresh - timedelta(days=20)
    ddd = factories.SecurityFactory(ticker="DDD", sector="Tech")
    factories.PriceFactory(security=ddd, price=Decimal("10"), as_of=old)
    basket = make_basket(pm)
    add_order(basket, book.breached, ddd, "buy", "10", "10")
    outcome = basket_compliance_check(basket=basket, actor=pm)
    assert outcome.hard_failures == 1
    assert outcome.results[0].message.startswith(
        f"Account {book.breached.account_number} (Breached): the price of DDD is from {old}, "
        "older than 3 trading days (cutoff "
    )


def test_the_admin_refuses_a_rule_with_invalid_parameters(admin_client):
    from compliance.models import ComplianceRule

    before = ComplianceRule.objects.count()
    response = admin_client.post(
        "/admin/compliance/compliancerule/add/",
        {
            "rule_type": "concentration",
            "name": "Bad limits",
            "parameters": '{"max_security_weight": "abc"}',
            "severity": "hard",
            "scope": "firm",
            "enabled": "on",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "max_security_weight must be a number between" in response.content.decode()
    assert ComplianceRule.objects.count() == before
