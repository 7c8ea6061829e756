"""Celery tasks of rebalance runs: one task per run (or per chunk of a batch's runs), a chord
callback per batch, and
the auto-propose hook of drift alerts. Thin (CONVENTIONS 11): see
``portfolios.services.rebalance``."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="portfolios.rebalance_run")
def rebalance_run(run_id: int) -> dict[str, Any]:
    """Claim the run, build its problem, optimize and store the proposal (idempotent)."""
    from portfolios.services.rebalance import rebalance_run_execute

    return rebalance_run_execute(run_id=run_id)


@shared_task(name="portfolios.rebalance_chunk")
def rebalance_chunk(batch_id: int, run_ids: list[int]) -> dict[str, Any]:
    """Run a chunk of a batch's runs, their inputs read once (each run claimed on its own)."""
    from portfolios.services.rebalance import rebalance_runs_execute

    results = rebalance_runs_execute(run_ids=run_ids)
    done: dict[str, int] = {}
    for r in results:
        key = str(r.get("status", "not_claimed"))
        done[key] = done.get(key, 0) + 1
    return {"batch": batch_id, "runs": len(run_ids), **done}


@shared_task(name="portfolios.rebalance_batch_finish")
def rebalance_batch_finish(batch_id: int) -> dict[str, Any]:
    """Chord callback: close the batch once none of its runs is pending."""
    from portfolios.services.rebalance import rebalance_batch_finish as finish

    return finish(batch_id=batch_id)


@shared_task(name="portfolios.rebalance_auto_propose")
def rebalance_auto_propose(account_ids: list[int]) -> dict[str, Any]:
    """Propose for newly breached accounts that asked for it."""
    from portfolios.services.rebalance import rebalance_auto_propose as propose

    return {"runs": propose(account_ids=account_ids)}
