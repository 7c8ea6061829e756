"""The audit trail pages: who may open them, filters, paging, htmx partials, an object's
timeline, and the verify button (intact and after tampering)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from compliance.audit_chain import VerifyResult
from compliance.models import AuditEvent
from compliance.selectors import AUDIT_FORBIDDEN
from compliance.services.audit import audit_record
from compliance.views import AUDIT_PAGE_SIZE

AUDIT_LIST = reverse("compliance:audit_list")
VERIFY = reverse("compliance:audit_verify")
HTMX = {"HTTP_HX_REQUEST": "true"}


def _tamper(sql: str, params: list) -> None:
    """Change an audit row behind the application's back (as an attacker with DB access would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # a superuser can switch user triggers off for the session: the chain still tells
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("RESET session_replication_role")


def _seqs(response) -> list[int]:
    return [row.event.seq for row in response.context["rows"]]


def _intact_message(checked: int, head: int) -> str:
    return f"Audit chain intact: {checked} events verified (head #{head})."


# ---------------------------------------------------------------------------
# Permission matrix
# ---------------------------------------------------------------------------

ENDPOINTS = [
    ("get", AUDIT_LIST),
    ("get", reverse("compliance:audit_timeline", args=["auth.user", "1"])),
    ("get", reverse("compliance:audit_export")),
    ("post", VERIFY),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_audit_pages_send_anonymous_visitors_to_the_login_page(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@pytest.mark.parametrize("persona", ["pm", "ops", "outsider"])
def test_audit_pages_refuse_users_without_the_compliance_or_admin_role(
    client, request, persona, method, url
):
    client.force_login(request.getfixturevalue(persona))
    before = AuditEvent.objects.count()
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert AUDIT_FORBIDDEN == "Only Compliance and Admin users may read the audit trail."
    assert AUDIT_FORBIDDEN in response.content.decode()
    assert AuditEvent.objects.count() == before  # no export or verify event for a refusal


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@pytest.mark.parametrize("persona", ["compliance", "admin_user"])
def test_audit_pages_open_for_compliance_and_admin_users(client, request, persona, method, url):
    client.force_login(request.getfixturevalue(persona))
    response = getattr(client, method)(url, **HTMX)
    assert response.status_code == 200


# ---------------------------------------------------------------------------
# The list: filters, paging, htmx
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_list_shows_events_newest_first_with_every_column(client, compliance):
    event = audit_record(
        actor="system:test",
        action="test.columns",
        object_type="portfolios.account",
        object_id=42,
        before={"status": "active"},
        after={"status": "frozen"},
        reason="client asked",
        request_id="req-123",
        ip="10.0.0.7",
    )
    client.force_login(compliance)
    response = client.get(AUDIT_LIST)
    html = response.content.decode()
    seqs = _seqs(response)
    assert seqs == sorted(seqs, reverse=True)
    assert event.seq in seqs
    timeline = reverse("compliance:audit_timeline", args=["portfolios.account", "42"])
    assert f'<a href="{timeline}">portfolios.account:42</a>' in html
    for text in ("system:test", "test.columns", "client asked", "req-123", "10.0.0.7"):
        assert text in html
    assert "<pre>{\n  &quot;status&quot;: &quot;active&quot;\n}</pre>" in html
    assert "<pre>{\n  &quot;status&quot;: &quot;frozen&quot;\n}</pre>" in html
    for label in ("Actor", "Action", "Object type", "Object id", "From", "To"):
        assert f"<label>{label} " in html


@pytest.fixture
def trail(db, pm, ops):
    """Events by two actors, on two objects, on two dates."""
    january = datetime(2024, 1, 10, 15, 0, tzinfo=UTC)
    march = datetime(2024, 3, 10, 15, 0, tzinfo=UTC)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timezone, "now", lambda: january)
        a = audit_record(
            actor=pm, action="basket.submit", object_type="orders.tradebasket", object_id=1
        )
        b = audit_record(
            actor=ops, action="basket.approve", object_type="orders.tradebasket", object_id=1
        )
        mp.setattr(timezone, "now", lambda: march)
        c = audit_record(
            actor=pm, action="basket.submit", object_type="orders.tradebasket", object_id=2
        )
        d = audit_record(
            actor=ops,
            action="restriction.create",
            object_type="compliance.restriction",
            object_id=1,
        )
    return {"a": a, "b": b, "c": c, "d": d}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "ops"}, ["d", "b"]),
        ({"action": "basket.submit"}, ["c", "a"]),
        ({"action": "basket."}, ["c", "b", "a"]),
        ({"object_type": "orders.tradebasket", "object_id": "1"}, ["b", "a"]),
        ({"date_from": "2024-02-01"}, ["d", "c"]),
        ({"date_to": "2024-02-01"}, ["b", "a"]),
        ({"actor": "pm", "date_from": "2024-02-01"}, ["c"]),
    ],
)
def test_audit_list_filters_narrow_the_rows(client, compliance, trail, query, expected):
    client.force_login(compliance)
    response = client.get(AUDIT_LIST, {**query, "date_to": query.get("date_to", "2024-12-31")})
    assert _seqs(response) == [trail[key].seq for key in expected]


@pytest.mark.django_db
def test_audit_list_reports_an_unusable_filter_instead_of_hiding_it(client, compliance, trail):
    client.force_login(compliance)
    response = client.get(AUDIT_LIST, {"date_from": "not-a-date", "actor": "ops"}, **HTMX)
    assert "These filters were not applied: From: Enter a valid date." in response.content.decode()
    assert _seqs(response) == [trail["d"].seq, trail["b"].seq]


