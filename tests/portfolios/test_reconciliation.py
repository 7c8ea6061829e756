"""Custodian reconciliation: the service finds exactly the planted breaks (a quantity
difference, a position missing on either side, cash) and nothing within the tolerance,
supersedes the earlier open breaks of the accounts it compares, audits what it did, and keeps
its query count flat; resolving a break is audited and refused twice, empty or to a PM. The
selectors show a PM only the breaks of their own accounts.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import AuditEvent
from portfolios.models import ImportBatch, ImportKind, Reconciliation, ReconciliationBreak
from portfolios.selectors.reconciliation import (
    BREAK_NOT_FOUND,
    open_breaks_by_account,
    reconciliation_break_get,
    reconciliation_breaks,
    reconciliation_get,
    reconciliation_list,
)
from portfolios.services.reconciliation import (
    ACTION_BREAK_RESOLVED,
    ACTION_CREATED,
    BREAK_ALREADY_RESOLVED,
    EMPTY_FILE,
    RESOLUTION_REQUIRED,
    RESOLVE_FORBIDDEN,
    SUPERSEDED,
    reconciliation_break_resolve,
    reconciliation_create,
)
from rebalance_app.exceptions import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests import factories

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 11, 24)
CASH = None


def batch_for(actor: Any, name: str = "positions.csv") -> ImportBatch:
    return ImportBatch.objects.create(
        kind=ImportKind.CUSTODIAN_POSITIONS,
        file_name=name,
        sha256="0" * 64,
        created_by=actor,
        status="running",
    )


def frame(rows: list[tuple[Any, Any, str]], as_of: date = AS_OF) -> pd.DataFrame:
    """A validated custodian-positions frame: (account, security or None, quantity)."""
    return pd.DataFrame(
        {
            "account_id": [a.pk for a, _, _ in rows],
            "security_id": pd.array(
                [s.pk if s is not None else None for _, s, _ in rows], dtype="Int64"
            ),
            "quantity": [Decimal(q) for _, _, q in rows],
            "as_of": [as_of] * len(rows),
            "line": list(range(2, len(rows) + 2)),
        }
    )


def breaks_of(reconciliation: Reconciliation) -> set[tuple[str, str, str, str, str]]:
    return {
        (
            b.account.account_number,
            b.security.ticker if b.security_id else "CASH",
            f"{b.custodian_quantity.normalize():f}",
            f"{b.book_quantity.normalize():f}",
            f"{b.difference.normalize():f}",
        )
        for b in reconciliation.breaks.select_related("account", "security")
    }


@pytest.fixture
def book(account_a, account_b, security, household_a):
    """account_a: AAPL 10 + 5, MSFT 20, TSLA 3, cash 1000; account_c: cash 1000 only;
    account_b (team B): AAPL 5, cash 1000."""
    msft = factories.SecurityFactory(ticker="MSFT")
    tsla = factories.SecurityFactory(ticker="TSLA")
    goog = factories.SecurityFactory(ticker="GOOG")
    factories.TaxLotFactory(account=account_a, security=security, quantity=Decimal("5"))
    factories.TaxLotFactory(account=account_a, security=msft, quantity=Decimal("20"))
    factories.TaxLotFactory(account=account_a, security=tsla, quantity=Decimal("3"))
    account_c = factories.AccountFactory(household=household_a, account_number="ACC-C")
    return {
        "a": account_a,
        "b": account_b,
        "c": account_c,
        "aapl": security,
        "msft": msft,
        "tsla": tsla,
        "goog": goog,
    }


def planted(book) -> pd.DataFrame:
    """AAPL agrees (to within a millionth), MSFT is 2 short, GOOG is not ours, TSLA is
    missing from the file, account_a's cash agrees, account_c's cash is 50 short."""
    a, c = book["a"], book["c"]
    return frame(
        [
            (a, book["aapl"], "15.000001"),
            (a, book["msft"], "18"),
            (a, book["goog"], "7.5"),
            (a, CASH, "1000.00"),
            (c, CASH, "950"),
        ]
    )


def test_reconciliation_finds_the_planted_breaks_and_only_them(book, ops):
    reconciliation = reconciliation_create(batch=batch_for(ops), frame=planted(book), actor=ops)
    a, c = book["a"].account_number, book["c"].account_number
    assert breaks_of(reconciliation) == {
        (a, "MSFT", "18", "20", "-2"),
        (a, "GOOG", "7.5", "0", "7.5"),
        (a, "TSLA", "0", "3", "-3"),
        (c, "CASH", "950", "1000", "-50"),
    }
    assert reconciliation.break_count == 4
    assert reconciliation.accounts_compared == 2
    # account_a: AAPL, MSFT, GOOG, TSLA, cash; account_c: cash
    assert reconciliation.positions_compared == 6
    assert reconciliation.as_of == AS_OF
    assert reconciliation.created_by == ops
    assert not ReconciliationBreak.objects.filter(account=book["b"]).exists()


def test_reconciliation_of_a_file_that_agrees_with_the_books_has_no_break(book, ops):
    a, c = book["a"], book["c"]
    agreeing = frame(
        [
            (a, book["aapl"], "15"),
            (a, book["msft"], "20"),
            (a, book["tsla"], "3"),
            (a, CASH, "1000"),
            (c, CASH, "1000"),
        ]
    )
    reconciliation = reconciliation_create(batch=batch_for(ops), frame=agreeing, actor=ops)
    assert reconciliation.break_count == 0
    assert not reconciliation.breaks.exists()


def test_cash_the_file_omits_is_a_break_with_custodian_zero(book, ops):
    reconciliation = reconciliation_create(
        batch=batch_for(ops), frame=frame([(book["c"], book["aapl"], "1")]), actor=ops
    )
    number = book["c"].account_number
    assert breaks_of(reconciliation) == {
        (number, "AAPL", "1", "0", "1"),
        (number, "CASH", "0", "1000", "-1000"),
    }


def test_rows_of_the_same_position_are_summed_before_comparing(book, ops):
    a = book["a"]
    rows = frame(
        [
            (a, book["aapl"], "10"),
            (a, book["aapl"], "5"),
            (a, book["msft"], "20"),
            (a, book["tsla"], "3"),
            (a, CASH, "600"),
            (a, CASH, "400"),
        ]
    )
    assert reconciliation_create(batch=batch_for(ops), frame=rows, actor=ops).break_count == 0


def test_reconciliation_is_audited_with_its_counts(book, ops):
    batch = batch_for(ops)
    reconciliation = reconciliation_create(batch=batch, frame=planted(book), actor=ops)
    event = AuditEvent.objects.get(action=ACTION_CREATED)
    assert event.actor == ops
    assert event.object_id == str(reconciliation.pk)
    assert event.after == {
        "import_batch": batch.pk,
        "as_of": "2026-11-24",
        "accounts_compared": 2,
        "positions_compared": 6,
        "break_count": 4,
        "superseded_breaks": 0,
    }


def test_a_new_reconciliation_supersedes_the_open_breaks_of_the_accounts_it_compares(book, ops):
    first = reconciliation_create(batch=batch_for(ops), frame=planted(book), actor=ops)
    a = book["a"]
    second_file = frame(
        [
            (a, book["aapl"], "15"),
            (a, book["msft"], "19"),
            (a, book["tsla"], "3"),
            (a, CASH, "1000"),
        ]
    )
    second = reconciliation_create(batch=batch_for(ops, "day2.csv"), frame=second_file, actor=ops)
    old_a = first.breaks.filter(account=a)
    assert old_a.count() == 3
    assert all(b.resolved_at is not None for b in old_a)
    assert {b.resolution for b in old_a} == {SUPERSEDED.format(id=second.pk)}
    # account_c was not in the second file: its break stays open
    assert first.breaks.get(account=book["c"]).resolved_at is None
    assert breaks_of(second) == {(a.account_number, "MSFT", "19", "20", "-1")}
    assert second.breaks.get().resolved_at is None
    event = AuditEvent.objects.filter(action=ACTION_CREATED).order_by("-seq").first()
    assert event.after["superseded_breaks"] == 3


def test_an_empty_frame_is_refused(book, ops):
    with pytest.raises(ValidationFailed) as exc:
        reconciliation_create(batch=batch_for(ops), frame=frame([]), actor=ops)
    assert exc.value.message == EMPTY_FILE
    assert not Reconciliation.objects.exists()


def test_reconciliation_query_count_does_not_grow_with_accounts(household_a, security, ops):
    def run(n: int) -> int:
        accounts = [factories.AccountFactory(household=household_a) for _ in range(n)]
        for account in accounts:
            factories.TaxLotFactory(account=account, security=security, quantity=Decimal("4"))
        rows = [(acc, security, "5") for acc in accounts] + [(acc, CASH, "1") for acc in accounts]
        with CaptureQueriesContext(connection) as ctx:
            reconciliation_create(batch=batch_for(ops, f"{n}.csv"), frame=frame(rows), actor=ops)
        return len(ctx.captured_queries)

    assert run(2) == run(40)


# ---------------------------------------------------------------------------
# Resolving a break
# ---------------------------------------------------------------------------


@pytest.fixture
def open_break(book, ops) -> ReconciliationBreak:
    reconciliation = reconciliation_create(batch=batch_for(ops), frame=planted(book), actor=ops)
    return reconciliation.breaks.get(account=book["c"])


def test_resolving_a_break_records_who_why_and_when_and_is_audited(open_break, compliance):
    brk = reconciliation_break_resolve(
        brk=open_break, actor=compliance, resolution="  Custodian fee booked late.  "
    )
    brk.refresh_from_db()
    assert brk.resolved_by == compliance
    assert brk.resolution == "Custodian fee booked late."
    assert brk.resolved_at is not None
    event = AuditEvent.objects.get(action=ACTION_BREAK_RESOLVED)
    assert event.actor == compliance
    assert event.object_id == str(brk.pk)
    assert event.reason == "Custodian fee booked late."
    assert event.after["resolution"] == "Custodian fee booked late."
    assert event.after["difference"] == "-50.000000"


def test_resolving_a_resolved_break_is_refused_and_changes_nothing(open_break, ops, ops2):
    first = reconciliation_break_resolve(brk=open_break, actor=ops, resolution="Fee")
    with pytest.raises(InvalidTransition) as exc:
        reconciliation_break_resolve(brk=open_break, actor=ops2, resolution="Again")
    local = timezone.localtime(first.resolved_at)
    assert exc.value.message == BREAK_ALREADY_RESOLVED.format(
        id=open_break.pk, date=local.strftime("%Y-%m-%d %H:%M"), who="ops", resolution="Fee"
    )
    open_break.refresh_from_db()
    assert open_break.resolution == "Fee"
    assert AuditEvent.objects.filter(action=ACTION_BREAK_RESOLVED).count() == 1


def test_a_pm_may_not_resolve_a_break_even_on_their_own_account(open_break, pm):
    with pytest.raises(PermissionDenied) as exc:
        reconciliation_break_resolve(brk=open_break, actor=pm, resolution="Mine")
    assert exc.value.message == RESOLVE_FORBIDDEN
    open_break.refresh_from_db()
    assert open_break.resolved_at is None


def test_an_empty_resolution_is_refused(open_break, ops):
    with pytest.raises(ValidationFailed) as exc:
        reconciliation_break_resolve(brk=open_break, actor=ops, resolution="   ")
    assert exc.value.message == RESOLUTION_REQUIRED
    assert not AuditEvent.objects.filter(action=ACTION_BREAK_RESOLVED).exists()


# ---------------------------------------------------------------------------
# Selectors: visibility
# ---------------------------------------------------------------------------


@pytest.fixture
def two_team_reconciliation(book, ops) -> Reconciliation:
    """Breaks on account_a (team A: MSFT) and account_b (team B: AAPL)."""
    a, b = book["a"], book["b"]
    rows = frame(
        [
            (a, book["aapl"], "15"),
            (a, book["msft"], "21"),
            (a, book["tsla"], "3"),
            (a, CASH, "1000"),
            (b, book["aapl"], "6"),
            (b, CASH, "1000"),
        ]
    )
    return reconciliation_create(batch=batch_for(ops), frame=rows, actor=ops)


def test_a_pm_sees_only_the_breaks_of_their_own_accounts(two_team_reconciliation, pm, book):
    listed = reconciliation_list(user=pm).get()
    assert (listed.visible_breaks, listed.open_breaks) == (1, 1)
    breaks = reconciliation_breaks(user=pm, reconciliation=two_team_reconciliation)
    assert [b.account_id for b in breaks] == [book["a"].pk]
    assert open_breaks_by_account(user=pm) == {book["a"].pk: 1}
    other = two_team_reconciliation.breaks.get(account=book["b"])
    with pytest.raises(NotFound) as exc:
        reconciliation_break_get(user=pm, pk=other.pk)
    assert exc.value.message == BREAK_NOT_FOUND.format(id=other.pk)


def test_ops_sees_every_break(two_team_reconciliation, ops, book):
    assert reconciliation_get(user=ops, pk=two_team_reconciliation.pk).visible_breaks == 2
    assert open_breaks_by_account(user=ops) == {book["a"].pk: 1, book["b"].pk: 1}


def test_a_pm_does_not_see_a_reconciliation_that_broke_only_on_other_accounts(book, ops, pm):
    b = book["b"]
    rows = frame([(b, book["aapl"], "4"), (b, CASH, "1000")])
    reconciliation = reconciliation_create(batch=batch_for(ops), frame=rows, actor=ops)
    assert not reconciliation_list(user=pm).exists()
    with pytest.raises(NotFound):
        reconciliation_get(user=pm, pk=reconciliation.pk)


# ---------------------------------------------------------------------------
# Through the import service: a custodian position file
# ---------------------------------------------------------------------------


def test_a_custodian_position_import_reconciles_through_the_import_service(book, ops):
    from portfolios.services.imports import import_submit

    a, c = book["a"], book["c"]
    data = (
        "account_number,custodian,ticker,quantity,as_of\n"
        f"{a.account_number},{a.custodian},AAPL,15,2026-11-24\n"
        f"{a.account_number},{a.custodian},MSFT,18,2026-11-24\n"
        f"{a.account_number},{a.custodian},TSLA,3,2026-11-24\n"
        f"{a.account_number},{a.custodian},CASH,1000,2026-11-24\n"
        f"{c.account_number},{c.custodian},CASH,950,2026-11-24\n"
    ).encode()
    batch = import_submit(
        actor=ops, kind=ImportKind.CUSTODIAN_POSITIONS, file_name="pos.csv", data=data
    )
    assert batch.status == "succeeded", (batch.error, batch.errors)
    reconciliation = Reconciliation.objects.get(import_batch=batch)
    assert breaks_of(reconciliation) == {
        (a.account_number, "MSFT", "18", "20", "-2"),
        (c.account_number, "CASH", "950", "1000", "-50"),
    }
    assert reconciliation.as_of == AS_OF
    assert AuditEvent.objects.filter(
        action=ACTION_CREATED, object_id=str(reconciliation.pk)
    ).exists()


# ---------------------------------------------------------------------------
# The drift dashboard flags accounts with open breaks
# ---------------------------------------------------------------------------


def test_the_drift_dashboard_flags_accounts_with_open_breaks(book, ops, client):
    from portfolios.selectors.drift import drift_dashboard

    reconciliation_create(batch=batch_for(ops), frame=planted(book), actor=ops)
    flags = {a.pk: a.open_breaks for a in drift_dashboard(user=ops)}
    assert flags == {book["a"].pk: True, book["b"].pk: False, book["c"].pk: True}
    client.force_login(ops)
    html = client.get("/drift/").content.decode()
    assert html.count(">Open breaks</a>") == 2


def test_a_resolved_break_no_longer_flags_the_account(open_break, ops):
    from portfolios.selectors.drift import drift_dashboard

    reconciliation_break_resolve(brk=open_break, actor=ops, resolution="Fee booked")
    flags = {a.pk: a.open_breaks for a in drift_dashboard(user=ops)}
    assert flags[open_break.account_id] is False


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------


@pytest.fixture
def api_for():
    from rest_framework.test import APIClient

    def make(user: Any) -> Any:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


def test_the_api_lists_reconciliations_and_one_with_its_breaks(
    two_team_reconciliation, ops, api_for, book
):
    listing = api_for(ops).get("/api/v1/reconciliations/")
    assert listing.status_code == 200
    [row] = listing.json()["results"]
    assert (row["id"], row["break_count"], row["visible_breaks"], row["open_breaks"]) == (
        two_team_reconciliation.pk,
        2,
        2,
        2,
    )
    detail = api_for(ops).get(f"/api/v1/reconciliations/{two_team_reconciliation.pk}/").json()
    assert [
        (b["account_number"], b["ticker"], b["custodian_quantity"], b["book_quantity"])
        for b in detail["breaks"]
    ] == [
        (book["a"].account_number, "MSFT", "21.000000", "20.000000"),
        (book["b"].account_number, "AAPL", "6.000000", "5.000000"),
    ]
    assert detail["breaks"][0]["difference"] == "1.000000"
    assert detail["breaks"][0]["is_open"] is True


def test_the_api_shows_a_pm_only_their_breaks(two_team_reconciliation, pm, api_for, book):
    detail = api_for(pm).get(f"/api/v1/reconciliations/{two_team_reconciliation.pk}/").json()
    assert [b["account"] for b in detail["breaks"]] == [book["a"].pk]
    other = two_team_reconciliation.breaks.get(account=book["b"])
    assert api_for(pm).get(f"/api/v1/reconciliation-breaks/{other.pk}/").status_code == 404
    listing = api_for(pm).get("/api/v1/reconciliation-breaks/", {"open": "true"}).json()
    assert [b["account"] for b in listing["results"]] == [book["a"].pk]


def test_the_api_resolves_a_break_for_ops_and_refuses_a_pm(
    two_team_reconciliation, api_for, ops, pm, book
):
    brk = two_team_reconciliation.breaks.get(account=book["a"])
    url = f"/api/v1/reconciliation-breaks/{brk.pk}/resolve/"
    refused = api_for(pm).post(url, {"resolution": "Mine"}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {"message": RESOLVE_FORBIDDEN, "extra": {}}
    empty = api_for(ops).post(url, {}, format="json")
    assert empty.status_code == 400
    done = api_for(ops).post(url, {"resolution": "Trade booked late"}, format="json")
    assert done.status_code == 200
    assert (done.json()["is_open"], done.json()["resolved_by"]) == (False, "ops")
    again = api_for(ops).post(url, {"resolution": "Twice"}, format="json")
    assert again.status_code == 409
    assert AuditEvent.objects.filter(action=ACTION_BREAK_RESOLVED).count() == 1
    resolved = api_for(ops).get("/api/v1/reconciliation-breaks/", {"open": "false"}).json()
    assert [b["id"] for b in resolved["results"]] == [brk.pk]


@pytest.mark.parametrize(
    ("persona", "status"),
    [(None, 401), ("outsider", 403), ("pm", 200), ("ops", 200), ("compliance", 200)],
)
def test_api_permission_matrix_for_reconciliations(request, api_for, persona, status):
    user = request.getfixturevalue(persona) if persona else None
    for url in ("/api/v1/reconciliations/", "/api/v1/reconciliation-breaks/"):
        assert api_for(user).get(url).status_code == status, url
