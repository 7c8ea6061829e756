"""Browser journeys: signing in through the real login form, and collecting console messages.

Playwright's sync API runs an event loop in the test thread, and Django refuses ORM calls
from a thread with a running loop unless told the test owns it; the variable must be set
before any fixture touches the database, hence at import time here.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from playwright.sync_api import ConsoleMessage, Page

from tests.conftest import PASSWORD


def login(page: Page, live_server, username: str, password: str = PASSWORD) -> None:
    """Sign in through the login page as a person would (label, type, click)."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Console errors and uncaught page errors, collected for the whole test."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors
