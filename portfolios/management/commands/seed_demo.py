"""`manage.py seed_demo`: build the demo firm from real prices (idempotent), optionally add
generated accounts for scale tests. The work is done by ``portfolios.demo``."""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolios.demo import (
    demo_analyze,
    demo_counts,
    demo_firm_has_accounts,
    demo_scale,
    demo_seed,
)
from rebalance_app.exceptions import ApplicationError

IF_EMPTY_SKIPPED = "Accounts already exist: nothing to seed (--if-empty)."


class Command(BaseCommand):
    help = (
        "Create the demo firm (users of every role, two PM teams, securities with real prices "
        "shifted to end on the latest completed NYSE session, models, households, accounts, "
        "lots, transactions). Running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            help="Password for the demo users (else $DEMO_PASSWORD, else the default). When "
            "given, existing demo users get it too.",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when any account exists already (used by `make run`).",
        )
        parser.add_argument(
            "--accounts",
            type=int,
            default=0,
            metavar="N",
            help="Also add N generated accounts (each run adds N more) for scale tests.",
        )
        parser.add_argument(
            "--history-days",
            type=int,
            default=None,
            metavar="DAYS",
            help="Load only the last DAYS rows of the price data (a quick look; default: all).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        if options["if_empty"] and demo_firm_has_accounts():
            self.stdout.write(IF_EMPTY_SKIPPED)
            return
        password = options["password"] or os.environ.get("DEMO_PASSWORD") or None
        try:
            result = demo_seed(
                password=password, stdout=self.stdout, history_days=options["history_days"]
            )
            if options["accounts"]:
                demo_scale(
                    accounts=options["accounts"],
                    stdout=self.stdout,
                    history_days=options["history_days"],
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        demo_analyze()

        self.stdout.write("")
        self.stdout.write(f"{'user':<12} {'roles':<22} password")
        for username, roles, shown in result.users:
            self.stdout.write(f"{username:<12} {roles:<22} {shown}")
        self.stdout.write("")
        self.stdout.write("  ".join(f"{name}: {count:,}" for name, count in demo_counts().items()))
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready in {time.monotonic() - started:.1f} s.")
        )
