"""The basket pages and the restricted-list and rule pages: who may open what (a generated
permission matrix: anonymous → login, no role → 403, another team's basket → 404), the list's
filters and query budget at two sizes, the Ops queue's order, the action buttons shown only to
those who may use them, POSTs by the wrong person refused with the service's exact message and
nothing changed, the happy paths (submit, approve with acknowledged warnings, reject, cancel,
override), and the Compliance forms (create, edit, refusals).

Baskets are built by hand (``tests/orders/conftest.py``); submissions go through the real
``basket_submit`` with the compliance engine replaced by the ``checks`` stand-in, whose plan
decides which results fail.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from compliance.models import (
    AuditEvent,
    ComplianceResult,
    ComplianceRule,
    Override,
    Restriction,
)
from compliance.services.checks import (
    MSG_JUSTIFICATION,
    MSG_OVERRIDE_ROLE,
    MSG_RULE_TARGET,
    compliance_override_create,
)
from compliance.services.restrictions import MSG_FORBIDDEN as MSG_RESTRICTION_FORBIDDEN
from compliance.services.restrictions import MSG_ONE_SUBJECT
from compliance.views_rules import EDIT_FORBIDDEN
from orders.models import BasketState, TradeBasket
from orders.services import (
    MSG_ACK_WARNINGS,
    MSG_BAD_STATE,
    MSG_COMMENT_REQUIRED,
    MSG_FOUR_EYES,
    MSG_NOT_OPS,
    MSG_NOT_TRADER,
    basket_submit,
)
from orders.views import BASKETS_PER_PAGE, DONE, QUEUE_FORBIDDEN
from tests.orders.conftest import make_basket

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "pm", "other_pm", "ops", "compliance", "admin_user", "outsider")
LIST_QUERY_BUDGET = 12


def _client(client, request, persona: str):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def _html(response) -> str:
    return response.content.decode()


def _state(basket: TradeBasket) -> str:
    basket.refresh_from_db()
    return basket.state


@pytest.fixture
def lot_a(account_a):
    return account_a.lots.get()


@pytest.fixture
def pending(pm, account_a, security, lot_a, checks):
    """Team A's basket (a buy and a sell of a lot), submitted by ``pm``, with one failed warning."""
    checks.plan = [("hard", True), ("warning", False)]
    basket = make_basket(creator=pm, account=account_a, security=security, sell_lot=lot_a)
    return basket_submit(actor=pm, basket_id=basket.pk, comment="please approve")


@pytest.fixture
def on_hold(pm, account_a, security, checks):
    """Team A's basket on compliance hold: one hard failure."""
    checks.plan = [("hard", False)]
    basket = make_basket(creator=pm, account=account_a, security=security)
    basket = basket_submit(actor=pm, basket_id=basket.pk)
    assert basket.state == BasketState.COMPLIANCE_HOLD
    return basket


@pytest.fixture
def basket_b(other_pm, account_b, security):
    return make_basket(creator=other_pm, account=account_b, security=security)


# ---------------------------------------------------------------------------
# Permission matrix
# ---------------------------------------------------------------------------

