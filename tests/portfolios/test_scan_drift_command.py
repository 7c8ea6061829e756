"""``manage.py scan_drift``: runs the scan in-process and prints what it found, or queues it."""

from __future__ import annotations

import re
from datetime import date
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from portfolios import calendar
from portfolios.models import DriftScan, DriftSnapshot
from rebalance_app.celery import app
from tests.portfolios.test_drift_service import build_firm

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm(household_a, household_b, monkeypatch):
    # The command runs on the real clock; the firm's prices are fresh as of 2026-11-25.
    monkeypatch.setattr(calendar, "stale_price_cutoff", lambda **kwargs: date(2026, 11, 20))
    return build_firm(household_a, household_b)


def scan_drift(*args: str) -> str:
    out = StringIO()
    call_command("scan_drift", *args, stdout=out)
    return out.getvalue()


def test_scan_drift_scans_the_firm_and_prints_a_summary_with_each_reason(firm):
    output = scan_drift()

    scan = DriftScan.objects.get()
    acc = firm.acc
    expected = [
        f"Drift scan {scan.pk} (whole firm, 1 chunk(s)): succeeded in <t> s",
        "  accounts scanned:      3",
        "  breached:              2",
        "  not scannable:         5",
        f"    {acc.no_price.account_number} (id {acc.no_price.pk}): No price for NOPX",
        f"    {acc.stale.account_number} (id {acc.stale.pk}): "
        "Stale price for OLD (last 2026-11-10)",
        f"    {acc.no_model.account_number} (id {acc.no_model.pk}): Account has no model",
        f"    {acc.broken.account_number} (id {acc.broken.pk}): "
        "Model 'Broken' v2 weights sum to 98.00%, not 100%",
        f"    {acc.empty.account_number} (id {acc.empty.pk}): Account has no value",
        "  alerts raised:         2",
        "  alerts cleared:        0",
        "  elapsed:               <t> s",
        "Data quality: 2 held securities with stale or missing prices, 1 account without a "
        "model, 1 model not summing to 100%, 3 held positions not in the model.",
    ]
    assert re.sub(r"\d+\.\d\d s", "<t> s", output).splitlines() == expected
    assert DriftSnapshot.objects.filter(scan=scan).count() == 8


def test_scan_drift_with_accounts_scans_only_those(firm):
    output = scan_drift("--account", str(firm.acc.breached.pk), "--account", str(firm.acc.stale.pk))

    scan = DriftScan.objects.get()
    assert "(2 account(s), 1 chunk(s)): succeeded" in output
    assert set(DriftSnapshot.objects.values_list("account_id", flat=True)) == {
        firm.acc.breached.pk,
        firm.acc.stale.pk,
    }
    assert scan.account_ids == sorted([firm.acc.breached.pk, firm.acc.stale.pk])


def test_scan_drift_refuses_unknown_accounts(firm):
    with pytest.raises(CommandError) as excinfo:
        scan_drift("--account", "999999", "--account", str(firm.acc.breached.pk))

    assert str(excinfo.value) == "Unknown account id(s): 999999."
    assert not DriftScan.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_scan_drift_async_queues_the_scan_and_prints_its_id(firm, monkeypatch):
    sent: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> SimpleNamespace:
        sent.append((name, list(args or [])))
        return SimpleNamespace(id=options.get("task_id"))

    monkeypatch.setattr(app, "send_task", send_task)

    output = scan_drift("--async")

    scan = DriftScan.objects.get()
    assert output.strip() == (
        f"Drift scan {scan.pk} queued (task {scan.task_id}); "
        f"follow it at /api/v1/drift-scans/{scan.pk}/."
    )
    assert sent == [("portfolios.drift_scan", [scan.pk])]
    assert not DriftSnapshot.objects.exists()
