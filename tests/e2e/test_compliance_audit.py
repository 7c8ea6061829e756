"""Browser journey of a compliance officer: sign in, open the audit trail, filter it by action,
follow an object's timeline, and verify the chain, with no console errors or CSP violations."""

from __future__ import annotations

import os
import re

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from compliance.services.audit import audit_record
from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def _watch_console(page: Page) -> list[str]:
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(f"{msg.text} ({msg.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def _login(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_compliance_officer_filters_the_trail_follows_a_timeline_and_verifies_it(
    live_server, page: Page, compliance, household_a
):
    audit_record(actor="system:test", action="restriction.create", object_type="x", object_id=1)
    problems = _watch_console(page)

    _login(page, live_server.url, "compliance")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail", exact=True)).to_be_visible()
    actions = page.locator("tr.audit-row td.audit-action")
    expect(actions.filter(has_text="restriction.create")).to_have_count(1)

    page.evaluate("window.auditPageMarker = 1")  # survives only if htmx swaps the rows
    page.get_by_label("Action").fill("auth.login")
    page.get_by_label("Action").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]action=auth\.login"))
    expect(actions).to_have_count(1)
    expect(actions).to_have_text(["auth.login"])
    assert page.evaluate("window.auditPageMarker") == 1

    page.locator("tr.audit-row").get_by_role("link", name=re.compile(r"^auth\.user:\d+$")).click()
    expect(
        page.get_by_role("heading", name=re.compile(r"^Timeline of auth\.user:\d+$"))
    ).to_be_visible()
    expect(page.locator("li.timeline-event")).to_have_count(1)
    expect(page.locator("li.timeline-event").first).to_contain_text("auth.login by compliance")

    page.get_by_role("link", name="← Audit trail").click()
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verify-result")).to_contain_text(
        re.compile(r"Audit chain intact: \d+ events verified \(head #\d+\)\.")
    )

    assert [p for p in problems if "Content Security Policy" in p] == []
    assert problems == []
