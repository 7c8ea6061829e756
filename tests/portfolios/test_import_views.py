"""The imports, reconciliation and data-quality pages: who may open what (the permission
matrix), the upload answering with every bad row (line, column, reason), progress polling
while a batch is pending, the history and a batch's detail, the break list with its resolve
form, and the data-quality report of a PM's own accounts.

Most upload tests replace ``import_submit`` with a stand-in, so they test the page alone;
one test goes through the real import service.
"""

from __future__ import annotations

import sys
import types
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from compliance.models import AuditEvent
from portfolios.import_views import ERRORS_SHOWN, NO_ROLE
from portfolios.models import ImportBatch, ImportKind, Reconciliation, ReconciliationBreak
from portfolios.selectors.reconciliation import IMPORTS_FORBIDDEN
from portfolios.services.reconciliation import ACTION_BREAK_RESOLVED
from rebalance_app.exceptions import ImportRejected, ValidationFailed
from rebalance_app.work import WorkStatus

pytestmark = pytest.mark.django_db

ROW_ERRORS = [
    {"line": 3, "column": "quantity", "message": "must be greater than 0 (found -5)"},
    {"line": 4, "column": "ticker", "message": "unknown ticker ZZZZ"},
    {"line": 6, "column": "", "message": "duplicate of line 2"},
]


def client_for(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def batch(**fields: Any) -> ImportBatch:
    values = {
        "kind": ImportKind.LOTS,
        "file_name": "lots.csv",
        "sha256": "ab" * 32,
        "status": WorkStatus.SUCCEEDED,
        "rows_total": 3,
        "rows_accepted": 3,
        "duration_ms": 42,
    }
    values.update(fields)
    return ImportBatch.objects.create(**values)


@pytest.fixture
def stub_submit(monkeypatch):
    """Replace ``import_submit`` with a recorder that returns or raises what a test sets."""
    calls: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {}

    def fake(**kwargs: Any) -> ImportBatch:
        calls.append(kwargs)
        if "raise" in outcome:
            raise outcome["raise"]
        return outcome["batch"]

    module = types.ModuleType("portfolios.services.imports")
    module.import_submit = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "portfolios.services.imports", module)
    import portfolios.services as services_pkg

    monkeypatch.setattr(services_pkg, "imports", module, raising=False)
    return types.SimpleNamespace(calls=calls, outcome=outcome)


def upload(client: Client, content: bytes = b"account_number,ticker\n", **extra: Any):
    data = {"kind": "lots", "file": SimpleUploadedFile("lots.csv", content, "text/csv")}
    data.update(extra)
    return client.post("/imports/submit/", data, HTTP_HX_REQUEST="true")


# ---------------------------------------------------------------------------
# Permission matrix
# ---------------------------------------------------------------------------


@pytest.fixture
def recon(ops, account_a, account_b, security) -> dict[str, Any]:
    b = batch(kind=ImportKind.CUSTODIAN_POSITIONS, file_name="pos.csv")
    reconciliation = Reconciliation.objects.create(
        import_batch=b, as_of=date(2026, 11, 24), created_by=ops, break_count=2
    )
    breaks = {}
    for key, account in (("a", account_a), ("b", account_b)):
        breaks[key] = ReconciliationBreak.objects.create(
            reconciliation=reconciliation,
            account=account,
            security=security,
            custodian_quantity=Decimal("9"),
            book_quantity=Decimal("10"),
            difference=Decimal("-1"),
        )
    only_b = Reconciliation.objects.create(
        import_batch=batch(kind=ImportKind.CUSTODIAN_POSITIONS, sha256="cd" * 32),
        as_of=date(2026, 11, 24),
    )
    ReconciliationBreak.objects.create(
        reconciliation=only_b,
        account=account_b,
        custodian_quantity=Decimal("0"),
        book_quantity=Decimal("1000"),
        difference=Decimal("-1000"),
    )
    return {"batch": b, "rec": reconciliation, "only_b": only_b, **breaks}


def pages(recon: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        "imports": ("get", "/imports/"),
        "import_detail": ("get", f"/imports/{recon['batch'].pk}/"),
        "import_status": ("get", f"/imports/{recon['batch'].pk}/status/"),
        "reconciliations": ("get", "/reconciliations/"),
        "reconciliation": ("get", f"/reconciliations/{recon['rec'].pk}/"),
        "reconciliation_only_b": ("get", f"/reconciliations/{recon['only_b'].pk}/"),
        "resolve_a": ("post", f"/reconciliation-breaks/{recon['a'].pk}/resolve/"),
        "data_quality": ("get", "/data-quality/"),
    }


