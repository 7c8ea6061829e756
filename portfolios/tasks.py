"""Celery tasks of the portfolios app: the drift scan, its chunks and the beat schedule.

Thin by design (CONVENTIONS 11): ids in, one service call, a small JSON result out. The
scan row is the source of truth; see ``portfolios.services.drift``.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="portfolios.drift_scan")
def drift_scan(scan_id: int) -> dict[str, Any]:
    """Claim the scan, split its accounts into chunks and send one chunk task each."""
    from portfolios.services.drift import drift_scan_start

    return drift_scan_start(scan_id=scan_id)


@shared_task(name="portfolios.drift_scan_chunk")
def drift_scan_chunk(scan_id: int, chunk_index: int, account_ids: list[int]) -> dict[str, Any]:
    """Scan one chunk of a scan's accounts in one transaction (idempotent)."""
    from portfolios.services.drift import drift_scan_chunk_run

    return drift_scan_chunk_run(scan_id=scan_id, chunk_index=chunk_index, account_ids=account_ids)


@shared_task(name="portfolios.drift_scan_periodic")
def drift_scan_periodic() -> dict[str, Any]:
    """Beat: prune old snapshots; on XNYS trading days request a scan of the whole firm."""
    from portfolios.services.drift import drift_scan_scheduled

    return drift_scan_scheduled()


from portfolios import tasks_imports, tasks_rebalance, tasks_risk  # noqa: E402,F401
