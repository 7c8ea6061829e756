"""Journey: a PM opens the drift dashboard, sorts by drift with a click on the column header,
keeps only the breached accounts with the checkbox, opens the most drifted one and reads its
holdings-vs-target chart (with bands), its drift over time and its breach list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from portfolios.models import DriftAlert, DriftPosition, DriftSnapshot
from tests import factories
from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def _snapshot(account, total: float, breaches: int, *, days_ago: int = 0, latest: bool = True):
    return DriftSnapshot.objects.create(
        account=account,
        scanned_at=T0 - timedelta(days=days_ago),
        is_latest=latest,
        total_value=Decimal("2500"),
        total_drift=total,
        max_drift=total,
        cash_drift=0.01,
        breach_count=breaches,
        breached=breaches > 0,
    )


@pytest.fixture
def drift_book(account_a, account_b, security):
    """Team A: account_a (12%, 2 breaches, three scans, positions, an open alert), E2E-MID
    (8%, 1 breach), E2E-CALM (4%) and E2E-LOW (1%); team B: account_b (20%, breached)."""
    household = account_a.household
    for days_ago, total in ((2, 0.03), (1, 0.07)):
        _snapshot(account_a, total, 0, days_ago=days_ago, latest=False)
    latest = _snapshot(account_a, 0.12, 2)
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.")
    factories.PriceFactory(security=msft, price=Decimal("400"))
    for sec, weight, target, band, breached in (
        (security, 0.60, 0.48, 0.05, True),
        (msft, 0.0, 0.12, 0.03, True),
        (None, 0.40, 0.40, None, False),
    ):
        DriftPosition.objects.create(
            snapshot=latest,
            security=sec,
            weight=weight,
            target=target,
            drift=weight - target,
            abs_band=band,
            breached=breached,
        )
    DriftAlert.objects.create(
        account=account_a,
        raised_at=T0,
        raised_snapshot=latest,
        total_drift=0.12,
        max_drift=0.12,
        breach_count=2,
    )
    for number, total, breaches in (
        ("E2E-MID", 0.08, 1),
        ("E2E-CALM", 0.04, 0),
        ("E2E-LOW", 0.01, 0),
    ):
        _snapshot(
            factories.AccountFactory(household=household, account_number=number), total, breaches
        )
    _snapshot(account_b, 0.20, 4)
    return {"top": account_a.account_number, "b": account_b.account_number}


def _row_numbers(page: Page) -> list[str]:
    return page.locator("#drift-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.account)"
    )


def test_pm_sorts_filters_and_opens_a_breached_account_with_its_charts(
    page: Page, live_server, pm, drift_book, console_errors
):
    top = drift_book["top"]
    login(page, live_server, "pm")
    expect(page.locator("#home-drift-top")).to_contain_text(top)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drift").click()
    expect(page.get_by_role("heading", name="Drift dashboard", level=1)).to_be_visible()
    expect(page.locator("#drift-histogram svg.main-svg").first).to_be_visible()
    expect(page.locator("#drift-alerts")).to_contain_text(top)
    # sorted by drift, largest first; team B's account is not there
    assert _row_numbers(page) == [top, "E2E-MID", "E2E-CALM", "E2E-LOW"]
    drift_header = page.get_by_role("columnheader", name=re.compile("Total drift"))
    expect(drift_header).to_have_attribute("aria-sort", "descending")

    drift_header.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/drift/\?sort=drift$"))
    expect(drift_header).to_have_attribute("aria-sort", "ascending")
    assert _row_numbers(page) == ["E2E-LOW", "E2E-CALM", "E2E-MID", top]

    page.get_by_label("Breached only").check()
    expect(page).to_have_url(re.compile(r"breached=1"))
    expect(page.locator("#drift-table tbody tr")).to_have_count(2)
    # the sort chosen by the header survives the filter
    assert _row_numbers(page) == ["E2E-MID", top]
    expect(page.locator("#drift-stat-accounts")).to_have_text("2")
    expect(page.locator("#drift-table")).not_to_contain_text(drift_book["b"])

    page.locator("#drift-table").get_by_role("link", name=top).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alpha Taxable")
    expect(page.get_by_role("alert").filter(has_text="Drift alert")).to_be_visible()
    holdings_chart = page.locator("#holdings-chart")
    expect(holdings_chart.locator("svg.main-svg").first).to_be_visible()
    expect(holdings_chart.locator("g.errorbar").first).to_be_attached()
    history_chart = page.locator("#drift-history-chart")
    expect(history_chart.locator("svg.main-svg").first).to_be_visible()
    expect(history_chart.locator("g.trace.scatter")).to_have_count(2)
    breaches = page.locator("#breaches tbody tr")
    expect(breaches).to_have_count(2)
    expect(breaches.first).to_contain_text("AAPL")
    expect(breaches.nth(1)).to_contain_text("MSFT")

    assert console_errors == []
