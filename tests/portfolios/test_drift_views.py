"""The drift pages: the dashboard (who sees which accounts, sorting, filters, pagination, the
htmx partial, the histogram, the alerts panel, the query budget), the "Scan now" button and
its progress partial, the drift parts of the account page, and the top of the dashboard on
the home page.

Snapshots, positions and alerts are written directly with the ORM, so these tests do not
depend on the scan service; the service's ``drift_scan_request`` is replaced by a recorder.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from portfolios.models import DriftAlert, DriftPosition, DriftScan, DriftSnapshot
from portfolios.services import household_assign_team
from portfolios.views import (
    DASHBOARD_ALERTS,
    DASHBOARD_PER_PAGE,
    NOT_SCANNED,
    SCAN_NOT_ALLOWED,
    SCAN_NOTHING_TO_SCAN,
    SCAN_STARTED,
)
from rebalance_app.exceptions import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db

DASHBOARD = "/drift/"
QUERY_BUDGET = 14
# 15:00 in New York (settings.TIME_ZONE), where the pages show times
T0 = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def _snapshot(
    account,
    total: float | None,
    *,
    breaches: int = 0,
    max_drift: float | None = None,
    cash_drift: float | None = 0.01,
    scanned_at: datetime = T0,
    is_latest: bool = True,
    reason: str = "",
    value: str = "10000",
) -> DriftSnapshot:
    scannable = not reason
    return DriftSnapshot.objects.create(
        account=account,
        scanned_at=scanned_at,
        is_latest=is_latest,
        total_value=Decimal(value) if scannable else None,
        total_drift=total if scannable else None,
        max_drift=(max_drift if max_drift is not None else total) if scannable else None,
        cash_drift=cash_drift if scannable else None,
        breach_count=breaches,
        breached=breaches > 0,
        scannable=scannable,
        unscannable_reason=reason,
    )


def _account(household, number: str, total: float | None = None, **snapshot) -> object:
    account = factories.AccountFactory(household=household, account_number=number)
    if total is not None or snapshot.get("reason"):
        _snapshot(account, total, **snapshot)
    return account


def _rows(html: str) -> list[str]:
    """Account numbers of the dashboard table's rows, in order."""
    return re.findall(r'<tr data-account="([^"]+)"', html)


def _json_script(html: str, element_id: str) -> dict:
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, f"no json_script {element_id}"
    return json.loads(match.group(1))


def _get(client, user, params: dict | None = None, **kwargs) -> str:
    client.force_login(user)
    response = client.get(DASHBOARD, params or {}, **kwargs)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def firm(household_a, household_b):
    """Team A: A-LOW 2%, A-HIGH 9% (3 breaches), A-MID 5% (1 breach), A-NEW never scanned and
    A-GAP not scannable; team B: B-ONE 7% (2 breaches)."""
    return {
        "low": _account(household_a, "A-LOW", 0.02),
        "high": _account(household_a, "A-HIGH", 0.09, breaches=3),
        "mid": _account(household_a, "A-MID", 0.05, breaches=1),
        "new": _account(household_a, "A-NEW"),
        "gap": _account(household_a, "A-GAP", reason="No price for XYZ."),
        "b": _account(household_b, "B-ONE", 0.07, breaches=2),
    }


# ---------------------------------------------------------------------------
# Who sees what
# ---------------------------------------------------------------------------


def test_drift_dashboard_sends_an_anonymous_visitor_to_log_in(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={DASHBOARD}"


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("pm", ["A-HIGH", "A-MID", "A-LOW", "A-NEW", "A-GAP"]),
        ("other_pm", ["B-ONE"]),
        ("ops", ["A-HIGH", "B-ONE", "A-MID", "A-LOW", "A-NEW", "A-GAP"]),
        ("compliance", ["A-HIGH", "B-ONE", "A-MID", "A-LOW", "A-NEW", "A-GAP"]),
        ("admin_user", ["A-HIGH", "B-ONE", "A-MID", "A-LOW", "A-NEW", "A-GAP"]),
        ("outsider", []),
    ],
)
def test_drift_dashboard_lists_only_the_accounts_each_persona_may_see(
    client, request, firm, persona, expected
):
    html = _get(client, request.getfixturevalue(persona))
    assert _rows(html) == expected


