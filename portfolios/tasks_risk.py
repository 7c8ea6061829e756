"""Celery task of the risk model: rebuild it when the prices moved on
(``portfolios.services.risk``).

Thin by design (CONVENTIONS 11): no arguments, one service call, a small JSON result out. The
build is idempotent per price date, so a second delivery (or the daily schedule after a price
import already rebuilt it) changes nothing. Imported by ``portfolios.tasks`` so that
autodiscovery registers it.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

REBUILD_TASK = "portfolios.risk_model_rebuild"


@shared_task(name=REBUILD_TASK)
def risk_model_rebuild() -> dict[str, Any]:
    """Build a new risk model version if the latest prices are newer than the current one."""
    from portfolios.services.risk import risk_model_refresh

    return risk_model_refresh()
