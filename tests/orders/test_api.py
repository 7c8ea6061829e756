"""The orders API: who may read and act on baskets (the permission matrix: anonymous 401,
no role or another team 404 for objects, wrong role 403), conflicts 409 with the current
state, four-eyes through the API, the Idempotency-Key header (replay, 422, 409), orders,
compliance results and overrides, rules and restrictions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule, Restriction
from orders.models import BasketState, TradeBasket
from rebalance_app.models import IdempotencyKey, IdempotencyStatus
from tests.orders.conftest import make_basket, make_run

pytestmark = pytest.mark.django_db


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def post(user, url, data=None, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client_for(user).post(url, data or {}, format="json", **headers)


@pytest.fixture
def basket_url(draft):
    return f"/api/v1/baskets/{draft.pk}/"


# ---------------------------------------------------------------------------
# Reading baskets: the matrix
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "list_count", "detail"),
    [
        (None, None, 401),
        ("outsider", 0, 404),
        ("pm", 1, 200),
        ("other_pm", 0, 404),
        ("ops", 1, 200),
        ("compliance", 1, 200),
        ("admin_user", 1, 200),
    ],
)
def test_basket_reads_follow_the_visibility_matrix(request, who, list_count, detail, basket_url):
    user = request.getfixturevalue(who) if who else None
    listing = client_for(user).get("/api/v1/baskets/")
    if list_count is None:
        assert listing.status_code == 401
    else:
        assert listing.status_code == 200
        assert listing.json()["count"] == list_count
    assert client_for(user).get(basket_url).status_code == detail


def test_the_basket_detail_has_orders_lots_results_and_history(pm, account_a, security, checks):
    checks.plan = [("warning", False)]
    basket = make_basket(
        creator=pm, account=account_a, security=security, sell_lot=account_a.lots.get()
    )
    post(pm, f"/api/v1/baskets/{basket.pk}/submit/", {"comment": "Go"})
    body = client_for(pm).get(f"/api/v1/baskets/{basket.pk}/").json()
    assert body["state"] == "pending_approval"
    assert body["order_count"] == 2
    sell = next(o for o in body["orders"] if o["side"] == "sell")
    assert sell["lots"][0]["quantity"] == "2.000000"
    assert [r["severity"] for r in body["compliance_results"]] == ["warning"]
    assert [e["action"] for e in body["history"]] == ["basket.submitted", "basket.checked"]
    assert body["history"][0]["reason"] == "Go"


def test_baskets_filter_by_state_team_and_date(pm, ops, draft, account_b, security, other_pm):
    make_basket(creator=other_pm, account=account_b, security=security, state="approved")
    api = client_for(ops)
    assert api.get("/api/v1/baskets/", {"state": "draft"}).json()["count"] == 1
    assert api.get("/api/v1/baskets/", {"team": "Team B"}).json()["count"] == 1
    assert api.get("/api/v1/baskets/", {"date_from": "2999-01-01"}).json()["count"] == 0
    assert api.get("/api/v1/baskets/").json()["count"] == 2


def test_a_pm_makes_a_basket_from_runs(pm, account_a, security):
    run = make_run(account=account_a, security=security, creator=pm)
    response = post(pm, "/api/v1/baskets/", {"runs": [run.pk], "name": "Q4"})
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["state"], body["runs"]) == ("Q4", "draft", [run.pk])
    assert body["orders"][0]["quantity"] == "3.000000"


# ---------------------------------------------------------------------------
# Actions: 403, 404, 409 and four-eyes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "action", "status"),
    [
        (None, "submit", 401),
        ("outsider", "submit", 404),
        ("other_pm", "submit", 404),
        ("ops", "submit", 403),
        ("compliance", "cancel", 403),
        ("pm", "approve", 403),
        ("compliance", "approve", 403),
        ("other_pm", "approve", 404),
        ("pm", "reject", 403),
        ("ops", "cancel", 403),
        ("pm", "cancel", 200),
        ("admin_user", "cancel", 200),
    ],
)
def test_basket_actions_answer_by_role_and_team(request, who, action, status, draft, checks):
    user = request.getfixturevalue(who) if who else None
    response = post(user, f"/api/v1/baskets/{draft.pk}/{action}/", {"comment": "x"})
    assert response.status_code == status
    draft.refresh_from_db()
    assert draft.state == ("cancelled" if status == 200 else "draft")
    if status in (403, 404):
        assert set(response.json()) == {"message", "extra"}


def test_the_full_flow_through_the_api_with_four_eyes(pm, ops, draft, checks):
    checks.plan = [("warning", False)]
    submitted = post(pm, f"/api/v1/baskets/{draft.pk}/submit/", {"comment": "Please"})
    assert submitted.status_code == 200
    assert submitted.json()["state"] == "pending_approval"
    again = post(pm, f"/api/v1/baskets/{draft.pk}/submit/")
    assert again.status_code == 409
    assert again.json() == {
        "message": f"Basket {draft.pk} is pending approval: it cannot be submitted.",
        "extra": {"state": "pending_approval", "basket": draft.pk},
    }
    refused = post(pm, f"/api/v1/baskets/{draft.pk}/approve/")
    assert refused.status_code == 403
    unacknowledged = post(ops, f"/api/v1/baskets/{draft.pk}/approve/")
    assert unacknowledged.status_code == 400
    assert len(unacknowledged.json()["extra"]["warnings"]) == 1
    approved = post(ops, f"/api/v1/baskets/{draft.pk}/approve/", {"acknowledge_warnings": True})
    assert approved.status_code == 200
    assert approved.json()["approved_by"] == "ops"
    assert len(approved.json()["approved_hash"]) == 64
    assert checks.calls == 1


def test_the_submitter_with_the_ops_role_gets_the_four_eyes_message(pm, draft, checks):
    from django.contrib.auth.models import Group

    pm.groups.add(Group.objects.get_or_create(name="Ops")[0])
    post(pm, f"/api/v1/baskets/{draft.pk}/submit/")
    pm = type(pm).objects.get(pk=pm.pk)
    response = post(pm, f"/api/v1/baskets/{draft.pk}/approve/")
    assert response.status_code == 403
    assert response.json()["message"] == (
        f"Four-eyes rule: you created, edited or submitted basket {draft.pk}, so someone else "
        "must approve it."
    )


def test_reject_without_a_comment_is_400_and_changes_nothing(ops, draft):
    TradeBasket.objects.filter(pk=draft.pk).update(state=BasketState.PENDING_APPROVAL)
    response = post(ops, f"/api/v1/baskets/{draft.pk}/reject/", {"comment": ""})
    assert response.status_code == 400
    assert response.json()["message"] == "Say why the basket is rejected: a comment is required."
    draft.refresh_from_db()
    assert draft.state == "pending_approval"


def test_a_manual_order_through_the_api(pm, draft, account_a, msft):
    url = f"/api/v1/baskets/{draft.pk}/orders/"
    bad = post(
        pm, url, {"account": account_a.pk, "security": msft.pk, "side": "buy", "quantity": "-1"}
    )
    assert bad.status_code == 400
    assert bad.json()["message"] == "Quantity must be a positive number of shares, not -1."
    ok = post(
        pm, url, {"account": account_a.pk, "security": msft.pk, "side": "buy", "quantity": "2"}
    )
    assert ok.status_code == 201
    assert ok.json()["reason"] == "manual"
    assert draft.orders.count() == 2


def test_a_draft_order_is_changed_and_removed_through_the_api(pm, other_pm, draft, account_a, msft):
    added = post(
        pm,
        f"/api/v1/baskets/{draft.pk}/orders/",
        {"account": account_a.pk, "security": msft.pk, "side": "buy", "quantity": "2"},
    ).json()
    url = f"/api/v1/baskets/{draft.pk}/orders/{added['id']}/"

    assert client_for(other_pm).patch(url, {"quantity": "5"}, format="json").status_code == 404
    bad = client_for(pm).patch(url, {"quantity": "0"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["message"] == "Quantity must be a positive number of shares, not 0."
    changed = client_for(pm).patch(url, {"quantity": "5"}, format="json")
    assert changed.status_code == 200
    assert Decimal(changed.json()["quantity"]) == 5

    assert client_for(pm).delete(url).status_code == 204
    assert not draft.orders.filter(pk=added["id"]).exists()
    assert client_for(pm).delete(url).status_code == 404


# ---------------------------------------------------------------------------
# Idempotency-Key
# ---------------------------------------------------------------------------


def test_an_identical_retry_replays_the_first_response(pm, draft, checks):
    url = f"/api/v1/baskets/{draft.pk}/submit/"
    first = post(pm, url, {"comment": "Go"}, key="k-1")
    retry = post(pm, url, {"comment": "Go"}, key="k-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert checks.calls == 1
    assert AuditEvent.objects.filter(action="basket.submitted").count() == 1
    key = IdempotencyKey.objects.get(key="k-1")
    assert (key.status, key.response_status, key.method) == ("done", 200, "POST")


def test_an_error_answer_is_replayed_too(ops, draft):
    url = f"/api/v1/baskets/{draft.pk}/approve/"
    first = post(ops, url, key="k-err")
    assert first.status_code == 409
    TradeBasket.objects.filter(pk=draft.pk).update(state=BasketState.PENDING_APPROVAL)
    retry = post(ops, url, key="k-err")
    assert (retry.status_code, retry.json()) == (409, first.json())
    draft.refresh_from_db()
    assert draft.state == "pending_approval"


def test_the_same_key_with_another_body_or_path_answers_422(pm, draft, checks):
    url = f"/api/v1/baskets/{draft.pk}/submit/"
    post(pm, url, {"comment": "Go"}, key="k-2")
    other_body = post(pm, url, {"comment": "Different"}, key="k-2")
    assert other_body.status_code == 422
    assert other_body.json()["message"] == (
        "Idempotency-Key 'k-2' was already used for a different request: use a new key for a "
        "new request."
    )
    other_path = post(pm, f"/api/v1/baskets/{draft.pk}/cancel/", {"comment": "Go"}, key="k-2")
    assert other_path.status_code == 422
    draft.refresh_from_db()
    assert draft.state == "pending_approval"


def test_a_retry_while_the_first_is_in_flight_answers_409(pm, draft, checks):
    from rebalance_app.idempotency import request_fingerprint

    url = f"/api/v1/baskets/{draft.pk}/submit/"
    IdempotencyKey.objects.create(
        key="k-3",
        user=pm,
        method="POST",
        path=url,
        request_hash=request_fingerprint(method="POST", path=url, body={"comment": "Go"}),
        status=IdempotencyStatus.IN_FLIGHT,
    )
    response = post(pm, url, {"comment": "Go"}, key="k-3")
    assert response.status_code == 409
    assert response.json()["message"] == (
        "A request with Idempotency-Key 'k-3' is still being processed: retry when it is done."
    )
    draft.refresh_from_db()
    assert draft.state == "draft"
    assert checks.calls == 0


def test_keys_belong_to_their_user(pm, ops, ops2, draft, checks):
    post(pm, f"/api/v1/baskets/{draft.pk}/submit/", key="shared")
    first = post(ops, f"/api/v1/baskets/{draft.pk}/approve/", key="shared")
    second = post(ops2, f"/api/v1/baskets/{draft.pk}/approve/", key="shared")
    assert first.status_code == 200
    assert second.status_code == 409  # a new request of ops2, refused by the state


# ---------------------------------------------------------------------------
# Orders, compliance results, rules, restrictions
# ---------------------------------------------------------------------------


def test_orders_are_listed_by_visibility(pm, other_pm, ops, draft):
    assert client_for(pm).get("/api/v1/orders/").json()["count"] == 1
    assert client_for(other_pm).get("/api/v1/orders/").json()["count"] == 0
    assert client_for(ops).get("/api/v1/orders/", {"basket": draft.pk}).json()["count"] == 1
    order = draft.orders.get()
    assert client_for(other_pm).get(f"/api/v1/orders/{order.pk}/").status_code == 404


def test_compliance_results_are_listed_by_visibility(pm, other_pm, draft, checks):
    checks.plan = [("hard", False), ("warning", True)]
    post(pm, f"/api/v1/baskets/{draft.pk}/submit/")
    assert client_for(pm).get("/api/v1/compliance-results/").json()["count"] == 2
    failed = client_for(pm).get("/api/v1/compliance-results/", {"passed": "false"}).json()
    assert [r["severity"] for r in failed["results"]] == ["hard"]
    assert client_for(other_pm).get("/api/v1/compliance-results/").json()["count"] == 0


def test_override_through_the_api_needs_compliance_and_a_justification(
    pm, other_pm, compliance, ops, draft, checks
):
    pytest.importorskip("compliance.services.checks")
    checks.plan = [("hard", False)]
    post(pm, f"/api/v1/baskets/{draft.pk}/submit/")
    result = ComplianceResult.objects.get(basket=draft)
    url = f"/api/v1/compliance-results/{result.pk}/override/"
    justification = {"justification": "Client consent on file, ticket 42."}
    assert post(other_pm, url, justification).status_code == 404
    assert post(ops, url, justification).status_code == 403
    assert post(compliance, url, {"justification": ""}).status_code == 400
    draft.refresh_from_db()
    assert draft.state == "compliance_hold"
    response = post(compliance, url, justification)
    assert response.status_code == 201
    assert response.json()["override"]["overridden_by"] == "compliance"
    draft.refresh_from_db()
    assert draft.state == "pending_approval"


@pytest.mark.parametrize(
    ("who", "status"), [("pm", 200), ("ops", 200), ("compliance", 200), ("outsider", 403)]
)
def test_compliance_rules_are_readable_by_every_role(request, who, status):
    ComplianceRule.objects.create(rule_type="short_sale", name="No short sales")
    response = client_for(request.getfixturevalue(who)).get("/api/v1/compliance-rules/")
    assert response.status_code == status


def test_compliance_manages_restrictions_and_each_change_is_audited(
    compliance, pm, other_pm, security, account_b
):
    body = {"scope": "firm", "security": security.pk, "kind": "no_buy", "reason": "Earnings"}
    assert post(pm, "/api/v1/restrictions/", body).status_code == 403
    created = post(compliance, "/api/v1/restrictions/", body, key="r-1")
    assert created.status_code == 201
    restriction = Restriction.objects.get()
    assert restriction.created_by == compliance
    assert AuditEvent.objects.filter(action="restriction.created").count() == 1
    patched = client_for(compliance).patch(
        f"/api/v1/restrictions/{restriction.pk}/", {"kind": "no_trade"}, format="json"
    )
    assert patched.status_code == 200
    event = AuditEvent.objects.get(action="restriction.updated")
    assert (event.before, event.after) == ({"kind": "no_buy"}, {"kind": "no_trade"})
    assert (
        client_for(pm)
        .patch(f"/api/v1/restrictions/{restriction.pk}/", {"kind": "no_buy"}, format="json")
        .status_code
        == 403
    )
    # another team's account restriction is not listed for a PM
    Restriction.objects.create(
        scope="account", account=account_b, sector="Energy", kind="no_buy", reason="Client"
    )
    assert client_for(pm).get("/api/v1/restrictions/").json()["count"] == 1
    assert client_for(other_pm).get("/api/v1/restrictions/").json()["count"] == 2


def test_an_invalid_restriction_is_refused_with_the_problem_named(compliance, security):
    body = {"scope": "household", "security": security.pk, "kind": "no_buy", "reason": "x"}
    response = post(compliance, "/api/v1/restrictions/", body)
    assert response.status_code == 400
    assert response.json()["message"] == "A household restriction needs a household."
    assert not Restriction.objects.exists()


def test_compliance_creates_and_changes_rules_through_the_api(compliance, pm):
    body = {
        "rule_type": "concentration",
        "name": "Max 10% per security",
        "parameters": {"max_security_weight": 0.1},
        "severity": "warning",
    }
    assert post(pm, "/api/v1/compliance-rules/", body).status_code == 403
    created = post(compliance, "/api/v1/compliance-rules/", body)
    assert created.status_code == 201
    assert created.json()["parameters"]["max_security_weight"] == 0.1
    url = f"/api/v1/compliance-rules/{created.json()['id']}/"
    bad = client_for(compliance).patch(
        url, {"parameters": {"max_security_weight": "abc"}}, format="json"
    )
    assert bad.status_code == 400
    assert "max_security_weight" in bad.json()["message"]
    ok = client_for(compliance).patch(url, {"enabled": False}, format="json")
    assert (ok.status_code, ok.json()["enabled"]) == (200, False)
    assert AuditEvent.objects.filter(object_type="compliance.compliancerule").count() == 2


@pytest.mark.parametrize(
    "path", ["/api/v1/baskets/", "/api/v1/orders/", "/api/v1/compliance-results/"]
)
def test_api_lists_use_a_constant_number_of_queries(path, pm, account_a, security, checks):
    checks.plan = [("warning", False)]

    def add(n):
        for _ in range(n):
            basket = make_basket(
                creator=pm, account=account_a, security=security, sell_lot=account_a.lots.get()
            )
            basket.runs.add(make_run(account=account_a, security=security, creator=pm))
            services_submit(pm, basket)

    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert client_for(pm).get(path).status_code == 200
        return len(ctx.captured_queries)

    add(2)
    small = count()
    add(8)
    assert count() == small


def services_submit(user, basket):
    from orders.services import basket_submit

    basket_submit(actor=user, basket_id=basket.pk)


def test_an_expired_key_may_be_used_for_a_new_request(pm, draft, checks):
    from datetime import timedelta

    from django.utils import timezone

    url = f"/api/v1/baskets/{draft.pk}/cancel/"
    IdempotencyKey.objects.create(
        key="old",
        user=pm,
        method="POST",
        path="/elsewhere/",
        request_hash="0" * 64,
        status=IdempotencyStatus.DONE,
        response_status=200,
        response_body={},
        created_at=timezone.now() - timedelta(hours=25),
    )
    response = post(pm, url, {"comment": "Changed my mind"}, key="old")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert IdempotencyKey.objects.get(key="old").path == url


def test_without_the_header_a_double_click_is_refused_by_the_state(pm, draft, checks):
    url = f"/api/v1/baskets/{draft.pk}/submit/"
    assert post(pm, url).status_code == 200
    assert post(pm, url).status_code == 409
    assert checks.calls == 1
    assert not IdempotencyKey.objects.exists()


def test_an_unexpected_error_does_not_keep_the_key(pm, draft, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("orders.api.views.basket_submit", boom)
    with pytest.raises(RuntimeError):
        post(pm, f"/api/v1/baskets/{draft.pk}/submit/", key="k-boom")
    assert not IdempotencyKey.objects.filter(key="k-boom").exists()


def test_the_schema_lists_every_orders_path_with_the_idempotency_header(pm):
    schema = client_for(pm).get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    for action in ("submit", "approve", "reject", "cancel", "orders"):
        post_op = paths[f"/api/v1/baskets/{{id}}/{action}/"]["post"]
        assert "Idempotency-Key" in [p["name"] for p in post_op.get("parameters", [])]
    assert set(paths["/api/v1/baskets/"]) == {"get", "post"}
    assert set(paths["/api/v1/restrictions/{id}/"]) == {"get", "patch"}
    assert set(paths["/api/v1/compliance-rules/{id}/"]) == {"get", "patch"}
    assert "post" in paths["/api/v1/compliance-results/{id}/override/"]
    assert set(paths["/api/v1/orders/{id}/"]) == {"get"}
