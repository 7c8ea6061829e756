"""The import service end to end (read, validate, write) on small files of every kind: a good
file imports and its rows point to the batch; a bad file is refused with its line, column
and reason and leaves every table as it was (row counts and checksums); duplicates are
refused unless forced; a dry run writes nothing; a failing write rolls back; drift scans are
requested for exactly the affected accounts; large files go to a worker; who may import."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connections
from guardian.models import GroupObjectPermission

from compliance.models import AuditEvent, Restriction
from portfolios import services
from portfolios.imports import writers
from portfolios.models import (
    Account,
    CashFlow,
    Household,
    ImportBatch,
    ImportKind,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    Price,
    Reconciliation,
    ReconciliationBreak,
    Security,
    TaxLot,
    Transaction,
)
from portfolios.services.imports import import_process, import_submit
from rebalance_app.celery import app
from rebalance_app.exceptions import PermissionDenied, ValidationFailed
from rebalance_app.work import WorkStatus
from tests import factories

pytestmark = pytest.mark.django_db

# ---------------------------------------------------------------------------
# Table state: row counts and checksums of everything an import may write
# ---------------------------------------------------------------------------

WRITTEN_MODELS = [
    Security,
    Price,
    ModelPortfolio,
    ModelVersion,
    ModelTarget,
    Household,
    Account,
    TaxLot,
    Transaction,
    CashFlow,
    Restriction,
    Reconciliation,
    ReconciliationBreak,
    GroupObjectPermission,
    Group,
]


def tables_state() -> dict[str, tuple[int, str]]:
    """Each table's row count and a SHA-256 of all its rows in primary-key order."""
    state = {}
    for model in WRITTEN_MODELS:
        rows = list(model.objects.order_by("pk").values_list())
        state[model._meta.label] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return state


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# ---------------------------------------------------------------------------
# A small firm and one good and one bad file of each kind
# ---------------------------------------------------------------------------


@pytest.fixture
def firm(account_a, account_b, security):
    """Team A's account_a and team B's account_b both hold AAPL; account_b also holds MSFT."""
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft")
    factories.PriceFactory(security=msft, price=Decimal("400"))
    factories.TaxLotFactory(account=account_b, security=msft, quantity=Decimal("2"))
    return account_a, account_b


@dataclass(frozen=True)
class Case:
    kind: str
    good: str
    bad: str
    bad_column: str  # the column of the one error, on line 3 of the bad file
    rows: int


def csv(text: str, account: Account) -> bytes:
    return text.format(acct=account.account_number).encode()


