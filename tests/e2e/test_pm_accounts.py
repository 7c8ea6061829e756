"""Journey: a PM signs in, sees only their team's accounts, narrows the list with the htmx
search, opens an account and reads its holdings and holdings-vs-target chart."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e


def test_pm_sees_only_team_a_accounts_and_opens_one_with_its_chart(
    page: Page, live_server, pm, account_a, account_b, console_errors
):
    login(page, live_server, "pm")
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Your book")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    table = page.locator("#account-table")
    expect(table).to_contain_text(account_a.account_number)
    expect(table).to_contain_text("Alpha Taxable")
    expect(table).not_to_contain_text(account_b.account_number)
    expect(table).not_to_contain_text("Beta IRA")

    search = page.get_by_label("Search")
    search.press_sequentially("no-such-account")
    expect(page.locator("#account-table")).to_contain_text("No account matches these filters.")
    expect(page).to_have_url(re.compile(r"/accounts/\?q=no-such-account"))
    search.fill("")
    search.press_sequentially("Alpha")
    expect(page.locator("#account-table")).to_contain_text(account_a.account_number)
    expect(page).to_have_url(re.compile(r"/accounts/\?q=Alpha"))

    page.get_by_role("link", name=account_a.account_number).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alpha Taxable")
    aapl = page.locator('#holdings tr[data-ticker="AAPL"]')
    expect(aapl).to_contain_text("AAPL")
    expect(aapl.locator("td").nth(2)).to_have_text("10")  # quantity
    expect(aapl.locator("td").nth(5)).to_have_text("1,500.00")  # market value
    chart = page.locator("#holdings-chart")
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    expect(chart.locator("g.trace.bars")).to_have_count(2)

    # The page runs under the strict CSP (no inline script) and breaks none of its rules.
    policy = page.request.get(page.url).headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert [e for e in console_errors if "Content Security Policy" in e] == []
    assert console_errors == []
