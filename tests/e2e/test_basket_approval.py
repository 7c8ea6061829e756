"""Browser journeys of the four-eyes approval (DESIGN 7), with the real compliance engine:

1. ``pm`` submits a draft basket from its page, sees no Approve button, and a forged approve
   POST is refused with the service's message; ``ops`` finds it in the approval queue, is
   refused until the concentration warning is acknowledged, then approves it.
2. A basket buying a security on the firm's restricted list goes on compliance hold;
   ``compliance`` overrides the failure with a written justification; ``ops2`` approves; then
   ``compliance`` opens the basket's timeline in the audit trail.

No console errors but the logged status of each refused action (the CSP forbids inline
scripts: the pages have none).
"""

from __future__ import annotations

import os
import re
from decimal import Decimal

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import Page, expect

from compliance.models import ComplianceResult, ComplianceRule, Override, Restriction
from compliance.services.restrictions import restriction_create
from orders.models import BasketState, TradeBasket
from orders.services import MSG_ACK_WARNINGS, MSG_NOT_OPS
from orders.views import DONE
from rebalance_app.roles import ROLE_PERMISSIONS
from tests import factories
from tests.e2e.conftest import login
from tests.orders.conftest import make_basket

pytestmark = pytest.mark.e2e

# A refused action answers with the error's status (here 400), which the browser logs; nothing
# else may appear in the console.
REFUSED_400 = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
JUSTIFICATION = "Client's written instruction on file; CCO approved the exception."


@pytest.fixture(autouse=True)
def _role_permissions(transactional_db):
    """Live-server tests flush the database, and with it the permissions the migrations granted
    to the role groups: grant them again (Ops and Compliance see baskets through them)."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


@pytest.fixture
def rules(db):
    """Exactly two enabled rules: the restricted list (hard) and concentration (warning)."""
    ComplianceRule.objects.update(enabled=False)
    ComplianceRule.objects.create(
        rule_type="restricted_list",
        name="Restricted list (test)",
        severity="hard",
        parameters={"scopes": ["firm", "household", "account"]},
    )
    ComplianceRule.objects.create(
        rule_type="concentration",
        name="Concentration (test)",
        severity="warning",
        parameters={"max_security_weight": 0.25, "max_sector_weight": 1.0, "exempt_tickers": []},
    )


def _logout(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()


def _state(basket: TradeBasket) -> str:
    basket.refresh_from_db()
    return basket.state


def _open_basket(page: Page, live_server, basket: TradeBasket) -> None:
    page.goto(f"{live_server.url}/baskets/{basket.pk}/")
    expect(page.get_by_role("heading", name=re.compile(rf"^Basket #{basket.pk}\b"))).to_be_visible()


def test_pm_submits_and_cannot_approve_then_ops_approves_after_acknowledging_a_warning(
    live_server, page: Page, console_errors, rules, pm, ops, account_a, security
):
    basket = make_basket(creator=pm, account=account_a, security=security)

    login(page, live_server, "pm")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Baskets").click()
    page.get_by_role("link", name=re.compile(rf"^#{basket.pk} ")).click()
    page.get_by_label("Comment for the approver (optional)").fill("Quarterly rebalance")
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.locator(".messages")).to_contain_text(
        DONE["submit"].format(basket=basket.pk, state="pending approval")
    )
    expect(page.locator("#basket-state")).to_have_text("Pending approval")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator("#results-table")).to_contain_text("Concentration (test)")

    # The server refuses a forged approval too, with the service's message.
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = page.request.post(
        f"{live_server.url}/baskets/{basket.pk}/approve/",
        form={"csrfmiddlewaretoken": token, "comment": "self-approval"},
    )
    assert response.status == 403
    assert MSG_NOT_OPS in response.text()
    assert _state(basket) == BasketState.PENDING_APPROVAL
    _logout(page)

    login(page, live_server, "ops")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    expect(page.get_by_role("heading", name="Approval queue")).to_be_visible()
    page.locator("#queue-table").get_by_role("link", name=re.compile(rf"^#{basket.pk} ")).click()
    page.get_by_label("Approval comment").fill("Checked the trades")
    page.get_by_role("button", name="Approve").click()
    warnings = ComplianceResult.objects.filter(basket=basket, passed=False, severity="warning")
    expect(page.locator("#basket-error")).to_have_text(
        MSG_ACK_WARNINGS.format(basket=basket.pk, count=warnings.count())
    )
    assert _state(basket) == BasketState.PENDING_APPROVAL

    boxes = page.locator("input[name=acknowledge]")
    expect(boxes).to_have_count(warnings.count())
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages")).to_contain_text(DONE["approve"].format(basket=basket.pk))
    expect(page.locator("#basket-state")).to_have_text("Approved")
    basket.refresh_from_db()
    assert (basket.state, basket.approved_by) == (BasketState.APPROVED, ops)
    assert console_errors == [REFUSED_400]


def test_a_restricted_buy_is_held_overridden_by_compliance_approved_by_ops2_and_traced(
    live_server, page: Page, console_errors, rules, pm, ops2, compliance, account_a
):
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.")
    factories.PriceFactory(security=msft, price=Decimal("150"))
    restriction_create(
        actor=compliance, scope="firm", security=msft, kind="no_buy", reason="Research embargo"
    )
    assert Restriction.objects.count() == 1
    basket = make_basket(creator=pm, account=account_a, security=msft)

    login(page, live_server, "pm")
    _open_basket(page, live_server, basket)
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.locator("#basket-state")).to_have_text("Compliance hold")
    expect(page.locator("#results-table")).to_contain_text("Research embargo")
    _logout(page)

    login(page, live_server, "compliance")
    _open_basket(page, live_server, basket)
    held = ComplianceResult.objects.get(basket=basket, passed=False, severity="hard")
    page.get_by_label(f"Justification for overriding {held.rule.name}").fill("too short")
    page.locator(f"#override-button-{held.pk}").click()
    expect(page.locator("#basket-error")).to_contain_text("at least 10 characters")
    assert not Override.objects.exists()
    page.get_by_label(f"Justification for overriding {held.rule.name}").fill(JUSTIFICATION)
    page.locator(f"#override-button-{held.pk}").click()
    expect(page.locator("#basket-state")).to_have_text("Pending approval")
    expect(page.locator(f"#override-{held.pk}")).to_contain_text(JUSTIFICATION)
    expect(page.locator(f"#override-{held.pk}")).to_contain_text("By compliance")
    _logout(page)

    login(page, live_server, "ops2")
    _open_basket(page, live_server, basket)
    boxes = page.locator("input[name=acknowledge]")
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.get_by_label("Approval comment").fill("Override noted")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#basket-state")).to_have_text("Approved")
    basket.refresh_from_db()
    assert basket.approved_by == ops2
    _logout(page)

    login(page, live_server, "compliance")
    _open_basket(page, live_server, basket)
    page.get_by_role("link", name="Open the basket's timeline in the audit trail").click()
    expect(
        page.get_by_role("heading", name=f"Timeline of orders.tradebasket:{basket.pk}")
    ).to_be_visible()
    events = page.locator("li.timeline-event")
    for action in ("basket.submitted", "compliance.override", "basket.approved"):
        expect(events.filter(has_text=action)).not_to_have_count(0)
    assert console_errors == [REFUSED_400]
