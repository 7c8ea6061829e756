"""The imports API: the permission matrix of upload, history and detail (anonymous 401, a role
that may not import the kind 403, allowed 201/202), the error shape of a refused file (which
still shows in the history), duplicates, filters, progress, and a constant number of queries
for the history."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from portfolios.models import ImportBatch, TaxLot
from rebalance_app.celery import app
from rebalance_app.work import WorkStatus

pytestmark = pytest.mark.django_db

URL = "/api/v1/imports/"
LOTS_HEADER = "account_number,ticker,quantity,cost_basis,acquired_on\n"


def client_for(request: pytest.FixtureRequest, persona: str) -> APIClient:
    client = APIClient()
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def lots_file(account, quantity: str = "5", name: str = "lots.csv") -> SimpleUploadedFile:
    body = f"{LOTS_HEADER}{account.account_number},AAPL,{quantity},120.50,2024-03-15\n"
    return SimpleUploadedFile(name, body.encode(), content_type="text/csv")


def restrictions_file() -> SimpleUploadedFile:
    body = b"scope,ticker,kind,reason\nfirm,AAPL,no_buy,Watch list\n"
    return SimpleUploadedFile("restrictions.csv", body, content_type="text/csv")


def post(client: APIClient, upload: SimpleUploadedFile, kind: str, **extra: Any):
    return client.post(URL, {"file": upload, "kind": kind, **extra}, format="multipart")


# ---------------------------------------------------------------------------
# Upload: who may
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "kind", "expected"),
    [
        ("anonymous", "lots", 401),
        ("outsider", "lots", 403),
        ("pm", "lots", 403),
        ("compliance", "lots", 403),
        ("ops", "lots", 201),
        ("admin_user", "lots", 201),
        ("anonymous", "restrictions", 401),
        ("pm", "restrictions", 403),
        ("ops", "restrictions", 403),
        ("compliance", "restrictions", 201),
        ("admin_user", "restrictions", 201),
    ],
)
def test_upload_permission_matrix(request, account_a, persona, kind, expected):
    upload = lots_file(account_a) if kind == "lots" else restrictions_file()

    response = post(client_for(request, persona), upload, kind)

    assert response.status_code == expected, response.content
    if expected == 403:
        assert set(response.json()) == {"message", "extra"}
        assert not ImportBatch.objects.exists()


def test_a_pm_is_told_who_may_import(request, account_a):
    response = post(client_for(request, "pm"), lots_file(account_a), "lots")

    assert response.json() == {
        "message": "Only Ops or Admin users may import tax lots.",
        "extra": {},
    }


def test_a_small_file_is_imported_at_once_and_answers_201_with_the_batch(request, account_a):
    response = post(client_for(request, "ops"), lots_file(account_a), "lots")

    assert response.status_code == 201
    body = response.json()
    batch = ImportBatch.objects.get()
    assert response["Location"].endswith(f"/api/v1/imports/{batch.pk}/")
    assert {k: body[k] for k in ("id", "kind", "file_name", "status", "created_by")} == {
        "id": batch.pk,
        "kind": "lots",
        "file_name": "lots.csv",
        "status": "succeeded",
        "created_by": "ops",
    }
    assert (body["rows_total"], body["rows_accepted"], body["progress"], body["errors"]) == (
        1,
        1,
        1.0,
        [],
    )
    assert body["summary"]["created"] == 1
    assert TaxLot.objects.filter(import_batch=batch).count() == 1


def test_a_large_file_is_queued_and_answers_202(request, account_a, settings, monkeypatch):
    settings.IMPORT_ASYNC_ROWS = 0
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)

    response = post(client_for(request, "ops"), lots_file(account_a), "lots")

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["progress"]) == ("queued", 0.0)


def test_a_dry_run_answers_201_and_writes_nothing(request, account_a):
    response = post(client_for(request, "ops"), lots_file(account_a), "lots", dry_run="true")

    assert response.status_code == 201
    assert (response.json()["dry_run"], response.json()["summary"]["dry_run"]) == (True, True)
    assert not TaxLot.objects.filter(import_batch__isnull=False).exists()


# ---------------------------------------------------------------------------
# Refusals: the error shape, and the failed batch in the history
# ---------------------------------------------------------------------------


def test_a_bad_file_answers_400_with_every_error_and_stays_in_the_history(request, account_a):
    client = client_for(request, "ops")
    lots_before = TaxLot.objects.count()

    response = post(client, lots_file(account_a, quantity="-5"), "lots")

    assert response.status_code == 400
    batch = ImportBatch.objects.get()
    body = response.json()
    assert body["message"] == "The file was refused: 1 error found; nothing was imported."
    assert body["extra"]["batch"] == batch.pk
    assert [(e["line"], e["column"]) for e in body["extra"]["errors"]] == [(2, "quantity")]
    assert body["extra"]["errors"] == batch.errors
    assert TaxLot.objects.count() == lots_before
    history = client.get(URL).json()["results"]
    assert [(b["id"], b["status"]) for b in history] == [(batch.pk, "failed")]


def test_an_empty_upload_answers_400_with_the_readers_reason(request, account_a):
    upload = SimpleUploadedFile("lots.csv", b"", content_type="text/csv")

    response = post(client_for(request, "ops"), upload, "lots")

    assert response.status_code == 400
    assert response.json()["message"] in (
        "The file was refused: the file is empty (0 bytes)",
        # DRF refuses an empty upload before the service sees it
        "Invalid input.",
    )


def test_a_duplicate_file_answers_400_unless_forced(request, account_a):
    client = client_for(request, "ops")
    first = post(client, lots_file(account_a), "lots").json()

    again = post(client, lots_file(account_a, name="again.csv"), "lots")

    assert again.status_code == 400
    day = ImportBatch.objects.get(pk=first["id"]).created_at.date().isoformat()
    assert again.json() == {
        "message": f"This file was already imported as batch {first['id']} on {day}; submit "
        "it again with force to import it twice.",
        "extra": {"batch": first["id"]},
    }

    forced = post(client, lots_file(account_a), "lots", force="true")

    assert forced.status_code == 201
    assert forced.json()["forced"] is True


def test_an_unknown_kind_or_a_missing_file_is_invalid_input(request, account_a):
    client = client_for(request, "ops")

    bad_kind = post(client, lots_file(account_a), "bogus")
    no_file = client.post(URL, {"kind": "lots"}, format="multipart")
    demo = post(client, lots_file(account_a), "demo")

    assert bad_kind.status_code == no_file.status_code == demo.status_code == 400
    assert set(bad_kind.json()["extra"]["fields"]) == {"kind"}
    assert set(no_file.json()["extra"]["fields"]) == {"file"}
    assert demo.json()["message"].startswith("Unknown import kind 'demo'. Choose one of: ")
    assert not ImportBatch.objects.exists()


# ---------------------------------------------------------------------------
# History and detail
# ---------------------------------------------------------------------------


def make_batches(ops, n: int) -> list[ImportBatch]:
    return [
        ImportBatch.objects.create(
            kind="prices" if i % 2 else "lots",
            file_name=f"f{i}.csv",
            sha256=f"{i:064d}",
            created_by=ops,
            status=WorkStatus.FAILED if i % 3 == 0 else WorkStatus.SUCCEEDED,
            errors=[{"line": 2, "column": "price", "message": "bad"}],
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("anonymous", 401),
        ("outsider", 403),
        ("pm", 403),
        ("ops", 200),
        ("compliance", 200),
        ("admin_user", 200),
    ],
)
def test_history_and_detail_permission_matrix(request, ops, persona, expected):
    batch = make_batches(ops, 1)[0]
    client = client_for(request, persona)

    assert client.get(URL).status_code == expected
    assert client.get(f"{URL}{batch.pk}/").status_code == expected


def test_the_detail_shows_status_progress_errors_and_summary(request, ops):
    batch = ImportBatch.objects.create(
        kind="lots",
        file_name="big.csv",
        sha256="a" * 64,
        created_by=ops,
        status=WorkStatus.RUNNING,
        rows_total=200,
        rows_processed=50,
    )

    body = client_for(request, "compliance").get(f"{URL}{batch.pk}/").json()

    assert (body["status"], body["progress"], body["errors"], body["summary"]) == (
        "running",
        0.25,
        [],
        {},
    )


def test_an_unknown_batch_is_404(request, db):
    response = client_for(request, "ops").get(f"{URL}999999/")

    assert response.status_code == 404


def test_the_history_filters_by_kind_and_status(request, ops):
    batches = make_batches(ops, 6)
    client = client_for(request, "ops")

    lots = client.get(URL, {"kind": "lots"}).json()["results"]
    failed_prices = client.get(URL, {"kind": "prices", "status": "failed"}).json()["results"]

    assert {b["id"] for b in lots} == {b.pk for b in batches if b.kind == "lots"}
    assert {b["id"] for b in failed_prices} == {batches[3].pk}
    assert "errors" not in lots[0]


@pytest.mark.parametrize("n", [3, 30])
def test_the_history_takes_a_constant_number_of_queries(
    request, ops, django_assert_max_num_queries, n
):
    make_batches(ops, n)
    client = client_for(request, "ops")

    with django_assert_max_num_queries(8):
        response = client.get(URL)

    assert response.json()["count"] == n


def test_the_schema_documents_the_upload_as_multipart(request, db):
    schema = client_for(request, "ops").get("/api/schema/?format=json").json()

    post_op = schema["paths"]["/api/v1/imports/"]["post"]
    assert list(post_op["requestBody"]["content"]) == ["multipart/form-data"]
    assert set(post_op["responses"]) >= {"201", "202", "400"}


def test_cash_flows_posted_through_the_api_move_cash(request, account_a):
    upload = SimpleUploadedFile(
        "cash.csv",
        f"account_number,date,amount,kind\n{account_a.account_number},2026-11-20,250,deposit\n".encode(),
    )

    response = post(client_for(request, "ops"), upload, "cash_flows")

    assert response.status_code == 201
    account_a.refresh_from_db()
    assert account_a.cash_balance == Decimal("1250")


def test_an_xlsx_upload_is_accepted(request, account_a):
    import io

    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["account_number", "ticker", "quantity", "cost_basis", "acquired_on"])
    book.active.append([account_a.account_number, "AAPL", 5, 120.5, "2024-03-15"])
    data = io.BytesIO()
    book.save(data)
    upload = SimpleUploadedFile("lots.xlsx", data.getvalue())

    response = post(client_for(request, "ops"), upload, "lots")

    assert response.status_code == 201
    assert response.json()["rows_accepted"] == 1
