"""Journey: five wrong passwords lock the account; the right password then shows the
locked-out page instead of signing in."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e

BAD_LOGIN = "Please enter a correct username and password."
LOCKED_OUT = (
    "This account is locked after too many failed sign-in attempts. Try again in 15 minutes or "
    "ask an administrator."
)


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(page: Page, live_server, pm):
    for _ in range(4):
        login(page, live_server, "pm", "not-the-password")
        expect(page.get_by_role("alert").first).to_contain_text(BAD_LOGIN)
    login(page, live_server, "pm", "not-the-password")
    expect(page.locator("#locked-message")).to_have_text(LOCKED_OUT)

    login(page, live_server, "pm", PASSWORD)
    expect(page.get_by_role("heading", name="Account locked")).to_be_visible()
    expect(page.locator("#locked-message")).to_have_text(LOCKED_OUT)
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
