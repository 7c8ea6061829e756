"""Journey: a PM of another team who knows an account's URL gets a 404, not the account."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e


def test_pm_of_team_b_opening_a_team_a_account_gets_404(
    page: Page, live_server, other_pm, account_a
):
    login(page, live_server, "pm2")
    expect(page).to_have_url(f"{live_server.url}/")
    response = page.goto(f"{live_server.url}/accounts/{account_a.pk}/")
    assert response is not None
    assert response.status == 404
    expect(page.locator("body")).not_to_contain_text("Alpha Taxable")