def test_drift_dashboard_stops_showing_a_household_moved_to_another_team(client, pm, firm, team_b):
    household_assign_team(household=firm["low"].household, team=team_b, actor="system:test")
    assert _rows(_get(client, pm)) == []


def test_drift_dashboard_rows_show_the_latest_metrics_model_team_and_scan_time(client, pm, firm):
    model = factories.ModelPortfolioFactory(name="Growth 80/20")
    firm["mid"].model = model
    firm["mid"].save(update_fields=["model"])
    html = _get(client, pm)
    row = re.search(r'<tr data-account="A-MID"[^>]*>(.*?)</tr>', html, re.S).group(1)
    for cell in (
        "Alpha Family",
        "Team A",
        "Growth 80/20",
        ">10,000.00<",
        ">5.00%<",
        ">+1.00%<",
        ">2026-11-24 15:00<",
        '<span class="badge bad">Breached</span>',
    ):
        assert cell in row
    assert re.search(r'<td class="num">1</td>', row)


def test_drift_dashboard_marks_unscanned_and_unscannable_accounts_with_the_reason(client, pm, firm):
    html = _get(client, pm)
    new = re.search(r'<tr data-account="A-NEW"[^>]*>(.*?)</tr>', html, re.S).group(1)
    gap = re.search(r'<tr data-account="A-GAP"[^>]*>(.*?)</tr>', html, re.S).group(1)
    assert f'<span class="badge">{NOT_SCANNED}</span>' in new
    assert '<span class="badge warn" title="No price for XYZ.">Not scannable</span>' in gap
    assert '<span class="small reason">No price for XYZ.</span>' in gap


def test_drift_dashboard_summary_counts_the_visible_accounts(client, pm, firm):
    html = _get(client, pm)
    stats = dict(re.findall(r'id="drift-stat-([a-z-]+)">(\d+)<', html))
    assert stats == {"accounts": "5", "breached": "2", "unscannable": "1", "not-scanned": "1"}


# ---------------------------------------------------------------------------
# Sorting, filters, pagination, htmx
# ---------------------------------------------------------------------------


def test_drift_dashboard_sorts_by_total_drift_descending_by_default(client, ops, firm):
    html = _get(client, ops)
    assert _rows(html)[:4] == ["A-HIGH", "B-ONE", "A-MID", "A-LOW"]
    assert re.search(
        r'<th scope="col" class="num" aria-sort="descending">\s*<a[^>]*'
        r'data-sort="drift"',
        html,
    )


def test_drift_dashboard_sorts_by_total_drift_ascending_with_unscanned_last(client, ops, firm):
    html = _get(client, ops, {"sort": "drift"})
    assert _rows(html) == ["A-LOW", "A-MID", "B-ONE", "A-HIGH", "A-NEW", "A-GAP"]
    assert 'aria-sort="ascending"' in html
    assert html.count("aria-sort=") == 1
    # the header links offer the opposite direction for the sorted column
    assert 'href="/drift/?sort=-drift" hx-get="/drift/?sort=-drift"' in html


def test_drift_dashboard_sorts_by_breaches(client, ops, firm):
    html = _get(client, ops, {"sort": "-breaches"})
    assert _rows(html)[:3] == ["A-HIGH", "B-ONE", "A-MID"]
    assert re.search(r'aria-sort="descending">\s*<a[^>]*data-sort="breaches"', html)


def test_drift_dashboard_falls_back_to_drift_for_an_unknown_sort(client, ops, firm):
    html = _get(client, ops, {"sort": "-password"})
    assert _rows(html)[:2] == ["A-HIGH", "B-ONE"]


def test_drift_dashboard_filters_breached_accounts_only(client, pm, firm):
    html = _get(client, pm, {"breached": "1"})
    assert _rows(html) == ["A-HIGH", "A-MID"]
    assert "2 accounts match the filters" in html
    assert 'id="drift-breached" name="breached" value="1" checked' in html


def test_drift_dashboard_filters_by_team_and_by_model(client, ops, firm):
    model = factories.ModelPortfolioFactory(name="Income")
    firm["low"].model = model
    firm["low"].save(update_fields=["model"])
    assert _rows(_get(client, ops, {"team": "Team B"})) == ["B-ONE"]
    assert _rows(_get(client, ops, {"model": str(model.pk)})) == ["A-LOW"]
    html = _get(client, ops)
    assert '<option value="Team A">Team A</option>' in html
    assert f'<option value="{model.pk}">Income</option>' in html


