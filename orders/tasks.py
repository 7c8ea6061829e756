"""Celery tasks of routing and execution. Thin (CONVENTIONS 11): see
``orders.services_routing``. The routing job row is the source of truth; the sweep
re-enqueues a job whose message was lost."""

from __future__ import annotations

from typing import Any

from celery import shared_task

ROUTE_TASK = "orders.route_job"


@shared_task(name=ROUTE_TASK)
def route_job(job_id: int) -> dict[str, Any]:
    """Claim the routing job, prepare its blocks and send them (idempotent)."""
    from orders.services_routing import routing_job_execute

    return routing_job_execute(job_id=job_id)


@shared_task(name="orders.route_cancel_send", bind=True, max_retries=20)
def route_cancel_send(self: Any, route_id: int) -> dict[str, Any]:
    """Send one OrderCancelRequest; retried while another process holds the FIX session."""
    from orders.services_routing import RoutingStopped
    from orders.services_routing import route_cancel_send as send

    try:
        return send(route_id=route_id)
    except RoutingStopped as exc:
        raise self.retry(countdown=3, exc=exc) from exc


@shared_task(name="orders.fix_sync")
def fix_sync() -> dict[str, Any]:
    """Beat: collect execution reports for open FIX orders."""
    from orders.services_routing import fix_sync as sync

    return sync()
