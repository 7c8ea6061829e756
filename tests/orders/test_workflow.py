"""The basket workflow (DESIGN 7): the transition table pair by pair, every service action in
every state (allowed ones move, forbidden ones answer 409 and change nothing), four-eyes,
warning acknowledgements, the approval hash, reject and cancel, compliance holds and their
release, manual order edits while draft, and an intact audit chain after the whole flow."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from guardian.shortcuts import assign_perm

from compliance.models import AuditEvent, ComplianceResult, Override
from orders.models import BasketState, Order, TradeBasket
from orders.services import (
    ACTIVE_STATES,
    basket_approve,
    basket_cancel,
    basket_order_add,
    basket_order_remove,
    basket_order_update,
    basket_orders_hash,
    basket_reject,
    basket_release_hold,
    basket_submit,
)
from orders.workflow import (
    CANCELLABLE,
    TRANSITIONS,
    orders_canonical,
    orders_hash,
    transition_allowed,
)
from rebalance_app.exceptions import (
    FourEyesViolation,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from rebalance_app.roles import Role
from tests import factories
from tests.orders.conftest import make_basket

S = BasketState
ALL_STATES = list(S.values)

# Written out by hand from DESIGN 7, independently of orders.workflow.TRANSITIONS.
ALLOWED = {
    ("draft", "submitted"),
    ("draft", "cancelled"),
    ("submitted", "pending_approval"),
    ("submitted", "compliance_hold"),
    ("submitted", "cancelled"),
    ("pending_approval", "approved"),
    ("pending_approval", "rejected"),
    ("pending_approval", "cancelled"),
    ("compliance_hold", "pending_approval"),
    ("compliance_hold", "rejected"),
    ("compliance_hold", "cancelled"),
    ("approved", "routing"),
    ("approved", "compliance_hold"),
    ("approved", "cancelled"),
    ("routing", "routed"),
    ("routing", "cancelled"),
    ("routed", "partially_filled"),
    ("routed", "filled"),
    ("partially_filled", "filled"),
}


# ---------------------------------------------------------------------------
# The pure table
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("current", ALL_STATES)
@pytest.mark.parametrize("target", ALL_STATES)
def test_transition_table_allows_exactly_the_designed_pairs(current, target):
    assert transition_allowed(current, target) is ((current, target) in ALLOWED)


def test_transition_table_covers_every_state_and_cancel_stops_at_routed():
    assert set(TRANSITIONS) == set(ALL_STATES)
    assert set(CANCELLABLE) == {
        "draft",
        "submitted",
        "pending_approval",
        "compliance_hold",
        "approved",
        "routing",
    }
    assert not transition_allowed("unknown", "draft")


def test_orders_hash_is_sha256_of_the_canonical_json_whatever_the_order_of_rows():
    a = {
        "account": 2,
        "security": 7,
        "side": "sell",
        "quantity": Decimal("2"),
        "order_type": "market",
        "limit_price": None,
        "lots": [(11, Decimal("1.5")), (10, "0.5")],
    }
    b = {"account": 1, "security": 7, "side": "buy", "quantity": 3, "lots": []}
    canonical = (
        '[{"account":1,"limit_price":null,"lots":[],"order_type":"market","quantity":"3.000000",'
        '"security":7,"side":"buy"},{"account":2,"limit_price":null,"lots":[[10,"0.500000"],'
        '[11,"1.500000"]],"order_type":"market","quantity":"2.000000","security":7,'
        '"side":"sell"}]'
    )
    assert orders_canonical([a, b]) == canonical
    assert orders_hash([b, a]) == hashlib.sha256(canonical.encode()).hexdigest()
    assert orders_hash([a, {**b, "quantity": "3.000001"}]) != orders_hash([a, b])


# ---------------------------------------------------------------------------
# Every action in every state
# ---------------------------------------------------------------------------

ACTIONS = {
    "submit": ({"draft"}, "pending_approval"),
    "approve": ({"pending_approval"}, "approved"),
    "reject": ({"pending_approval", "compliance_hold"}, "rejected"),
    "cancel": (set(CANCELLABLE), "cancelled"),
}
VERBS = {"submit": "submitted", "approve": "approved", "reject": "rejected", "cancel": "cancelled"}


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_action_moves_only_from_its_states_and_refuses_the_rest_unchanged(
    name, state, pm, ops, account_a, security, checks
):
    basket = make_basket(creator=pm, account=account_a, security=security, state=state)
    events = AuditEvent.objects.count()
    call = {
        "submit": lambda: basket_submit(actor=pm, basket_id=basket.pk),
        "approve": lambda: basket_approve(actor=ops, basket_id=basket.pk),
        "reject": lambda: basket_reject(
            actor=ops, basket_id=basket.pk, comment="Too much turnover"
        ),
        "cancel": lambda: basket_cancel(actor=pm, basket_id=basket.pk),
    }[name]
    sources, target = ACTIONS[name]
    if state in sources:
        assert call().state == target
        basket.refresh_from_db()
        assert basket.state == target
        assert AuditEvent.objects.count() > events
    else:
        with pytest.raises(InvalidTransition) as info:
            call()
        label = S(state).label.lower()
        assert info.value.message == f"Basket {basket.pk} is {label}: it cannot be {VERBS[name]}."
        assert info.value.extra == {"state": state, "basket": basket.pk}
        basket.refresh_from_db()
        assert basket.state == state
        assert AuditEvent.objects.count() == events
        assert checks.calls == 0


# ---------------------------------------------------------------------------
# Submit
# ---------------------------------------------------------------------------


def test_submit_runs_compliance_once_and_a_second_submit_changes_nothing(draft, pm, checks):
    checks.plan = [("hard", True), ("warning", True)]
    basket = basket_submit(actor=pm, basket_id=draft.pk, comment="Quarterly rebalance")
    assert basket.state == S.PENDING_APPROVAL
    assert basket.submitted_by == pm
    assert basket.submitted_at is not None
    submitted = AuditEvent.objects.get(action="basket.submitted", object_id=str(draft.pk))
    assert submitted.reason == "Quarterly rebalance"
    assert submitted.before == {"state": "draft"}
    checked = AuditEvent.objects.get(action="basket.checked", object_id=str(draft.pk))
    assert checked.after == {
        "state": "pending_approval",
        "check_run": 1,
        "hard_failures": 0,
        "warnings": 0,
    }
    with pytest.raises(InvalidTransition) as info:
        basket_submit(actor=pm, basket_id=draft.pk)
    assert info.value.extra["state"] == "pending_approval"
    assert checks.calls == 1
    assert ComplianceResult.objects.filter(basket=draft).count() == 2


def test_a_hard_failure_puts_the_basket_on_compliance_hold(draft, pm, checks):
    checks.plan = [("hard", False)]
    assert basket_submit(actor=pm, basket_id=draft.pk).state == S.COMPLIANCE_HOLD


def test_an_empty_basket_cannot_be_submitted(pm, checks):
    basket = TradeBasket.objects.create(name="Empty", created_by=pm)
    with pytest.raises(ValidationFailed) as info:
        basket_submit(actor=pm, basket_id=basket.pk)
    assert info.value.message == f"Basket {basket.pk} has no orders: add one before submitting."
    basket.refresh_from_db()
    assert basket.state == S.DRAFT
    assert checks.calls == 0


def test_another_team_cannot_see_the_basket_and_ops_cannot_submit_it(draft, other_pm, ops, checks):
    with pytest.raises(NotFound) as info:
        basket_submit(actor=other_pm, basket_id=draft.pk)
    assert info.value.message == f"Basket {draft.pk} not found."
    with pytest.raises(PermissionDenied) as info:
        basket_submit(actor=ops, basket_id=draft.pk)
    assert info.value.message == f"You may view basket {draft.pk} but not trade its accounts."
    draft.refresh_from_db()
    assert draft.state == S.DRAFT
    assert checks.calls == 0


# ---------------------------------------------------------------------------
# Approve: role, four-eyes, warnings, the hash
# ---------------------------------------------------------------------------


@pytest.fixture
def pending(pm, account_a, security, checks):
    lot = account_a.lots.get()
    basket = make_basket(creator=pm, account=account_a, security=security, sell_lot=lot)
    basket_submit(actor=pm, basket_id=basket.pk)
    return basket


def test_ops_approves_and_the_approval_is_bound_to_the_hash_of_the_orders(pending, ops):
    basket = basket_approve(actor=ops, basket_id=pending.pk, comment="Looks right")
    assert basket.state == S.APPROVED
    assert basket.approved_by == ops
    assert basket.approved_hash == basket_orders_hash(basket=basket)
    assert len(basket.approved_hash) == 64
    event = AuditEvent.objects.get(action="basket.approved", object_id=str(pending.pk))
    assert event.reason == "Looks right"
    assert event.after["approved_hash"] == basket.approved_hash
    # the hash sees any change of quantity, lots or side
    order = Order.objects.get(basket=pending, side="sell")
    lot = order.lots.get()
    lot.quantity = Decimal("1")
    lot.save()
    assert basket_orders_hash(basket=basket) != basket.approved_hash


@pytest.mark.parametrize("who", ["pm", "other_pm", "compliance", "outsider"])
def test_only_ops_or_admin_may_approve(pending, who, request):
    user = request.getfixturevalue(who)
    error = NotFound if who in ("other_pm", "outsider") else PermissionDenied
    with pytest.raises(error) as info:
        basket_approve(actor=user, basket_id=pending.pk)
    if error is PermissionDenied:
        assert info.value.message == "Only Operations may approve or reject a basket."
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL


FOUR_EYES = (
    "Four-eyes rule: you created, edited or submitted basket {id}, so someone else must approve it."
)


def test_the_submitter_never_approves_even_with_the_ops_role(pending, pm):
    pm.groups.add(Group.objects.get_or_create(name=Role.OPS.value)[0])
    pm = type(pm).objects.get(pk=pm.pk)  # a fresh object: roles are cached per instance
    with pytest.raises(FourEyesViolation) as info:
        basket_approve(actor=pm, basket_id=pending.pk)
    assert info.value.message == FOUR_EYES.format(id=pending.pk)
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL
    assert not AuditEvent.objects.filter(action="basket.approved").exists()


def test_admin_may_do_anything_except_approve_a_basket_they_created(
    admin_user, account_a, security, checks, ops
):
    basket = make_basket(creator=admin_user, account=account_a, security=security)
    basket_submit(actor=admin_user, basket_id=basket.pk)
    with pytest.raises(FourEyesViolation) as info:
        basket_approve(actor=admin_user, basket_id=basket.pk)
    assert info.value.message == FOUR_EYES.format(id=basket.pk)
    assert basket_approve(actor=ops, basket_id=basket.pk).state == S.APPROVED


def test_an_editor_of_the_basket_may_not_approve_it(pm, account_a, security, msft, checks, ops):
    # A second member of team A who is also Ops edits pm's draft, then pm submits.
    editor = factories.UserFactory(username="pm_ops")
    editor.groups.add(
        Group.objects.get(name="Team A"),
        Group.objects.get_or_create(name=Role.PM.value)[0],
        Group.objects.get_or_create(name=Role.OPS.value)[0],
    )
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket_order_add(
        actor=editor,
        basket_id=basket.pk,
        account_id=account_a.pk,
        security_id=msft.pk,
        side="buy",
        quantity="1",
    )
    basket_submit(actor=pm, basket_id=basket.pk)
    with pytest.raises(FourEyesViolation):
        basket_approve(actor=editor, basket_id=basket.pk)
    assert basket_approve(actor=ops, basket_id=basket.pk).approved_by == ops


def test_failed_warnings_must_be_acknowledged(pm, ops, account_a, security, checks):
    checks.plan = [("warning", False), ("hard", True), ("warning", True)]
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket_submit(actor=pm, basket_id=basket.pk)
    warning = ComplianceResult.objects.get(basket=basket, passed=False)
    with pytest.raises(ValidationFailed) as info:
        basket_approve(actor=ops, basket_id=basket.pk)
    assert info.value.message == (
        f"Basket {basket.pk} has 1 compliance warning(s): acknowledge them to approve."
    )
    assert info.value.extra == {
        "warnings": [
            {"result": warning.pk, "rule": "Test warning rule 0", "message": warning.message}
        ]
    }
    basket.refresh_from_db()
    assert basket.state == S.PENDING_APPROVAL
    basket_approve(actor=ops, basket_id=basket.pk, acknowledge_warnings=True)
    event = AuditEvent.objects.get(action="basket.approved")
    assert event.after["acknowledged_warnings"] == [warning.pk]


def test_approving_twice_approves_once(pending, ops, ops2):
    basket_approve(actor=ops, basket_id=pending.pk)
    with pytest.raises(InvalidTransition) as info:
        basket_approve(actor=ops2, basket_id=pending.pk)
    assert info.value.extra["state"] == "approved"
    pending.refresh_from_db()
    assert pending.approved_by == ops
    assert AuditEvent.objects.filter(action="basket.approved").count() == 1


# ---------------------------------------------------------------------------
# Reject, cancel, holds
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("comment", ["", "   "])
def test_reject_needs_a_comment(pending, ops, comment):
    with pytest.raises(ValidationFailed) as info:
        basket_reject(actor=ops, basket_id=pending.pk, comment=comment)
    assert info.value.message == "Say why the basket is rejected: a comment is required."
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL


def test_reject_records_the_comment_and_frees_the_runs(pending, ops):
    basket_reject(actor=ops, basket_id=pending.pk, comment="Wrong model")
    event = AuditEvent.objects.get(action="basket.rejected")
    assert (event.reason, event.before, event.after) == (
        "Wrong model",
        {"state": "pending_approval"},
        {"state": "rejected"},
    )
    assert S.REJECTED not in ACTIVE_STATES


def test_the_pm_cancels_an_approved_basket_with_a_comment(pending, pm, ops):
    basket_approve(actor=ops, basket_id=pending.pk)
    basket_cancel(actor=pm, basket_id=pending.pk, comment="Client called")
    pending.refresh_from_db()
    assert pending.state == S.CANCELLED
    assert AuditEvent.objects.get(action="basket.cancelled").reason == "Client called"


def test_a_hold_is_released_once_every_hard_failure_is_overridden(
    pm, ops2, compliance, account_a, security, checks
):
    checks.plan = [("hard", False), ("hard", False), ("warning", False)]
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket_submit(actor=pm, basket_id=basket.pk)
    first, second = ComplianceResult.objects.filter(basket=basket, severity="hard")
    Override.objects.create(result=first, overridden_by=compliance, justification="Approved by CCO")
    assert basket_release_hold(basket=basket, actor=compliance).state == S.COMPLIANCE_HOLD
    Override.objects.create(
        result=second, overridden_by=compliance, justification="Approved by CCO"
    )
    with pytest.raises(PermissionDenied) as info:
        basket_release_hold(basket=basket, actor=pm)
    assert info.value.message == "Only Compliance may release a compliance hold."
    assert basket_release_hold(basket=basket, actor=compliance).state == S.PENDING_APPROVAL
    assert AuditEvent.objects.filter(action="basket.hold_released").count() == 1
    # released again: nothing changes
    assert basket_release_hold(basket=basket, actor=compliance).state == S.PENDING_APPROVAL
    assert AuditEvent.objects.filter(action="basket.hold_released").count() == 1
    assert (
        basket_approve(actor=ops2, basket_id=basket.pk, acknowledge_warnings=True).state
        == S.APPROVED
    )


def test_a_basket_on_hold_cannot_be_approved_but_may_be_rejected(
    pm, ops, account_a, security, checks
):
    checks.plan = [("hard", False)]
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket_submit(actor=pm, basket_id=basket.pk)
    with pytest.raises(InvalidTransition) as info:
        basket_approve(actor=ops, basket_id=basket.pk)
    assert info.value.message == f"Basket {basket.pk} is compliance hold: it cannot be approved."
    assert basket_reject(actor=ops, basket_id=basket.pk, comment="Restricted").state == S.REJECTED


def test_open_hard_failures_block_approval_even_in_pending_approval(pending, ops, checks):
    # e.g. a re-check added a failure after the hold was released
    rule_result = ComplianceResult.objects.create(
        rule=factories_rule(),
        basket=pending,
        check_run=5,
        passed=False,
        severity="hard",
        message="Cash overdraft",
    )
    with pytest.raises(InvalidTransition) as info:
        basket_approve(actor=ops, basket_id=pending.pk)
    assert info.value.message == (
        f"Basket {pending.pk} has 1 hard compliance failure(s) without an override: it cannot "
        "be approved."
    )
    assert info.value.extra["results"] == [rule_result.pk]


def factories_rule():
    from compliance.models import ComplianceRule

    return ComplianceRule.objects.create(rule_type="cash_overdraft", name="Cash overdraft")


# ---------------------------------------------------------------------------
# Manual order edits while draft
# ---------------------------------------------------------------------------


def test_a_pm_adds_updates_and_removes_manual_orders_in_a_draft(draft, pm, account_a, msft):
    order = basket_order_add(
        actor=pm,
        basket_id=draft.pk,
        account_id=account_a.pk,
        security_id=msft.pk,
        side="buy",
        quantity="2.5",
    )
    assert (order.reason, order.est_price, order.est_notional) == (
        "manual",
        Decimal("400"),
        Decimal("1000.00"),
    )
    order = basket_order_update(
        actor=pm, basket_id=draft.pk, order_id=order.pk, order_type="limit", limit_price="390"
    )
    assert (order.order_type, order.limit_price) == ("limit", Decimal("390"))
    basket_order_remove(actor=pm, basket_id=draft.pk, order_id=order.pk)
    assert not Order.objects.filter(pk=order.pk).exists()
    actions = list(
        AuditEvent.objects.filter(
            object_type="orders.tradebasket", object_id=str(draft.pk)
        ).values_list("action", flat=True)
    )
    assert actions == ["basket.order_removed", "basket.order_updated", "basket.order_added"]
    removed = AuditEvent.objects.get(action="basket.order_removed")
    assert removed.before["security"] == msft.pk
    assert set(draft.editors.all()) == {pm}


def test_shrinking_a_sell_trims_its_lot_instructions(pm, account_a, security):
    lot = account_a.lots.get()
    basket = make_basket(creator=pm, account=account_a, security=security, sell_lot=lot)
    sell = Order.objects.get(basket=basket, side="sell")
    basket_order_update(actor=pm, basket_id=basket.pk, order_id=sell.pk, quantity="1")
    instruction = sell.lots.get()
    assert (instruction.quantity, instruction.est_gain) == (Decimal("1"), Decimal("70.00"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("security_id", 999999, "Unknown security 999999."),
        ("quantity", "-3", "Quantity must be a positive number of shares, not -3."),
        ("quantity", "0", "Quantity must be a positive number of shares, not 0."),
        ("quantity", "abc", "Quantity must be a positive number of shares, not abc."),
        ("side", "short", "Side must be buy or sell, not 'short'."),
        ("order_type", "stop", "Order type must be market or limit, not 'stop'."),
    ],
)
def test_bad_manual_orders_are_refused_with_a_clear_message(
    draft, pm, account_a, msft, field, value, message
):
    args = {
        "actor": pm,
        "basket_id": draft.pk,
        "account_id": account_a.pk,
        "security_id": msft.pk,
        "side": "buy",
        "quantity": "1",
        field: value,
    }
    with pytest.raises(ValidationFailed) as info:
        basket_order_add(**args)
    assert info.value.message == message
    assert draft.orders.count() == 1


def test_an_order_for_an_account_the_pm_may_only_view_or_not_see_is_refused(
    draft, pm, account_b, msft
):
    args = {
        "actor": pm,
        "basket_id": draft.pk,
        "account_id": account_b.pk,
        "security_id": msft.pk,
        "side": "buy",
        "quantity": "1",
    }
    with pytest.raises(NotFound) as info:
        basket_order_add(**args)
    assert info.value.message == f"Account {account_b.pk} not found."
    assign_perm("portfolios.view_household", pm, account_b.household)
    pm = type(pm).objects.get(pk=pm.pk)
    with pytest.raises(PermissionDenied) as info:
        basket_order_add(**{**args, "actor": pm})
    assert info.value.message == f"You may view account {account_b.pk} but not trade it."
    assert draft.orders.count() == 1


def test_orders_cannot_change_after_submission(pending, pm, account_a, msft):
    order = pending.orders.first()
    with pytest.raises(InvalidTransition) as info:
        basket_order_update(actor=pm, basket_id=pending.pk, order_id=order.pk, quantity="1")
    assert info.value.message == (
        f"Basket {pending.pk} is pending approval: orders can only change while it is a draft."
    )
    with pytest.raises(InvalidTransition):
        basket_order_remove(actor=pm, basket_id=pending.pk, order_id=order.pk)
    order.refresh_from_db()
    assert order.quantity == Decimal("5")


# ---------------------------------------------------------------------------
# The trail after the whole flow
# ---------------------------------------------------------------------------


def test_the_audit_chain_verifies_after_the_whole_flow(
    pm, ops, ops2, compliance, account_a, security, msft, checks
):
    checks.plan = [("hard", False), ("warning", False)]
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket_order_add(
        actor=pm,
        basket_id=basket.pk,
        account_id=account_a.pk,
        security_id=msft.pk,
        side="buy",
        quantity="1",
    )
    basket_submit(actor=pm, basket_id=basket.pk, comment="Submit")
    hard = ComplianceResult.objects.get(basket=basket, severity="hard")
    Override.objects.create(result=hard, overridden_by=compliance, justification="Client consent")
    basket_release_hold(basket=basket, actor=compliance)
    with pytest.raises(FourEyesViolation):
        basket_approve(actor=_with_ops(pm), basket_id=basket.pk, acknowledge_warnings=True)
    basket_approve(actor=ops2, basket_id=basket.pk, acknowledge_warnings=True, comment="OK")
    basket_cancel(actor=pm, basket_id=basket.pk, comment="Market closed")
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith("Audit chain intact:")
    actions = list(
        AuditEvent.objects.filter(object_id=str(basket.pk), object_type="orders.tradebasket")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "basket.order_added",
        "basket.submitted",
        "basket.checked",
        "basket.hold_released",
        "basket.approved",
        "basket.cancelled",
    ]


def _with_ops(user):
    user.groups.add(Group.objects.get_or_create(name=Role.OPS.value)[0])
    return type(user).objects.get(pk=user.pk)


def test_with_the_real_engine_a_restricted_buy_is_held_overridden_and_approved(
    pm, ops2, compliance, account_a, security
):
    checks_module = pytest.importorskip("compliance.services.checks")
    from compliance.models import ComplianceRule, Restriction

    ComplianceRule.objects.exclude(rule_type="restricted_list").update(enabled=False)
    assert ComplianceRule.objects.filter(rule_type="restricted_list", enabled=True).exists()
    Restriction.objects.create(scope="firm", security=security, kind="no_buy", reason="MNPI")
    basket = make_basket(creator=pm, account=account_a, security=security)
    assert basket_submit(actor=pm, basket_id=basket.pk).state == S.COMPLIANCE_HOLD
    failed = ComplianceResult.objects.get(basket=basket, passed=False)
    assert failed.rule.rule_type == "restricted_list"
    with pytest.raises(PermissionDenied):
        checks_module.compliance_override_create(
            actor=pm, result_id=failed.pk, justification="I think it is fine"
        )
    checks_module.compliance_override_create(
        actor=compliance, result_id=failed.pk, justification="Pre-cleared by the CCO, ticket 7"
    )
    basket.refresh_from_db()
    assert basket.state == S.PENDING_APPROVAL
    assert basket_approve(actor=ops2, basket_id=basket.pk).state == S.APPROVED
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith("Audit chain intact:")


def test_whoever_proposed_or_edited_the_runs_may_not_approve_their_basket(
    pm, ops, account_a, security, checks
):
    from orders.services import basket_create_from_runs
    from tests.orders.conftest import make_run

    proposer = factories.UserFactory(username="proposer")
    trader = factories.UserFactory(username="trade_editor")
    for user in (proposer, trader):
        user.groups.add(Group.objects.get_or_create(name=Role.OPS.value)[0])
    run = make_run(account=account_a, security=security, creator=proposer)
    run.edits = [{"by": "trade_editor", "security": security.pk, "after": 3.0}]
    run.save()
    basket = basket_create_from_runs(actor=pm, run_ids=[run.pk])
    assert set(basket.editors.all()) == {pm, proposer, trader}
    basket_submit(actor=pm, basket_id=basket.pk)
    for user in (proposer, trader):
        with pytest.raises(FourEyesViolation):
            basket_approve(actor=user, basket_id=basket.pk)
    assert basket_approve(actor=ops, basket_id=basket.pk).state == S.APPROVED
