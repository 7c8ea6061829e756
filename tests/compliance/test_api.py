"""The audit-trail API: readable by Compliance and Admin only, with the audit page's filters,
and the chain verification as JSON (which names the first broken link)."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from compliance.selectors import AUDIT_FORBIDDEN
from compliance.services.audit import audit_checkpoint_write, audit_record

pytestmark = pytest.mark.django_db


def client_for(request: pytest.FixtureRequest, persona: str) -> APIClient:
    client = APIClient()
    if persona != "anonymous":
        # force_authenticate, not force_login: a login would add an auth.login event
        client.force_authenticate(request.getfixturevalue(persona))
    return client


@pytest.fixture
def events(pm, ops):
    return [
        audit_record(
            actor=pm,
            action="account.update",
            object_type="portfolios.account",
            object_id=7,
            before={"cash_reserve": "0"},
            after={"cash_reserve": "250"},
        ),
        audit_record(
            actor=ops, action="basket.approve", object_type="orders.tradebasket", object_id=3
        ),
        audit_record(
            actor="system:scan_drift",
            action="account.breach",
            object_type="portfolios.account",
            object_id=8,
        ),
    ]


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("anonymous", 401),
        ("outsider", 403),
        ("pm", 403),
        ("other_pm", 403),
        ("ops", 403),
        ("compliance", 200),
        ("admin_user", 200),
    ],
)
@pytest.mark.parametrize("path", ["", "{id}/", "verify/"])
def test_audit_events_are_readable_by_compliance_and_admin_only(
    request, events, persona, status, path
):
    url = "/api/v1/audit-events/" + path.format(id=events[0].pk)
    response = client_for(request, persona).get(url)
    assert response.status_code == status
    if status == 403:
        assert response.json() == {"message": AUDIT_FORBIDDEN, "extra": {}}


def test_audit_event_list_is_newest_first_with_before_and_after(request, events):
    body = client_for(request, "compliance").get("/api/v1/audit-events/").json()
    assert [row["seq"] for row in body["results"]] == [e.seq for e in reversed(events)]
    update = body["results"][-1]
    assert (update["action"], update["actor_label"], update["before"], update["after"]) == (
        "account.update",
        "pm",
        {"cash_reserve": "0"},
        {"cash_reserve": "250"},
    )
    assert update["hash"] == events[0].hash


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("action=account.", [2, 0]),
        ("action=basket.approve", [1]),
        ("actor=system", [2]),
        ("object_type=portfolios.account&object_id=7", [0]),
        ("date_from=2000-01-01&date_to=2999-12-31", [2, 1, 0]),
        ("date_to=2000-01-01", []),
    ],
)
def test_audit_event_filters_narrow_the_list(request, events, query, expected):
    body = client_for(request, "compliance").get(f"/api/v1/audit-events/?{query}").json()
    assert [row["id"] for row in body["results"]] == [events[i].pk for i in expected]


def test_audit_event_filter_with_a_malformed_date_is_a_400(request, events):
    response = client_for(request, "compliance").get("/api/v1/audit-events/?date_from=soon")
    assert response.status_code == 400
    assert response.json() == {
        "message": "Invalid input.",
        "extra": {"fields": {"date_from": ["Enter a valid date."]}},
    }


def test_audit_events_cannot_be_written_through_the_api(request, events):
    client = client_for(request, "admin_user")
    assert client.post("/api/v1/audit-events/", {"action": "x"}).status_code == 405
    assert client.delete(f"/api/v1/audit-events/{events[0].pk}/").status_code == 405
    assert client.patch(f"/api/v1/audit-events/{events[0].pk}/", {}).status_code == 405
    assert AuditEvent.objects.count() == 3


def test_verify_reports_an_intact_chain(request, events):
    audit_checkpoint_write()
    body = client_for(request, "compliance").get("/api/v1/audit-events/verify/").json()
    assert body == {
        "ok": True,
        "checked": 3,
        "head_seq": events[-1].seq,
        "head_hash": events[-1].hash,
        "broken_id": None,
        "broken_seq": None,
        "problem": "",
        "message": f"Audit chain intact: 3 events verified (head #{events[-1].seq}).",
    }
    recorded = AuditEvent.objects.get(action="audit.verify")
    assert (recorded.actor_label, recorded.after) == (
        "compliance",
        {"ok": True, "checked": 3, "broken_seq": None},
    )


def test_verify_names_the_first_altered_event(request, events):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE compliance_auditevent SET reason = %s WHERE id = %s", ["edited", events[1].pk]
        )
        if connection.vendor == "postgresql":
            cursor.execute("RESET session_replication_role")
    body = client_for(request, "compliance").get("/api/v1/audit-events/verify/").json()
    assert (body["ok"], body["broken_id"], body["broken_seq"], body["checked"]) == (
        False,
        events[1].pk,
        events[1].seq,
        1,
    )
    assert body["message"] == (
        f"Audit chain BROKEN at event id {events[1].pk}, sequence {events[1].seq}: "
        "stored hash does not match the event's contents (the row was altered)"
    )
