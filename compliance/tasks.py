"""Compliance tasks: checkpoint the audit chain head outside the database (run by beat every
few minutes; see the "Audit chain checkpoint" periodic task)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="compliance.audit_checkpoint")
def audit_checkpoint() -> dict[str, object]:
    """Verify what was appended since the last checkpoint, then append the chain head to
    AUDIT_CHECKPOINT_PATH; returns it (seq 0 for an empty chain, ``refused`` when broken)."""
    from compliance.services.audit import audit_checkpoint_take

    return audit_checkpoint_take()
