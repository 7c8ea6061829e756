"""Work rows: exclusive claims, enqueue after commit, and the sweep that re-enqueues stuck rows
and gives up on rows out of attempts. ``ImportBatch`` stands in for every work model."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import shared_task
from celery.signals import after_task_publish
from django.db import connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent
from portfolios.models import ImportBatch, ImportKind
from rebalance_app import work
from rebalance_app.celery import app
from rebalance_app.work import (
    WorkStatus,
    register_work_model,
    work_claim,
    work_enqueue,
    work_fail,
    work_finish,
    work_sweep,
)

TASK_NAME = "tests.rebalance_app.process_import_batch"
STUCK_SECONDS = 600
MAX_ATTEMPTS = 3


@shared_task(name=TASK_NAME)
def process_import_batch(pk: int) -> dict[str, bool]:
    """A task written the way real ones are: claim the row or return; then finish it."""
    if not work_claim(model=ImportBatch, pk=pk):
        return {"claimed": False}
    work_finish(model=ImportBatch, pk=pk)
    return {"claimed": True}


def make_batch(**fields: Any) -> ImportBatch:
    fields.setdefault("kind", ImportKind.PRICES)
    fields.setdefault("file_name", "prices.csv")
    fields.setdefault("sha256", "0" * 64)
    return ImportBatch.objects.create(**fields)


@pytest.fixture(autouse=True)
def _work_settings(settings):
    settings.WORK_STUCK_AFTER_SECONDS = STUCK_SECONDS
    settings.WORK_MAX_ATTEMPTS = MAX_ATTEMPTS


@pytest.fixture
def registered(monkeypatch):
    """ImportBatch rows processed by this module's task, and no other work model."""
    monkeypatch.setattr(work, "_REGISTRY", {})
    register_work_model(ImportBatch, TASK_NAME)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    """Records what would have been sent to the broker, instead of sending it."""
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> SimpleNamespace:
        calls.append((name, list(args or [])))
        return SimpleNamespace(id=options.get("task_id"))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """Run the sweep as the beat task does, its on-commit sends included."""

    def run() -> work.SweepResult:
        with django_capture_on_commit_callbacks(execute=True):
            return work_sweep()

    return run


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


# ---------------------------------------------------------------------------
# Claim, finish, fail
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_work_claim_is_exclusive_the_second_claim_returns_false():
    batch = make_batch()

    assert work_claim(model=ImportBatch, pk=batch.pk) is True
    assert work_claim(model=ImportBatch, pk=batch.pk) is False

    batch.refresh_from_db()
    assert batch.status == WorkStatus.RUNNING
    assert batch.attempts == 1
    assert batch.started_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("status", [WorkStatus.SUCCEEDED, WorkStatus.FAILED])
def test_work_claim_refuses_a_finished_row(status):
    batch = make_batch(status=status, attempts=1)

    assert work_claim(model=ImportBatch, pk=batch.pk) is False
    batch.refresh_from_db()
    assert batch.status == status
    assert batch.attempts == 1


@pytest.mark.django_db
def test_work_claim_refuses_a_row_that_has_used_up_its_attempts():
    batch = make_batch(attempts=MAX_ATTEMPTS)

    assert work_claim(model=ImportBatch, pk=batch.pk) is False


@pytest.mark.django_db
def test_work_claim_takes_over_a_running_row_only_once_it_is_past_the_stuck_timeout():
    fresh = make_batch(status=WorkStatus.RUNNING, attempts=1, started_at=ago(10))
    stuck = make_batch(status=WorkStatus.RUNNING, attempts=1, started_at=ago(STUCK_SECONDS + 10))

    assert work_claim(model=ImportBatch, pk=fresh.pk) is False
    assert work_claim(model=ImportBatch, pk=stuck.pk) is True
    stuck.refresh_from_db()
    assert stuck.attempts == 2


