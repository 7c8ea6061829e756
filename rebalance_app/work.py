"""Work rows: the database, not the broker, is the source of truth for background work.

A piece of long work (a rebalance run, an import, a route) is a row with a status before its
task is enqueued, and the enqueue happens only after the row is committed. The task claims the
row with a conditional update (queued -> running, attempts + 1); if the update touches no row,
someone else has it or it is done, and the task returns. A periodic sweep re-enqueues rows left
queued or running past a timeout (Redis here keeps nothing on disk, so a restart loses queued
messages) and fails rows that have used up their attempts, so a task that crashes its worker
cannot loop forever.

Concrete models inherit ``WorkItem`` and register the dotted name of the task that processes
them with ``register_work_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from collections.abc import Iterable


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


def work_enqueue(*, item: WorkItem) -> None:
    """Send the row's task once the surrounding transaction has committed."""
    registration = _REGISTRY[type(item)._meta.label]
    pk = item.pk

    def _send() -> None:
        from rebalance_app.celery import app

        result = app.send_task(registration.task_name, args=[pk])
        type(item).objects.filter(pk=pk).update(task_id=result.id)

    transaction.on_commit(_send)


def work_claim(*, model: type[WorkItem], pk: Any) -> bool:
    """Move a queued row to running. Returns False when another worker has it or it is done.

    The claim also takes a row left ``running`` whose worker died (the sweep re-enqueued it),
    but only once it is past the stuck timeout, so two live workers never both hold it.
    """
    now = timezone.now()
    stuck_before = now - timedelta(seconds=settings.WORK_STUCK_AFTER_SECONDS)
    claimable = models.Q(status=WorkStatus.QUEUED) | models.Q(
        status=WorkStatus.RUNNING, started_at__lt=stuck_before
    )
    updated = (
        model.objects.filter(claimable, pk=pk, attempts__lt=settings.WORK_MAX_ATTEMPTS)
        .update(status=WorkStatus.RUNNING, started_at=now, attempts=models.F("attempts") + 1)
    )
    return updated == 1


def work_finish(*, model: type[WorkItem], pk: Any, status: str = WorkStatus.SUCCEEDED) -> None:
    model.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
        status=status, finished_at=timezone.now()
    )


def work_fail(*, model: type[WorkItem], pk: Any, error: str, detail: str = "") -> None:
    model.objects.filter(pk=pk).exclude(status=WorkStatus.SUCCEEDED).update(
        status=WorkStatus.FAILED, finished_at=timezone.now(), error=error[:500], error_detail=detail
    )


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    failed: int


def work_sweep(*, now: Any = None) -> SweepResult:
    """Re-enqueue rows stuck in queued/running past the timeout; fail those out of attempts."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WORK_STUCK_AFTER_SECONDS)
    requeued = failed = 0
    for registration in registered_work_models():
        model = registration.model
        stuck = model.objects.filter(
            models.Q(status=WorkStatus.QUEUED, queued_at__lt=cutoff)
            | models.Q(status=WorkStatus.RUNNING, started_at__lt=cutoff)
        )
        exhausted = stuck.filter(attempts__gte=settings.WORK_MAX_ATTEMPTS)
        failed += exhausted.update(
            status=WorkStatus.FAILED,
            finished_at=now,
            error="Gave up after the maximum number of attempts (the worker died or timed out).",
        )
        for pk in stuck.filter(attempts__lt=settings.WORK_MAX_ATTEMPTS).values_list(
            "pk", flat=True
        ):
            # queued_at moves forward so the row is not re-sent on every sweep
            model.objects.filter(pk=pk, status=WorkStatus.QUEUED).update(queued_at=now)
            from rebalance_app.celery import app

            app.send_task(registration.task_name, args=[pk])
            requeued += 1
    return SweepResult(requeued=requeued, failed=failed)
