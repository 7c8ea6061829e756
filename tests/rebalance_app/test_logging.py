"""Logging: JSON lines carrying the request id when LOG_JSON is on, readable lines when off."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebalance_app.logging import structured_formatter

BASE_DIR = Path(__file__).resolve().parents[2]
REQUEST_LOGGER = "django_structlog"


@pytest.fixture
def captured_request_log() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """A handler on django-structlog's request logger at INFO; the test picks its formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(REQUEST_LOGGER)
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def lines_of(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.django_db
def test_with_log_json_a_request_logs_json_objects_carrying_its_request_id(
    client, captured_request_log
):
    stream, handler = captured_request_log
    handler.setFormatter(structured_formatter(json=True))

    response = client.get("/login/")

    events = [json.loads(line) for line in lines_of(stream)]
    started = next(e for e in events if e["event"] == "request_started")
    assert started["request_id"] == response["X-Request-ID"]
    assert started["level"] == "info"
    assert started["request"] == "GET /login/"
    assert all(e["request_id"] == response["X-Request-ID"] for e in events)


@pytest.mark.django_db
def test_without_log_json_a_request_logs_readable_lines(client, captured_request_log):
    stream, handler = captured_request_log
    handler.setFormatter(structured_formatter(json=False))

    response = client.get("/login/")

    started = next(line for line in lines_of(stream) if "request_started" in line)
    assert not started.startswith("{")
    assert "[info     ] request_started" in started
    assert f"request_id={response['X-Request-ID']}" in started


def log_from_a_fresh_process(**env: str) -> str:
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('rebalance').warning('checkpoint %s written', 7)"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "rebalance_app.settings",
            "SECRET_KEY": "k" * 60,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stderr.strip().splitlines()[-1]


def test_settings_log_json_lines_by_default_in_production():
    line = log_from_a_fresh_process()

    event = json.loads(line)
    assert (event["event"], event["level"], event["logger"]) == (
        "checkpoint 7 written",
        "warning",
        "rebalance",
    )


def test_settings_log_readable_lines_when_log_json_is_off():
    line = log_from_a_fresh_process(LOG_JSON="0")

    assert "[warning  ] checkpoint 7 written" in line
    assert "[rebalance]" in line