@pytest.mark.django_db
def test_work_finish_moves_only_a_running_row():
    batch = make_batch()

    assert work_finish(model=ImportBatch, pk=batch.pk) is False
    work_claim(model=ImportBatch, pk=batch.pk)
    assert work_finish(model=ImportBatch, pk=batch.pk) is True

    batch.refresh_from_db()
    assert batch.status == WorkStatus.SUCCEEDED
    assert batch.finished_at is not None


@pytest.mark.django_db
def test_work_fail_records_the_error_but_leaves_a_finished_row_alone():
    running = make_batch(status=WorkStatus.RUNNING, attempts=1, started_at=ago(1))
    done = make_batch(status=WorkStatus.SUCCEEDED, attempts=1)

    assert work_fail(model=ImportBatch, pk=running.pk, error="Bad file", detail="row 3") is True
    assert work_fail(model=ImportBatch, pk=done.pk, error="Bad file") is False

    running.refresh_from_db()
    done.refresh_from_db()
    assert (running.status, running.error, running.error_detail) == (
        WorkStatus.FAILED,
        "Bad file",
        "row 3",
    )
    assert (done.status, done.error) == (WorkStatus.SUCCEEDED, "")


# ---------------------------------------------------------------------------
# Enqueue
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_work_enqueue_sends_only_after_commit(registered, sent, django_capture_on_commit_callbacks):
    batch = make_batch()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        work_enqueue(item=batch)
    assert sent == []
    assert len(callbacks) == 1

    callbacks[0]()
    assert sent == [(TASK_NAME, [batch.pk])]
    batch.refresh_from_db()
    assert len(batch.task_id) == 36


