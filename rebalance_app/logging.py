"""Structured logging: structlog renders JSON lines in production and readable lines in
development.

django-structlog binds a request id (and the user id) to every line logged during a request,
and to Celery tasks started from it; stdlib loggers (Django, Celery) go through the same
formatter, so every line of a process has one shape. ``LOG_JSON`` picks the renderer.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def structured_formatter(*, json: bool) -> logging.Formatter:
    """The formatter of every handler: one JSON object per line, or a readable line."""
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        foreign_pre_chain=SHARED_PROCESSORS,
    )


def configure_structlog(*, json: bool, level: str) -> dict[str, Any]:
    """Configure structlog and return Django's LOGGING dict that routes stdlib logs through it."""
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": "rebalance_app.logging.structured_formatter", "json": json}
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "django_structlog": {"level": level},
        },
    }