def test_drift_dashboard_ignores_a_model_filter_that_is_not_a_number(client, pm, firm):
    assert len(_rows(_get(client, pm, {"model": "1 OR 1=1"}))) == 5


def test_drift_dashboard_searches_number_name_and_household(client, ops, firm):
    assert _rows(_get(client, ops, {"q": "a-m"})) == ["A-MID"]
    assert _rows(_get(client, ops, {"q": "beta fam"})) == ["B-ONE"]
    html = _get(client, ops, {"q": "nothing-like-this"})
    assert _rows(html) == []
    assert "No account matches these filters." in html


def test_drift_dashboard_offers_a_pm_only_their_teams(client, pm, firm):
    html = _get(client, pm)
    assert '<option value="Team A">' in html
    assert "Team B" not in html


def test_drift_dashboard_pages_by_fifty_and_keeps_filters_and_sort_in_the_links(
    client, ops, household_a
):
    for i in range(DASHBOARD_PER_PAGE + 3):
        _account(household_a, f"P{i:03d}", 0.01 + i / 1000, breaches=1)
    _account(household_a, "CALM", 0.001)
    params = {"breached": "1", "sort": "-drift", "q": "P"}
    first = _get(client, ops, params)
    assert len(_rows(first)) == DASHBOARD_PER_PAGE
    assert _rows(first)[0] == f"P{DASHBOARD_PER_PAGE + 2:03d}"
    assert "Page 1 of 2" in first
    next_url = "/drift/?breached=1&amp;sort=-drift&amp;q=P&amp;page=2"
    assert f'href="{next_url}" hx-get="{next_url}" hx-target="#drift-results"' in first
    second = _get(client, ops, {**params, "page": "2"})
    assert _rows(second) == ["P002", "P001", "P000"]
    assert 'href="/drift/?breached=1&amp;sort=-drift&amp;q=P&amp;page=1"' in second
    # sorting goes back to the first page but keeps the filters
    assert 'href="/drift/?breached=1&amp;sort=drift&amp;q=P"' in second


