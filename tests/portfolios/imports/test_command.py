"""``manage.py import_data``: imports in this process whatever the size, prints the summary
or every error, and exits non-zero when the file is refused."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import AuditEvent
from portfolios.models import ImportBatch, TaxLot

pytestmark = pytest.mark.django_db

HEADER = "account_number,ticker,quantity,cost_basis,acquired_on\n"


@pytest.fixture
def good(tmp_path, account_a) -> Path:
    path = tmp_path / "lots.csv"
    path.write_text(f"{HEADER}{account_a.account_number},AAPL,5,120.50,2024-03-15\n")
    return path


@pytest.fixture
def bad(tmp_path, account_a) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(
        f"{HEADER}{account_a.account_number},AAPL,5,120.50,2024-03-15\n"
        f"{account_a.account_number},ZZZZ,-5,120.50,2024-03-15\n"
    )
    return path


@dataclass
class Result:
    status: int
    out: str
    err: str


def run(*args: str) -> Result:
    """Run the command; its exit status as ``manage.py`` would set it (a CommandError is
    printed to stderr and exits with its ``returncode``) and what it printed.

    ``call_command`` rather than ``execute_from_command_line``: the latter closes the database
    connections when it returns, which would end the test's transaction."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_data", *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}\n")
        return Result(exc.returncode, out.getvalue(), err.getvalue())
    return Result(0, out.getvalue(), err.getvalue())


def test_a_good_file_is_imported_in_process_whatever_its_size(good, settings):
    settings.IMPORT_ASYNC_ROWS = 0  # would go to a worker from the page or the API

    result = run("lots", str(good))

    batch = ImportBatch.objects.get()
    assert (result.status, result.err) == (0, "")
    assert re.match(
        rf"Import batch {batch.pk} \(lots, lots\.csv\): succeeded in \d+\.\d\d s\n", result.out
    )
    assert "Wrote 1 row(s).\n" in result.out
    assert "  created: 1\n" in result.out
    assert TaxLot.objects.filter(import_batch=batch).count() == 1
    assert batch.created_by is None
    assert AuditEvent.objects.get(action="import.submitted").actor_label == "system:import_data"


def test_a_bad_file_prints_every_error_and_exits_1(bad):
    lots_before = TaxLot.objects.count()

    result = run("lots", str(bad))

    batch = ImportBatch.objects.get()
    assert result.status == 1
    expected = [f"  line {e['line']}, column {e['column']}: {e['message']}" for e in batch.errors]
    assert len(expected) == 2
    assert result.err == (
        "\n".join(expected)
        + "\nCommandError: Refused: The file was refused: 2 errors found; nothing was imported.\n"
    )
    assert TaxLot.objects.count() == lots_before


def test_a_dry_run_says_what_it_would_write_and_writes_nothing(good):
    lots_before = TaxLot.objects.count()

    result = run("lots", str(good), "--dry-run")

    assert result.status == 0
    assert "Would write 1 row(s).\n" in result.out
    assert TaxLot.objects.count() == lots_before


def test_a_duplicate_is_refused_unless_forced(good):
    assert run("lots", str(good)).status == 0
    first = ImportBatch.objects.get()

    again = run("lots", str(good))

    assert again.status == 1
    assert f"This file was already imported as batch {first.pk} on " in again.err
    assert run("lots", str(good), "--force").status == 0
    assert ImportBatch.objects.filter(forced=True).count() == 1


def test_the_user_option_imports_as_that_user_with_their_role(good, ops, pm):
    refused = run("lots", str(good), "--user", "pm")

    assert refused.status == 1
    assert refused.err == "CommandError: Only Ops or Admin users may import tax lots.\n"
    assert run("lots", str(good), "--user", "ops").status == 0
    assert ImportBatch.objects.get().created_by == ops


def test_an_unknown_user_or_a_missing_file_exits_1(good, tmp_path):
    nobody = run("lots", str(good), "--user", "nobody")
    missing = run("lots", str(tmp_path / "missing.csv"))

    assert (nobody.status, nobody.err) == (1, "CommandError: No such user: nobody\n")
    assert (missing.status, missing.err) == (
        1,
        f"CommandError: No such file: {tmp_path / 'missing.csv'}\n",
    )
    assert not ImportBatch.objects.exists()


def test_an_unknown_kind_is_refused_by_the_parser(good):
    result = run("demo", str(good))

    assert result.status == 1
    assert "invalid choice: 'demo'" in result.err
    assert not ImportBatch.objects.exists()
