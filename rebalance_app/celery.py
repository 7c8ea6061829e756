"""The Celery app, configured from Django settings (the ``CELERY_`` namespace).

Workers log through Django's ``LOGGING`` (structlog: JSON lines in production) instead of
Celery's own root-logger set-up, and django-structlog binds the task id, and the request id of
the web request that enqueued the task, to every line a task logs. Reliability settings
(acks_late, reject_on_worker_lost, prefetch 1, time limits below the visibility timeout) live
in settings.py; docs/background-work.md explains them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings")

app = Celery("rebalance_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """Keep Celery's handlers off the root logger: ``django.setup()`` applies settings.LOGGING
    (structlog); ``--loglevel`` of ``celery worker``/``celery beat`` still sets the level."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    if loglevel:
        logging.getLogger().setLevel(loglevel)
