"""``manage.py verify_audit``: recompute the audit trail's hash chain and compare it with the
checkpoints kept outside the database (DESIGN 8).

Exits 0 when the chain is intact and 1, naming the first broken event, when a row was altered,
deleted, inserted out of chain, or the tail was cut below a checkpoint. Read-only: it records
nothing, so it can run against a replica or during an investigation.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.selectors import audit_chain_verify

CHECKPOINTS_UNREADABLE = "Cannot read the audit checkpoints: {error}"


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's SHA-256 hash chain in sequence order and compare it with "
        "the checkpoints in AUDIT_CHECKPOINT_PATH. Prints 'Audit chain intact: N events "
        "verified (head #S).' and exits 0, or names the first broken event (id and sequence) "
        "or the missing tail and exits 1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = audit_chain_verify()
        except ValueError as exc:
            raise CommandError(CHECKPOINTS_UNREADABLE.format(error=exc), returncode=2) from exc
        if not result.ok:
            raise CommandError(result.message, returncode=1)
        self.stdout.write(self.style.SUCCESS(result.message))
