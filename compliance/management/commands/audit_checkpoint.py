"""``manage.py audit_checkpoint``: append the audit chain's head to the checkpoint file now.

Celery beat does the same on a schedule (``compliance.audit_checkpoint``). This command first
verifies the chain against the earlier checkpoints, so a tampered chain is never blessed by a
new checkpoint; ``--no-verify`` skips that (e.g. on a very large trail, right after a
``verify_audit`` run).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.selectors import audit_chain_verify
from compliance.services.audit import audit_checkpoint_write, checkpoint_path

EMPTY_TRAIL = "The audit trail is empty: no checkpoint written."
CHECKPOINT_WRITTEN = "Checkpoint #{seq} {hash} is in {path}."
REFUSED = "No checkpoint written: {message}"


class Command(BaseCommand):
    help = (
        "Append the current head of the audit chain (sequence number and hash) to the "
        "checkpoint file in AUDIT_CHECKPOINT_PATH, after verifying the chain. Copy that file "
        "somewhere the database's administrators cannot change it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-verify",
            action="store_true",
            help="Write the checkpoint without verifying the chain first.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_verify"]:
            result = audit_chain_verify()
            if not result.ok:
                raise CommandError(REFUSED.format(message=result.message), returncode=1)
        checkpoint = audit_checkpoint_write()
        if checkpoint is None:
            self.stdout.write(EMPTY_TRAIL)
            return
        self.stdout.write(
            self.style.SUCCESS(
                CHECKPOINT_WRITTEN.format(
                    seq=checkpoint.seq, hash=checkpoint.hash, path=checkpoint_path()
                )
            )
        )
