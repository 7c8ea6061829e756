"""Journey: ``ops`` opens Imports from the menu, uploads a tax-lot file with errors, reads the
per-row report (line numbers and reasons, nothing written), fixes the file, uploads it
again, sees it succeed, and finds both batches (the failed one and the succeeded one) in the
history. The file is small enough to be imported inline (under ``IMPORT_ASYNC_ROWS``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from portfolios.imports.validate import UNKNOWN_TICKER
from portfolios.models import ImportBatch, TaxLot
from rebalance_app.work import WorkStatus
from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e

HEADER = "account_number,ticker,quantity,cost_basis,acquired_on\n"


def test_ops_fixes_a_bad_lots_file_and_sees_both_batches_in_the_history(
    page: Page, live_server, ops, account_a, security, tmp_path, console_errors
):
    number = account_a.account_number
    lots_before = TaxLot.objects.filter(account=account_a).count()
    bad = tmp_path / "lots.csv"
    bad.write_text(
        HEADER
        + f"{number},AAPL,10,120.50,2024-03-01\n"
        + f"{number},AAPL,-5,120.50,2024-03-04\n"
        + f"{number},ZZZZ,3,10,2024-03-05\n"
    )

    login(page, live_server, "ops")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Imports").click()
    expect(page.get_by_role("heading", name="Imports", level=1)).to_be_visible()

    page.get_by_label("Kind", exact=True).select_option("lots")
    page.get_by_label("File", exact=True).set_input_files(str(bad))
    page.get_by_role("button", name="Import", exact=True).click()

    errors = page.locator("#import-errors")
    expect(errors).to_be_visible()
    expect(page.locator("#import-state")).to_have_text("Failed")
    expect(page.locator("#import-errors-heading")).to_have_text("2 problems found")
    rows = errors.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("3")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("quantity")
    expect(rows.nth(0).locator("td").nth(2)).to_contain_text("-5")
    expect(rows.nth(1).locator("td").nth(0)).to_have_text("4")
    expect(rows.nth(1).locator("td").nth(1)).to_have_text("ticker")
    expect(rows.nth(1).locator("td").nth(2)).to_have_text(UNKNOWN_TICKER.format(value="ZZZZ"))
    assert TaxLot.objects.filter(account=account_a).count() == lots_before

    fixed = tmp_path / "lots-fixed.csv"
    fixed.write_text(
        HEADER
        + f"{number},AAPL,10,120.50,2024-03-01\n"
        + f"{number},AAPL,5,120.50,2024-03-04\n"
        + f"{number},AAPL,3,10,2024-03-05\n"
    )
    page.get_by_label("File", exact=True).set_input_files(str(fixed))
    page.get_by_role("button", name="Import", exact=True).click()

    expect(page.locator("#import-state")).to_have_text("Succeeded")
    expect(page.locator("#import-message")).to_contain_text("3 of 3 rows imported")
    expect(page.locator("#import-errors")).to_have_count(0)

    failed, succeeded = ImportBatch.objects.order_by("pk")
    assert (failed.status, succeeded.status) == (WorkStatus.FAILED, WorkStatus.SUCCEEDED)
    history = page.locator("#import-history-table tbody tr")
    expect(history).to_have_count(2)
    newest, oldest = history.nth(0), history.nth(1)
    expect(newest).to_have_attribute("data-batch", str(succeeded.pk))
    expect(newest).to_contain_text("lots-fixed.csv")
    expect(newest).to_contain_text("Succeeded")
    expect(oldest).to_have_attribute("data-batch", str(failed.pk))
    expect(oldest).to_contain_text("lots.csv")
    expect(oldest).to_contain_text("Failed")

    lots = TaxLot.objects.filter(account=account_a, import_batch=succeeded)
    assert sorted(lot.quantity for lot in lots) == [Decimal("3"), Decimal("5"), Decimal("10")]

    # the failed batch's detail page keeps its per-row report
    oldest.get_by_role("link", name=str(failed.pk)).click()
    expect(page.get_by_role("heading", name=f"Import batch {failed.pk}")).to_be_visible()
    expect(page.locator("#import-errors tbody tr")).to_have_count(2)
    assert console_errors == []
