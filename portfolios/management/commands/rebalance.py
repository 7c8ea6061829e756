"""``manage.py rebalance ACCOUNT --mode MODE [--cash AMOUNT] [--param NAME=VALUE ...]``:
propose a rebalance of one account (by id or account number) through the same service as the
API, run it in this process and print the trades; ``--async`` queues it for the workers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolios.models import Account, RebalanceMode, RebalanceRun, RunStatus
from portfolios.services.rebalance import rebalance_run_execute, rebalance_run_request
from rebalance_app.exceptions import ApplicationError

ACTOR = "system:rebalance_command"
UNKNOWN_ACCOUNT = "Unknown account '{account}': give an account id or account number."
BAD_PARAM = "--param takes NAME=VALUE (got '{raw}')."
QUEUED = "Run {run} queued; follow it at /api/v1/rebalance-runs/{run}/."
HEADLINE = (
    "Run {run} ({mode}) of account {account}: {status} - solver {solver}, {solve_ms:.1f} ms, "
    "input hash {hash}"
)
ROW = "  {side:<4} {qty:>12} {ticker:<8} {notional:>14}  {reason:<11} {explanation}"


class Command(BaseCommand):
    help = (
        "Propose a rebalance of one account: build its problem from the database, optimize, "
        "store the run and print its trades, metrics and warnings. --async queues it for the "
        "Celery workers instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account", help="Account id or account number.")
        parser.add_argument("--mode", required=True, choices=RebalanceMode.values)
        parser.add_argument(
            "--cash", type=str, default=None, help="Amount to raise (mode cash_raise)."
        )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="Another run parameter, e.g. turnover_limit=0.1 or esg_sell_out=true.",
        )
        parser.add_argument(
            "--async", dest="run_async", action="store_true", help="Queue it for the workers."
        )

    def _account_id(self, raw: str) -> int:
        qs = Account.objects.filter(account_number=raw)
        if raw.isdigit():
            qs = Account.objects.filter(pk=int(raw)) | qs
        ids = list(qs.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            raise CommandError(UNKNOWN_ACCOUNT.format(account=raw))
        return ids[0]

    def handle(self, *args: Any, **options: Any) -> None:
        params: dict[str, Any] = {}
        for raw in options["param"]:
            name, sep, value = raw.partition("=")
            if not sep or not name:
                raise CommandError(BAD_PARAM.format(raw=raw))
            params[name.strip()] = value.strip()
        if options["cash"] is not None:
            params["cash_amount"] = options["cash"]
        account_id = self._account_id(options["account"])
        try:
            run = rebalance_run_request(
                actor=ACTOR,
                account_id=account_id,
                mode=options["mode"],
                parameters=params,
                enqueue=options["run_async"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["run_async"]:
            self.stdout.write(QUEUED.format(run=run.pk))
            return
        rebalance_run_execute(run_id=run.pk)
        run = RebalanceRun.objects.select_related("account").get(pk=run.pk)
        self._print(run)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(run.error)

    def _print(self, run: RebalanceRun) -> None:
        out = self.stdout
        out.write(
            HEADLINE.format(
                run=run.pk,
                mode=run.mode,
                account=run.account.account_number,
                status=run.status,
                solver=run.solver or "-",
                solve_ms=run.solve_ms or 0.0,
                hash=run.input_hash[:12] or "-",
            )
        )
        for conflict in run.diagnostics.get("conflicts", []):
            out.write(f"  conflict: {conflict.get('message', conflict)}")
        for t in run.trades:
            out.write(
                ROW.format(
                    side=t["side"],
                    qty=f"{t['quantity']:,.6g}",
                    ticker=t["ticker"],
                    notional=f"${t['notional']:,.2f}",
                    reason=t["reason"],
                    explanation=t["explanation"],
                )
            )
        m = run.diagnostics.get("metrics")
        if m:
            out.write(
                f"  drift {m['total_drift_before']:.2%} -> {m['total_drift_after']:.2%}; "
                f"tracking error {m['tracking_error_before']:.2%} -> "
                f"{m['tracking_error_after']:.2%}; realized ST ${m['realized_st']:,.2f} "
                f"LT ${m['realized_lt']:,.2f}; tax ${m['tax_estimate']:,.2f}; "
                f"cost ${m['cost_estimate']:,.2f}; cash ${m['cash_before']:,.2f} -> "
                f"${m['cash_after']:,.2f}"
            )
        for w in run.diagnostics.get("warnings", []):
            out.write(f"  warning: {w}")
