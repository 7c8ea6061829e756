"""``/health/``: public, never cached, 200 while the database and Redis answer, 503 when one
of them does not; workers are reported without failing the endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.utils import OperationalError
from django.urls import reverse

from rebalance_app import health
from rebalance_app.celery import app


def redis_answers() -> bool:
    from django.conf import settings

    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        return False
    return True


needs_redis = pytest.mark.skipif(not redis_answers(), reason="needs Redis at REDIS_URL")


class NoReplies:
    def ping(self) -> None:
        return None


@pytest.fixture
def no_workers(monkeypatch):
    """Whatever else runs on this Redis, no worker answers."""
    monkeypatch.setattr(app.control, "inspect", lambda **kwargs: NoReplies())


@needs_redis
@pytest.mark.django_db
def test_health_answers_200_when_database_and_redis_are_up_even_with_no_workers(client, no_workers):
    response = client.get(reverse("health"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"database", "redis", "workers"}
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is True
    assert body["workers"] == {
        "ok": False,
        "error": "no Celery worker answered a ping within 1 s",
    }


@needs_redis
@pytest.mark.django_db
def test_health_answers_503_when_the_database_check_fails(client, monkeypatch, no_workers):
    def database_down() -> dict[str, Any]:
        raise OperationalError("connection to server at 10.0.0.5 failed for user rebalance")

    monkeypatch.setattr(health, "_database", database_down)

    response = client.get(reverse("health"))

    assert response.status_code == 503
    # The driver's message (hosts, users) stays in the log, out of a public page.
    assert response.json()["database"] == {"ok": False, "error": "OperationalError"}


@pytest.mark.django_db
def test_health_answers_503_when_redis_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = client.get(reverse("health"))

    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["workers"] == {"ok": False, "error": "Redis is down"}


@pytest.mark.django_db
def test_health_needs_no_login_and_is_never_cached(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = client.get(reverse("health"))

    assert response.status_code == 503  # answered, not redirected to the login page
    cache_control = response["Cache-Control"]
    assert "no-store" in cache_control
    assert "no-cache" in cache_control
    assert "max-age=0" in cache_control


@pytest.mark.celery_worker
def test_health_reports_workers_ok_while_a_worker_runs(client, live_worker):
    response = client.get(reverse("health"))

    assert response.status_code == 200
    workers = response.json()["workers"]
    assert workers["ok"] is True
    assert live_worker.hostname in workers["workers"]
