"""The writers on hand-built validated frames (the validator's output shape): what each kind
writes, that every written row points to its batch, upserts against appends, the audit rule
(one event per changed row up to a limit, then one summary event), cash balances moved by
their flows, and the COPY path on PostgreSQL writing exactly what bulk_create writes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from guardian.shortcuts import get_perms

from compliance.models import AuditEvent, Restriction
from portfolios.imports import writers
from portfolios.imports.writers import import_write
from portfolios.models import (
    Account,
    CashFlow,
    Household,
    ImportBatch,
    ImportKind,
    ModelPortfolio,
    Price,
    Security,
    TaxLot,
    Transaction,
)
from portfolios.services import TargetSpec, model_version_create
from rebalance_app.exceptions import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db


def make_batch(kind: str, user: Any = None) -> ImportBatch:
    return ImportBatch.objects.create(
        kind=kind, file_name=f"{kind}.csv", sha256="0" * 64, created_by=user, status="running"
    )


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    out["line"] = range(2, len(rows) + 2)
    return out


@pytest.fixture
def copy_always(monkeypatch):
    """Send every frame through COPY (PostgreSQL only)."""
    monkeypatch.setattr(writers, "COPY_MIN_ROWS", 1)


# ---------------------------------------------------------------------------
# lots and transactions
# ---------------------------------------------------------------------------


def lots_frame(account_a, security, other) -> pd.DataFrame:
    return frame(
        [
            {
                "account_number": account_a.account_number,
                "ticker": "AAPL",
                "quantity": "12.5",
                "cost_basis": "101.25",
                "acquired_on": date(2023, 5, 1),
                "account_id": account_a.pk,
                "security_id": security.pk,
            },
            {
                "account_number": account_a.account_number,
                "ticker": "MSFT",
                "quantity": Decimal("3"),
                "cost_basis": 250.0,
                "acquired_on": "2024-02-29",
                "account_id": account_a.pk,
                "security_id": other.pk,
            },
        ]
    )


def written_lots(batch: ImportBatch) -> list[tuple]:
    return list(
        TaxLot.objects.filter(import_batch=batch)
        .order_by("security__ticker")
        .values_list("account_id", "security__ticker", "quantity", "cost_basis", "acquired_on")
    )


@pytest.mark.parametrize("path", ["bulk", pytest.param("copy", marks=pytest.mark.postgres)])
def test_lots_are_appended_and_point_to_their_batch(account_a, security, ops, request, path):
    if path == "copy":
        request.getfixturevalue("copy_always")
    other = factories.SecurityFactory(ticker="MSFT")
    batch = make_batch(ImportKind.LOTS, ops)
    before = TaxLot.objects.count()

    summary = import_write(
        kind=ImportKind.LOTS, frame=lots_frame(account_a, security, other), batch=batch
    )

    assert TaxLot.objects.count() == before + 2
    assert written_lots(batch) == [
        (account_a.pk, "AAPL", Decimal("12.5"), Decimal("101.25"), date(2023, 5, 1)),
        (account_a.pk, "MSFT", Decimal("3"), Decimal("250"), date(2024, 2, 29)),
    ]
    assert summary == {
        "created": 2,
        "updated": 0,
        "account_ids": [account_a.pk],
        "security_ids": sorted([security.pk, other.pk]),
    }


def test_progress_is_reported_with_the_rows_written(account_a, security):
    other = factories.SecurityFactory(ticker="MSFT")
    seen: list[int] = []

    import_write(
        kind=ImportKind.LOTS,
        frame=lots_frame(account_a, security, other),
        batch=make_batch(ImportKind.LOTS),
        progress=seen.append,
    )

    assert seen == [2]


@pytest.mark.parametrize("path", ["bulk", pytest.param("copy", marks=pytest.mark.postgres)])
def test_transactions_are_appended_with_zero_for_blank_gains(account_a, security, request, path):
    if path == "copy":
        request.getfixturevalue("copy_always")
    batch = make_batch(ImportKind.TRANSACTIONS)
    rows = frame(
        [
            {
                "account_number": account_a.account_number,
                "ticker": "AAPL",
                "trade_date": date(2026, 3, 2),
                "side": "sell",
                "quantity": "4",
                "price": "180.5",
                "realized_st": "",
                "realized_lt": "-12.34",
                "wash_sale_disallowed": None,
                "account_id": account_a.pk,
                "security_id": security.pk,
            }
        ]
    )

    summary = import_write(kind=ImportKind.TRANSACTIONS, frame=rows, batch=batch)

    txn = Transaction.objects.get(import_batch=batch)
    assert (txn.side, txn.quantity, txn.price, txn.trade_date) == (
        "sell",
        Decimal("4"),
        Decimal("180.5"),
        date(2026, 3, 2),
    )
    assert (txn.realized_st, txn.realized_lt, txn.wash_sale_disallowed) == (
        Decimal("0"),
        Decimal("-12.34"),
        Decimal("0"),
    )
    assert summary["account_ids"] == [account_a.pk]


# ---------------------------------------------------------------------------
# prices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["bulk", pytest.param("copy", marks=pytest.mark.postgres)])
def test_prices_are_upserted_on_security_and_date(security, request, path):
    if path == "copy":
        request.getfixturevalue("copy_always")
    stored = Price.objects.get(security=security)
    batch = make_batch(ImportKind.PRICES)
    rows = frame(
        [
            {
                "ticker": "AAPL",
                "date": stored.as_of,
                "price": "155.5",
                "source": "",
                "avg_daily_volume": "",
                "security_id": security.pk,
            },
            {
                "ticker": "AAPL",
                "date": date(2026, 11, 25),
                "price": "156",
                "source": "vendor",
                "avg_daily_volume": "1000000",
                "security_id": security.pk,
            },
        ]
    )

    summary = import_write(kind=ImportKind.PRICES, frame=rows, batch=batch)

    prices = list(
        Price.objects.filter(security=security)
        .order_by("as_of")
        .values_list("as_of", "price", "source", "avg_daily_volume", "import_batch")
    )
    assert prices == [
        (stored.as_of, Decimal("155.5"), "import", None, batch.pk),
        (date(2026, 11, 25), Decimal("156"), "vendor", 1_000_000, batch.pk),
    ]
    assert (summary["created"], summary["updated"], summary["security_ids"]) == (
        1,
        1,
        [security.pk],
    )


# ---------------------------------------------------------------------------
# securities: upsert and the audit rule
# ---------------------------------------------------------------------------


def securities_frame() -> pd.DataFrame:
    return frame(
        [
            {
                "ticker": "AAPL",
                "name": "Apple Inc. (renamed)",
                "asset_class": "equity",
                "security_type": "equity",
                "sector": "",
                "esg_score": "",
                "esg_tags": "",
                "round_lot": "",
                "security_id": None,
            },
            {
                "ticker": "VTI",
                "name": "=HYPERLINK(1)",
                "asset_class": "equity",
                "security_type": "etf",
                "sector": "Broad market",
                "esg_score": "61.5",
                "esg_tags": "low_carbon; broad",
                "round_lot": "1",
                "security_id": None,
            },
        ]
    )


def test_securities_are_created_or_updated_by_ticker_and_blank_cells_keep_values(security, ops):
    batch = make_batch(ImportKind.SECURITIES, ops)

    summary = import_write(kind=ImportKind.SECURITIES, frame=securities_frame(), batch=batch)

    security.refresh_from_db()
    assert (security.name, security.sector, security.import_batch_id) == (
        "Apple Inc. (renamed)",
        "Information Technology",
        batch.pk,
    )
    vti = Security.objects.get(ticker="VTI")
    assert (vti.name, vti.security_type, vti.esg_score, vti.esg_tags, vti.import_batch_id) == (
        "=HYPERLINK(1)",
        "etf",
        Decimal("61.5"),
        ["low_carbon", "broad"],
        batch.pk,
    )
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (1, 1, 0)
    events = AuditEvent.objects.filter(reason=f"import batch {batch.pk}").order_by("seq")
    assert [(e.action, e.object_id, e.actor_label) for e in events] == [
        ("security.create", str(vti.pk), "ops"),
        ("security.update", str(security.pk), "ops"),
    ]
    assert events[1].before["name"] == "Apple Inc."
    assert events[1].after["name"] == "Apple Inc. (renamed)"


def test_an_unchanged_security_is_neither_updated_nor_audited(security):
    batch = make_batch(ImportKind.SECURITIES)
    rows = frame(
        [
            {
                "ticker": "AAPL",
                "name": "Apple Inc.",
                "asset_class": "equity",
                "security_type": "equity",
                "security_id": security.pk,
            }
        ]
    )

    summary = import_write(kind=ImportKind.SECURITIES, frame=rows, batch=batch)

    security.refresh_from_db()
    assert security.import_batch_id is None
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 0, 1)
    assert not AuditEvent.objects.filter(reason=f"import batch {batch.pk}").exists()


def test_past_the_per_row_limit_one_summary_audit_event_is_written(security, monkeypatch):
    monkeypatch.setattr(writers, "AUDIT_PER_ROW_LIMIT", 1)
    batch = make_batch(ImportKind.SECURITIES)

    import_write(kind=ImportKind.SECURITIES, frame=securities_frame(), batch=batch)

    events = AuditEvent.objects.filter(reason=f"import batch {batch.pk}")
    assert [(e.action, e.object_id, e.after) for e in events] == [
        ("security.bulk_upsert", str(batch.pk), {"created": 1, "updated": 1})
    ]


# ---------------------------------------------------------------------------
# households and accounts
# ---------------------------------------------------------------------------


def test_accounts_create_households_with_their_team_and_update_existing_accounts(
    account_a, team_b, pm, other_pm
):
    model = factories.ModelPortfolioFactory(name="Growth")
    batch = make_batch(ImportKind.ACCOUNTS)
    rows = frame(
        [
            {
                "household": "Gamma Trust",
                "custodian": "Fidelity",
                "account_number": "G-1",
                "name": "Gamma Trust Account",
                "registration_type": "trust",
                "taxable": "yes",
                "model": "Growth",
                "team": "Team B",
                "cash_balance": "2500",
                "tlh_enabled": "true",
                "household_id": None,
                "account_id": None,
                "model_id": model.pk,
            },
            {
                "household": "Alpha Family",
                "custodian": account_a.custodian,
                "account_number": account_a.account_number,
                "name": "Alpha Taxable (renamed)",
                "registration_type": "individual",
                "taxable": "true",
                "model": "",
                "team": "",
                "cash_balance": "",
                "tlh_enabled": "",
                "household_id": account_a.household_id,
                "account_id": account_a.pk,
                "model_id": None,
            },
        ]
    )

    summary = import_write(kind=ImportKind.ACCOUNTS, frame=rows, batch=batch)

    gamma = Household.objects.get(name="Gamma Trust")
    assert (gamma.team, gamma.import_batch_id) == (team_b, batch.pk)
    assert set(get_perms(team_b, gamma)) == {"view_household", "change_household"}
    new = Account.objects.get(account_number="G-1")
    assert (
        new.household,
        new.model,
        new.taxable,
        new.cash_balance,
        new.tlh_enabled,
        new.import_batch_id,
    ) == (gamma, model, True, Decimal("2500"), True, batch.pk)
    account_a.refresh_from_db()
    assert (account_a.name, account_a.cash_balance, account_a.import_batch_id) == (
        "Alpha Taxable (renamed)",
        Decimal("1000.00"),
        batch.pk,
    )
    assert (summary["created"], summary["updated"], summary["households_created"]) == (1, 1, 1)
    assert sorted(summary["account_ids"]) == sorted([new.pk, account_a.pk])
    actions = list(
        AuditEvent.objects.filter(reason=f"import batch {batch.pk}")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["household.create", "account.create", "account.update"]
    assert AuditEvent.objects.filter(
        action="household.assign_team", object_id=str(gamma.pk)
    ).exists()


def test_an_unknown_team_stops_the_write(db):
    rows = frame(
        [
            {
                "household": "Nobody",
                "custodian": "X",
                "account_number": "1",
                "name": "n",
                "registration_type": "individual",
                "taxable": "true",
                "team": "Team Z",
                "household_id": None,
                "account_id": None,
            }
        ]
    )

    with pytest.raises(ValidationFailed) as exc:
        import_write(kind=ImportKind.ACCOUNTS, frame=rows, batch=make_batch(ImportKind.ACCOUNTS))

    assert exc.value.message == "Team 'Team Z' does not exist; create the group first."


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


def test_models_create_a_new_model_or_a_new_version_of_an_existing_one(security, ops):
    bond = factories.SecurityFactory(ticker="BND")
    existing = factories.ModelPortfolioFactory(name="Income")
    model_version_create(
        model=existing,
        targets=[TargetSpec(bond.pk, Decimal("0.9"))],
        cash_target=Decimal("0.1"),
        actor="system:test",
    )
    batch = make_batch(ImportKind.MODELS, ops)
    rows = frame(
        [
            {"model": "Income", "ticker": "BND", "weight": "0.95", "abs_band": "0.02",
             "security_id": bond.pk, "model_id": existing.pk},
            {"model": "Income", "ticker": "CASH", "weight": "0.05", "abs_band": "",
             "security_id": None, "model_id": existing.pk},
            {"model": "Tech", "ticker": "AAPL", "weight": "1", "abs_band": "",
             "security_id": security.pk, "model_id": None},
        ]
    )  # fmt: skip

    summary = import_write(kind=ImportKind.MODELS, frame=rows, batch=batch)

    income = existing.current_version
    assert (income.version, income.cash_target, income.created_by) == (2, Decimal("0.05"), ops)
    assert list(income.targets.values_list("security__ticker", "weight", "abs_band")) == [
        ("BND", Decimal("0.95"), Decimal("0.02"))
    ]
    tech = ModelPortfolio.objects.get(name="Tech").current_version
    assert (tech.version, tech.cash_target, tech.note) == (
        1,
        Decimal("0"),
        f"Imported by batch {batch.pk}.",
    )
    assert summary["versions"] == {"Income": 2, "Tech": 1}
    assert (summary["created"], summary["updated"]) == (1, 1)
    assert AuditEvent.objects.filter(action="model.version_create", actor_label="ops").count() == 2


# ---------------------------------------------------------------------------
# cash flows
# ---------------------------------------------------------------------------


def test_cash_flows_are_appended_and_move_each_accounts_cash_by_their_sum(account_a, account_b):
    batch = make_batch(ImportKind.CASH_FLOWS)
    rows = frame(
        [
            {"account_number": account_a.account_number, "date": date(2026, 3, 2),
             "amount": "500.25", "kind": "deposit", "note": "", "account_id": account_a.pk},
            {"account_number": account_a.account_number, "date": date(2026, 3, 3),
             "amount": "-100", "kind": "fee", "note": "advisory fee", "account_id": account_a.pk},
            {"account_number": account_b.account_number, "date": date(2026, 3, 3),
             "amount": "12.5", "kind": "dividend", "note": "", "account_id": account_b.pk},
        ]
    )  # fmt: skip

    summary = import_write(kind=ImportKind.CASH_FLOWS, frame=rows, batch=batch)

    account_a.refresh_from_db()
    account_b.refresh_from_db()
    assert (account_a.cash_balance, account_b.cash_balance) == (
        Decimal("1400.25"),
        Decimal("1012.50"),
    )
    assert CashFlow.objects.filter(import_batch=batch).count() == 3
    assert summary["account_ids"] == sorted([account_a.pk, account_b.pk])
    assert summary["cash_delta"] == "412.75"
    events = AuditEvent.objects.filter(action="account.cash_flow").order_by("object_id")
    assert {e.object_id: (e.before, e.after) for e in events} == {
        str(account_a.pk): (
            {"cash_balance": "1000.00"},
            {"cash_balance": "1400.25", "delta": "400.25"},
        ),
        str(account_b.pk): (
            {"cash_balance": "1000.00"},
            {"cash_balance": "1012.50", "delta": "12.5"},
        ),
    }


# ---------------------------------------------------------------------------
# restrictions and custodian positions
# ---------------------------------------------------------------------------


def test_restrictions_are_appended_at_their_scope_with_the_importer(
    account_a, household_a, security, compliance
):
    batch = make_batch(ImportKind.RESTRICTIONS, compliance)
    rows = frame(
        [
            {"scope": "firm", "ticker": "AAPL", "sector": "", "esg_tag": "", "kind": "no_buy",
             "reason": "Watch list", "effective_from": date(2026, 1, 5), "effective_to": "",
             "household_id": None, "account_id": None, "security_id": security.pk},
            {"scope": "household", "ticker": "", "sector": "Energy", "esg_tag": "",
             "kind": "no_trade", "reason": "Client wish", "effective_from": "",
             "effective_to": "2026-12-31", "household_id": household_a.pk, "account_id": None,
             "security_id": None},
            {"scope": "account", "ticker": "", "sector": "", "esg_tag": "tobacco",
             "kind": "no_sell", "reason": "Gifted", "effective_from": "", "effective_to": "",
             "household_id": None, "account_id": account_a.pk, "security_id": None},
        ]
    )  # fmt: skip

    summary = import_write(kind=ImportKind.RESTRICTIONS, frame=rows, batch=batch)

    stored = list(
        Restriction.objects.filter(import_batch=batch)
        .order_by("pk")
        .values_list(
            "scope", "household", "account", "security", "sector", "esg_tag", "kind",
            "effective_to", "created_by",
        )
    )  # fmt: skip
    assert stored == [
        ("firm", None, None, security.pk, "", "", "no_buy", None, compliance.pk),
        ("household", household_a.pk, None, None, "Energy", "", "no_trade",
         date(2026, 12, 31), compliance.pk),
        ("account", None, account_a.pk, None, "", "tobacco", "no_sell", None, compliance.pk),
    ]  # fmt: skip
    assert Restriction.objects.get(import_batch=batch, scope="firm").effective_from == date(
        2026, 1, 5
    )
    assert summary["created"] == 3
    assert AuditEvent.objects.filter(action="restriction.create").count() == 3


def test_custodian_positions_are_reconciled_not_written_as_holdings(account_a, security):
    batch = make_batch(ImportKind.CUSTODIAN_POSITIONS)
    lots_before = TaxLot.objects.count()
    rows = frame(
        [
            {"account_number": account_a.account_number, "ticker": "AAPL", "quantity": "12",
             "as_of": date(2026, 3, 2), "account_id": account_a.pk, "security_id": security.pk},
            {"account_number": account_a.account_number, "ticker": "CASH", "quantity": "1000",
             "as_of": date(2026, 3, 2), "account_id": account_a.pk, "security_id": None},
        ]
    )  # fmt: skip

    summary = import_write(kind=ImportKind.CUSTODIAN_POSITIONS, frame=rows, batch=batch)

    assert TaxLot.objects.count() == lots_before
    reconciliation = batch.reconciliation
    assert summary["reconciliation_id"] == reconciliation.pk
    # 12 held at the custodian, 10 in the books; cash agrees
    assert list(
        reconciliation.breaks.values_list("security__ticker", "custodian_quantity", "book_quantity")
    ) == [("AAPL", Decimal("12"), Decimal("10"))]
    assert summary["break_count"] == 1


def test_a_kind_without_a_writer_is_refused(db):
    with pytest.raises(ValidationFailed) as exc:
        import_write(kind="demo", frame=frame([{"x": 1}]), batch=make_batch("demo"))

    assert exc.value.message == "Imports of kind 'demo' cannot be written."
