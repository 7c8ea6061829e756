"""Project-wide tasks: the work-row sweep (run by beat every minute) and a ping used by
health checks and tests."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="rebalance_app.ping")
def ping(value: str = "pong") -> dict[str, str]:
    """Round trip through the broker and a worker; returns what it was given."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"pong": value, "database": connection.vendor}


@shared_task(name="rebalance_app.work_sweep")
def work_sweep() -> dict[str, int]:
    """Re-enqueue stuck work rows and fail those out of attempts (rebalance_app.work)."""
    from rebalance_app.work import work_sweep as sweep

    result = sweep()
    return {"requeued": result.requeued, "failed": result.failed}
