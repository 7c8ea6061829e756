"""Pages of the portfolios app: who may open what (a generated permission matrix), the accounts
list with its htmx partial, filters, pagination and query budget, and the account detail."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from portfolios.models import AccountStatus
from portfolios.services import TargetSpec, household_assign_team, model_version_create
from portfolios.views import ACCOUNTS_PER_PAGE, MISSING_PRICE
from tests import factories

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "pm", "other_pm", "ops", "compliance", "admin_user", "outsider")
LIST_QUERY_BUDGET = 12


def permission_matrix(page_name: str, allowed: set[str], denied_status: int = 404) -> list:
    """One case per persona for ``page_name``: anonymous is sent to log in, ``allowed``
    personas get 200, every other persona ``denied_status`` (404: a forbidden object does not
    exist). The argument is not called ``page``: pytest-playwright would take it for its
    fixture and parametrize the test with a browser, reordering it among the live-server tests."""
    cases = []
    for persona in PERSONAS:
        if persona == "anonymous":
            expected = 302
        elif persona in allowed:
            expected = 200
        else:
            expected = denied_status
        cases.append(
            pytest.param(page_name, persona, expected, id=f"{page_name}-{persona}-{expected}")
        )
    return cases


EVERYONE = {"pm", "other_pm", "ops", "compliance", "admin_user", "outsider"}
FIRM_WIDE = {"ops", "compliance", "admin_user"}

MATRIX = [
    *permission_matrix("account_list", EVERYONE),
    *permission_matrix("account_a", {"pm", *FIRM_WIDE}),
    *permission_matrix("account_b", {"other_pm", *FIRM_WIDE}),
    *permission_matrix("unknown_account", set()),
]


def _page_url(page_name: str, account_a, account_b) -> str:
    return {
        "account_list": reverse("portfolios:account_list"),
        "account_a": reverse("portfolios:account_detail", args=[account_a.pk]),
        "account_b": reverse("portfolios:account_detail", args=[account_b.pk]),
        "unknown_account": reverse("portfolios:account_detail", args=[987654]),
    }[page_name]


@pytest.mark.parametrize(("page_name", "persona", "status"), MATRIX)
def test_portfolio_pages_answer_each_persona_by_its_permission(
    client, request, page_name, persona, status, account_a, account_b
):
    url = _page_url(page_name, account_a, account_b)
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(url)
    assert response.status_code == status
    if status == 302:
        assert response["Location"] == f"{reverse('login')}?next={url}"


def _rows(content: bytes) -> list[str]:
    """Account numbers of the rows in the accounts table, in order."""
    return re.findall(r'<a href="/accounts/\d+/">([^<]+)</a>', content.decode())


# ---------------------------------------------------------------------------
# Accounts list
# ---------------------------------------------------------------------------


def test_account_list_shows_a_pm_only_the_accounts_of_their_team(client, pm, account_a, account_b):
    client.force_login(pm)
    response = client.get(reverse("portfolios:account_list"))
    assert _rows(response.content) == [account_a.account_number]
    assert "Beta IRA" not in response.content.decode()


def test_account_list_shows_ops_every_account_with_its_columns(client, ops, account_a, account_b):
    client.force_login(ops)
    response = client.get(reverse("portfolios:account_list"))
    assert _rows(response.content) == [account_a.account_number, account_b.account_number]
    html = response.content.decode()
    for text in ("Alpha Taxable", "Alpha Family", "Team A", "Individual (taxable)", "Active"):
        assert text in html


def test_account_list_values_each_account_at_the_latest_price(client, ops, account_a, security):
    factories.PriceFactory(security=security, as_of=date(2026, 11, 20), price=Decimal("90"))
    client.force_login(ops)
    html = client.get(reverse("portfolios:account_list")).content.decode()
    # 10 AAPL at the latest price 150 = 1,500.00 plus 1,000.00 cash
    assert '<td class="num">1,500.00</td>' in html
    assert '<td class="num">2,500.00</td>' in html


def test_account_list_flags_an_account_holding_an_unpriced_security(client, ops, account_a):
    unpriced = factories.SecurityFactory(ticker="NOPX")
    factories.TaxLotFactory(account=account_a, security=unpriced)
    client.force_login(ops)
    html = client.get(reverse("portfolios:account_list")).content.decode()
    assert "1 position without a price, valued at nothing" in html


def test_account_list_for_htmx_returns_only_the_rows_partial(client, ops, account_a, account_b):
    client.force_login(ops)
    response = client.get(
        reverse("portfolios:account_list"), {"q": "Beta"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="account-table"' in html
    assert _rows(response.content) == [account_b.account_number]
    assert "HX-Request" in response["Vary"]


def test_account_list_without_htmx_renders_the_full_page_with_the_partial(client, ops, account_a):
    client.force_login(ops)
    html = client.get(reverse("portfolios:account_list")).content.decode()
    assert html.startswith("<!doctype html>")
    assert 'id="account-rows"' in html
    assert 'id="account-table"' in html
    assert 'hx-trigger="keyup changed delay:300ms, search"' in html
    assert 'hx-push-url="true"' in html
    assert '<label for="account-search">' in html


def test_account_list_history_restore_gets_the_full_page(client, ops, account_a):
    client.force_login(ops)
    html = client.get(
        reverse("portfolios:account_list"),
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    ).content.decode()
    assert html.startswith("<!doctype html>")


def test_account_list_filters_by_team_and_by_model(client, ops, account_a, account_b):
    model = factories.ModelPortfolioFactory(name="Growth")
    account_b.model = model
    account_b.save(update_fields=["model"])
    client.force_login(ops)
    url = reverse("portfolios:account_list")
    assert _rows(client.get(url, {"team": "Team A"}).content) == [account_a.account_number]
    assert _rows(client.get(url, {"model": str(model.pk)}).content) == [account_b.account_number]
    html = client.get(url).content.decode()
    assert '<option value="Team A">Team A</option>' in html
    assert f'<option value="{model.pk}">Growth</option>' in html


def test_account_list_ignores_a_model_filter_that_is_not_a_number(client, ops, account_a):
    client.force_login(ops)
    response = client.get(reverse("portfolios:account_list"), {"model": "x'; --"})
    assert _rows(response.content) == [account_a.account_number]


def test_account_list_offers_a_pm_only_the_teams_they_see(client, pm, account_a, account_b):
    client.force_login(pm)
    html = client.get(reverse("portfolios:account_list")).content.decode()
    assert '<option value="Team A">' in html
    assert "Team B" not in html


def test_account_list_search_with_no_match_says_so(client, ops, account_a):
    client.force_login(ops)
    response = client.get(reverse("portfolios:account_list"), {"q": "zzz-nothing"})
    assert "No account matches these filters." in response.content.decode()


def test_account_list_pages_by_fifty_accounts(client, ops, household_a):
    factories.AccountFactory.create_batch(ACCOUNTS_PER_PAGE + 1, household=household_a)
    client.force_login(ops)
    url = reverse("portfolios:account_list")
    first = client.get(url)
    second = client.get(url, {"page": "2"})
    assert len(_rows(first.content)) == ACCOUNTS_PER_PAGE
    assert len(_rows(second.content)) == 1
    assert "Page 1 of 2" in first.content.decode()
    assert 'href="/accounts/?page=2"' in first.content.decode()


def _team_a_book(household, size: int) -> None:
    """``size`` accounts, each holding two securities priced on two dates."""
    for i in range(size):
        account = factories.AccountFactory(household=household)
        for ticker in (f"T{i}X", f"T{i}Y"):
            sec = factories.SecurityFactory(ticker=ticker)
            factories.PriceFactory(security=sec, as_of=date(2026, 11, 23), price=Decimal("10"))
            factories.PriceFactory(security=sec, as_of=date(2026, 11, 24), price=Decimal("11"))
            factories.TaxLotFactory(account=account, security=sec)


@pytest.mark.parametrize("size", [3, 30])
@pytest.mark.parametrize("persona", ["pm", "ops"])
def test_account_list_uses_the_same_number_of_queries_for_3_or_30_accounts(
    client, request, household_a, django_assert_max_num_queries, size, persona
):
    _team_a_book(household_a, size)
    client.force_login(request.getfixturevalue(persona))
    url = reverse("portfolios:account_list")
    with django_assert_max_num_queries(LIST_QUERY_BUDGET):
        response = client.get(url)
    assert len(_rows(response.content)) == size
    with django_assert_max_num_queries(LIST_QUERY_BUDGET):
        client.get(url, headers={"HX-Request": "true"})


# ---------------------------------------------------------------------------
# Account detail
# ---------------------------------------------------------------------------


def _detail(client, user, account) -> str:
    client.force_login(user)
    response = client.get(reverse("portfolios:account_detail", args=[account.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _holding_row(html: str, ticker: str) -> str:
    match = re.search(rf'<tr data-ticker="{ticker}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no holdings row for {ticker}"
    return match.group(1)


@pytest.fixture
def modelled_account(account_a, security):
    """account_a following a model of 50% AAPL, 40% MSFT (not held) and 10% cash."""
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.", sector="Software")
    factories.PriceFactory(security=msft, price=Decimal("400"))
    model = factories.ModelPortfolioFactory(name="Balanced")
    model_version_create(
        model=model,
        targets=[
            TargetSpec(security.pk, Decimal("0.5")),
            TargetSpec(msft.pk, Decimal("0.4")),
        ],
        cash_target=Decimal("0.1"),
        actor="system:test",
    )
    account_a.model = model
    account_a.save(update_fields=["model"])
    return account_a


def test_account_detail_shows_the_header_and_summary(client, pm, modelled_account):
    html = _detail(client, pm, modelled_account)
    for text in (
        "Alpha Family",
        "Team A",
        "Individual (taxable)",
        "Balanced v1",
        "Schwab",
        "Active",
        "Tax-loss harvesting",
    ):
        assert text in html
    # 10 AAPL x 150 + 1,000 cash; cost 10 x 80 = 800, so 700 unrealized
    assert '<div class="v">2,500.00</div>' in html
    assert '<div class="v pos">700.00</div>' in html


def test_account_detail_holdings_show_weight_target_and_drift(client, pm, modelled_account):
    html = _detail(client, pm, modelled_account)
    aapl = _holding_row(html, "AAPL")
    for cell in ("Apple Inc.", ">10<", ">150.00<", ">2026-11-24<", ">1,500.00<", ">60.00%<"):
        assert cell in aapl
    assert ">50.00%<" in aapl
    assert '"num pos">+10.00%<' in aapl
    msft = _holding_row(html, "MSFT")
    assert ">0.00%<" in msft
    assert '"num neg">-40.00%<' in msft
    cash = _holding_row(html, "CASH")
    assert ">40.00%<" in cash
    assert '"num pos">+30.00%<' in cash


def test_account_detail_embeds_the_holdings_vs_target_chart(client, pm, modelled_account):
    html = _detail(client, pm, modelled_account)
    assert 'data-plotly="chart-holdings"' in html
    spec_json = re.search(
        r'<script id="chart-holdings" type="application/json">(.*?)</script>', html, re.S
    )
    spec = json.loads(spec_json.group(1))
    assert [t["name"] for t in spec["data"]] == ["Current weight", "Target weight"]
    assert spec["data"][0]["x"] == ["AAPL", "MSFT", "Cash"]
    assert spec["data"][0]["y"] == [60.0, 0.0, 40.0]
    assert spec["data"][1]["y"] == [50.0, 40.0, 10.0]
    assert "vendor/plotly/plotly.min.js" in html


def test_account_detail_flags_a_missing_price(client, pm, account_a):
    unpriced = factories.SecurityFactory(ticker="XYZ")
    factories.TaxLotFactory(account=account_a, security=unpriced)
    html = _detail(client, pm, account_a)
    assert MISSING_PRICE.format(ticker="XYZ") in html
    assert MISSING_PRICE.format(ticker="XYZ") == (
        "No price for XYZ: valued at nothing; weights exclude it."
    )


def test_account_detail_lots_show_gain_and_holding_period(client, pm, account_a, security):
    recent = timezone.localdate() - timedelta(days=30)
    factories.TaxLotFactory(
        account=account_a,
        security=security,
        quantity=Decimal("2"),
        cost_basis=Decimal("200"),
        acquired_on=recent,
    )
    html = _detail(client, pm, account_a)
    lots = re.search(r'<table id="lots">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", lots.split("<tbody>")[1], re.S)
    assert len(rows) == 2
    assert "2024-01-02" in rows[0]
    assert "Long-term" in rows[0]
    assert '"num pos">700.00<' in rows[0]
    assert recent.isoformat() in rows[1]
    assert "Short-term" in rows[1]
    assert '"num neg">-100.00<' in rows[1]


def test_account_detail_lists_the_latest_fifty_transactions(client, pm, account_a, security):
    start = date(2025, 1, 1)
    for day in range(55):
        factories.TransactionFactory(
            account=account_a, security=security, trade_date=start + timedelta(days=day)
        )
    html = _detail(client, pm, account_a)
    txns = re.search(r'<table id="transactions">(.*?)</table>', html, re.S).group(1)
    dates = re.findall(r"<td class=\"nowrap\">(\d{4}-\d\d-\d\d)</td>", txns)
    assert len(dates) == 50
    assert dates[0] == (start + timedelta(days=54)).isoformat()
    assert dates[-1] == (start + timedelta(days=5)).isoformat()


def test_account_detail_of_a_household_moved_to_another_team_answers_404(
    client, pm, account_a, team_b
):
    household_assign_team(household=account_a.household, team=team_b, actor="system:test")
    client.force_login(pm)
    response = client.get(reverse("portfolios:account_detail", args=[account_a.pk]))
    assert response.status_code == 404


def test_account_detail_shows_a_frozen_status(client, ops, account_a):
    account_a.status = AccountStatus.FROZEN
    account_a.save(update_fields=["status"])
    html = _detail(client, ops, account_a)
    assert '<span class="badge warn">Frozen</span>' in html