def test_drift_dashboard_for_htmx_returns_only_the_rows_partial(client, pm, firm):
    client.force_login(pm)
    response = client.get(DASHBOARD, {"breached": "1"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html
    assert 'id="drift-table"' in html
    assert 'id="chart-drift-histogram"' in html
    assert 'id="drift-filters"' not in html
    assert 'id="drift-alerts"' not in html
    assert _rows(html) == ["A-HIGH", "A-MID"]
    assert "HX-Request" in response["Vary"]
    assert (
        '<input type="hidden" id="drift-sort" name="sort" value="-drift" form="drift-filters">'
        in html
    )


def test_drift_dashboard_without_htmx_renders_the_full_page_with_htmx_filters(client, pm, firm):
    html = _get(client, pm)
    assert html.startswith("<!doctype html>")
    assert 'id="drift-results"' in html
    assert 'hx-trigger="change, keyup changed delay:300ms from:#drift-search' in html
    assert 'hx-target="#drift-results" hx-push-url="true"' in html
    for field in ("drift-search", "drift-team", "drift-model", "drift-breached"):
        assert f'<label for="{field}"' in html
    assert '<a href="/drift/" aria-current="page">Drift</a>' in html
    assert "vendor/plotly/plotly.min.js" in html


def test_drift_dashboard_history_restore_gets_the_full_page(client, pm, firm):
    html = _get(client, pm, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert html.startswith("<!doctype html>")


# ---------------------------------------------------------------------------
# Histogram
# ---------------------------------------------------------------------------


def test_drift_histogram_counts_exactly_the_visible_scanned_accounts(client, pm, firm):
    spec = _json_script(_get(client, pm), "chart-drift-histogram")
    (bars,) = spec["data"]
    # team A's scanned drifts 2%, 5%, 9% in 0.25% buckets; B-ONE (team B) is not counted
    assert bars["type"] == "bar"
    assert sum(bars["y"]) == 3
    assert bars["x"] == [2.125, 5.125, 9.125]
    assert bars["width"] == 0.25
    assert bars["customdata"] == ["2.00–2.25%", "5.00–5.25%", "9.00–9.25%"]
    assert spec["layout"]["bargap"] == 0
    assert spec["layout"]["yaxis"]["dtick"] == 1


def test_drift_histogram_follows_the_filters(client, ops, firm):
    spec = _json_script(_get(client, ops, {"breached": "1", "q": "A-"}), "chart-drift-histogram")
    assert spec["data"][0]["x"] == [5.125, 9.125]
    assert spec["data"][0]["y"] == [1, 1]


def test_drift_histogram_widens_its_buckets_for_large_drifts(client, ops, household_a):
    for i, total in enumerate((0.0, 0.15, 0.151, 0.45)):
        _account(household_a, f"W{i}", total)
    bars = _json_script(_get(client, ops), "chart-drift-histogram")["data"][0]
    assert bars["width"] == 2.0
    assert bars["x"] == [1.0, 15.0, 45.0]
    assert bars["y"] == [1, 2, 1]


def test_drift_dashboard_without_scans_says_the_distribution_comes_later(client, pm, account_a):
    html = _get(client, pm)
    assert "chart-drift-histogram" not in html
    assert "the distribution appears after the first drift scan" in html


# ---------------------------------------------------------------------------
# Alerts panel
# ---------------------------------------------------------------------------


def _alert(account, *, minutes: int = 0, cleared: bool = False) -> DriftAlert:
    return DriftAlert.objects.create(
        account=account,
        raised_at=T0 + timedelta(minutes=minutes),
        cleared_at=T0 + timedelta(hours=5) if cleared else None,
        total_drift=0.09,
        max_drift=0.04,
        breach_count=3,
    )


def _alert_accounts(html: str) -> list[str]:
    return re.findall(r'<li data-account="([^"]+)"', html)


def test_alerts_panel_lists_only_open_alerts_of_visible_accounts_newest_first(client, pm, firm):
    _alert(firm["high"], minutes=1)
    _alert(firm["mid"], minutes=2)
    _alert(firm["low"], minutes=3, cleared=True)
    _alert(firm["b"], minutes=4)
    html = _get(client, pm)
    assert _alert_accounts(html) == ["A-MID", "A-HIGH"]
    assert '<span class="badge bad" id="alerts-count">2</span>' in html
    assert (
        f'<a href="{reverse("portfolios:account_detail", args=[firm["mid"].pk])}">A-MID</a>' in html
    )
    assert "Total drift 9.00% · 3 breaches · since" in html


def test_alerts_panel_shows_the_newest_ten_with_the_total_count(client, ops, household_a):
    for i in range(DASHBOARD_ALERTS + 2):
        _alert(_account(household_a, f"AL{i:02d}", 0.09, breaches=1), minutes=i)
    html = _get(client, ops)
    assert _alert_accounts(html) == [f"AL{i:02d}" for i in range(11, 1, -1)]
    assert 'id="alerts-count">12</span>' in html
    assert "Showing the newest 10 of 12." in html


def test_alerts_panel_without_alerts_says_so(client, pm, firm):
    html = _get(client, pm)
    assert '<span class="badge" id="alerts-count">0</span>' in html
    assert "No open alerts" in html


# ---------------------------------------------------------------------------
# Query budget
# ---------------------------------------------------------------------------


def _book(household, size: int) -> None:
    model = factories.ModelPortfolioFactory()
    for i in range(size):
        account = _account(household, f"Q{i:04d}", 0.01 * (i % 20), breaches=i % 3)
        account.model = model
        account.save(update_fields=["model"])
        if i % 4 == 0:
            _alert(account, minutes=i)
    _account(household, "Q-NEW")
    _account(household, "Q-GAP", reason="No price for XYZ.")


@pytest.mark.parametrize("size", [5, 60])
@pytest.mark.parametrize("persona", ["pm", "ops"])
def test_drift_dashboard_uses_the_same_number_of_queries_for_5_or_60_accounts(
    client, request, household_a, django_assert_max_num_queries, size, persona
):
    _book(household_a, size)
    client.force_login(request.getfixturevalue(persona))
    with django_assert_max_num_queries(QUERY_BUDGET):
        full = client.get(DASHBOARD, {"sort": "-breaches"})
    assert len(_rows(full.content.decode())) == min(size + 2, DASHBOARD_PER_PAGE)
    with django_assert_max_num_queries(QUERY_BUDGET):
        partial = client.get(DASHBOARD, {"breached": "1", "q": "Q"}, headers={"HX-Request": "true"})
    assert "<html" not in partial.content.decode()


# ---------------------------------------------------------------------------
# Scan now and its progress
# ---------------------------------------------------------------------------


@pytest.fixture
def scan_requests(monkeypatch):
    """Replace ``portfolios.services.drift.drift_scan_request`` (written by the scan service;
    a stand-in module while it does not exist yet) with a recorder creating the queued row."""
    calls: list[dict] = []

    def fake(*, actor, account_ids, trigger):
        calls.append({"actor": actor, "account_ids": account_ids, "trigger": trigger})
        if fake.error:
            raise fake.error
        return DriftScan.objects.create(
            trigger=trigger, account_ids=account_ids, requested_by=actor
        )

    fake.error = None
    try:
        module = importlib.import_module("portfolios.services.drift")
    except ImportError:
        module = types.ModuleType("portfolios.services.drift")
        monkeypatch.setitem(sys.modules, "portfolios.services.drift", module)
    monkeypatch.setattr(module, "drift_scan_request", fake, raising=False)
    return types.SimpleNamespace(calls=calls, fake=fake)


@pytest.mark.parametrize(
    ("persona", "shown"),
    [("pm", True), ("ops", True), ("compliance", True), ("admin_user", True), ("outsider", False)],
)
def test_scan_now_button_is_shown_only_to_those_who_may_scan(client, request, firm, persona, shown):
    html = _get(client, request.getfixturevalue(persona))
    assert ('id="scan-now"' in html) is shown


def test_scan_now_by_a_user_without_role_is_refused(client, outsider, scan_requests):
    client.force_login(outsider)
    response = client.post(reverse("portfolios:drift_scan"))
    assert response.status_code == 403
    assert scan_requests.calls == []
    assert SCAN_NOT_ALLOWED == "You may not start a drift scan."


def test_scan_now_by_a_pm_scans_only_their_visible_accounts(client, pm, firm, scan_requests):
    client.force_login(pm)
    response = client.post(reverse("portfolios:drift_scan"), headers={"HX-Request": "true"})
    html = response.content.decode()
    (call,) = scan_requests.calls
    expected = sorted(a.pk for key, a in firm.items() if key != "b")
    assert call["account_ids"] == expected
    assert call["actor"] == pm
    assert call["trigger"] == "manual"
    scan = DriftScan.objects.get()
    assert f'hx-get="/drift/scans/{scan.pk}/" hx-trigger="every 1s" hx-swap="outerHTML"' in html
    assert '<span class="badge warn" id="scan-state">Queued</span>' in html
    assert "<html" not in html


def test_scan_now_by_ops_scans_the_whole_firm(client, ops, firm, scan_requests):
    client.force_login(ops)
    response = client.post(reverse("portfolios:drift_scan"))
    scan = DriftScan.objects.get()
    assert scan_requests.calls[0]["account_ids"] is None
    assert response.status_code == 302
    assert response["Location"] == f"/drift/?scan={scan.pk}"
    html = client.get(response["Location"]).content.decode()
    assert SCAN_STARTED.format(id=scan.pk) in html
    assert f'hx-get="/drift/scans/{scan.pk}/" hx-trigger="every 1s"' in html


def test_scan_now_by_a_pm_without_accounts_scans_nothing(client, pm, scan_requests):
    client.force_login(pm)
    response = client.post(reverse("portfolios:drift_scan"), headers={"HX-Request": "true"})
    assert scan_requests.calls == []
    assert f'<p class="error">{SCAN_NOTHING_TO_SCAN}</p>' in response.content.decode()


def test_scan_now_shows_the_service_refusal(client, ops, firm, scan_requests):
    scan_requests.fake.error = ValidationFailed("A firm scan is already running.")
    client.force_login(ops)
    response = client.post(reverse("portfolios:drift_scan"), headers={"HX-Request": "true"})
    assert '<p class="error">A firm scan is already running.</p>' in response.content.decode()
    assert DriftScan.objects.count() == 0


def test_scan_now_through_the_real_service_queues_an_audited_scan_of_the_pm_accounts(
    client, pm, firm
):
    pytest.importorskip("portfolios.services.drift")
    from compliance.models import AuditEvent

    client.force_login(pm)
    response = client.post(reverse("portfolios:drift_scan"), headers={"HX-Request": "true"})
    scan = DriftScan.objects.get()
    assert scan.account_ids == sorted(a.pk for key, a in firm.items() if key != "b")
    assert (scan.requested_by, scan.trigger, scan.status) == (pm, "manual", "queued")
    assert AuditEvent.objects.filter(action="drift.scan_requested", object_id=str(scan.pk)).exists()
    assert f'hx-get="/drift/scans/{scan.pk}/"' in response.content.decode()


def test_scan_now_needs_a_post(client, ops):
    client.force_login(ops)
    assert client.get(reverse("portfolios:drift_scan")).status_code == 405


def test_scan_status_polls_while_running_and_stops_with_the_result(client, pm):
    scan = DriftScan.objects.create(
        trigger="manual",
        requested_by=pm,
        status="running",
        chunks_total=4,
        chunks_done=1,
        accounts_total=40,
        accounts_scanned=10,
    )
    client.force_login(pm)
    url = reverse("portfolios:drift_scan_status", args=[scan.pk])
    running = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in running
    assert '<progress max="4" value="1" aria-label="Chunks scanned">' in running
    assert "10 of 40 accounts scanned" in running
    DriftScan.objects.filter(pk=scan.pk).update(
        status="succeeded",
        chunks_done=4,
        accounts_scanned=40,
        accounts_breached=3,
        accounts_unscannable=1,
        alerts_raised=2,
        duration_ms=812,
    )
    done = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done
    assert '<span class="badge good" id="scan-state">Succeeded</span>' in done
    assert "40 of 40 accounts scanned · 3 breached · 1 not scannable · 2 alerts raised" in done
    assert "Refresh the dashboard" in done


def test_scan_status_shows_a_failure_and_stops_polling(client, ops):
    scan = DriftScan.objects.create(
        trigger="manual", requested_by=ops, status="failed", error="Worker lost."
    )
    client.force_login(ops)
    html = client.get(reverse("portfolios:drift_scan_status", args=[scan.pk])).content.decode()
    assert "hx-trigger" not in html
    assert '<p class="error">Worker lost.</p>' in html


def test_scan_status_of_another_users_scan_answers_404_to_a_pm(client, pm, other_pm):
    scan = DriftScan.objects.create(trigger="manual", requested_by=other_pm)
    client.force_login(pm)
    response = client.get(reverse("portfolios:drift_scan_status", args=[scan.pk]))
    assert response.status_code == 404


# ---------------------------------------------------------------------------
# Account page
# ---------------------------------------------------------------------------


@pytest.fixture
def scanned_account(account_a, security):
    """account_a with three snapshots (the last one latest and breached) and its positions:
    AAPL 60% vs 50% (abs band 5%: breached), MSFT 30% vs 40% (rel band 20% of 40% = 8%:
    breached), cash 10% vs 10% (no band)."""
    msft = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.")
    for i, total in enumerate((0.03, 0.06)):
        _snapshot(
            account_a,
            total,
            scanned_at=T0 - timedelta(days=2 - i),
            is_latest=False,
            max_drift=total / 2,
        )
    latest = _snapshot(account_a, 0.10, breaches=2, max_drift=0.10, cash_drift=0.0)
    for sec, weight, target, abs_band, rel_band, breached in (
        (security, 0.6, 0.5, 0.05, None, True),
        (msft, 0.3, 0.4, None, 0.2, True),
        (None, 0.1, 0.1, None, None, False),
    ):
        DriftPosition.objects.create(
            snapshot=latest,
            security=sec,
            weight=weight,
            target=target,
            drift=round(weight - target, 10),
            abs_band=abs_band,
            rel_band=rel_band,
            breached=breached,
        )
    return account_a


def _detail(client, user, account) -> str:
    client.force_login(user)
    response = client.get(reverse("portfolios:account_detail", args=[account.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_account_page_lists_the_latest_breaches_with_their_bands(client, pm, scanned_account):
    html = _detail(client, pm, scanned_account)
    table = re.search(r'<table id="breaches".*?</table>', html, re.S).group(0)
    rows = re.findall(r'<tr data-ticker="([^"]+)">(.*?)</tr>', table, re.S)
    assert [ticker for ticker, _ in rows] == ["AAPL", "MSFT"]
    aapl, msft = rows[0][1], rows[1][1]
    for cell in (">60.00%<", ">50.00%<", '"num pos">+10.00%<', ">± 5.00%<", "absolute ± 5.00%"):
        assert cell in aapl
    for cell in (">30.00%<", ">40.00%<", '"num neg">-10.00%<', ">± 8.00%<", "relative ± 20%"):
        assert cell in msft
    assert "Latest scan <time" in html
    assert ">2026-11-24 15:00</time>" in html
    assert '<span class="badge bad">2 breaches</span>' in html


def test_account_page_draws_the_tolerance_band_on_the_holdings_chart(client, pm, scanned_account):
    spec = _json_script(_detail(client, pm, scanned_account), "chart-holdings")
    current, target = spec["data"]
    assert current["x"] == ["AAPL", "Cash"]
    assert target["error_y"]["array"] == [5.0, None]
    assert target["customdata"] == ["± 5.00%", "no band"]


def test_account_page_charts_total_and_max_drift_over_time(client, pm, scanned_account):
    html = _detail(client, pm, scanned_account)
    spec = _json_script(html, "chart-drift-history")
    total, max_drift = spec["data"]
    assert (total["name"], max_drift["name"]) == ("Total drift", "Max position drift")
    assert total["y"] == [3.0, 6.0, 10.0]
    assert max_drift["y"] == [1.5, 3.0, 10.0]
    assert total["x"] == ["2026-11-22 15:00:00", "2026-11-23 15:00:00", "2026-11-24 15:00:00"]
    assert 'data-plotly="chart-drift-history"' in html


def test_account_page_shows_an_open_alert_at_the_top(client, pm, scanned_account):
    _alert(scanned_account)
    html = _detail(client, pm, scanned_account)
    banner = html.index('id="drift-alert"')
    assert banner < html.index('id="account-facts"')
    assert "this account breached its bands on" in html


def test_account_page_without_an_open_alert_shows_no_banner(client, pm, scanned_account):
    _alert(scanned_account, cleared=True)
    assert 'id="drift-alert"' not in _detail(client, pm, scanned_account)


def test_account_page_shows_why_an_account_is_not_scannable(client, pm, account_a):
    _snapshot(account_a, None, reason="Stale price for AAPL (2026-10-01).")
    html = _detail(client, pm, account_a)
    assert '<span class="badge warn">Not scannable</span>' in html
    assert '<span id="unscannable-reason">Stale price for AAPL (2026-10-01).</span>' in html
    assert 'id="breaches"' not in html


def test_account_page_of_an_unscanned_account_says_so(client, pm, account_a):
    html = _detail(client, pm, account_a)
    assert "Not scanned yet: drift appears after the next drift scan." in html
    assert "chart-drift-history" not in html
    assert "error_y" not in _json_script(html, "chart-holdings")["data"][1]


def test_account_page_of_another_team_answers_404_even_with_snapshots(
    client, other_pm, scanned_account
):
    client.force_login(other_pm)
    response = client.get(reverse("portfolios:account_detail", args=[scanned_account.pk]))
    assert response.status_code == 404


# ---------------------------------------------------------------------------
# Home page: the top of the dashboard
# ---------------------------------------------------------------------------


def test_home_page_shows_a_pm_the_most_drifted_of_their_accounts(client, pm, firm):
    _alert(firm["high"])
    client.force_login(pm)
    html = client.get(reverse("home")).content.decode()
    top = re.search(r'<table id="home-drift-top">.*?</table>', html, re.S).group(0)
    assert re.findall(r'/">(A-[A-Z]+)</a>', top) == ["A-HIGH", "A-MID", "A-LOW"]
    assert "B-ONE" not in html
    assert 'id="home-drift-breached">2<' in html
    assert 'id="home-drift-alerts">1<' in html
    assert html.index('id="home-drift"') < html.index('id="book-heading"')
    assert 'href="/drift/">Open the drift dashboard</a>' in html


def test_home_page_without_accounts_has_no_drift_section(client, outsider, firm):
    client.force_login(outsider)
    assert 'id="home-drift"' not in client.get(reverse("home")).content.decode()
