"""Journeys: ``pm`` opens a breached account from the drift dashboard, proposes a full rebalance,
waits on the review page while a real Celery worker optimizes it (htmx polling swaps in the
result), reads the metrics, the weights chart, the trades and a sell's lots, removes one trade
(the metrics are recomputed), and creates a draft basket from what is left. Then, from the
dashboard, ``pm`` proposes for every breached account of the model at once and follows the
batch's progress bar to the end. No console error.

The run goes through the project's Celery app to a live worker on a queue of this test's own
(``tests/rebalance_app/conftest.py``), so nothing is done eagerly in the web request.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from orders.models import BasketState, TradeBasket
from portfolios.calendar import last_completed_session
from portfolios.models import DriftAlert, DriftSnapshot, Price, RebalanceRun, RunStatus
from portfolios.services import TargetSpec, model_version_create
from portfolios.views_rebalance import BASKET_CREATED, TRADE_REMOVED
from tests import factories
from tests.e2e.conftest import login
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.celery_worker]

RESULT_TIMEOUT_MS = 60_000  # the first solve of a shape compiles the cvxpy problem


def _fresh_price(security, price: str) -> None:
    Price.objects.update_or_create(
        security=security, as_of=last_completed_session(), defaults={"price": Decimal(price)}
    )


@pytest.fixture
def breached_account(account_a, security):
    """account_a: 20 AAPL (a long-term lot at a gain, a short-term lot at a loss) and $1,000
    cash against a model of AAPL 50% / MSFT 45% / cash 5%; its latest scan breached."""
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.")
    _fresh_price(security, "150")
    _fresh_price(msft, "100")
    model = factories.ModelPortfolioFactory(name="Core 50/45")
    model_version_create(
        model=model,
        targets=[
            TargetSpec(security_id=security.pk, weight=Decimal("0.50")),
            TargetSpec(security_id=msft.pk, weight=Decimal("0.45")),
        ],
        cash_target=Decimal("0.05"),
        actor="system:test",
    )
    factories.TaxLotFactory(
        account=account_a,
        security=security,
        quantity=Decimal("10"),
        cost_basis=Decimal("160"),
        acquired_on=last_completed_session() - timedelta(days=40),
    )
    account_a.model = model
    account_a.save(update_fields=["model"])
    snapshot = DriftSnapshot.objects.create(
        account=account_a,
        total_value=Decimal("4000"),
        total_drift=0.5,
        max_drift=0.5,
        cash_drift=0.2,
        breach_count=2,
        breached=True,
    )
    DriftAlert.objects.create(
        account=account_a,
        raised_snapshot=snapshot,
        total_drift=0.5,
        max_drift=0.5,
        breach_count=2,
    )
    return account_a


@pytest.mark.usefixtures("live_worker")
def test_pm_proposes_reviews_removes_a_trade_and_makes_a_draft_basket(
    page: Page, live_server, pm, breached_account, console_errors
):
    number = breached_account.account_number
    login(page, live_server, "pm")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drift").click()
    page.get_by_label("Breached only").check()
    expect(page.locator("#drift-table tbody tr")).to_have_count(1)
    page.locator("#drift-table").get_by_role("link", name=number).click()
    expect(page.get_by_role("alert").filter(has_text="Drift alert")).to_be_visible()
    expect(page.locator("#no-proposals")).to_be_visible()

    page.get_by_role("link", name="Propose rebalance").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Propose a rebalance")
    expect(page.locator("#tlh-unavailable")).to_be_visible()  # TLH is off for this account
    page.get_by_label("Mode", exact=True).select_option("full")
    page.get_by_role("button", name="Propose", exact=True).click()

    # the review page opens at once and fills in when the worker is done
    expect(page).to_have_url(re.compile(r"/rebalance/runs/\d+/$"))
    run_id = int(re.search(r"/rebalance/runs/(\d+)/", page.url).group(1))
    expect(page.locator("#run-state")).to_have_text("Succeeded", timeout=RESULT_TIMEOUT_MS)
    run = RebalanceRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED
    tickers = sorted(t["ticker"] for t in run.trades)
    assert tickers == ["AAPL", "MSFT"]

    expect(page.locator("#run-weights-chart svg.main-svg").first).to_be_visible()
    expect(page.locator("#run-weights-chart g.trace.bars")).to_have_count(2)
    trades = page.locator("#trades-table tbody.trade")
    expect(trades).to_have_count(2)
    sell = page.locator('#trades-table tbody.trade[data-ticker="AAPL"]')
    expect(sell).to_contain_text("Sell")
    lots = sell.locator("tr.lot-row")
    lots.locator("summary").click()
    aapl = next(t for t in run.trades if t["ticker"] == "AAPL")
    expect(lots.locator("tbody tr")).to_have_count(len(aapl["lots"]))
    expect(page.locator("#run-explanation li")).to_have_count(2)
    cash_after = page.locator('[data-metric="cash"] .after')
    before_removal = cash_after.inner_text()

    # remove the sell: the metrics are recomputed (less cash after, no realized gains)
    page.once("dialog", lambda dialog: dialog.accept())
    sell.get_by_role("button", name="Remove the sell of AAPL").click()
    expect(page.locator("#edit-notice")).to_have_text(TRADE_REMOVED.format(ticker="AAPL"))
    expect(trades).to_have_count(1)
    expect(page.locator('#trades-table tbody.trade[data-ticker="MSFT"]')).to_be_visible()
    expect(cash_after).not_to_have_text(before_removal)
    expect(page.locator('[data-metric="realized_st"] .v')).to_have_text("0.00")
    expect(page.locator("#edits-table tbody tr")).to_have_count(1)
    run.refresh_from_db()
    assert [t["ticker"] for t in run.trades] == ["MSFT"]
    # the buy alone spends more than the cash: the page says so before any basket is made
    violations = run.diagnostics["metrics"]["violations"]
    assert any(v.startswith("Cash after trading is -$") for v in violations)
    expect(page.locator("#run-violations li")).to_have_text(violations)
    expect(page.locator("#basket-violations")).to_be_visible()
    assert float(cash_after.inner_text().replace(",", "")) == pytest.approx(
        run.diagnostics["metrics"]["cash_after"]
    )

    page.get_by_role("button", name="Create draft basket").click()
    confirmation = page.get_by_role("status").filter(has_text="Draft basket")
    expect(confirmation).to_be_visible()
    basket = TradeBasket.objects.get()
    assert basket.state == BasketState.DRAFT
    assert list(basket.runs.values_list("pk", flat=True)) == [run_id]
    expect(confirmation).to_have_text(BASKET_CREATED.format(basket=basket.pk, orders=1, plural=""))
    expect(page.locator("#run-baskets")).to_contain_text(f"#{basket.pk}")
    expect(page.locator("#create-basket")).to_have_count(0)

    assert console_errors == []


@pytest.mark.usefixtures("live_worker")
def test_pm_proposes_for_every_breached_account_of_a_model_and_follows_the_batch(
    page: Page, live_server, pm, breached_account, console_errors
):
    household = breached_account.household
    model = breached_account.model
    second = factories.AccountFactory(household=household, name="Alpha Joint", model=model)
    factories.TaxLotFactory(account=second, security=breached_account.lots.first().security)
    frozen = factories.AccountFactory(
        household=household, name="Alpha Frozen", model=model, status="frozen"
    )
    for account in (second, frozen):
        DriftSnapshot.objects.create(
            account=account, total_drift=0.4, max_drift=0.4, breach_count=1, breached=True
        )

    login(page, live_server, "pm")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drift").click()
    form = page.locator("#batch-propose-form")
    form.get_by_label("Model", exact=True).select_option(label="Core 50/45")
    form.get_by_label("Mode", exact=True).select_option("full")
    form.get_by_role("button", name="Propose").click()

    expect(page).to_have_url(re.compile(r"/rebalance/batches/\d+/$"))
    expect(page.locator("#batch-finished")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#batch-done")).to_have_text("2 of 2")
    expect(page.locator('[data-count="succeeded"]')).to_have_text("2")
    expect(page.locator("#batch-bar")).to_have_attribute("value", "2")
    skipped = page.locator("#skipped-table tbody tr")
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(frozen.account_number)
    expect(skipped).to_contain_text("frozen")
    runs = page.locator("#batch-runs tbody tr")
    expect(runs).to_have_count(2)

    runs.first.get_by_role("link").click()
    expect(page.locator("#run-state")).to_have_text("Succeeded")
    expect(page.locator("#trades-table tbody.trade").first).to_be_visible()

    assert console_errors == []
