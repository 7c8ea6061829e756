"""A large import through a real Celery worker on PostgreSQL: submitted from the API like a
user would, queued after commit, claimed and written by the worker, progress and result on the
batch, and the drift scan of the affected account requested after the commit."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from portfolios.models import DriftScan, ImportBatch, ScanTrigger, TaxLot
from rebalance_app.work import WorkStatus
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

ROWS = 50
TIMEOUT_SECONDS = 60


def lots_csv(account_number: str, rows: int) -> bytes:
    start = date(2020, 1, 2)
    lines = ["account_number,ticker,quantity,cost_basis,acquired_on"]
    lines += [
        f"{account_number},AAPL,{i + 1},{100 + i}.25,{(start + timedelta(days=i)).isoformat()}"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def wait_for(batch_id: int) -> ImportBatch:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        batch = ImportBatch.objects.get(pk=batch_id)
        if batch.status not in (WorkStatus.QUEUED, WorkStatus.RUNNING):
            return batch
        time.sleep(0.2)
    pytest.fail(f"import batch {batch_id} still {batch.status} after {TIMEOUT_SECONDS} s")


@pytest.mark.postgres
@pytest.mark.celery_worker
@pytest.mark.usefixtures("live_worker")
def test_a_large_file_is_imported_by_a_real_worker(settings, ops, account_a):
    settings.IMPORT_ASYNC_ROWS = 10
    client = APIClient()
    client.force_login(ops)
    upload = SimpleUploadedFile("big-lots.csv", lots_csv(account_a.account_number, ROWS))

    response = client.post("/api/v1/imports/", {"file": upload, "kind": "lots"}, format="multipart")

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    batch = wait_for(response.json()["id"])
    assert (batch.status, batch.error, batch.errors) == (WorkStatus.SUCCEEDED, "", [])
    assert (batch.rows_total, batch.rows_processed, batch.rows_accepted, batch.attempts) == (
        ROWS,
        ROWS,
        ROWS,
        1,
    )
    assert batch.task_id
    assert TaxLot.objects.filter(import_batch=batch).count() == ROWS
    detail = client.get(f"/api/v1/imports/{batch.pk}/").json()
    assert (detail["status"], detail["progress"]) == ("succeeded", 1.0)
    # after the commit: an event drift scan of exactly the imported account
    scan = DriftScan.objects.get(trigger=ScanTrigger.EVENT)
    assert scan.account_ids == [account_a.pk]


@pytest.mark.postgres
@pytest.mark.celery_worker
@pytest.mark.usefixtures("live_worker")
def test_a_bad_large_file_fails_in_the_worker_and_writes_nothing(settings, ops, account_a):
    settings.IMPORT_ASYNC_ROWS = 10
    data = lots_csv(account_a.account_number, ROWS).replace(b",AAPL,7,", b",AAPL,-7,")
    client = APIClient()
    client.force_login(ops)
    lots_before = TaxLot.objects.count()

    response = client.post(
        "/api/v1/imports/",
        {"file": SimpleUploadedFile("bad-lots.csv", data), "kind": "lots"},
        format="multipart",
    )

    assert response.status_code == 202
    batch = wait_for(response.json()["id"])
    assert batch.status == WorkStatus.FAILED
    assert [(e["line"], e["column"]) for e in batch.errors] == [(8, "quantity")]
    assert TaxLot.objects.count() == lots_before