@pytest.mark.django_db
def test_work_enqueue_leaves_the_row_queued_for_the_sweep_when_the_broker_is_down(
    registered, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(app, "send_task", broker_down)
    batch = make_batch()

    with django_capture_on_commit_callbacks(execute=True):
        work_enqueue(item=batch)

    batch.refresh_from_db()
    assert batch.status == WorkStatus.QUEUED


@pytest.mark.django_db
def test_work_enqueue_names_an_unregistered_model(monkeypatch):
    monkeypatch.setattr(work, "_REGISTRY", {})

    with pytest.raises(LookupError) as excinfo:
        work_enqueue(item=make_batch())

    assert str(excinfo.value) == (
        "portfolios.ImportBatch is not a registered work model: call register_work_model first."
    )


# ---------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_work_sweep_requeues_a_queued_row_older_than_the_stuck_timeout(registered, sent, sweep):
    batch = make_batch(queued_at=ago(STUCK_SECONDS + 10))

    result = sweep()

    assert (result.requeued, result.failed) == (1, 0)
    assert sent == [(TASK_NAME, [batch.pk])]
    batch.refresh_from_db()
    assert batch.status == WorkStatus.QUEUED
    assert batch.queued_at > ago(5)


@pytest.mark.django_db
def test_work_sweep_requeues_a_running_row_whose_worker_died(registered, sent, sweep):
    batch = make_batch(
        status=WorkStatus.RUNNING,
        attempts=1,
        queued_at=ago(STUCK_SECONDS * 3),
        started_at=ago(STUCK_SECONDS + 10),
    )

    result = sweep()

    assert (result.requeued, result.failed) == (1, 0)
    assert sent == [(TASK_NAME, [batch.pk])]
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (WorkStatus.QUEUED, 1)
    # ... and the re-sent task can claim it at once.
    assert work_claim(model=ImportBatch, pk=batch.pk) is True


@pytest.mark.django_db
def test_work_sweep_does_not_touch_fresh_or_finished_rows(registered, sent, sweep):
    make_batch(queued_at=ago(10))
    make_batch(status=WorkStatus.RUNNING, attempts=1, started_at=ago(10))
    make_batch(status=WorkStatus.SUCCEEDED, attempts=1, queued_at=ago(STUCK_SECONDS * 2))
    make_batch(status=WorkStatus.FAILED, attempts=3, queued_at=ago(STUCK_SECONDS * 2))

    result = sweep()

    assert (result.requeued, result.failed) == (0, 0)
    assert sent == []
    assert not AuditEvent.objects.filter(actor_label="system:work_sweep").exists()


@pytest.mark.django_db
def test_work_sweep_sends_a_requeued_row_once_per_timeout_not_on_every_sweep(
    registered, sent, sweep
):
    batch = make_batch(queued_at=ago(STUCK_SECONDS + 10))

    sweep()
    again = sweep()

    assert again.requeued == 0
    assert sent == [(TASK_NAME, [batch.pk])]


@pytest.mark.django_db
def test_work_sweep_fails_a_stuck_row_that_used_up_its_attempts(registered, sent, sweep):
    batch = make_batch(
        status=WorkStatus.RUNNING, attempts=MAX_ATTEMPTS, started_at=ago(STUCK_SECONDS + 10)
    )

    result = sweep()

    assert (result.requeued, result.failed) == (0, 1)
    assert sent == []
    batch.refresh_from_db()
    assert batch.status == WorkStatus.FAILED
    assert batch.error == "Gave up after 3 attempts: the worker died or timed out each time."
    assert batch.error_detail == (
        "The row was running for more than 600 s with no attempts left (WORK_MAX_ATTEMPTS=3)."
    )
    assert batch.finished_at is not None


@pytest.mark.django_db
def test_work_sweep_records_what_it_did_in_the_audit_trail(registered, sent, sweep):
    requeued = make_batch(queued_at=ago(STUCK_SECONDS + 10))
    given_up = make_batch(
        status=WorkStatus.RUNNING, attempts=MAX_ATTEMPTS, started_at=ago(STUCK_SECONDS + 10)
    )

    sweep()

    events = AuditEvent.objects.filter(actor_label="system:work_sweep").order_by("seq")
    assert [(e.action, e.object_type, e.object_id) for e in events] == [
        ("work.requeue", "portfolios.importbatch", str(requeued.pk)),
        ("work.give_up", "portfolios.importbatch", str(given_up.pk)),
    ]
    assert events[0].before == {"status": "queued", "attempts": 0}
    assert events[1].after["status"] == "failed"


@pytest.mark.django_db
def test_work_sweep_sends_only_after_its_transaction_commits(
    registered, sent, django_capture_on_commit_callbacks
):
    make_batch(queued_at=ago(STUCK_SECONDS + 10))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        work_sweep()

    assert sent == []
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_work_sweep_task_reports_its_counts(registered, sent, django_capture_on_commit_callbacks):
    from rebalance_app.tasks import work_sweep as work_sweep_task

    make_batch(queued_at=ago(STUCK_SECONDS + 10))

    with django_capture_on_commit_callbacks(execute=True):
        assert work_sweep_task.apply().get() == {"requeued": 1, "failed": 0}
    assert len(sent) == 1


# ---------------------------------------------------------------------------
# Concurrency (PostgreSQL) and a real worker
# ---------------------------------------------------------------------------


def claim_from_two_threads_at_once(pk: int) -> list[bool]:
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work_claim(model=ImportBatch, pk=pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_the_same_row_at_once_get_exactly_one_true():
    for _ in range(10):
        batch = make_batch()

        assert sorted(claim_from_two_threads_at_once(batch.pk)) == [False, True]
        batch.refresh_from_db()
        assert batch.attempts == 1


@pytest.mark.celery_worker
def test_an_enqueued_row_is_claimed_and_finished_by_a_real_worker_exactly_once(
    live_worker, registered
):
    published: list[str] = []

    def record(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
        published.append((headers or {})["id"])

    after_task_publish.connect(record, weak=False)
    try:
        batch = make_batch()
        with transaction.atomic():
            work_enqueue(item=batch)
        first = app.AsyncResult(published[0]).get(timeout=20)
        # A duplicate delivery (the sweep, or Redis redelivering) finds the row done.
        second = process_import_batch.delay(batch.pk).get(timeout=20)
    finally:
        after_task_publish.disconnect(record)

    assert (first, second) == ({"claimed": True}, {"claimed": False})
    batch.refresh_from_db()
    assert (batch.status, batch.attempts, batch.task_id) == (
        WorkStatus.SUCCEEDED,
        1,
        published[0],
    )
