"""Celery task of the imports: process one submitted batch (``portfolios.services.imports``).

Thin by design (CONVENTIONS 11): the batch id in, one service call, a small JSON result out.
The batch row is the source of truth: the service claims it, so a redelivered message does
nothing twice. Imported by ``portfolios.tasks`` so that autodiscovery registers it.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

IMPORT_TASK = "portfolios.import_process"


@shared_task(name=IMPORT_TASK)
def import_process(batch_id: int) -> dict[str, Any]:
    """Read, validate and write one import batch, all or nothing."""
    from portfolios.services.imports import import_process as process

    return process(batch_id=batch_id)