PAGE_MATRIX = {
    # page: expected status per persona (anonymous is always sent to the login page)
    "list": {
        "pm": 200,
        "other_pm": 200,
        "ops": 200,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    "queue": {
        "pm": 403,
        "other_pm": 403,
        "ops": 200,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    "detail": {
        "pm": 200,
        "other_pm": 404,
        "ops": 200,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 404,
    },
    "restrictions": {
        "pm": 200,
        "other_pm": 200,
        "ops": 200,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    "rules": {
        "pm": 200,
        "other_pm": 200,
        "ops": 200,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    "restriction_new": {
        "pm": 403,
        "other_pm": 403,
        "ops": 403,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    "rule_new": {
        "pm": 403,
        "other_pm": 403,
        "ops": 403,
        "compliance": 200,
        "admin_user": 200,
        "outsider": 403,
    },
}


def _page_url(page: str, basket: TradeBasket) -> str:
    return {
        "list": reverse("orders:basket_list"),
        "queue": reverse("orders:basket_queue"),
        "detail": reverse("orders:basket_detail", args=[basket.pk]),
        "restrictions": reverse("compliance:restriction_list"),
        "rules": reverse("compliance:rule_list"),
        "restriction_new": reverse("compliance:restriction_create"),
        "rule_new": reverse("compliance:rule_create"),
    }[page]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page_name", list(PAGE_MATRIX))
def test_each_page_answers_each_persona_as_the_matrix_says(
    client, request, draft, persona, page_name
):
    url = _page_url(page_name, draft)
    response = _client(client, request, persona).get(url)
    if persona == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == PAGE_MATRIX[page_name][persona], url


def test_the_queue_refusal_says_who_may_open_it(client, pm):
    client.force_login(pm)
    response = client.get(reverse("orders:basket_queue"))
    assert response.status_code == 403
    assert escape(QUEUE_FORBIDDEN) in _html(response)


def test_an_unknown_basket_answers_404_like_another_teams(client, pm, basket_b):
    client.force_login(pm)
    assert client.get(reverse("orders:basket_detail", args=[basket_b.pk])).status_code == 404
    assert client.get(reverse("orders:basket_detail", args=[999999])).status_code == 404


# ---------------------------------------------------------------------------
# List
# ---------------------------------------------------------------------------


def test_a_pm_lists_only_baskets_whose_accounts_are_all_their_teams(
    client, pm, draft, basket_b, account_a, account_b, security
):
    mixed = make_basket(creator=pm, account=account_a, security=security)
    make_basket(creator=pm, account=account_b, security=security).orders.update(basket=mixed)
    client.force_login(pm)
    html = _html(client.get(reverse("orders:basket_list")))
    assert f'data-basket="{draft.pk}"' in html
    assert f'data-basket="{basket_b.pk}"' not in html
    assert f'data-basket="{mixed.pk}"' not in html  # one order in team B's account


def test_ops_list_every_basket_with_team_and_totals(client, ops, draft, basket_b):
    client.force_login(ops)
    response = client.get(reverse("orders:basket_list"))
    baskets = {b.pk: b for b in response.context["baskets"]}
    assert set(baskets) >= {draft.pk, basket_b.pk}
    assert baskets[draft.pk].teams == ["Team A"]
    assert baskets[basket_b.pk].teams == ["Team B"]
    assert baskets[draft.pk].order_count == 1
    assert baskets[draft.pk].gross_notional == Decimal("750")


def test_the_list_filters_by_state_team_and_date(client, ops, draft, basket_b, pending):
    client.force_login(ops)
    url = reverse("orders:basket_list")

    def listed(**params) -> set[int]:
        return {b.pk for b in client.get(url, params).context["baskets"]}

    assert listed(state="pending_approval") == {pending.pk}
    assert listed(state="draft") == {draft.pk, basket_b.pk}
    assert listed(team="Team B") == {basket_b.pk}
    TradeBasket.objects.filter(pk=draft.pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate()
    assert listed(date_from=today.isoformat()) == {basket_b.pk, pending.pk}
    assert listed(date_to=(today - timedelta(days=5)).isoformat()) == {draft.pk}


def test_the_list_keeps_its_query_count_at_two_sizes(
    client, ops, account_a, security, pm, django_assert_max_num_queries
):
    client.force_login(ops)
    url = reverse("orders:basket_list")
    for size in (2, BASKETS_PER_PAGE + 5):
        while TradeBasket.objects.count() < size:
            make_basket(creator=pm, account=account_a, security=security)
        with django_assert_max_num_queries(LIST_QUERY_BUDGET):
            response = client.get(url)
        assert response.status_code == 200
    assert len(response.context["baskets"]) == BASKETS_PER_PAGE


# ---------------------------------------------------------------------------
# Queue
# ---------------------------------------------------------------------------


def test_the_queue_lists_pending_and_held_baskets_oldest_first_with_the_hold_marked(
    client, ops, pending, on_hold, draft
):
    TradeBasket.objects.filter(pk=on_hold.pk).update(
        submitted_at=timezone.now() - timedelta(hours=3)
    )
    client.force_login(ops)
    response = client.get(reverse("orders:basket_queue"))
    assert [b.pk for b in response.context["baskets"]] == [on_hold.pk, pending.pk]
    html = _html(response)
    assert f'<tr data-basket="{on_hold.pk}" class="on-hold">' in html
    assert f'<tr data-basket="{pending.pk}">' in html
    assert f'data-basket="{draft.pk}"' not in html


# ---------------------------------------------------------------------------
# Detail: content and buttons
# ---------------------------------------------------------------------------


def test_the_detail_shows_orders_lots_totals_results_and_history(client, ops, pending, lot_a):
    client.force_login(ops)
    response = client.get(reverse("orders:basket_detail", args=[pending.pk]))
    html = _html(response)
    assert response.context["totals"].bought == Decimal("750")
    assert response.context["totals"].sold == Decimal("300")
    # 140 short-term gain (the lot is not long_term) at the account's 37% rate
    assert response.context["totals"].est_tax == Decimal("51.80")
    assert "<td>ST</td>" in html
    assert [r.passed for r in response.context["results"]] == [False, True]
    assert "Test warning rule 1 failed" in html
    actions = [e.action for e in response.context["history"]]
    assert actions[:2] == ["basket.submitted", "basket.checked"]
    assert "please approve" in html


BUTTONS = ("submit-form", "cancel-form", "approve-form", "reject-form")


def _buttons(html: str) -> set[str]:
    return {b for b in BUTTONS if f'id="{b}"' in html}


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("pm", {"submit-form", "cancel-form"}),
        ("admin_user", {"submit-form", "cancel-form"}),
        ("ops", set()),
        ("compliance", set()),
    ],
)
def test_a_draft_shows_submit_and_cancel_only_to_its_team(
    client, request, draft, persona, expected
):
    client.force_login(request.getfixturevalue(persona))
    html = _html(client.get(reverse("orders:basket_detail", args=[draft.pk])))
    assert _buttons(html) == expected


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("pm", {"cancel-form"}),
        ("ops", {"approve-form", "reject-form"}),
        ("ops2", {"approve-form", "reject-form"}),
        ("compliance", set()),
    ],
)
def test_a_pending_basket_shows_approve_only_to_ops_who_did_not_submit_it(
    client, request, pending, persona, expected
):
    client.force_login(request.getfixturevalue(persona))
    html = _html(client.get(reverse("orders:basket_detail", args=[pending.pk])))
    assert _buttons(html) == expected
    if "approve-form" in expected:
        warning = ComplianceResult.objects.get(basket=pending, passed=False)
        assert f'name="acknowledge" value="{warning.pk}"' in html


def test_the_submitter_sees_no_approve_button_even_as_ops(
    client, admin_user, account_a, security, checks
):
    basket = make_basket(creator=admin_user, account=account_a, security=security)
    basket_submit(actor=admin_user, basket_id=basket.pk)
    client.force_login(admin_user)
    html = _html(client.get(reverse("orders:basket_detail", args=[basket.pk])))
    assert _buttons(html) == {"cancel-form"}


def test_a_held_basket_shows_the_override_form_only_to_compliance(
    client, compliance, ops, pm, on_hold
):
    result = ComplianceResult.objects.get(basket=on_hold)
    form = f'id="override-form-{result.pk}"'
    client.force_login(compliance)
    assert form in _html(client.get(reverse("orders:basket_detail", args=[on_hold.pk])))
    for user in (ops, pm):
        client.force_login(user)
        html = _html(client.get(reverse("orders:basket_detail", args=[on_hold.pk])))
        assert form not in html
        assert "approve-form" not in html


def test_compliance_gets_a_link_to_the_baskets_audit_timeline(client, compliance, ops, pending):
    url = reverse("compliance:audit_timeline", args=["orders.tradebasket", pending.pk])
    client.force_login(compliance)
    assert url in _html(client.get(reverse("orders:basket_detail", args=[pending.pk])))
    client.force_login(ops)
    assert url not in _html(client.get(reverse("orders:basket_detail", args=[pending.pk])))


# ---------------------------------------------------------------------------
# Refused POSTs: the service's message, nothing changed
# ---------------------------------------------------------------------------


def _audit_count() -> int:
    return AuditEvent.objects.count()


def test_the_submitter_cannot_approve_by_the_page(client, pm, pending):
    client.force_login(pm)
    before = _audit_count()
    response = client.post(reverse("orders:basket_approve", args=[pending.pk]), {"comment": "self"})
    assert response.status_code == 403
    assert escape(MSG_NOT_OPS) in _html(response)
    assert _state(pending) == BasketState.PENDING_APPROVAL
    assert _audit_count() == before


def test_an_ops_user_who_submitted_a_basket_is_refused_by_the_four_eyes_rule(
    client, admin_user, account_a, security, checks
):
    basket = make_basket(creator=admin_user, account=account_a, security=security)
    basket_submit(actor=admin_user, basket_id=basket.pk)
    client.force_login(admin_user)
    before = _audit_count()
    response = client.post(reverse("orders:basket_approve", args=[basket.pk]))
    assert response.status_code == 403
    assert escape(MSG_FOUR_EYES.format(basket=basket.pk)) in _html(response)
    assert _state(basket) == BasketState.PENDING_APPROVAL
    assert _audit_count() == before


def test_approving_without_acknowledging_every_warning_is_refused(client, ops, pending):
    client.force_login(ops)
    response = client.post(
        reverse("orders:basket_approve", args=[pending.pk]), {"comment": "looks fine"}
    )
    assert response.status_code == 400
    html = _html(response)
    assert escape(MSG_ACK_WARNINGS.format(basket=pending.pk, count=1)) in html
    assert "looks fine</textarea>" in html  # what was typed is kept
    assert _state(pending) == BasketState.PENDING_APPROVAL


def test_ops_approve_after_acknowledging_the_warning(client, ops, pending):
    warning = ComplianceResult.objects.get(basket=pending, passed=False)
    client.force_login(ops)
    response = client.post(
        reverse("orders:basket_approve", args=[pending.pk]),
        {"comment": "ok", "acknowledge": [warning.pk]},
        follow=True,
    )
    assert DONE["approve"].format(basket=pending.pk) in _html(response)
    pending.refresh_from_db()
    assert (pending.state, pending.approved_by) == (BasketState.APPROVED, ops)
    event = AuditEvent.objects.get(action="basket.approved")
    assert (event.reason, event.after["acknowledged_warnings"]) == ("ok", [warning.pk])


def test_approving_twice_answers_409_with_the_state(client, ops, ops2, pending):
    warning = ComplianceResult.objects.get(basket=pending, passed=False)
    data = {"acknowledge": [warning.pk]}
    client.force_login(ops)
    client.post(reverse("orders:basket_approve", args=[pending.pk]), data)
    client.force_login(ops2)
    response = client.post(reverse("orders:basket_approve", args=[pending.pk]), data)
    assert response.status_code == 409
    assert escape(MSG_BAD_STATE.format(basket=pending.pk, state="approved", verb="approved")) in (
        _html(response)
    )
    assert AuditEvent.objects.filter(action="basket.approved").count() == 1


def test_rejecting_needs_a_comment(client, ops, pending):
    client.force_login(ops)
    response = client.post(
        reverse("orders:basket_reject", args=[pending.pk]), {"reject-comment": "  "}
    )
    assert response.status_code == 400
    assert escape(MSG_COMMENT_REQUIRED) in _html(response)
    assert _state(pending) == BasketState.PENDING_APPROVAL
    response = client.post(
        reverse("orders:basket_reject", args=[pending.pk]),
        {"reject-comment": "too concentrated"},
    )
    assert response.status_code == 302
    assert _state(pending) == BasketState.REJECTED
    assert AuditEvent.objects.get(action="basket.rejected").reason == "too concentrated"


def test_ops_cannot_submit_or_cancel_a_pms_basket(client, ops, draft):
    client.force_login(ops)
    for name in ("orders:basket_submit", "orders:basket_cancel"):
        response = client.post(reverse(name, args=[draft.pk]))
        assert response.status_code == 403
        assert escape(MSG_NOT_TRADER.format(basket=draft.pk)) in _html(response)
    assert _state(draft) == BasketState.DRAFT


@pytest.mark.parametrize(
    "name",
    [
        "orders:basket_submit",
        "orders:basket_cancel",
        "orders:basket_approve",
        "orders:basket_reject",
    ],
)
def test_another_teams_pm_gets_404_from_every_action(client, other_pm, draft, name):
    client.force_login(other_pm)
    before = _audit_count()
    assert client.post(reverse(name, args=[draft.pk])).status_code == 404
    assert _state(draft) == BasketState.DRAFT
    assert _audit_count() == before


def test_the_pm_submits_and_a_second_submit_is_refused(client, pm, draft, checks):
    checks.plan = [("hard", True)]
    client.force_login(pm)
    url = reverse("orders:basket_submit", args=[draft.pk])
    response = client.post(url, {"comment": "rebalance"}, follow=True)
    assert DONE["submit"].format(basket=draft.pk, state="pending approval") in _html(response)
    assert _state(draft) == BasketState.PENDING_APPROVAL
    response = client.post(url)
    assert response.status_code == 409
    assert escape(
        MSG_BAD_STATE.format(basket=draft.pk, state="pending approval", verb="submitted")
    ) in _html(response)
    assert checks.calls == 1


def test_the_pm_cancels_a_draft(client, pm, draft):
    client.force_login(pm)
    response = client.post(reverse("orders:basket_cancel", args=[draft.pk]), {"comment": "no"})
    assert response.status_code == 302
    assert _state(draft) == BasketState.CANCELLED


def test_only_compliance_overrides_and_only_with_a_justification(client, ops, compliance, on_hold):
    result = ComplianceResult.objects.get(basket=on_hold)
    url = reverse("orders:basket_override", args=[on_hold.pk, result.pk])
    client.force_login(ops)
    response = client.post(url, {"justification": "a long enough reason"})
    assert response.status_code == 403
    assert escape(MSG_OVERRIDE_ROLE) in _html(response)
    client.force_login(compliance)
    response = client.post(url, {"justification": "short"})
    assert response.status_code == 400
    assert escape(MSG_JUSTIFICATION) in _html(response)
    assert not Override.objects.exists()
    assert _state(on_hold) == BasketState.COMPLIANCE_HOLD

    response = client.post(url, {"justification": "Client instructed in writing."}, follow=True)
    assert response.status_code == 200
    override = Override.objects.get(result=result)
    assert (override.overridden_by, override.justification) == (
        compliance,
        "Client instructed in writing.",
    )
    assert _state(on_hold) == BasketState.PENDING_APPROVAL
    html = _html(response)
    assert f'id="override-{result.pk}"' in html
    assert "Client instructed in writing." in html


def test_an_override_of_a_result_of_another_basket_is_404(client, compliance, on_hold, draft):
    result = ComplianceResult.objects.get(basket=on_hold)
    client.force_login(compliance)
    url = reverse("orders:basket_override", args=[draft.pk, result.pk])
    assert client.post(url, {"justification": "a long enough reason"}).status_code == 404


def test_an_already_overridden_result_shows_who_and_why(client, ops, compliance, on_hold):
    result = ComplianceResult.objects.get(basket=on_hold)
    compliance_override_create(
        actor=compliance, result_id=result.pk, justification="Approved by the CCO today."
    )
    client.force_login(ops)
    html = _html(client.get(reverse("orders:basket_detail", args=[on_hold.pk])))
    assert "By compliance" in html
    assert "Approved by the CCO today." in html
    assert "compliance.override" in html  # in the history


# ---------------------------------------------------------------------------
# Restricted list and rules
# ---------------------------------------------------------------------------


def test_compliance_creates_and_edits_a_restriction(client, compliance, security):
    client.force_login(compliance)
    response = client.post(
        reverse("compliance:restriction_create"),
        {"scope": "firm", "security": security.pk, "kind": "no_buy", "reason": "Watch list"},
    )
    assert response.status_code == 302
    restriction = Restriction.objects.get()
    assert (restriction.kind, restriction.security, restriction.created_by) == (
        "no_buy",
        security,
        compliance,
    )
    response = client.post(
        reverse("compliance:restriction_edit", args=[restriction.pk]),
        {"scope": "firm", "security": security.pk, "kind": "no_trade", "reason": "Watch list"},
    )
    assert response.status_code == 302
    restriction.refresh_from_db()
    assert restriction.kind == "no_trade"
    event = AuditEvent.objects.get(action="restriction.updated")
    assert (event.before, event.after) == ({"kind": "no_buy"}, {"kind": "no_trade"})
    assert "Watch list" in _html(client.get(reverse("compliance:restriction_list")))


def test_a_restriction_with_two_subjects_is_refused_with_the_services_message(
    client, compliance, security
):
    client.force_login(compliance)
    response = client.post(
        reverse("compliance:restriction_create"),
        {
            "scope": "firm",
            "security": security.pk,
            "sector": "Tech",
            "kind": "no_buy",
            "reason": "x",
        },
    )
    assert response.status_code == 400
    assert escape(MSG_ONE_SUBJECT) in _html(response)
    assert not Restriction.objects.exists()


def test_a_pm_cannot_post_a_restriction(client, pm, security):
    client.force_login(pm)
    response = client.post(
        reverse("compliance:restriction_create"),
        {"scope": "firm", "security": security.pk, "kind": "no_buy", "reason": "x"},
    )
    assert response.status_code == 403
    assert escape(EDIT_FORBIDDEN) in _html(response)
    assert not Restriction.objects.exists()


def test_the_restriction_service_refuses_a_pm(pm, security):
    from compliance.services.restrictions import restriction_create
    from rebalance_app.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied) as exc:
        restriction_create(actor=pm, scope="firm", security=security, kind="no_buy", reason="x")
    assert exc.value.message == MSG_RESTRICTION_FORBIDDEN


def test_a_pm_sees_firm_restrictions_and_their_own_households_only(
    client, pm, compliance, security, household_a, household_b
):
    from compliance.services.restrictions import restriction_create

    for scope, household, reason in (
        ("firm", None, "Firm wide"),
        ("household", household_a, "Alpha only"),
        ("household", household_b, "Beta only"),
    ):
        restriction_create(
            actor=compliance,
            scope=scope,
            household=household,
            security=security,
            kind="no_buy",
            reason=reason,
        )
    client.force_login(pm)
    html = _html(client.get(reverse("compliance:restriction_list")))
    assert "Firm wide" in html
    assert "Alpha only" in html
    assert "Beta only" not in html
    assert "new-restriction" not in html


def test_compliance_creates_a_rule_and_bad_json_or_parameters_are_refused(client, compliance):
    seeded = ComplianceRule.objects.count()  # the default rules of the data migration
    client.force_login(compliance)
    url = reverse("compliance:rule_create")
    base = {
        "rule_type": "concentration",
        "name": "Max 20%",
        "severity": "warning",
        "scope": "firm",
        "enabled": "on",
    }
    response = client.post(url, {**base, "parameters": "{not json"})
    assert response.status_code == 400
    assert "Parameters must be JSON" in _html(response)
    response = client.post(url, {**base, "parameters": '{"max_security_weight": "abc"}'})
    assert response.status_code == 400
    assert "max_security_weight" in _html(response)
    response = client.post(url, {**base, "scope": "model", "parameters": "{}"})
    assert response.status_code == 400
    assert escape(MSG_RULE_TARGET["model"]) in _html(response)
    assert ComplianceRule.objects.count() == seeded
    response = client.post(url, {**base, "parameters": '{"max_security_weight": 0.2}'})
    assert response.status_code == 302
    rule = ComplianceRule.objects.get(name="Max 20%")
    assert (rule.severity, rule.parameters["max_security_weight"]) == ("warning", 0.2)

    response = client.post(
        reverse("compliance:rule_edit", args=[rule.pk]),
        {
            **base,
            "rule_type": "wash_sale",
            "name": "Max 20%",
            "enabled": "",
            "parameters": '{"max_security_weight": 0.2}',
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.rule_type, rule.enabled) == ("concentration", False)  # the type is fixed
    assert AuditEvent.objects.filter(action="compliance.rule_changed").count() == 1


def test_ops_cannot_post_a_rule(client, ops):
    client.force_login(ops)
    response = client.post(
        reverse("compliance:rule_create"),
        {"rule_type": "short_sale", "name": "x", "severity": "hard", "scope": "firm"},
    )
    assert response.status_code == 403
    assert not ComplianceRule.objects.filter(name="x").exists()


# ---------------------------------------------------------------------------
# Navigation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "approvals"),
    [("pm", False), ("ops", True), ("compliance", False), ("admin_user", True)],
)
def test_the_nav_links_baskets_and_rules_for_every_role_and_approvals_for_ops(
    client, request, persona, approvals
):
    client.force_login(request.getfixturevalue(persona))
    html = _html(client.get(reverse("home")))
    assert f'href="{reverse("orders:basket_list")}"' in html
    assert f'href="{reverse("compliance:rule_list")}"' in html
    assert (f'href="{reverse("orders:basket_queue")}"' in html) is approvals


def test_an_outsider_has_no_basket_links(client, outsider):
    client.force_login(outsider)
    html = _html(client.get(reverse("home")))
    assert reverse("orders:basket_list") not in html


def test_a_pm_adds_changes_and_removes_manual_orders_on_a_draft_page(
    client, pm, ops, draft, account_a, msft
):
    client.force_login(pm)
    url = f"/baskets/{draft.pk}/"
    page = client.get(url).content.decode()
    assert 'id="order-add-form"' in page
    before = draft.orders.count()

    unknown = client.post(
        f"{url}orders/", {"account": account_a.pk, "side": "buy", "ticker": "NOPE", "quantity": "3"}
    )
    assert unknown.status_code == 400
    assert "Unknown ticker &#x27;NOPE&#x27;." in unknown.content.decode()
    assert draft.orders.count() == before

    added = client.post(
        f"{url}orders/", {"account": account_a.pk, "side": "buy", "ticker": "msft", "quantity": "3"}
    )
    assert added.status_code == 302
    order = draft.orders.get(security=msft)
    assert order.quantity == 3

    bad = client.post(f"{url}orders/{order.pk}/", {"quantity": "-2"})
    assert bad.status_code == 400
    assert "Quantity must be a positive number of shares, not -2." in bad.content.decode()
    assert client.post(f"{url}orders/{order.pk}/", {"quantity": "7"}).status_code == 302
    order.refresh_from_db()
    assert order.quantity == 7

    assert client.post(f"{url}orders/{order.pk}/remove/").status_code == 302
    assert draft.orders.count() == before

    client.force_login(ops)
    assert 'id="order-add-form"' not in client.get(url).content.decode()
    refused = client.post(
        f"{url}orders/", {"account": account_a.pk, "side": "buy", "ticker": "MSFT", "quantity": "1"}
    )
    assert refused.status_code in (403, 404)
    assert draft.orders.count() == before
