"""The home page: what each role has to look at, counted through the visibility selectors."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from portfolios.models import AccountStatus
from rebalance_app.selectors import home_summary
from tests import factories

pytestmark = pytest.mark.django_db


def _stat(html: str, name: str) -> str:
    return re.search(rf'id="stat-{name}">([^<]*)<', html).group(1)


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("anonymous", 302),
        ("pm", 200),
        ("other_pm", 200),
        ("ops", 200),
        ("compliance", 200),
        ("admin_user", 200),
        ("outsider", 200),
    ],
)
def test_home_page_needs_a_signed_in_user(client, request, persona, status):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse("home"))
    assert response.status_code == status
    if status == 302:
        assert response["Location"] == f"{reverse('login')}?next=/"


def test_home_page_counts_only_what_a_pm_sees(client, pm, account_a, account_b):
    factories.AccountFactory(household=account_a.household, cash_balance=Decimal("234.56"))
    client.force_login(pm)
    html = client.get(reverse("home")).content.decode()
    assert (_stat(html, "households"), _stat(html, "accounts"), _stat(html, "cash")) == (
        "1",
        "2",
        "1,234.56",
    )
    assert "Your book" in html
    assert "Team B" not in html
    assert 'href="/accounts/"' in html
    assert "Latest audit events" not in html


def test_home_page_shows_ops_the_firm_without_the_audit_trail(client, ops, account_a, account_b):
    client.force_login(ops)
    html = client.get(reverse("home")).content.decode()
    assert (_stat(html, "households"), _stat(html, "accounts")) == ("2", "2")
    assert "The firm's book" in html
    assert "Latest audit events" not in html


def test_home_page_shows_compliance_the_latest_audit_events(client, compliance, account_a):
    client.force_login(compliance)
    html = client.get(reverse("home")).content.decode()
    assert "Latest audit events" in html
    assert "household.assign_team" in html
    assert f'href="{reverse("compliance:audit_list")}"' in html


def test_home_page_tells_a_user_without_role_to_ask_an_administrator(client, outsider, account_a):
    client.force_login(outsider)
    html = client.get(reverse("home")).content.decode()
    assert _stat(html, "accounts") == "0"
    assert "with no role yet: ask an administrator to add you to a group" in html


def test_home_summary_counts_accounts_by_status_and_households_per_team(
    ops, compliance, account_a, account_b
):
    account_b.status = AccountStatus.FROZEN
    account_b.save(update_fields=["status"])
    summary = home_summary(user=ops)
    assert (summary["accounts"], summary["frozen"], summary["closed"]) == (2, 1, 0)
    assert summary["cash"] == Decimal("2000.00")
    assert summary["teams"] == [("Team A", 1), ("Team B", 1)]
    assert "recent_events" not in summary
    assert [e.action for e in home_summary(user=compliance)["recent_events"]][-1] == (
        "household.assign_team"
    )