FIRM = {
    "imports": 200,
    "import_detail": 200,
    "import_status": 200,
    "reconciliations": 200,
    "reconciliation": 200,
    "reconciliation_only_b": 200,
    "resolve_a": 302,
    "data_quality": 200,
}
MATRIX: dict[str, dict[str, int]] = {
    "ops": FIRM,
    "compliance": FIRM,
    "admin_user": FIRM,
    "pm": {
        "imports": 403,
        "import_detail": 403,
        "import_status": 403,
        "reconciliations": 200,
        "reconciliation": 200,
        "reconciliation_only_b": 404,
        "resolve_a": 403,
        "data_quality": 200,
    },
    "other_pm": {
        "imports": 403,
        "import_detail": 403,
        "import_status": 403,
        "reconciliations": 200,
        "reconciliation": 200,
        "reconciliation_only_b": 200,
        "resolve_a": 403,
        "data_quality": 200,
    },
    "outsider": {
        "imports": 403,
        "import_detail": 403,
        "import_status": 403,
        "reconciliations": 403,
        "reconciliation": 403,
        "reconciliation_only_b": 403,
        "resolve_a": 403,
        "data_quality": 403,
    },
}


@pytest.mark.parametrize(
    ("persona", "name"),
    [(persona, name) for persona, row in MATRIX.items() for name in row],
)
def test_page_permission_matrix(request, recon, persona, name):
    user = request.getfixturevalue(persona)
    method, url = pages(recon)[name]
    response = getattr(client_for(user), method)(url, {"resolution": "Booked late"})
    assert response.status_code == MATRIX[persona][name], (persona, name)