CASES = {
    "securities": Case(
        "securities",
        "ticker,name,asset_class,security_type,sector,esg_score,esg_tags\n"
        "VTI,Vanguard Total Stock Market ETF,equity,etf,Broad market,61.5,low_carbon;broad\n"
        "AAPL,Apple Inc. (renamed),equity,equity,Information Technology,,\n",
        "ticker,name,asset_class,security_type\n"
        "VTI,Vanguard Total Stock Market ETF,equity,etf\n"
        "BND,Vanguard Total Bond,stocks,etf\n",
        "asset_class",
        2,
    ),
    "prices": Case(
        "prices",
        "ticker,date,price,source\nAAPL,2026-11-23,151.25,vendor\nMSFT,2026-11-24,402.5,vendor\n",
        "ticker,date,price\nAAPL,2026-11-23,151.25\nAAPL,2026-11-21,150\n",
        "date",
        2,
    ),
    "models": Case(
        "models",
        "model,ticker,weight,abs_band\nCore,AAPL,0.95,0.02\nCore,CASH,0.05,\n",
        "model,ticker,weight\nCore,AAPL,0.95\nCore,MSFT,abc\nCore,CASH,0.05\n",
        "weight",
        2,
    ),
    "accounts": Case(
        "accounts",
        "household,custodian,account_number,name,registration_type,taxable,team,cash_balance\n"
        "Gamma Trust,Fidelity,G-100,Gamma Trust Account,trust,yes,Team A,2500\n",
        "household,custodian,account_number,name,registration_type,taxable\n"
        "Gamma Trust,Fidelity,G-100,Gamma Trust Account,trust,yes\n"
        "Gamma Trust,Fidelity,G-101,Gamma IRA,ira,maybe\n",
        "taxable",
        1,
    ),
    "lots": Case(
        "lots",
        "account_number,ticker,quantity,cost_basis,acquired_on\n{acct},AAPL,5,120.50,2024-03-15\n",
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        "{acct},AAPL,5,120.50,2024-03-15\n"
        "{acct},AAPL,-5,120.50,2024-03-16\n",
        "quantity",
        1,
    ),
    "transactions": Case(
        "transactions",
        "account_number,ticker,trade_date,side,quantity,price\n{acct},AAPL,2026-11-20,buy,5,148.10\n",
        "account_number,ticker,trade_date,side,quantity,price\n"
        "{acct},AAPL,2026-11-20,buy,5,148.10\n"
        "{acct},ZZZZ,2026-11-20,buy,5,10\n",
        "ticker",
        1,
    ),
    "cash_flows": Case(
        "cash_flows",
        "account_number,date,amount,kind,note\n{acct},2026-11-20,250.00,deposit,Client deposit\n",
        "account_number,date,amount,kind\n{acct},2026-11-20,250.00,deposit\nNOPE-1,2026-11-20,-5,fee\n",
        "account_number",
        1,
    ),
    "restrictions": Case(
        "restrictions",
        "scope,ticker,kind,reason\nfirm,AAPL,no_buy,Watch list\n",
        "scope,ticker,kind,reason\nfirm,AAPL,no_buy,Watch list\nfirm,MSFT,never,Typo\n",
        "kind",
        1,
    ),
    "custodian_positions": Case(
        "custodian_positions",
        "account_number,ticker,quantity,as_of\n{acct},AAPL,12,2026-11-24\n{acct},CASH,1000,2026-11-24\n",
        "account_number,ticker,quantity,as_of\n{acct},AAPL,12,2026-11-24\n{acct},CASH,1000,2030-01-02\n",
        "as_of",
        2,
    ),
}  # fmt: skip


def importer(kind: str, ops, compliance):
    return compliance if kind == ImportKind.RESTRICTIONS else ops


def submit(
    actor: Any, kind: str, data: bytes, name: str = "file.csv", **kwargs: Any
) -> ImportBatch:
    return import_submit(actor=actor, kind=kind, file_name=name, data=data, **kwargs)


# ---------------------------------------------------------------------------
# Good files
# ---------------------------------------------------------------------------


def rows_of_batch(batch: ImportBatch) -> int:
    """Rows of any kind that point to the batch."""
    total = 0
    for model in (Security, Price, Household, Account, TaxLot, Transaction, CashFlow, Restriction):
        total += model.objects.filter(import_batch=batch).count()
    return total


@pytest.mark.parametrize("kind", list(CASES))
def test_a_good_file_of_each_kind_imports_and_its_rows_point_to_the_batch(
    firm, ops, compliance, kind
):
    case = CASES[kind]
    actor = importer(kind, ops, compliance)

    batch = submit(actor, kind, csv(case.good, firm[0]))

    assert (batch.status, batch.errors, batch.error) == (WorkStatus.SUCCEEDED, [], "")
    assert (batch.rows_total, batch.rows_accepted, batch.rows_processed) == (
        case.rows,
        case.rows,
        case.rows,
    )
    assert batch.created_by == actor
    assert batch.duration_ms is not None
    assert batch.file.read() == csv(case.good, firm[0])
    if kind == ImportKind.MODELS:
        assert ModelPortfolio.objects.get(name="Core").current_version.note == (
            f"Imported by batch {batch.pk}."
        )
    elif kind == ImportKind.CUSTODIAN_POSITIONS:
        assert batch.reconciliation.break_count == 1  # AAPL: 12 at the custodian, 10 booked
    elif kind == ImportKind.ACCOUNTS:
        assert rows_of_batch(batch) == 2  # the account and its new household
    else:
        assert rows_of_batch(batch) == case.rows
    assert audit_actions()[-1] == "import.succeeded"
    assert "import.submitted" in audit_actions()


