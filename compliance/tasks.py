"""Compliance tasks: checkpoint the audit chain head outside the database."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="compliance.audit_checkpoint")
def audit_checkpoint() -> dict[str, object]:
    from compliance.services.audit import audit_checkpoint_write

    checkpoint = audit_checkpoint_write()
    return {"seq": checkpoint.seq if checkpoint else 0, "hash": checkpoint.hash if checkpoint else ""}
