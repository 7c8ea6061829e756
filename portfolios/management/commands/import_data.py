"""``manage.py import_data KIND FILE [--dry-run] [--force] [--user USERNAME]``: import one file
in this process, whatever its size, through the same service as the page and the API, and
print the summary or every error (line, column, message). Exits 1 when the file is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolios.services.imports import IMPORTABLE_KINDS, import_submit
from rebalance_app.exceptions import ApplicationError
from rebalance_app.work import WorkStatus

ACTOR = "system:import_data"
NO_FILE = "No such file: {path}"
UNKNOWN_USER = "No such user: {username}"
HEADLINE = "Import batch {id} ({kind}, {file}): {status} in {seconds:.2f} s"
ACCEPTED = "{verb} {rows} row(s)."
REFUSED = "Refused: {error}"
ERROR_LINE = "  line {line}, column {column}: {message}"
ROW_ERROR_LINE = "  line {line}: {message}"


class Command(BaseCommand):
    help = (
        "Import a CSV or XLSX file of KIND (one of: "
        + ", ".join(IMPORTABLE_KINDS)
        + "). Validates every row first and writes nothing when any is bad; prints the summary "
        "or every error with its line and column. Runs in this process, whatever the size."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=IMPORTABLE_KINDS, help="What the file holds.")
        parser.add_argument("file", help="Path of the CSV or XLSX file.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only; write nothing.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Import even if the same file of this kind was imported before.",
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Import as this user (their role must allow the kind); default: the system.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(NO_FILE.format(path=path))
        actor: Any = ACTOR
        if options["user"]:
            try:
                actor = get_user_model().objects.get_by_natural_key(options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(UNKNOWN_USER.format(username=options["user"])) from None
        try:
            batch = import_submit(
                actor=actor,
                kind=options["kind"],
                file_name=path.name,
                data=path.read_bytes(),
                dry_run=options["dry_run"],
                force=options["force"],
                inline=True,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            HEADLINE.format(
                id=batch.pk,
                kind=batch.kind,
                file=batch.file_name,
                status=batch.status,
                seconds=(batch.duration_ms or 0) / 1000,
            )
        )
        if batch.status != WorkStatus.SUCCEEDED:
            for error in batch.errors:
                template = ERROR_LINE if error.get("column") else ROW_ERROR_LINE
                self.stderr.write(template.format(**error))
            if batch.error_detail:
                self.stderr.write(batch.error_detail)
            raise CommandError(REFUSED.format(error=batch.error))
        verb = "Would write" if batch.dry_run else "Wrote"
        self.stdout.write(ACCEPTED.format(verb=verb, rows=batch.rows_accepted))
        for key, value in batch.summary.items():
            if isinstance(value, list):
                continue
            self.stdout.write(f"  {key.replace('_', ' ')}: {value}")