def test_the_summary_says_what_was_written(firm, ops):
    account_a, _ = firm

    batch = submit(ops, "lots", csv(CASES["lots"].good, account_a))

    assert batch.summary == {
        "created": 1,
        "updated": 0,
        "accounts_affected": 1,
        "account_ids": [account_a.pk],
        "securitys_affected": 1,
        "security_ids": [Security.objects.get(ticker="AAPL").pk],
    }
    event = AuditEvent.objects.get(action="import.succeeded")
    assert event.after == {
        "rows_accepted": 1,
        "dry_run": False,
        "created": 1,
        "updated": 0,
        "accounts_affected": 1,
        "securitys_affected": 1,
    }
    assert (event.object_type, event.object_id, event.actor_label) == (
        "portfolios.importbatch",
        str(batch.pk),
        "ops",
    )


def test_an_xlsx_file_imports_like_its_csv(firm, ops):
    from openpyxl import Workbook

    account_a, _ = firm
    book = Workbook()
    sheet = book.active
    sheet.append(["account_number", "ticker", "quantity", "cost_basis", "acquired_on"])
    sheet.append([account_a.account_number, "AAPL", 5, 120.5, "2024-03-15"])
    data = io.BytesIO()
    book.save(data)

    batch = submit(ops, "lots", data.getvalue(), name="lots.xlsx")

    assert (batch.status, batch.rows_total, batch.rows_accepted) == (WorkStatus.SUCCEEDED, 1, 1)
    assert TaxLot.objects.filter(import_batch=batch, quantity=Decimal("5")).count() == 1


def test_cash_flows_move_the_account_cash(firm, ops):
    account_a, account_b = firm

    submit(ops, "cash_flows", csv(CASES["cash_flows"].good, account_a))

    account_a.refresh_from_db()
    account_b.refresh_from_db()
    assert (account_a.cash_balance, account_b.cash_balance) == (Decimal("1250"), Decimal("1000"))


# ---------------------------------------------------------------------------
# Bad files: refused with line, column and reason; nothing written
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CASES))
def test_a_bad_file_of_each_kind_is_refused_and_leaves_every_table_unchanged(
    firm, ops, compliance, kind
):
    case = CASES[kind]
    before = tables_state()

    batch = submit(importer(kind, ops, compliance), kind, csv(case.bad, firm[0]))

    assert tables_state() == before
    assert batch.status == WorkStatus.FAILED
    assert batch.error == "The file was refused: 1 error found; nothing was imported."
    assert [(e["line"], e["column"]) for e in batch.errors] == [(3, case.bad_column)]
    assert batch.errors[0]["message"]
    assert (batch.rows_accepted, batch.rows_total) == (0, case.bad.count("\n") - 1)
    assert audit_actions()[-2:] == ["import.submitted", "import.failed"]


def test_every_bad_row_is_reported_in_line_order(firm, ops):
    account_a, _ = firm
    data = csv(
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        "{acct},AAPL,-1,120.50,2024-03-15\n"
        "{acct},AAPL,5,120.50,2024-03-15\n"
        "{acct},ZZZZ,5,120.50,2099-01-01\n",
        account_a,
    )

    batch = submit(ops, "lots", data)

    assert batch.error == "The file was refused: 3 errors found; nothing was imported."
    assert [(e["line"], e["column"]) for e in batch.errors] == [
        (2, "quantity"),
        (4, "ticker"),
        (4, "acquired_on"),
    ] or [(e["line"], e["column"]) for e in batch.errors] == [
        (2, "quantity"),
        (4, "acquired_on"),
        (4, "ticker"),
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.csv", b""),
        ("header.csv", b"account_number,ticker,quantity,cost_basis,acquired_on\n"),
        ("picture.png", b"\x89PNG\r\n\x1a\n0000"),
    ],
)
def test_a_file_level_problem_fails_the_batch_with_the_readers_reason(firm, ops, name, data):
    before = tables_state()

    batch = submit(ops, "lots", data, name=name)

    assert tables_state() == before
    assert batch.status == WorkStatus.FAILED
    assert batch.error.startswith("The file was refused: ")
    assert len(batch.errors) == 1
    assert batch.errors[0]["message"] in batch.error
    assert batch.summary == {"error_count": 1, "errors_truncated": False}


