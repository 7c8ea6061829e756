"""Celery wiring: the reliability settings the work-row pattern relies on, and a round trip
through a real worker on Redis that shares the test's database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import shared_task

from portfolios.models import ImportBatch, ImportKind
from rebalance_app.celery import app
from rebalance_app.tasks import ping

BASE_DIR = Path(__file__).resolve().parents[2]
TIME_LIMIT_MESSAGE = (
    "CELERY_TASK_TIME_LIMIT must be below CELERY_VISIBILITY_TIMEOUT, or Redis redelivers "
    "tasks that are still running."
)


@shared_task(name="tests.rebalance_app.import_batch_file_names")
def import_batch_file_names() -> list[str]:
    """What the worker sees in the database."""
    return sorted(ImportBatch.objects.values_list("file_name", flat=True))


def test_tasks_are_acknowledged_late_and_requeued_when_the_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_hard_time_limit_is_below_the_visibility_timeout_and_above_the_soft_limit():
    visibility_timeout = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_time_limit < visibility_timeout
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_tasks_and_results_are_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_broker_and_result_backend_come_from_settings(settings):
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert app.conf.result_backend == settings.CELERY_RESULT_BACKEND


def test_beat_uses_the_database_scheduler():
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_settings_refuse_a_time_limit_at_or_above_the_visibility_timeout():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "rebalance_app.settings",
        "CELERY_TASK_TIME_LIMIT": "4000",
        "CELERY_VISIBILITY_TIMEOUT": "3600",
        "SECRET_KEY": "x",
        "DEBUG": "0",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {TIME_LIMIT_MESSAGE}" in result.stderr


@pytest.mark.celery_worker
def test_ping_makes_a_round_trip_through_a_real_worker(live_worker):
    from django.db import connection

    result = ping.delay("hello").get(timeout=20)

    assert result == {"pong": "hello", "database": connection.vendor}


@pytest.mark.celery_worker
def test_the_worker_sees_rows_the_test_committed(live_worker):
    for name in ("prices.csv", "lots.csv"):
        ImportBatch.objects.create(kind=ImportKind.PRICES, file_name=name, sha256="0" * 64)

    assert import_batch_file_names.delay().get(timeout=20) == ["lots.csv", "prices.csv"]


@pytest.mark.django_db
def test_beat_schedules_exist_after_migrations():
    from django_celery_beat.models import PeriodicTask

    schedules = {
        task.name: (task.task, task.interval.every, task.interval.period, task.enabled)
        for task in PeriodicTask.objects.select_related("interval").filter(interval__isnull=False)
    }

    assert schedules["Audit chain checkpoint"] == (
        "compliance.audit_checkpoint",
        5,
        "minutes",
        True,
    )
    assert schedules["Sweep stuck work"] == ("rebalance_app.work_sweep", 1, "minutes", True)


def test_the_scheduled_task_names_are_registered_with_the_app():
    app.loader.import_default_modules()

    assert {"compliance.audit_checkpoint", "rebalance_app.work_sweep"} <= set(app.tasks)
