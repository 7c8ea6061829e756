"""Work rows: the database, not the broker, is the source of truth for background work.

A piece of long work (a rebalance run, an import, a route) is a row with a status before its
task is enqueued, and the enqueue happens only after the row is committed. The task claims the
row with a conditional update (queued -> running, attempts + 1); if the update touches no row,
someone else has it or it is done, and the task returns. A periodic sweep re-enqueues rows left
queued or running past a timeout (Redis here keeps nothing on disk, so a restart loses queued
messages) and fails rows that have used up their attempts, so a task that crashes its worker
cannot loop forever. Every sweep action is written to the audit trail.

Concrete models inherit ``WorkItem`` and register the dotted name of the task that processes
them with ``register_work_model`` (in their app's ``AppConfig.ready``). The task takes the
row's primary key as its only argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from collections.abc import Iterable

SWEEP_ACTOR = "system:work_sweep"
ACTION_REQUEUE = "work.requeue"
ACTION_GIVE_UP = "work.give_up"
GAVE_UP_ERROR = "Gave up after {attempts} attempts: the worker died or timed out each time."
GAVE_UP_DETAIL = (
    "The row was {status} for more than {seconds} s with no attempts left "
    "(WORK_MAX_ATTEMPTS={max_attempts})."
)
NOT_REGISTERED = "{label} is not a registered work model: call register_work_model first."


class WorkStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WorkItem(models.Model):
    """Abstract base of every row that stands for a piece of background work."""

    status = models.CharField(max_length=20, default=WorkStatus.QUEUED, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    error_detail = models.TextField(blank=True)

    class Meta:
        abstract = True

    # States in which the sweep considers the row still owed work.
    PENDING_STATES: tuple[str, ...] = (WorkStatus.QUEUED, WorkStatus.RUNNING)


@dataclass(frozen=True)
class WorkRegistration:
    model: type[WorkItem]
    task_name: str


_REGISTRY: dict[str, WorkRegistration] = {}


def register_work_model(model: type[WorkItem], task_name: str) -> None:
    """Declare that rows of ``model`` are processed by the Celery task ``task_name(pk)``."""
    _REGISTRY[model._meta.label] = WorkRegistration(model=model, task_name=task_name)


def registered_work_models() -> Iterable[WorkRegistration]:
    return list(_REGISTRY.values())


def _registration(model: type[WorkItem]) -> WorkRegistration:
    try:
        return _REGISTRY[model._meta.label]
    except KeyError:
        raise LookupError(NOT_REGISTERED.format(label=model._meta.label)) from None


def _send(model: type[WorkItem], task_name: str, pk: Any) -> None:
    from celery.utils import uuid

    from rebalance_app.celery import app

    # The id is stored before the message exists, so the row is never written after the
    # worker may already have started on it.
    task_id = uuid()
    model.objects.filter(pk=pk).update(task_id=task_id)
    app.send_task(task_name, args=[pk], task_id=task_id)


def work_enqueue(*, item: WorkItem) -> None:
    """Send the row's task once the surrounding transaction has committed.

    The send is ``robust``: if the broker is down the committed row stays queued and the
    sweep sends it later, instead of the caller's request failing after its commit.
    """
    model = type(item)
    registration = _registration(model)
    pk = item.pk
    transaction.on_commit(lambda: _send(model, registration.task_name, pk), robust=True)


def work_claim(*, model: type[WorkItem], pk: Any) -> bool:
    """Move a queued row to running. Returns False when another worker has it or it is done.

    The claim also takes a row left ``running`` whose worker died (a redelivered message), but
    only once it is past the stuck timeout, so two live workers never both hold it. A row that
    has used up its attempts is never claimed again; the sweep fails it.
    """
    now = timezone.now()
    stuck_before = now - timedelta(seconds=settings.WORK_STUCK_AFTER_SECONDS)
    claimable = models.Q(status=WorkStatus.QUEUED) | models.Q(
        status=WorkStatus.RUNNING, started_at__lt=stuck_before
    )
    updated = model.objects.filter(
        claimable, pk=pk, attempts__lt=settings.WORK_MAX_ATTEMPTS
    ).update(
        status=WorkStatus.RUNNING,
        started_at=now,
        finished_at=None,
        attempts=models.F("attempts") + 1,
    )
    return updated == 1


def work_finish(*, model: type[WorkItem], pk: Any, status: str = WorkStatus.SUCCEEDED) -> bool:
    """Move a running row to a final ``status``. Returns False when the row was not running."""
    updated = model.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
        status=status, finished_at=timezone.now()
    )
    return updated == 1


def work_fail(*, model: type[WorkItem], pk: Any, error: str, detail: str = "") -> bool:
    """Record a failure on a queued or running row. A finished row is left as it is."""
    updated = model.objects.filter(pk=pk, status__in=WorkItem.PENDING_STATES).update(
        status=WorkStatus.FAILED, finished_at=timezone.now(), error=error[:500], error_detail=detail
    )
    return updated == 1


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    failed: int


def _stuck(model: type[WorkItem], cutoff: datetime) -> models.QuerySet[Any]:
    return model.objects.filter(
        models.Q(status=WorkStatus.QUEUED, queued_at__lt=cutoff)
        | models.Q(status=WorkStatus.RUNNING, started_at__lt=cutoff)
    )


def work_sweep(*, now: datetime | None = None) -> SweepResult:
    """Re-enqueue rows stuck in queued/running past the timeout; fail those out of attempts.

    Each row is handled in its own transaction with a conditional update on the state the
    sweep saw (status, attempts and the stuck timestamp), so a worker that claims the row in
    the meantime wins and the sweep leaves it alone. A requeued row goes back to ``queued``
    with a fresh ``queued_at``, so it is sent once per timeout, not on every sweep.
    """
    from compliance.services.audit import audit_record

    now = now or timezone.now()
    stuck_seconds = settings.WORK_STUCK_AFTER_SECONDS
    max_attempts = settings.WORK_MAX_ATTEMPTS
    cutoff = now - timedelta(seconds=stuck_seconds)
    requeued = failed = 0
    for registration in registered_work_models():
        model = registration.model
        rows = list(
            _stuck(model, cutoff)
            .order_by("pk")
            .only("pk", "status", "attempts", "queued_at", "started_at")
        )
        for row in rows:
            before = {"status": row.status, "attempts": row.attempts}
            same_state = _stuck(model, cutoff).filter(
                pk=row.pk, status=row.status, attempts=row.attempts
            )
            with transaction.atomic():
                if row.attempts >= max_attempts:
                    error = GAVE_UP_ERROR.format(attempts=row.attempts)
                    detail = GAVE_UP_DETAIL.format(
                        status=row.status, seconds=stuck_seconds, max_attempts=max_attempts
                    )
                    if not same_state.update(
                        status=WorkStatus.FAILED, finished_at=now, error=error, error_detail=detail
                    ):
                        continue
                    audit_record(
                        actor=SWEEP_ACTOR,
                        action=ACTION_GIVE_UP,
                        obj=row,
                        before=before,
                        after={"status": WorkStatus.FAILED, "error": error},
                    )
                    failed += 1
                else:
                    if not same_state.update(status=WorkStatus.QUEUED, queued_at=now):
                        continue
                    audit_record(
                        actor=SWEEP_ACTOR,
                        action=ACTION_REQUEUE,
                        obj=row,
                        before=before,
                        after={"status": WorkStatus.QUEUED, "attempts": row.attempts},
                    )
                    transaction.on_commit(
                        lambda m=model, t=registration.task_name, pk=row.pk: _send(m, t, pk),
                        robust=True,
                    )
                    requeued += 1
    return SweepResult(requeued=requeued, failed=failed)