def test_a_write_that_fails_rolls_back_everything_and_fails_the_batch(firm, ops, monkeypatch):
    account_a, _ = firm

    def write_then_crash(**kwargs: Any) -> dict[str, Any]:
        writers.write_lots(**kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setitem(writers.WRITERS, ImportKind.LOTS, write_then_crash)
    before = tables_state()

    batch = submit(ops, "lots", csv(CASES["lots"].good, account_a))

    assert tables_state() == before
    assert batch.status == WorkStatus.FAILED
    assert batch.error == "The import failed and nothing was written: RuntimeError: disk full"
    assert "RuntimeError: disk full" in batch.error_detail
    assert batch.errors == []
    failed = AuditEvent.objects.get(action="import.failed")
    assert failed.after == {"error": batch.error, "error_count": 0}


# ---------------------------------------------------------------------------
# Duplicates, dry runs
# ---------------------------------------------------------------------------


def test_the_same_file_is_refused_a_second_time_unless_forced(firm, ops):
    account_a, _ = firm
    data = csv(CASES["lots"].good, account_a)
    first = submit(ops, "lots", data)
    first_day = first.created_at.date().isoformat()

    with pytest.raises(ValidationFailed) as exc:
        submit(ops, "lots", data, name="renamed.csv")

    assert exc.value.message == (
        f"This file was already imported as batch {first.pk} on {first_day}; submit it again "
        "with force to import it twice."
    )
    assert exc.value.extra == {"batch": first.pk}
    assert ImportBatch.objects.count() == 1

    forced = submit(ops, "lots", data, force=True)

    assert (forced.status, forced.forced) == (WorkStatus.SUCCEEDED, True)
    assert TaxLot.objects.filter(import_batch__in=[first, forced]).count() == 2


def test_the_same_file_of_another_kind_or_after_a_failure_is_not_a_duplicate(firm, ops):
    account_a, _ = firm
    bad = csv(CASES["lots"].bad, account_a)
    assert submit(ops, "lots", bad).status == WorkStatus.FAILED

    again = submit(ops, "lots", bad)

    assert (again.status, again.forced) == (WorkStatus.FAILED, False)


def test_a_dry_run_validates_writes_nothing_and_does_not_count_as_imported(firm, ops):
    account_a, _ = firm
    data = csv(CASES["lots"].good, account_a)
    before = tables_state()

    dry = submit(ops, "lots", data, dry_run=True)

    assert tables_state() == before
    assert (dry.status, dry.dry_run, dry.rows_accepted) == (WorkStatus.SUCCEEDED, True, 1)
    assert dry.summary == {
        "dry_run": True,
        "note": "Dry run: the file is valid; nothing was written.",
        "would_write": 1,
    }
    real = submit(ops, "lots", data)
    assert (real.status, real.forced) == (WorkStatus.SUCCEEDED, False)


def test_a_dry_run_of_a_bad_file_reports_its_errors(firm, ops):
    batch = submit(ops, "lots", csv(CASES["lots"].bad, firm[0]), dry_run=True)

    assert batch.status == WorkStatus.FAILED
    assert [(e["line"], e["column"]) for e in batch.errors] == [(3, "quantity")]


# ---------------------------------------------------------------------------
# After the commit: drift scans of exactly the affected accounts
# ---------------------------------------------------------------------------


@pytest.fixture
def hook_calls(monkeypatch) -> list[list[int]]:
    calls: list[list[int]] = []
    monkeypatch.setattr(services, "_holdings_changed_hooks", [calls.append])
    return calls


@pytest.mark.parametrize("kind", ["lots", "transactions", "cash_flows"])
def test_a_holdings_import_rescans_exactly_the_accounts_it_touched(
    firm, ops, hook_calls, django_capture_on_commit_callbacks, kind
):
    account_a, _ = firm

    with django_capture_on_commit_callbacks(execute=True):
        submit(ops, kind, csv(CASES[kind].good, account_a))

    assert hook_calls == [[account_a.pk]]


def test_a_price_import_rescans_the_accounts_holding_the_priced_securities(
    firm, ops, hook_calls, django_capture_on_commit_callbacks
):
    _, account_b = firm
    data = b"ticker,date,price\nMSFT,2026-11-23,401\n"

    with django_capture_on_commit_callbacks(execute=True):
        batch = submit(ops, "prices", data)

    assert hook_calls == [[account_b.pk]]
    assert batch.summary["rescanned_account_ids"] == [account_b.pk]


@pytest.mark.parametrize("kind", ["securities", "models", "restrictions"])
def test_reference_data_imports_request_no_drift_scan(
    firm, ops, compliance, hook_calls, django_capture_on_commit_callbacks, kind
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(importer(kind, ops, compliance), kind, csv(CASES[kind].good, firm[0]))

    assert hook_calls == []


def test_a_refused_file_requests_no_drift_scan(
    firm, ops, hook_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(ops, "lots", csv(CASES["lots"].bad, firm[0]))

    assert hook_calls == []


# ---------------------------------------------------------------------------
# Large files go to a worker; the task claims its batch once
# ---------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> None:
        calls.append((name, list(args or [])))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def test_a_file_over_the_async_threshold_is_queued_for_a_worker_after_commit(
    firm, ops, settings, sent, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_ROWS = 1
    data = csv(CASES["prices"].good, firm[0])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = submit(ops, "prices", data)
    assert sent == []
    for callback in callbacks:
        callback()

    assert (batch.status, batch.rows_total, batch.rows_accepted) == (WorkStatus.QUEUED, 2, 0)
    assert sent == [("portfolios.import_process", [batch.pk])]
    assert Price.objects.filter(import_batch=batch).count() == 0
    assert AuditEvent.objects.get(action="import.submitted").after["runs"] == "worker"

    result = import_process(batch_id=batch.pk)

    batch.refresh_from_db()
    assert result == {"batch": batch.pk, "status": "succeeded", "rows": 2}
    assert (batch.status, batch.attempts) == (WorkStatus.SUCCEEDED, 1)
    assert Price.objects.filter(import_batch=batch).count() == 2


def test_a_second_delivery_of_the_task_does_nothing(firm, ops):
    batch = submit(ops, "lots", csv(CASES["lots"].good, firm[0]))

    assert import_process(batch_id=batch.pk) == {"batch": batch.pk, "claimed": False}
    assert TaxLot.objects.filter(import_batch=batch).count() == 1


def test_the_import_task_is_a_registered_work_model_for_the_sweep():
    import portfolios.tasks  # what Celery's autodiscovery imports  # noqa: F401
    from rebalance_app.work import registered_work_models

    names = {r.model: r.task_name for r in registered_work_models()}
    assert names[ImportBatch] == "portfolios.import_process"
    assert "portfolios.import_process" in app.tasks


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_to_other_connections_while_the_rows_are_uncommitted(
    firm, ops, monkeypatch
):
    seen: list[tuple[int, int]] = []

    def write_and_look(**kwargs: Any) -> dict[str, Any]:
        kwargs["progress"](7)
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT rows_processed FROM portfolios_importbatch WHERE id = %s",
                    [kwargs["batch"].pk],
                )
                progress = cursor.fetchone()[0]
                cursor.execute(
                    "SELECT count(*) FROM portfolios_taxlot WHERE import_batch_id = %s",
                    [kwargs["batch"].pk],
                )
                lots = cursor.fetchone()[0]
        finally:
            other.close()
        seen.append((progress, lots))
        return writers.write_lots(**kwargs)

    monkeypatch.setitem(writers.WRITERS, ImportKind.LOTS, write_and_look)

    batch = submit(ops, "lots", csv(CASES["lots"].good, firm[0]))

    assert batch.status == WorkStatus.SUCCEEDED
    assert seen == [(7, 0)]


# ---------------------------------------------------------------------------
# Who may import what
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "kind", "message"),
    [
        ("pm", "lots", "Only Ops or Admin users may import tax lots."),
        ("outsider", "prices", "Only Ops or Admin users may import prices."),
        ("compliance", "lots", "Only Ops or Admin users may import tax lots."),
        ("ops", "restrictions", "Only Compliance or Admin users may import restrictions."),
        ("pm", "restrictions", "Only Compliance or Admin users may import restrictions."),
    ],
)
def test_a_role_that_may_not_import_the_kind_is_refused_before_anything_is_stored(
    firm, request, persona, kind, message
):
    user = request.getfixturevalue(persona)

    with pytest.raises(PermissionDenied) as exc:
        submit(user, kind, b"x\n1\n")

    assert exc.value.message == message
    assert not ImportBatch.objects.exists()


@pytest.mark.parametrize("kind", ["lots", "restrictions"])
def test_an_admin_may_import_every_kind(firm, admin_user, kind):
    batch = submit(admin_user, kind, csv(CASES[kind].good, firm[0]))

    assert batch.status == WorkStatus.SUCCEEDED


def test_an_unknown_kind_and_an_oversized_file_are_refused(firm, ops, settings):
    with pytest.raises(ValidationFailed) as exc:
        submit(ops, "demo", b"x\n1\n")
    assert exc.value.message.startswith("Unknown import kind 'demo'. Choose one of: securities, ")

    settings.IMPORT_MAX_BYTES = 1024 * 1024
    with pytest.raises(ValidationFailed) as exc:
        submit(ops, "lots", b"x" * (2 * 1024 * 1024))
    assert exc.value.message == "The file is 2.0 MB; files of at most 1.0 MB can be imported."
    assert not ImportBatch.objects.exists()


# ---------------------------------------------------------------------------
# The documented examples (docs/examples) against the demo firm
# ---------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
EXAMPLE_ORDER = [
    ("securities", "securities.csv"),
    ("prices", "prices.csv"),
    ("prices", "prices.xlsx"),
    ("models", "models.csv"),
    ("accounts", "accounts.csv"),
    ("lots", "lots.csv"),
    ("transactions", "transactions.csv"),
    ("cash_flows", "cash_flows.csv"),
    ("restrictions", "restrictions.csv"),
    ("custodian_positions", "custodian_positions.csv"),
]


@pytest.fixture
def demo_firm(db):
    from portfolios.demo import demo_seed

    demo_seed(password="demo-pw-for-tests", history_days=300)
    return {
        u.username: u for u in get_user_model().objects.filter(username__in=["ops", "compliance"])
    }


def test_every_documented_example_imports_cleanly_into_the_demo_firm(demo_firm):
    for kind, name in EXAMPLE_ORDER:
        actor = demo_firm["compliance" if kind == "restrictions" else "ops"]
        data = (EXAMPLES / name).read_bytes()

        batch = submit(actor, kind, data, name=name)

        assert (name, batch.status, batch.errors, batch.error) == (name, "succeeded", [], "")
        assert batch.rows_accepted == batch.rows_total > 0


def test_the_documented_file_with_errors_is_refused_as_documented(demo_firm):
    before = tables_state()

    batch = submit(demo_firm["ops"], "lots", (EXAMPLES / "lots-with-errors.csv").read_bytes())

    assert tables_state() == before
    assert batch.error == "The file was refused: 6 errors found; nothing was imported."
    assert [(e["line"], e["column"], e["message"]) for e in batch.errors] == [
        (3, "quantity", "quantity must be greater than 0 (got -5)"),
        (4, "ticker", "unknown ticker ZZZZ"),
        (5, "account_number", "unknown account 9999-0000 at Schwab"),
        (6, "quantity", "not a number: 'ten'"),
        (7, "acquired_on", "date 2099-01-02 is in the future"),
        (8, "", "duplicate of line 2"),
    ]
