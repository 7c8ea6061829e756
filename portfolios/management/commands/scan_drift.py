"""``manage.py scan_drift [--account ID ...] [--async]``: scan the firm's (or some accounts')
drift now, in this process, through the same service as the Celery tasks, and print what it
found; with ``--async`` only request the scan and let the workers do it."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolios.models import Account, ScanTrigger
from portfolios.services.drift import drift_scan_create, drift_scan_execute, drift_scan_request
from rebalance_app.exceptions import ApplicationError
from rebalance_app.work import WorkStatus

ACTOR = "system:scan_drift"
UNKNOWN_ACCOUNTS = "Unknown account id(s): {ids}."
QUEUED = "Drift scan {scan} queued (task {task}); follow it at /api/v1/drift-scans/{scan}/."
HEADLINE = "Drift scan {scan} ({scope}, {chunks} chunk(s)): {status} in {elapsed:.2f} s"
FAILED = "Drift scan {scan} failed: {error}"
MAX_LISTED = 50
MORE_UNSCANNABLE = "    ... and {count} more (GET /api/v1/drift-scans/{scan}/ lists them all)"


class Command(BaseCommand):
    help = (
        "Scan drift now: every account of the firm but closed ones, or the accounts given with "
        "--account. Runs in this process and prints accounts scanned, breached, not scannable "
        "(with each reason), alerts raised and cleared, and the time taken. --async queues the "
        "scan for the Celery workers instead and prints its id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            dest="accounts",
            action="extend",
            nargs="+",
            type=int,
            metavar="ID",
            help="Account id(s) to scan (repeatable); default: the whole firm.",
        )
        parser.add_argument(
            "--async",
            dest="run_async",
            action="store_true",
            help="Queue the scan for the workers instead of running it here.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids = options["accounts"]
        if ids is not None:
            known = set(Account.objects.filter(pk__in=ids).values_list("pk", flat=True))
            unknown = sorted(set(ids) - known)
            if unknown:
                raise CommandError(UNKNOWN_ACCOUNTS.format(ids=", ".join(map(str, unknown))))
        try:
            if options["run_async"]:
                scan = drift_scan_request(actor=ACTOR, account_ids=ids, trigger=ScanTrigger.MANUAL)
                self.stdout.write(QUEUED.format(scan=scan.pk, task=scan.task_id or "pending"))
                return
            started = time.monotonic()
            scan = drift_scan_create(actor=ACTOR, account_ids=ids, trigger=ScanTrigger.MANUAL)
            scan = drift_scan_execute(scan=scan).scan
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        elapsed = time.monotonic() - started
        if scan.status != WorkStatus.SUCCEEDED:
            raise CommandError(FAILED.format(scan=scan.pk, error=scan.error or scan.status))
        self._summary(scan, elapsed)
        from portfolios.selectors.data_quality import data_quality_firm_report, data_quality_summary

        self.stdout.write(data_quality_summary(data_quality_firm_report()))

    def _summary(self, scan: Any, elapsed: float) -> None:
        scope = "whole firm" if scan.account_ids is None else f"{len(scan.account_ids)} account(s)"
        write = self.stdout.write
        write(
            self.style.SUCCESS(
                HEADLINE.format(
                    scan=scan.pk,
                    scope=scope,
                    chunks=scan.chunks_total,
                    status=scan.status,
                    elapsed=elapsed,
                )
            )
        )
        write(f"  accounts scanned:      {scan.accounts_scanned}")
        write(f"  breached:              {scan.accounts_breached}")
        write(f"  not scannable:         {scan.accounts_unscannable}")
        reasons = sorted(scan.unscannable.items(), key=lambda item: int(item[0]))
        numbers = dict(
            Account.objects.filter(pk__in=[int(k) for k, _ in reasons[:MAX_LISTED]]).values_list(
                "pk", "account_number"
            )
        )
        for account_id, reason in reasons[:MAX_LISTED]:
            write(f"    {numbers.get(int(account_id), account_id)} (id {account_id}): {reason}")
        if len(reasons) > MAX_LISTED:
            write(MORE_UNSCANNABLE.format(count=len(reasons) - MAX_LISTED, scan=scan.pk))
        write(f"  alerts raised:         {scan.alerts_raised}")
        write(f"  alerts cleared:        {scan.alerts_cleared}")
        write(f"  elapsed:               {elapsed:.2f} s")
