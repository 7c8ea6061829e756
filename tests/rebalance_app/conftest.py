"""A real Celery worker on Redis for integration tests: ``celery_worker_app`` and ``live_worker``.

``live_worker`` runs ``celery.contrib.testing.worker.start_worker`` (solo pool) in a thread of
the test process, consuming a queue of this test's own, so a developer's worker on the same
Redis database neither steals the test's messages nor is fed them. It requests
``transactional_db``: the test's rows are committed, so the worker sees them. On PostgreSQL the
worker thread opens its own connection to the test database; with SQLite's in-memory test
database the worker thread borrows the test thread's connection (as Django's live server
does), so the test must wait for results (``.get()``) rather than use the database while a
task runs.

Usage::

    @pytest.mark.celery_worker
    def test_something(live_worker):
        assert ping.delay("x").get(timeout=10)["pong"] == "x"
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_prerun
from django.db import connections

if TYPE_CHECKING:
    from celery import Celery
    from celery.worker import WorkController


@pytest.fixture
def celery_worker_app() -> Iterator[Celery]:
    """The project's Celery app (broker and backend from settings), routed to a queue of its own."""
    from rebalance_app.celery import app

    original_queue = app.conf.task_default_queue
    queue = f"test-{uuid.uuid4().hex[:12]}"
    app.conf.task_default_queue = queue
    try:
        yield app
    finally:
        app.conf.task_default_queue = original_queue
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            # kombu's Redis transport keeps a binding set per exchange; the queue's exchange
            # is as throwaway as the queue.
            keys = [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
            if hasattr(channel, "client"):
                channel.client.delete(*keys)


def _shared_in_memory_connections() -> dict[str, Any]:
    return {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }


@pytest.fixture
def live_worker(celery_worker_app: Celery, transactional_db: None) -> Iterator[WorkController]:
    """A running worker (solo pool, one thread of this process) on the test's own queue."""
    shared = _shared_in_memory_connections()
    for conn in shared.values():
        conn.inc_thread_sharing()

    def _borrow_connections(**kwargs: Any) -> None:
        for alias, conn in shared.items():
            connections[alias] = conn

    def _release_connections(**kwargs: Any) -> None:
        # The worker thread's own PostgreSQL connections must not outlive the test: the test
        # database is dropped at the end of the session.
        for conn in connections.all(initialized_only=True):
            if conn.alias not in shared:
                conn.close()

    task_prerun.connect(_borrow_connections, weak=False)
    task_postrun.connect(_release_connections, weak=False)
    try:
        with start_worker(
            celery_worker_app,
            pool="solo",
            perform_ping_check=False,
            queues=[celery_worker_app.conf.task_default_queue],
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as worker:
            yield worker
    finally:
        task_prerun.disconnect(_borrow_connections)
        task_postrun.disconnect(_release_connections)
        for conn in shared.values():
            conn.dec_thread_sharing()
