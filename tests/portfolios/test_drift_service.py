"""The drift scan service on a hand-built firm: what is stored (weights, drift, bands), why an
account cannot be scanned, which per-security rows are kept, the latest flag, alerts across
repeated scans, event scans and the holdings/prices hooks, retention and who may scan what.

The clock of the stale-price rule is fixed (``NOW``, Wednesday 2026-11-25 after the close):
prices dated 2026-11-25 are fresh, the cutoff is 2026-11-20 (three sessions back).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from portfolios.models import (
    AccountStatus,
    DriftAlert,
    DriftPosition,
    DriftScan,
    DriftSnapshot,
    ModelTarget,
    ModelVersion,
    ScanTrigger,
    TaxLot,
)
from portfolios.services import TargetSpec, holdings_changed, model_version_create
from portfolios.services.drift import (
    SCAN_ACCOUNTS_EMPTY,
    SCAN_ACCOUNTS_NOT_FOUND,
    SCAN_FIRM_FORBIDDEN,
    drift_inputs_load,
    drift_scan_create,
    drift_scan_execute,
    drift_scan_request,
    drift_snapshots_prune,
    prices_changed,
)
from rebalance_app.celery import app
from rebalance_app.exceptions import NotFound, PermissionDenied, ValidationFailed
from rebalance_app.work import WorkStatus
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
FRESH = date(2026, 11, 25)
ACTOR = "system:test"


def lot(account, security, quantity: str) -> TaxLot:
    return factories.TaxLotFactory(account=account, security=security, quantity=Decimal(quantity))


def build_firm(household_a, household_b) -> SimpleNamespace:
    """Securities, two models (one not summing to 100%) and one account per situation."""
    sec = {
        t: factories.SecurityFactory(ticker=t, name=f"{t} Corp")
        for t in ["AAA", "BBB", "NOPX", "OLD", "XTRA"]
    }
    for ticker, price, day in [
        ("AAA", "100", FRESH),
        ("BBB", "50", FRESH),
        ("OLD", "20", date(2026, 11, 10)),
        ("XTRA", "10", FRESH),
    ]:
        factories.PriceFactory(security=sec[ticker], price=Decimal(price), as_of=day)
    balanced = factories.ModelPortfolioFactory(name="Balanced")
    model_version_create(
        model=balanced,
        targets=[
            TargetSpec(sec["AAA"].pk, Decimal("0.5"), abs_band=Decimal("0.05")),
            TargetSpec(sec["BBB"].pk, Decimal("0.4"), rel_band=Decimal("0.25")),
        ],
        cash_target=Decimal("0.1"),
        actor=ACTOR,
    )
    broken = factories.ModelPortfolioFactory(name="Broken")
    ModelVersion.objects.create(model=broken, version=1, is_current=False)
    v2 = ModelVersion.objects.create(model=broken, version=2, cash_target=Decimal("0.08"))
    ModelTarget.objects.create(version=v2, security=sec["AAA"], weight=Decimal("0.9"))

    def account(name: str, household=household_a, model=balanced, **extra: Any):
        return factories.AccountFactory(name=name, household=household, model=model, **extra)

    acc = SimpleNamespace(
        on_target=account("On target"),
        breached=account("Breached", auto_propose=True),
        outside=account("Outside", cash_balance=Decimal("0")),
        no_price=account("No price", household=household_b),
        stale=account("Stale", household=household_b),
        no_model=account("No model", model=None),
        broken=account("Broken model", model=broken),
        closed=account("Closed", status=AccountStatus.CLOSED),
        empty=account("Empty", cash_balance=Decimal("0")),
    )
    for a in [acc.on_target, acc.no_price, acc.stale, acc.closed]:
        lot(a, sec["AAA"], "50")
        lot(a, sec["BBB"], "80")
    # two lots of AAA make one position of 70 shares
    lot(acc.breached, sec["AAA"], "30")
    lot(acc.breached, sec["AAA"], "40")
    lot(acc.breached, sec["BBB"], "40")
    lot(acc.outside, sec["AAA"], "50")
    lot(acc.outside, sec["BBB"], "80")
    lot(acc.outside, sec["XTRA"], "100")
    lot(acc.no_price, sec["NOPX"], "10")
    lot(acc.stale, sec["OLD"], "5")
    lot(acc.no_model, sec["AAA"], "10")
    lot(acc.broken, sec["AAA"], "10")
    return SimpleNamespace(sec=sec, acc=acc, balanced=balanced, broken=broken)


@pytest.fixture
def firm(household_a, household_b):
    return build_firm(household_a, household_b)


def run_scan(account_ids=None, *, actor: Any = ACTOR, trigger=ScanTrigger.MANUAL) -> DriftScan:
    """Create a scan and run it in-process, as ``manage.py scan_drift`` does."""
    scan = drift_scan_create(actor=actor, account_ids=account_ids, trigger=trigger)
    return drift_scan_execute(scan=scan, now=NOW).scan


def latest(account) -> DriftSnapshot:
    return DriftSnapshot.objects.get(account=account, is_latest=True)


def positions(snapshot: DriftSnapshot, sec) -> dict[str, tuple]:
    tickers = {s.pk: t for t, s in sec.items()}
    return {
        tickers.get(p.security_id, "CASH"): (
            round(p.weight, 9),
            round(p.target, 9),
            round(p.drift, 9),
            p.abs_band,
            p.rel_band,
            p.breached,
            p.in_model,
        )
        for p in snapshot.positions.all()
    }


# ---------------------------------------------------------------------------
# What a scan stores
# ---------------------------------------------------------------------------


def test_a_scan_stores_weights_drift_and_breaches_of_each_position_cash_included(firm):
    scan = run_scan()

    snap = latest(firm.acc.breached)
    assert snap.scan_id == scan.pk
    assert snap.total_value == Decimal("10000.00")
    assert snap.total_drift == pytest.approx(0.2)
    assert snap.max_drift == pytest.approx(0.2)
    assert snap.cash_drift == pytest.approx(0.0)
    assert (snap.breach_count, snap.breached, snap.scannable) == (2, True, True)
    assert snap.model_version == firm.balanced.current_version
    assert positions(snap, firm.sec) == {
        "AAA": (0.7, 0.5, 0.2, 0.05, None, True, True),
        "BBB": (0.2, 0.4, -0.2, None, 0.25, True, True),
        "CASH": (0.1, 0.1, 0.0, 0.03, None, False, True),
    }


def test_a_held_security_outside_the_model_gets_the_default_band_and_is_counted(firm):
    run_scan()

    snap = latest(firm.acc.outside)
    assert (snap.not_in_model_count, snap.model_not_held_count, snap.breach_count) == (1, 0, 2)
    assert snap.cash_drift == pytest.approx(-0.1)
    assert positions(snap, firm.sec)["XTRA"] == (0.1, 0.0, 0.1, 0.03, None, True, False)
    assert positions(snap, firm.sec)["CASH"] == (0.0, 0.1, -0.1, 0.03, None, True, True)


def test_an_account_on_target_is_scanned_and_not_breached(firm):
    run_scan()

    snap = latest(firm.acc.on_target)
    assert (snap.total_drift, snap.breach_count, snap.breached) == (
        pytest.approx(0.0),
        0,
        False,
    )
    assert snap.positions.count() == 3


def test_unscannable_accounts_are_reported_with_the_reason_and_the_others_are_scanned(firm):
    scan = run_scan()

    acc = firm.acc
    expected = {
        acc.no_price.pk: "No price for NOPX",
        acc.stale.pk: "Stale price for OLD (last 2026-11-10)",
        acc.no_model.pk: "Account has no model",
        acc.broken.pk: "Model 'Broken' v2 weights sum to 98.00%, not 100%",
        acc.empty.pk: "Account has no value",
    }
    assert {int(k): v for k, v in scan.unscannable.items()} == expected
    for account_id, reason in expected.items():
        snap = DriftSnapshot.objects.get(account_id=account_id, is_latest=True)
        assert (snap.scannable, snap.unscannable_reason) == (False, reason)
        assert (snap.total_drift, snap.cash_drift, snap.total_value) == (None, None, None)
        assert snap.positions.count() == 0
    assert DriftSnapshot.objects.get(account=acc.broken).model_version.version == 2
    assert (scan.status, scan.accounts_total) == (WorkStatus.SUCCEEDED, 8)
    assert (scan.accounts_scanned, scan.accounts_unscannable, scan.accounts_breached) == (3, 5, 2)
    assert scan.duration_ms is not None


def test_a_closed_account_is_not_scanned_at_all(firm):
    run_scan()

    assert not DriftSnapshot.objects.filter(account=firm.acc.closed).exists()


def test_the_loaded_inputs_have_one_cash_row_per_account_and_leave_out_unscannable_models(firm):
    inputs, meta = drift_inputs_load(now=NOW)

    assert inputs.n_accounts == 6  # 9 accounts less closed, no model and broken model
    assert int(inputs.is_cash.sum()) == 6
    assert set(meta.unscannable) == {firm.acc.no_model.pk, firm.acc.broken.pk}
    assert meta.stale_before == date(2026, 11, 20)


# ---------------------------------------------------------------------------
# Latest flag and the per-security rows kept
# ---------------------------------------------------------------------------


def test_a_second_scan_flips_latest_and_keeps_old_rows_only_of_breached_snapshots(firm):
    first = run_scan()
    second = run_scan()

    for a in [firm.acc.on_target, firm.acc.breached, firm.acc.no_price]:
        assert DriftSnapshot.objects.filter(account=a).count() == 2
        assert latest(a).scan_id == second.pk
    old_ok = DriftSnapshot.objects.get(account=firm.acc.on_target, scan=first)
    old_breached = DriftSnapshot.objects.get(account=firm.acc.breached, scan=first)
    assert old_ok.is_latest is False
    assert old_ok.positions.count() == 0
    assert old_breached.positions.count() == 3
    assert latest(firm.acc.on_target).positions.count() == 3


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------


def test_a_breach_raises_one_alert_across_repeated_scans_and_clears_when_back_in_bands(firm):
    acc = firm.acc
    run_scan()
    second = run_scan()

    alerts = DriftAlert.objects.filter(account=acc.breached)
    assert alerts.count() == 1
    assert second.alerts_raised == 0
    raised = AuditEvent.objects.filter(action="drift.alert_raised", object_id=str(acc.breached.pk))
    assert raised.count() == 1
    event = raised.get()
    assert event.object_type == "portfolios.account"
    assert event.after["breaches"] == ["AAA", "BBB"]
    assert event.after["breach_count"] == 2
    assert event.after["total_drift"] == pytest.approx(0.2)
    assert event.after["auto_propose_requested"] is True

    # back on target: 50 AAA and 80 BBB
    TaxLot.objects.filter(account=acc.breached, security=firm.sec["AAA"]).delete()
    lot(acc.breached, firm.sec["AAA"], "50")
    TaxLot.objects.filter(account=acc.breached, security=firm.sec["BBB"]).update(
        quantity=Decimal("80")
    )
    third = run_scan()

    alert = alerts.get()
    assert alert.cleared_at is not None
    assert alert.cleared_snapshot == latest(acc.breached)
    assert third.alerts_cleared == 1
    cleared = AuditEvent.objects.get(action="drift.alert_cleared")
    assert (cleared.object_id, cleared.after["alert"]) == (str(acc.breached.pk), alert.pk)


def test_an_alert_without_auto_propose_does_not_request_it(firm):
    run_scan()

    event = AuditEvent.objects.get(action="drift.alert_raised", object_id=str(firm.acc.outside.pk))
    assert "auto_propose_requested" not in event.after
    assert event.after["breaches"] == ["XTRA", "CASH"]


def test_an_unscannable_account_keeps_its_open_alert(firm):
    run_scan()
    factories.PriceFactory(security=firm.sec["AAA"], price=Decimal("1"), as_of=date(2026, 11, 9))
    TaxLot.objects.create(
        account=firm.acc.breached,
        security=firm.sec["NOPX"],
        quantity=Decimal("1"),
        cost_basis=Decimal("1"),
        acquired_on=date(2024, 1, 2),
    )
    run_scan()

    assert latest(firm.acc.breached).unscannable_reason == "No price for NOPX"
    assert DriftAlert.objects.get(account=firm.acc.breached).cleared_at is None


# ---------------------------------------------------------------------------
# Event scans and hooks
# ---------------------------------------------------------------------------


def test_an_event_scan_touches_only_the_affected_accounts(firm):
    run_scan()
    before = dict(DriftSnapshot.objects.filter(is_latest=True).values_list("account_id", "pk"))

    scan = run_scan([firm.acc.on_target.pk], trigger=ScanTrigger.EVENT)

    after = dict(DriftSnapshot.objects.filter(is_latest=True).values_list("account_id", "pk"))
    changed = {a for a in after if after[a] != before[a]}
    assert changed == {firm.acc.on_target.pk}
    assert (scan.accounts_total, scan.chunks_total, scan.trigger) == (1, 1, ScanTrigger.EVENT)
    assert DriftSnapshot.objects.filter(scan=scan).count() == 1


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> SimpleNamespace:
        calls.append((name, list(args or [])))
        return SimpleNamespace(id=options.get("task_id"))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def test_holdings_changed_requests_an_event_scan_of_those_accounts_after_commit(
    firm, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        holdings_changed(account_ids=[firm.acc.stale.pk, firm.acc.on_target.pk])
        assert not DriftScan.objects.exists()  # nothing before the commit

    assert len(callbacks) >= 1
    scan = DriftScan.objects.get()
    assert scan.trigger == ScanTrigger.EVENT
    assert scan.account_ids == sorted([firm.acc.stale.pk, firm.acc.on_target.pk])
    assert sent == [("portfolios.drift_scan", [scan.pk])]
    assert len(scan.task_id) == 36
    event = AuditEvent.objects.get(action="drift.scan_requested")
    assert (event.actor_label, event.after["trigger"]) == ("system:drift_event", "event")


def test_prices_changed_rescans_the_open_accounts_holding_those_securities(
    firm, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        accounts = prices_changed(security_ids=[firm.sec["XTRA"].pk, firm.sec["OLD"].pk])

    assert accounts == sorted([firm.acc.outside.pk, firm.acc.stale.pk])
    assert DriftScan.objects.get().account_ids == accounts


def test_prices_changed_of_a_security_nobody_holds_requests_nothing(
    firm, sent, django_capture_on_commit_callbacks
):
    unheld = factories.SecurityFactory(ticker="NONE")
    with django_capture_on_commit_callbacks(execute=True):
        assert prices_changed(security_ids=[unheld.pk]) == []

    assert not DriftScan.objects.exists()
    assert sent == []


def test_a_scan_request_is_audited_and_queued(firm, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        scan = drift_scan_request(actor=ACTOR)

    assert (scan.status, scan.account_ids, scan.trigger) == (WorkStatus.QUEUED, None, "manual")
    assert sent == [("portfolios.drift_scan", [scan.pk])]
    event = AuditEvent.objects.get(action="drift.scan_requested")
    assert (event.object_id, event.after) == (str(scan.pk), {"trigger": "manual", "scope": "firm"})


# ---------------------------------------------------------------------------
# Who may scan what
# ---------------------------------------------------------------------------


def test_a_pm_may_not_scan_the_whole_firm(firm, pm):
    with pytest.raises(PermissionDenied) as excinfo:
        drift_scan_create(actor=pm)

    assert excinfo.value.message == SCAN_FIRM_FORBIDDEN
    assert SCAN_FIRM_FORBIDDEN == "Only Ops, Compliance or Admin users may scan the whole firm."
    assert not DriftScan.objects.exists()


def test_a_pm_may_scan_the_accounts_of_their_team_but_not_another_teams(firm, pm):
    scan = drift_scan_create(actor=pm, account_ids=[firm.acc.on_target.pk])
    assert (scan.requested_by, scan.account_ids) == (pm, [firm.acc.on_target.pk])

    with pytest.raises(NotFound) as excinfo:
        drift_scan_create(actor=pm, account_ids=[firm.acc.on_target.pk, firm.acc.stale.pk])
    assert excinfo.value.message == "One or more of the accounts to scan were not found."
    assert excinfo.value.message == SCAN_ACCOUNTS_NOT_FOUND


@pytest.mark.parametrize("persona", ["ops", "compliance", "admin_user"])
def test_firm_wide_roles_may_scan_the_whole_firm(request, firm, persona):
    user = request.getfixturevalue(persona)

    assert drift_scan_create(actor=user).account_ids is None


def test_an_empty_list_of_accounts_is_refused(firm, ops):
    with pytest.raises(ValidationFailed) as excinfo:
        drift_scan_create(actor=ops, account_ids=[])

    assert excinfo.value.message == SCAN_ACCOUNTS_EMPTY


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------


def test_retention_deletes_old_snapshots_that_are_not_latest_nor_referenced_by_an_alert(
    firm, settings
):
    settings.DRIFT_SNAPSHOT_RETENTION_DAYS = 30
    run_scan()
    run_scan()
    DriftSnapshot.objects.update(scanned_at=timezone.now() - timedelta(days=31))
    old = DriftSnapshot.objects.filter(is_latest=False)
    alert_snapshot = DriftAlert.objects.get(account=firm.acc.breached).raised_snapshot
    assert alert_snapshot.is_latest is False
    keep = {*DriftSnapshot.objects.filter(is_latest=True).values_list("pk", flat=True)}
    keep |= set(DriftAlert.objects.values_list("raised_snapshot_id", flat=True))
    expected = old.exclude(pk__in=keep).count()

    assert drift_snapshots_prune() == expected
    assert expected > 0
    assert set(DriftSnapshot.objects.values_list("pk", flat=True)) == keep
    assert not DriftPosition.objects.exclude(snapshot_id__in=keep).exists()
    event = AuditEvent.objects.get(action="drift.snapshots_pruned")
    assert event.after["deleted"] == expected


def test_retention_keeps_recent_snapshots(firm):
    run_scan()
    run_scan()

    assert drift_snapshots_prune() == 0
    assert DriftSnapshot.objects.count() == 16