@pytest.mark.django_db
def test_audit_list_answers_htmx_with_the_rows_partial_only(client, compliance, trail):
    client.force_login(compliance)
    response = client.get(AUDIT_LIST, {"action": "restriction."}, **HTMX)
    html = response.content.decode()
    assert "<html" not in html
    assert 'class="audit-row"' in html
    assert _seqs(response) == [trail["d"].seq]
    assert f'href="{reverse("compliance:audit_export")}?action=restriction."' in html
    assert "HX-Request" in response["Vary"]
    assert "no-store" in response["Cache-Control"]
    full = client.get(AUDIT_LIST, {"action": "restriction."})
    assert '<div id="audit-rows" hx-history="false">' in full.content.decode()
    assert 'hx-get="/compliance/audit/"' in full.content.decode()


@pytest.mark.django_db
def test_audit_list_answers_an_htmx_history_restore_with_the_full_page(client, compliance):
    client.force_login(compliance)
    response = client.get(
        AUDIT_LIST, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert "<html" in response.content.decode()


@pytest.mark.django_db
def test_audit_list_pages_by_fifty_and_keeps_the_filters(client, compliance):
    for i in range(AUDIT_PAGE_SIZE + 3):
        audit_record(actor="system:test", action="test.paging", after={"i": i})
    client.force_login(compliance)
    first = client.get(AUDIT_LIST, {"action": "test.paging"})
    assert len(_seqs(first)) == AUDIT_PAGE_SIZE
    assert 'href="?action=test.paging&amp;page=2"' in first.content.decode()
    second = client.get(AUDIT_LIST, {"action": "test.paging", "page": 2})
    assert len(_seqs(second)) == 3
    assert min(_seqs(first)) > max(_seqs(second))


@pytest.mark.django_db
def test_audit_list_query_count_does_not_grow_with_the_rows(
    client, compliance, django_assert_max_num_queries
):
    client.force_login(compliance)
    counts = []
    for n in (5, 40):
        for i in range(n):
            audit_record(actor="system:test", action="test.count", after={"i": i})
        with django_assert_max_num_queries(20) as ctx:
            client.get(AUDIT_LIST)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------
# Timeline
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_timeline_lists_one_objects_events_oldest_first(client, compliance, trail):
    client.force_login(compliance)
    url = reverse("compliance:audit_timeline", args=["orders.tradebasket", "1"])
    response = client.get(url)
    assert _seqs(response) == [trail["a"].seq, trail["b"].seq]
    html = response.content.decode()
    assert html.index("basket.submit") < html.index("basket.approve")
    assert "orders.tradebasket:1" in html


@pytest.mark.django_db
def test_audit_timeline_shows_before_and_after_and_accepts_free_text_ids(client, compliance):
    audit_record(
        actor="anonymous:a/b",
        action="test.freetext",
        object_type="auth.user",
        object_id="a/b",
        before={"n": 1},
        after={"n": 2},
    )
    client.force_login(compliance)
    listing = client.get(AUDIT_LIST, {"action": "test.freetext"}).content.decode()
    url = reverse("compliance:audit_timeline", args=["auth.user", "a/b"])
    assert f'href="{url}"' in listing
    html = client.get(url).content.decode()
    assert "<pre>{\n  &quot;n&quot;: 1\n}</pre>" in html
    assert "<pre>{\n  &quot;n&quot;: 2\n}</pre>" in html


# ---------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_verify_button_reports_an_intact_chain_and_records_the_check(client, compliance):
    audit_record(actor="system:test", action="test.one")
    client.force_login(compliance)
    head = AuditEvent.objects.order_by("-seq").first()
    response = client.post(VERIFY, **HTMX)
    assert response.status_code == 200
    assert _intact_message(head.seq, head.seq) in response.content.decode()
    assert 'role="status"' in response.content.decode()
    recorded = AuditEvent.objects.order_by("-seq").first()
    assert (recorded.seq, recorded.action, recorded.actor) == (
        head.seq + 1,
        "audit.verify",
        compliance,
    )
    assert recorded.after == {"ok": True, "checked": head.seq, "broken_seq": None}


@pytest.mark.django_db
def test_verify_button_names_the_altered_event(client, compliance):
    events = [audit_record(actor="system:test", action=f"test.{i}") for i in range(3)]
    client.force_login(compliance)
    _tamper("UPDATE compliance_auditevent SET reason = 'x' WHERE id = %s", [events[1].pk])
    response = client.post(VERIFY, **HTMX)
    expected = VerifyResult(
        False,
        0,
        0,
        "",
        events[1].pk,
        events[1].seq,
        "stored hash does not match the event's contents (the row was altered)",
    ).message
    assert expected == (
        f"Audit chain BROKEN at event id {events[1].pk}, sequence {events[1].seq}: "
        "stored hash does not match the event's contents (the row was altered)"
    )
    assert expected.replace("'", "&#x27;") in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    recorded = AuditEvent.objects.order_by("-seq").first()
    assert recorded.action == "audit.verify"
    assert recorded.after == {
        "ok": False,
        "checked": events[1].seq - 1,
        "broken_seq": events[1].seq,
    }


@pytest.mark.django_db
def test_verify_without_htmx_redirects_to_the_trail_with_the_result(client, compliance):
    client.force_login(compliance)
    head = AuditEvent.objects.order_by("-seq").first()
    response = client.post(VERIFY, follow=True)
    assert response.redirect_chain == [(AUDIT_LIST, 302)]
    assert _intact_message(head.seq, head.seq) in response.content.decode()


@pytest.mark.django_db
def test_verify_refuses_get(client, compliance):
    client.force_login(compliance)
    assert client.get(VERIFY).status_code == 405
