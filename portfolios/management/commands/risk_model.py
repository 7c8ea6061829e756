"""``manage.py risk_model [--force] [--as-of DATE] [--window N]``: build the factor risk model
from the price history now (the same service as the Celery task) and print it: the factors
with their volatility, then each security's exposures, specific volatility, R², returns used
and, for a fallback row, why."""

from __future__ import annotations

import math
import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolios.models import RiskModel
from portfolios.selectors.risk import risk_model_current, risk_model_tickers
from portfolios.services.risk import risk_model_build
from rebalance_app.exceptions import ApplicationError

ACTOR = "system:risk_model_command"
BUILT = "Risk model v{version} built as of {as_of} in {elapsed:.2f} s"
UNCHANGED = (
    "Risk model v{version} as of {as_of} is up to date (the latest prices): unchanged; "
    "--force builds a new version anyway."
)
SUMMARY = "{securities} securities, {factors} factors, {fallbacks} fallback(s), window {window}"
BAD_DATE = "--as-of must be a date like 2026-11-24 (got {value!r})."


def _pct(variance: float) -> str:
    return f"{math.sqrt(max(variance, 0.0)) * 100:6.2f}%"


class Command(BaseCommand):
    help = (
        "Build the factor risk model Sigma = B F B' + D from the price history (factor ETFs in "
        "RISK_FACTOR_TICKERS, window RISK_MODEL_WINDOW) and print its factors and rows. Does "
        "nothing when the current model already covers the latest prices, unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Build a new version even when the current one covers the latest prices.",
        )
        parser.add_argument(
            "--as-of",
            dest="as_of",
            metavar="DATE",
            help="Use prices up to this date (YYYY-MM-DD); default: the latest.",
        )
        parser.add_argument(
            "--window",
            type=int,
            metavar="N",
            help="Daily returns in the estimation window (default: RISK_MODEL_WINDOW).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = None
        if options["as_of"]:
            try:
                as_of = date.fromisoformat(options["as_of"])
            except ValueError as exc:
                raise CommandError(BAD_DATE.format(value=options["as_of"])) from exc
        before = risk_model_current()
        started = time.monotonic()
        try:
            model = risk_model_build(
                actor=ACTOR, as_of=as_of, window=options["window"], force=options["force"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        elapsed = time.monotonic() - started
        if before is not None and model.pk == before.pk:
            self.stdout.write(UNCHANGED.format(version=model.version, as_of=model.as_of))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    BUILT.format(version=model.version, as_of=model.as_of, elapsed=elapsed)
                )
            )
        self._print(model)

    def _print(self, model: RiskModel) -> None:
        write = self.stdout.write
        write(
            SUMMARY.format(
                securities=len(model.security_ids),
                factors=len(model.factors),
                fallbacks=len(model.fallbacks),
                window=model.window,
            )
        )
        write("")
        write(f"{'factor':<8} {'vol':>7}")
        for k, name in enumerate(model.factors):
            write(f"{name:<8} {_pct(model.factor_cov[k][k])}")
        write("")
        tickers = risk_model_tickers(model=model)
        diagnostics = model.diagnostics or {}
        r2 = diagnostics.get("r2") or [None] * len(model.security_ids)
        n_obs = diagnostics.get("n_obs") or [None] * len(model.security_ids)
        header = " ".join(f"{name:>6}" for name in model.factors)
        write(f"{'ticker':<8} {header} {'spec vol':>8} {'R2':>5} {'obs':>4}  note")
        rows = zip(model.security_ids, model.exposures, model.specific_var, r2, n_obs, strict=True)
        for sid, betas, specific, fit, count in sorted(
            rows, key=lambda row: tickers.get(row[0], "")
        ):
            cells = " ".join(f"{beta:6.2f}" for beta in betas)
            fit_text = f"{fit:5.2f}" if fit is not None else "    -"
            note = model.fallbacks.get(str(sid), "")
            write(
                f"{tickers.get(sid, str(sid)):<8} {cells} {_pct(specific):>8} {fit_text} "
                f"{count if count is not None else '-':>4}  {note}".rstrip()
            )
