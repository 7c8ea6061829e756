"""Health checks of the database, Redis and the Celery workers, for ``/health/``.

The endpoint is public and never cached: it reports only whether each dependency answers
(and how fast), never data. A failing check shows only the exception's class name (a driver's
message can name hosts and users); the full error goes to the log. The database and Redis
decide the status code (503 when either is down); workers being down is reported but does not
fail the check, since the web tier can still serve pages and work rows wait in the database
until a worker returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.db import connection

logger = structlog.get_logger(__name__)

WORKER_PING_TIMEOUT = 1.0
NO_WORKER = "no Celery worker answered a ping within {timeout:g} s"
REDIS_DOWN = "Redis is down"


class CheckFailed(Exception):
    """A check's own failure, whose message is safe to show."""


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
    except CheckFailed as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a health check reports every failure
        logger.warning("health_check_failed", check=check.__name__.strip("_"), exc_info=exc)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **detail}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _redis() -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    client.ping()
    return {}


def _workers() -> dict[str, Any]:
    from rebalance_app.celery import app

    replies = app.control.inspect(timeout=WORKER_PING_TIMEOUT).ping() or {}
    if not replies:
        raise CheckFailed(NO_WORKER.format(timeout=WORKER_PING_TIMEOUT))
    return {"workers": sorted(replies)}


def health_report() -> dict[str, Any]:
    """``{"database": {...}, "redis": {...}, "workers": {...}}``, each with ``ok``."""
    database = _timed(_database)
    redis = _timed(_redis)
    workers = _timed(_workers) if redis["ok"] else {"ok": False, "error": REDIS_DOWN}
    return {"database": database, "redis": redis, "workers": workers}