@pytest.mark.parametrize("name", list(FIRM))
def test_anonymous_visitors_are_sent_to_the_login_page(recon, name):
    method, url = pages(recon)[name]
    response = getattr(client_for(None), method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_pm_who_posts_a_file_is_refused_and_nothing_is_submitted(pm, stub_submit):
    response = upload(client_for(pm))
    assert response.status_code == 403
    assert IMPORTS_FORBIDDEN in response.content.decode()
    assert stub_submit.calls == []


def test_a_user_without_a_role_is_told_so(outsider):
    response = client_for(outsider).get("/data-quality/")
    assert response.status_code == 403
    assert NO_ROLE in response.content.decode()


# ---------------------------------------------------------------------------
# Upload and result
# ---------------------------------------------------------------------------


def test_the_imports_page_offers_every_kind_but_demo_and_the_options(ops):
    html = client_for(ops).get("/imports/").content.decode()
    for kind in ImportKind:
        assert (f'value="{kind.value}"' in html) is (kind != ImportKind.DEMO), kind
    for label in ("Dry run", "Import even if this file was imported before", "History"):
        assert label in html
    assert 'hx-post="/imports/submit/"' in html
    assert 'hx-encoding="multipart/form-data"' in html


def test_a_refused_file_shows_every_bad_row_with_line_column_and_reason(ops, stub_submit):
    stub_submit.outcome["raise"] = ImportRejected(
        "The file was refused: 3 errors found.", extra={"errors": ROW_ERRORS}
    )
    response = upload(client_for(ops), b"x", dry_run="on")
    html = response.content.decode()
    assert response.status_code == 200  # htmx swaps 2xx only
    assert "Not imported." in html
    assert "The file was refused: 3 errors found." in html
    assert "3 problems found" in html
    for error in ROW_ERRORS:
        row = (
            f'<tr><td class="num">{error["line"]}</td><td>{error["column"] or "—"}</td>'
            f"<td>{error['message']}</td></tr>"
        )
        assert row in html
    call = stub_submit.calls[0]
    assert call["actor"] == ops
    assert (call["kind"], call["file_name"], call["data"]) == ("lots", "lots.csv", b"x")
    assert (call["dry_run"], call["force"]) == (True, False)


def test_a_failed_batch_shows_its_stored_errors(ops, stub_submit):
    stub_submit.outcome["batch"] = batch(
        status=WorkStatus.FAILED,
        rows_accepted=0,
        errors=ROW_ERRORS,
        error="The file was refused: 3 errors found; nothing was imported.",
    )
    html = upload(client_for(ops)).content.decode()
    assert '<span id="import-state" class="badge bad">Failed</span>' in html
    assert "nothing was written." in html
    assert '<tr><td class="num">4</td><td>ticker</td><td>unknown ticker ZZZZ</td></tr>' in html


def test_a_file_imported_before_is_refused_with_the_service_message(ops, stub_submit):
    message = (
        "This file was already imported as batch 7 on 2026-11-24; submit it again with force "
        "to import it twice."
    )
    stub_submit.outcome["raise"] = ValidationFailed(message, extra={"batch": 7})
    html = upload(client_for(ops), force="").content.decode()
    assert message in html
    assert "problem" not in html


def test_a_succeeded_batch_shows_its_rows_and_refreshes_the_history(ops, stub_submit):
    done = batch(summary={"created": 3, "updated": 0, "account_ids": [1, 2]})
    stub_submit.outcome["batch"] = done
    html = upload(client_for(ops)).content.decode()
    assert '<span id="import-state" class="badge good">Succeeded</span>' in html
    assert "3 of 3 rows imported in 42 ms." in html
    assert "<li>Created: 3</li>" in html
    assert "account_ids" not in html
    assert 'id="import-history" class="card" aria-labelledby="import-history-heading" ' in html
    assert 'hx-swap-oob="true"' in html
    assert f'<tr data-batch="{done.pk}">' in html


def test_a_queued_batch_polls_its_progress_every_second(ops, stub_submit):
    pending = batch(status=WorkStatus.RUNNING, rows_total=9000, rows_processed=1500)
    stub_submit.outcome["batch"] = pending
    html = upload(client_for(ops)).content.decode()
    assert f'hx-get="/imports/{pending.pk}/status/" hx-trigger="every 1s"' in html
    assert "1500 of 9000 rows processed" in html
    assert "hx-swap-oob" in html  # the submit answer always refreshes the history
    status = client_for(ops).get(f"/imports/{pending.pk}/status/").content.decode()
    assert 'hx-trigger="every 1s"' in status
    assert "hx-swap-oob" not in status
    ImportBatch.objects.filter(pk=pending.pk).update(
        status=WorkStatus.SUCCEEDED, rows_processed=9000, rows_accepted=9000
    )
    done = client_for(ops).get(f"/imports/{pending.pk}/status/").content.decode()
    assert "every 1s" not in done
    assert "9000 of 9000 rows imported" in done
    assert 'hx-swap-oob="true"' in done


def test_an_incomplete_form_names_the_missing_field(ops, stub_submit):
    html = client_for(ops).post("/imports/submit/", {"kind": "lots"}).content.decode()
    assert "The upload form is incomplete." in html
    assert "<td>file</td><td>This field is required.</td>" in html
    assert stub_submit.calls == []


def test_a_role_refusal_from_the_service_is_shown_on_the_page(compliance, stub_submit):
    from rebalance_app.exceptions import PermissionDenied

    stub_submit.outcome["raise"] = PermissionDenied("Only Ops or Admin users may import tax lots.")
    response = client_for(compliance).post(
        "/imports/submit/",
        {"kind": "lots", "file": SimpleUploadedFile("lots.csv", b"a\n1\n", "text/csv")},
    )
    assert response.status_code == 403
    assert "Only Ops or Admin users may import tax lots." in response.content.decode()


def test_the_history_lists_batches_newest_first_with_short_hashes(ops, admin_user):
    older = batch(file_name="old.csv", created_by=admin_user)
    newer = batch(
        file_name="new.csv", sha256="f" * 64, status=WorkStatus.FAILED, dry_run=True, forced=True
    )
    html = client_for(ops).get("/imports/").content.decode()
    assert html.index(f'data-batch="{newer.pk}"') < html.index(f'data-batch="{older.pk}"')
    assert f'<code title="{"f" * 64}">{"f" * 12}</code>' in html
    assert "<td>admin</td>" in html
    assert '<span class="badge">dry run</span>' in html
    assert '<span class="badge warn">forced</span>' in html


def test_the_history_is_paginated_with_a_constant_number_of_queries(
    ops, django_assert_max_num_queries
):
    for n in range(30):
        batch(file_name=f"f{n}.csv", sha256=f"{n:064d}")
    client = client_for(ops)
    client.get("/imports/")
    with django_assert_max_num_queries(8):
        html = client.get("/imports/").content.decode()
    assert "Page 1 of 2" in html
    assert "f29.csv" in html
    assert "f0.csv" not in html
    assert "f0.csv" in client.get("/imports/?page=2").content.decode()


def test_the_batch_detail_lists_all_its_errors(ops):
    errors = [{"line": n + 2, "column": "quantity", "message": "bad"} for n in range(250)]
    failed = batch(status=WorkStatus.FAILED, errors=errors, rows_accepted=0)
    html = client_for(ops).get(f"/imports/{failed.pk}/").content.decode()
    assert f"<h1>Import batch {failed.pk}</h1>" in html
    assert "250 problems found" in html
    assert html.count("<td>quantity</td>") == ERRORS_SHOWN
    assert f"… and {250 - ERRORS_SHOWN} more" in html
    assert client_for(ops).get("/imports/999999/").status_code == 404


# ---------------------------------------------------------------------------
# Reconciliation pages
# ---------------------------------------------------------------------------


def test_the_reconciliation_page_shows_both_quantities_and_the_difference(recon, ops):
    html = client_for(ops).get(f"/reconciliations/{recon['rec'].pk}/").content.decode()
    assert html.count('<tr id="break-') == 2
    assert '<td class="num">9</td>' in html
    assert '<td class="num">10</td>' in html
    assert '<td class="num neg">-1</td>' in html
    assert 'name="resolution"' in html


def test_a_pm_sees_only_their_break_and_no_resolve_form(recon, pm, account_a):
    html = client_for(pm).get(f"/reconciliations/{recon['rec'].pk}/").content.decode()
    assert html.count('<tr id="break-') == 1
    assert f'data-account="{account_a.account_number}"' in html
    assert 'name="resolution"' not in html
    listing = client_for(pm).get("/reconciliations/").content.decode()
    assert f'data-reconciliation="{recon["rec"].pk}"' in listing
    assert f'data-reconciliation="{recon["only_b"].pk}"' not in listing


def test_resolving_a_break_from_the_page_is_audited_and_shown(recon, ops):
    client = client_for(ops)
    response = client.post(
        f"/reconciliation-breaks/{recon['a'].pk}/resolve/", {"resolution": "Booked late"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/reconciliations/{recon['rec'].pk}/#break-{recon['a'].pk}"
    recon["a"].refresh_from_db()
    assert recon["a"].resolution == "Booked late"
    assert AuditEvent.objects.filter(action=ACTION_BREAK_RESOLVED).count() == 1
    html = client.get(response["Location"]).content.decode()
    assert "Break resolved: Booked late" in html
    again = client.post(
        f"/reconciliation-breaks/{recon['a'].pk}/resolve/", {"resolution": "Twice"}, follow=True
    )
    assert "was already resolved" in again.content.decode()


def test_an_empty_resolution_from_the_page_is_refused(recon, ops):
    response = client_for(ops).post(
        f"/reconciliation-breaks/{recon['a'].pk}/resolve/", {"resolution": ""}, follow=True
    )
    assert "This field is required." in response.content.decode()
    recon["a"].refresh_from_db()
    assert recon["a"].resolved_at is None


# ---------------------------------------------------------------------------
# Data quality page
# ---------------------------------------------------------------------------


def test_the_data_quality_page_shows_a_pm_only_their_accounts(account_a, account_b, pm, ops):
    html = client_for(pm).get("/data-quality/").content.decode()
    assert "Your accounts" in html
    assert account_a.account_number in html
    assert account_b.account_number not in html
    firm = client_for(ops).get("/data-quality/").content.decode()
    assert "The whole firm" in firm
    assert account_b.account_number in firm
    assert '<div class="v neg" id="dq-count-accounts_without_model">2</div>' in firm


# ---------------------------------------------------------------------------
# Through the real import service
# ---------------------------------------------------------------------------


def test_a_lots_file_with_errors_through_the_real_service_lists_each_row(ops, account_a):
    content = (
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        f"{account_a.account_number},AAPL,10,100,2024-01-02\n"
        f"{account_a.account_number},AAPL,-5,100,2024-01-02\n"
        f"{account_a.account_number},ZZZZ,1,100,2024-01-02\n"
    ).encode()
    before = account_a.lots.count()
    html = upload(client_for(ops), content).content.decode()
    assert '<span id="import-state" class="badge bad">Failed</span>' in html
    assert '<tr><td class="num">3</td><td>quantity</td>' in html
    assert '<tr><td class="num">4</td><td>ticker</td>' in html
    assert account_a.lots.count() == before
    assert ImportBatch.objects.get().status == WorkStatus.FAILED
