"""Drift scan tasks: the beat schedule (trading days only), chunking and progress, redelivered
tasks counting nothing twice, failures recorded on the scan, and a real Celery worker running
a firm scan on PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from portfolios import calendar
from portfolios.models import DriftScan, DriftSnapshot, ScanTrigger
from portfolios.services import drift as drift_service
from portfolios.services.drift import drift_scan_create, drift_scan_request, drift_scan_scheduled
from portfolios.tasks import drift_scan, drift_scan_chunk, drift_scan_periodic
from rebalance_app.celery import app
from rebalance_app.work import WorkStatus, registered_work_models
from tests.portfolios.test_drift_service import build_firm
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

THANKSGIVING = date(2026, 11, 26)
SATURDAY = date(2026, 11, 28)
BLACK_FRIDAY = date(2026, 11, 27)  # a half day: still a trading day


@pytest.fixture
def firm(household_a, household_b, monkeypatch):
    # Tasks run on the real clock; the firm's prices are fresh as of 2026-11-25.
    monkeypatch.setattr(calendar, "stale_price_cutoff", lambda **kwargs: date(2026, 11, 20))
    return build_firm(household_a, household_b)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> SimpleNamespace:
        calls.append((name, list(args or [])))
        return SimpleNamespace(id=options.get("task_id"))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


@pytest.fixture
def dispatched(monkeypatch) -> list[tuple[int, int, list[int]]]:
    """Chunk tasks the scan task would send, recorded instead of sent."""
    chunks: list[tuple[int, int, list[int]]] = []

    def record(scan_id: int, plan: list[list[int]]) -> None:
        chunks.extend((scan_id, index, ids) for index, ids in enumerate(plan))

    monkeypatch.setattr(drift_service, "_dispatch_chunks", record)
    return chunks


# ---------------------------------------------------------------------------
# Beat: trading days only
# ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("day", [THANKSGIVING, SATURDAY])
def test_the_periodic_scan_skips_a_day_the_exchange_is_closed(sent, day):
    result = drift_scan_scheduled(today=day)

    assert result == {"skipped": f"{day.isoformat()} is not an XNYS trading day", "pruned": 0}
    assert not DriftScan.objects.exists()
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_the_periodic_scan_requests_a_firm_scan_on_a_trading_day(sent):
    result = drift_scan_scheduled(today=BLACK_FRIDAY)

    scan = DriftScan.objects.get()
    assert result == {"scan": scan.pk, "pruned": 0}
    assert (scan.trigger, scan.account_ids, scan.requested_by) == (ScanTrigger.SCHEDULE, None, None)
    assert sent == [("portfolios.drift_scan", [scan.pk])]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("utc_now", "scans"),
    [
        (datetime(2026, 11, 26, 21, 30, tzinfo=UTC), 0),  # Thanksgiving, 16:30 in New York
        (datetime(2026, 11, 25, 21, 30, tzinfo=UTC), 1),  # Wednesday, 16:30 in New York
        (datetime(2026, 11, 28, 3, 0, tzinfo=UTC), 1),  # Friday 22:00 in New York, Saturday UTC
    ],
)
def test_the_beat_task_decides_by_the_date_in_new_york(sent, monkeypatch, utc_now, scans):
    monkeypatch.setattr(drift_service.timezone, "now", lambda: utc_now)

    drift_scan_periodic.apply().get()

    assert DriftScan.objects.count() == scans


@pytest.mark.django_db
def test_the_beat_schedule_runs_the_periodic_scan_after_the_close_on_weekdays():
    task = PeriodicTask.objects.get(name="Drift scan (whole firm)")

    assert task.task == "portfolios.drift_scan_periodic"
    assert task.task in app.tasks
    assert task.enabled
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_week, str(cron.timezone)) == (
        "30",
        "16",
        "1-5",
        "America/New_York",
    )


def test_the_drift_scan_is_a_registered_work_model_for_the_sweep():
    registrations = {r.model: r.task_name for r in registered_work_models()}

    assert registrations[DriftScan] == "portfolios.drift_scan"
    assert "portfolios.drift_scan" in app.tasks
    assert "portfolios.drift_scan_chunk" in app.tasks


# ---------------------------------------------------------------------------
# Chunks and progress
# ---------------------------------------------------------------------------


def five_accounts(firm) -> list[int]:
    acc = firm.acc
    return sorted(a.pk for a in [acc.on_target, acc.breached, acc.outside, acc.no_price, acc.stale])


@pytest.mark.django_db
def test_a_scan_is_split_into_chunks_and_counts_progress_per_chunk(firm, settings, dispatched):
    settings.DRIFT_SCAN_CHUNK_SIZE = 2
    ids = five_accounts(firm)
    scan = drift_scan_create(actor="system:test", account_ids=ids)

    assert drift_scan.apply(args=[scan.pk]).get() == {"claimed": True, "chunks": 3}
    assert dispatched == [(scan.pk, 0, ids[:2]), (scan.pk, 1, ids[2:4]), (scan.pk, 2, ids[4:])]
    scan.refresh_from_db()
    assert (scan.status, scan.chunks_total, scan.chunks_done, scan.accounts_total) == (
        WorkStatus.RUNNING,
        3,
        0,
        5,
    )

    progress = []
    for scan_id, index, chunk in dispatched:
        drift_scan_chunk.apply(args=[scan_id, index, chunk]).get()
        scan.refresh_from_db()
        progress.append((scan.status, scan.chunks_done, scan.accounts_scanned))
    assert progress == [
        (WorkStatus.RUNNING, 1, 2),
        (WorkStatus.RUNNING, 2, 3),
        (WorkStatus.SUCCEEDED, 3, 3),
    ]
    assert (scan.accounts_unscannable, scan.accounts_breached, scan.alerts_raised) == (2, 2, 2)
    assert set(scan.unscannable) == {str(firm.acc.no_price.pk), str(firm.acc.stale.pk)}
    assert scan.finished_at is not None
    assert scan.duration_ms is not None


@pytest.mark.django_db
def test_a_redelivered_chunk_counts_nothing_twice(firm, settings, dispatched):
    settings.DRIFT_SCAN_CHUNK_SIZE = 2
    scan = drift_scan_create(actor="system:test", account_ids=five_accounts(firm))
    drift_scan.apply(args=[scan.pk]).get()
    _, index, chunk = dispatched[0]

    first = drift_scan_chunk.apply(args=[scan.pk, index, chunk]).get()
    again = drift_scan_chunk.apply(args=[scan.pk, index, chunk]).get()

    assert (first["skipped"], again["skipped"]) == (False, True)
    scan.refresh_from_db()
    assert (scan.chunks_done, scan.accounts_scanned) == (1, 2)
    assert DriftSnapshot.objects.filter(scan=scan).count() == 2


@pytest.mark.django_db
def test_a_redelivered_scan_task_finds_the_scan_claimed(firm, dispatched):
    scan = drift_scan_create(actor="system:test", account_ids=five_accounts(firm))

    drift_scan.apply(args=[scan.pk]).get()

    assert drift_scan.apply(args=[scan.pk]).get() == {"claimed": False}
    assert len(dispatched) == 1


@pytest.mark.django_db
def test_a_scan_of_no_scannable_account_succeeds_at_once(firm, dispatched):
    scan = drift_scan_create(actor="system:test", account_ids=[firm.acc.closed.pk])

    assert drift_scan.apply(args=[scan.pk]).get() == {"claimed": True, "chunks": 0}

    scan.refresh_from_db()
    assert (scan.status, scan.accounts_total, scan.chunks_total) == (WorkStatus.SUCCEEDED, 0, 0)
    assert dispatched == []


@pytest.mark.django_db
def test_a_failing_chunk_fails_the_scan_with_the_error_and_writes_nothing(
    firm, dispatched, monkeypatch
):
    scan = drift_scan_create(actor="system:test", account_ids=five_accounts(firm))
    drift_scan.apply(args=[scan.pk]).get()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(drift_service, "drift_inputs_load", broken)
    result = drift_scan_chunk.apply(args=list(dispatched[0]))

    assert isinstance(result.result, RuntimeError)
    scan.refresh_from_db()
    assert (scan.status, scan.error) == (
        WorkStatus.FAILED,
        "Chunk 0 failed: the database went away",
    )
    assert not DriftSnapshot.objects.exists()


# ---------------------------------------------------------------------------
# A real worker on PostgreSQL
# ---------------------------------------------------------------------------


def wait_for(scan: DriftScan, *, timeout: float = 60) -> DriftScan:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan.refresh_from_db()
        if scan.status in (WorkStatus.SUCCEEDED, WorkStatus.FAILED):
            return scan
        time.sleep(0.2)
    raise AssertionError(f"scan {scan.pk} still {scan.status} after {timeout} s")


@pytest.mark.postgres
@pytest.mark.celery_worker
@pytest.mark.usefixtures("live_worker")
def test_a_real_worker_runs_a_chunked_firm_scan(firm, settings):
    settings.DRIFT_SCAN_CHUNK_SIZE = 3
    with transaction.atomic():
        scan = drift_scan_request(actor="system:test")

    scan = wait_for(scan)

    assert (scan.status, scan.error) == (WorkStatus.SUCCEEDED, "")
    assert (scan.chunks_total, scan.chunks_done, scan.accounts_total) == (3, 3, 8)
    assert (scan.accounts_scanned, scan.accounts_unscannable, scan.accounts_breached) == (3, 5, 2)
    assert (scan.alerts_raised, scan.alerts_cleared) == (2, 0)
    assert DriftSnapshot.objects.filter(scan=scan, is_latest=True).count() == 8
    breached = DriftSnapshot.objects.get(scan=scan, account=firm.acc.breached)
    assert breached.total_drift == pytest.approx(0.2)
    assert breached.positions.count() == 3
