"""The rebalance pages: who may open what (a generated permission matrix), the propose form
(modes offered, the service's refusals shown on the form with nothing created), a run's review
page while pending and once done (metrics, chart, trades with lots, explanation, infeasible and
failed runs), the htmx trade edit and remove (metrics recomputed, errors inline, the lock of a
submitted basket), the draft basket and the replay, the runs list (filters, selection, a basket
from several runs, its query budget at two sizes), the batch form and page, the account page's
button and panel, and the nav link.

Runs are real: ``rebalance_run_request(..., enqueue=False)`` then ``rebalance_run_execute`` solve
a small account in the test process (no worker).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils.html import escape

from orders.models import BasketState, TradeBasket
from orders.services import MSG_RUN_IN_BASKET
from portfolios.calendar import last_completed_session
from portfolios.forms_rebalance import TLH_NOT_TAXABLE, TLH_OFF
from portfolios.models import (
    DriftSnapshot,
    Price,
    RebalanceBatch,
    RebalanceRun,
    RegistrationType,
    RunStatus,
)
from portfolios.optimizer.explain import DRIVERS
from portfolios.services import TargetSpec, model_version_create
from portfolios.services.rebalance import (
    MSG_BATCH_EMPTY,
    MSG_CASH_TOO_LARGE,
    MSG_EDIT_WHOLE,
    MSG_RUN_LOCKED,
    MSG_TLH_NOT_TAXABLE,
    rebalance_run_execute,
    rebalance_run_request,
)
from portfolios.views_rebalance import (
    BASKET_CREATED,
    DRIVER_WORDS,
    NO_ROLE,
    PROPOSE_NOT_ALLOWED,
    RUNS_PER_PAGE,
    TRADE_REMOVED,
    driver_words,
)
from tests import factories

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "pm", "other_pm", "ops", "compliance", "admin_user", "outsider")
CHANGERS = {"pm", "admin_user"}
FIRM_READERS = {"ops", "compliance"}
RUN_LIST_QUERY_BUDGET = 9
HTMX = {"HX-Request": "true"}


# ---------------------------------------------------------------------------
# A small breached account: 20 AAPL (two lots) and $1,000 cash against AAPL 50% / MSFT 45%
# ---------------------------------------------------------------------------


def _fresh_price(security, price: str) -> None:
    Price.objects.update_or_create(
        security=security, as_of=last_completed_session(), defaults={"price": Decimal(price)}
    )


@pytest.fixture
def msft(db):
    sec = factories.SecurityFactory(ticker="MSFT", name="Microsoft Corp.")
    _fresh_price(sec, "100")
    return sec


@pytest.fixture
def core_model(security, msft):
    _fresh_price(security, "150")
    model = factories.ModelPortfolioFactory(name="Core 50/45")
    model_version_create(
        model=model,
        targets=[
            TargetSpec(security_id=security.pk, weight=Decimal("0.50")),
            TargetSpec(security_id=msft.pk, weight=Decimal("0.45")),
        ],
        cash_target=Decimal("0.05"),
        actor="system:test",
    )
    return model


def _give_model(account, model) -> None:
    account.model = model
    account.save(update_fields=["model"])


@pytest.fixture
def book(account_a, account_b, security, core_model):
    """account_a (team A, taxable): AAPL 10 @ 80 long-term (the fixture's lot) plus 10 @ 160
    short-term (at a loss), $1,000 cash; account_b (team B) on the same model."""
    factories.TaxLotFactory(
        account=account_a,
        security=security,
        quantity=Decimal("10"),
        cost_basis=Decimal("160"),
        acquired_on=last_completed_session() - timedelta(days=40),
    )
    _give_model(account_a, core_model)
    _give_model(account_b, core_model)
    return {"a": account_a, "b": account_b}


def _run(actor, account, mode: str = "full", **parameters) -> RebalanceRun:
    run = rebalance_run_request(
        actor=actor, account_id=account.pk, mode=mode, parameters=parameters, enqueue=False
    )
    rebalance_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


@pytest.fixture
def run_a(book, pm):
    return _run(pm, book["a"])


@pytest.fixture
def run_b(book, other_pm):
    return _run(other_pm, book["b"])


def _client(client, request, persona: str):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def _html(response) -> str:
    return response.content.decode()


def _trade(run: RebalanceRun, ticker: str) -> dict:
    return next(t for t in run.trades if t["ticker"] == ticker)


def _metric_after(html: str, key: str) -> str:
    match = re.search(rf'data-metric="{key}">.*?<span class="after">([^<]*)</span>', html, re.S)
    assert match, f"no metric card {key}"
    return match.group(1)


# ---------------------------------------------------------------------------
# Who may open what
# ---------------------------------------------------------------------------


def permission_matrix(name: str, allowed: set[str], denied: dict[str, int]) -> list:
    """One case per persona: anonymous is sent to log in, ``allowed`` get 200, the others the
    status in ``denied`` (404 by default: another team's object does not exist for them)."""
    cases = []
    for persona in PERSONAS:
        if persona == "anonymous":
            status = 302
        elif persona in allowed:
            status = 200
        else:
            status = denied.get(persona, 404)
        cases.append(pytest.param(name, persona, status, id=f"{name}-{persona}-{status}"))
    return cases


MATRIX = [
    *permission_matrix("run_a", {"pm", *FIRM_READERS, "admin_user"}, {}),
    *permission_matrix("run_a_status", {"pm", *FIRM_READERS, "admin_user"}, {}),
    *permission_matrix("propose_a", CHANGERS, {"ops": 403, "compliance": 403}),
    *permission_matrix("runs", {"pm", "other_pm", *FIRM_READERS, "admin_user"}, {"outsider": 403}),
    *permission_matrix("batch_a", {"pm", *FIRM_READERS, "admin_user"}, {}),
]


@pytest.fixture
def batch_a(run_a, pm):
    batch = RebalanceBatch.objects.create(
        mode="full", selection={"accounts": [run_a.account_id]}, runs_total=1, created_by=pm
    )
    RebalanceRun.objects.filter(pk=run_a.pk).update(batch=batch)
    return batch


def _url(name: str, run_a, batch_a) -> str:
    return {
        "run_a": reverse("portfolios:rebalance_run", args=[run_a.pk]),
        "run_a_status": reverse("portfolios:rebalance_run_status", args=[run_a.pk]),
        "propose_a": reverse("portfolios:rebalance_propose", args=[run_a.account_id]),
        "runs": reverse("portfolios:rebalance_runs"),
        "batch_a": reverse("portfolios:rebalance_batch", args=[batch_a.pk]),
    }[name]


@pytest.mark.parametrize(("name", "persona", "status"), MATRIX)
def test_rebalance_pages_answer_each_persona_by_its_permission(
    client, request, name, persona, status, run_a, batch_a
):
    url = _url(name, run_a, batch_a)
    response = _client(client, request, persona).get(url)
    assert response.status_code == status
    if status == 302:
        assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize(
    ("persona", "controls"),
    [("pm", True), ("admin_user", True), ("ops", False), ("compliance", False)],
)
def test_run_page_shows_edit_basket_and_replay_controls_only_to_who_may_change_the_account(
    client, request, run_a, persona, controls
):
    html = _html(_client(client, request, persona).get(f"/rebalance/runs/{run_a.pk}/"))
    assert 'id="trades-table"' in html
    for marker in (
        'class="trade-edit"',
        'class="trade-remove"',
        'id="create-basket"',
        'id="replay-run"',
    ):
        assert (marker in html) is controls
    assert ('id="run-read-only"' in html) is not controls


def test_another_teams_run_answers_404_to_every_action(client, other_pm, run_a):
    client.force_login(other_pm)
    msft = _trade(run_a, "MSFT")["security"]
    base = f"/rebalance/runs/{run_a.pk}/"
    assert client.post(f"{base}edit-trade/", {"security": msft, "quantity": 1}).status_code == 404
    assert client.post(f"{base}basket/").status_code == 404
    assert client.post(f"{base}replay/").status_code == 404
    run_a.refresh_from_db()
    assert run_a.edits == []
    assert not TradeBasket.objects.exists()
    assert RebalanceRun.objects.count() == 1


def test_ops_may_read_a_run_but_not_edit_it_or_make_a_basket(client, ops, run_a):
    client.force_login(ops)
    msft = _trade(run_a, "MSFT")["security"]
    base = f"/rebalance/runs/{run_a.pk}/"
    assert client.post(f"{base}edit-trade/", {"security": msft, "quantity": 1}).status_code == 403
    assert client.post(f"{base}basket/").status_code == 403
    assert client.post(f"{base}replay/").status_code == 403
    run_a.refresh_from_db()
    assert run_a.edits == []
    assert not TradeBasket.objects.exists()


def test_runs_list_tells_a_user_without_a_role_why_not(client, outsider):
    client.force_login(outsider)
    response = client.get("/rebalance/runs/")
    assert response.status_code == 403
    assert NO_ROLE in _html(response)


def test_propose_form_tells_ops_they_may_only_view_the_account(client, ops, book):
    client.force_login(ops)
    response = client.get(f"/accounts/{book['a'].pk}/rebalance/")
    assert response.status_code == 403
    assert PROPOSE_NOT_ALLOWED.format(account=book["a"].account_number) in _html(response)


# ---------------------------------------------------------------------------
# The propose form
# ---------------------------------------------------------------------------


def test_propose_form_creates_a_run_and_opens_its_review_page(client, pm, book):
    client.force_login(pm)
    response = client.post(
        f"/accounts/{book['a'].pk}/rebalance/", {"mode": "full", "turnover_limit": "80"}
    )
    run = RebalanceRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/rebalance/runs/{run.pk}/"
    assert (run.account_id, run.mode, run.status, run.created_by) == (
        book["a"].pk,
        "full",
        RunStatus.QUEUED,
        pm,
    )
    assert run.parameters == {"turnover_limit": 0.8}


def test_propose_form_passes_only_the_chosen_modes_parameters(client, pm, book):
    client.force_login(pm)
    client.post(
        f"/accounts/{book['a'].pk}/rebalance/",
        {
            "mode": "tolerance",
            "tolerance_to_target": "edge",
            "cash_amount": "500",
            "tlh_loss_threshold": "10",
            "esg_sell_out": "on",
        },
    )
    run = RebalanceRun.objects.get()
    assert run.parameters == {"tolerance_to_target": False, "esg_sell_out": True}


def test_propose_form_shows_the_services_message_keeps_the_input_and_creates_nothing(
    client, pm, book
):
    client.force_login(pm)
    response = client.post(
        f"/accounts/{book['a'].pk}/rebalance/", {"mode": "cash_raise", "cash_amount": "999999"}
    )
    html = _html(response)
    assert response.status_code == 200
    message = MSG_CASH_TOO_LARGE.format(
        amount="$999,999.00",
        account=f"{book['a'].account_number} ({book['a'].name})",
        value="$4,000.00",
        reserve="$0.00",
    )
    assert f"<p>{message}</p>" in html.replace("&#x27;", "'")
    assert 'id="propose-error"' in html
    assert 'value="999999"' in html
    assert re.search(r'<option value="cash_raise" selected>', html)
    assert not RebalanceRun.objects.exists()


def test_propose_form_refuses_tax_loss_harvest_in_an_ira_with_the_services_words(
    client, pm, household_a, core_model, security
):
    ira = factories.AccountFactory(
        household=household_a,
        name="Alpha IRA",
        registration_type=RegistrationType.IRA,
        taxable=False,
        model=core_model,
    )
    factories.TaxLotFactory(account=ira, security=security)
    client.force_login(pm)
    html = _html(client.post(f"/accounts/{ira.pk}/rebalance/", {"mode": "tlh"}))
    expected = MSG_TLH_NOT_TAXABLE.format(
        account=f"{ira.account_number} (Alpha IRA)", registration="Traditional IRA"
    )
    assert expected in html
    assert not RebalanceRun.objects.exists()
    # the input is kept, and the form says why the mode is not offered
    assert '<option value="tlh" selected>' in html
    assert TLH_NOT_TAXABLE.format(account=ira.account_number, registration="Traditional IRA") in (
        html
    )
    assert '<option value="tlh" disabled>' in _html(client.get(f"/accounts/{ira.pk}/rebalance/"))


def test_propose_form_offers_tax_loss_harvest_only_where_it_is_turned_on(client, pm, book):
    client.force_login(pm)
    url = f"/accounts/{book['a'].pk}/rebalance/"
    html = _html(client.get(url))
    assert escape(TLH_OFF) in html
    assert '<option value="tlh" disabled>' in html
    book["a"].tlh_enabled = True
    book["a"].save(update_fields=["tlh_enabled"])
    html = _html(client.get(url))
    assert escape(TLH_OFF) not in html
    assert '<option value="tlh">' in html


def test_propose_form_reports_a_bad_number_without_calling_the_service(client, pm, book):
    client.force_login(pm)
    url = f"/accounts/{book['a'].pk}/rebalance/"
    html = _html(client.post(url, {"mode": "full", "turnover_limit": "-5"}))
    assert 'id="id_turnover_limit-error"' in html
    assert "greater than or equal to 0" in html
    assert not RebalanceRun.objects.exists()


def test_propose_form_links_to_the_run_already_in_progress(client, pm, book):
    running = rebalance_run_request(actor=pm, account_id=book["a"].pk, mode="full", enqueue=False)
    client.force_login(pm)
    html = _html(client.post(f"/accounts/{book['a'].pk}/rebalance/", {"mode": "full"}))
    assert f'href="/rebalance/runs/{running.pk}/">Open run {running.pk}</a>' in html
    assert RebalanceRun.objects.count() == 1


# ---------------------------------------------------------------------------
# The review page
# ---------------------------------------------------------------------------


def test_a_queued_run_polls_every_second_and_the_status_swaps_in_the_result_when_done(
    client, pm, book
):
    run = rebalance_run_request(actor=pm, account_id=book["a"].pk, mode="full", enqueue=False)
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run.pk}/"))
    status_url = f"/rebalance/runs/{run.pk}/status/"
    assert f'hx-get="{status_url}" hx-trigger="every 1s" hx-swap="outerHTML"' in html
    assert 'id="run-state">Queued<' in html
    assert 'id="trades-table"' not in html

    rebalance_run_execute(run_id=run.pk)
    partial = _html(client.get(status_url, headers=HTMX))
    assert "<html" not in partial
    assert partial.startswith('<div id="run-body"')
    assert "hx-trigger" not in partial.split(">", 1)[0]
    assert 'id="run-state">Succeeded<' in partial
    assert 'id="trades-table"' in partial
    assert 'data-plotly="chart-run-weights"' in partial


def test_run_page_shows_metrics_before_and_after_costs_and_taxes(client, pm, run_a):
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    m = run_a.diagnostics["metrics"]
    assert _metric_after(html, "total_drift") == f"{m['total_drift_after'] * 100:.2f}%"
    assert _metric_after(html, "max_drift") == f"{m['max_drift_after'] * 100:.2f}%"
    assert _metric_after(html, "tracking_error") == f"{m['tracking_error_after'] * 100:.2f}%"
    assert _metric_after(html, "cash") == f"{m['cash_after']:,.2f}"
    assert re.search(
        rf'data-metric="total_drift">.*?<span class="before">{m["total_drift_before"] * 100:.2f}%',
        html,
        re.S,
    )
    for key in ("tax_estimate", "realized_st", "realized_lt", "cost_estimate"):
        assert re.search(rf'data-metric="{key}">.*?<div class="v[^"]*">{m[key]:,.2f}<', html, re.S)
    assert re.search(rf'data-metric="turnover">.*?>{m["turnover"] * 100:.2f}%<', html, re.S)


def test_run_page_draws_weights_before_and_after_against_target_with_cash(client, pm, run_a):
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    match = re.search(
        r'<script id="chart-run-weights" type="application/json">(.*?)</script>', html, re.S
    )
    spec = json.loads(match.group(1))
    before, after, target = spec["data"]
    assert [before["name"], after["name"], target["name"]] == ["Before", "After", "Target"]
    assert before["x"] == ["AAPL", "MSFT", "Cash"]
    m = run_a.diagnostics["metrics"]
    symbols = run_a.input_snapshot["problem"]["securities"]["symbols"]
    aapl = symbols.index("AAPL")
    assert before["y"][0] == pytest.approx(m["weights_before"][aapl] * 100)
    assert after["y"][0] == pytest.approx(m["weights_after"][aapl] * 100)
    assert target["y"] == pytest.approx([50.0, 45.0, 5.0])
    assert after["y"][2] == pytest.approx(m["cash_weight_after"] * 100)
    assert "<script>" not in html  # data only: the CSP forbids inline scripts


def test_run_page_lists_each_trade_with_reason_weights_gains_and_its_lots(client, pm, run_a):
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    sell = _trade(run_a, "AAPL")
    assert sell["side"] == "sell"
    assert sell["lots"]
    block = re.search(
        r'<tbody class="trade" data-ticker="AAPL".*?</tbody>\s*</table>\s*</details>', html, re.S
    ).group(0)
    assert f'data-col="quantity">{sell["quantity"]:g}' in block
    assert f"{sell['weight_before'] * 100:.2f}% → {sell['weight_after'] * 100:.2f}%" in block
    assert f"{len(sell['lots'])} lot{'s' if len(sell['lots']) != 1 else ''} relieved" in block
    for lot in sell["lots"]:
        row = re.search(rf'<tr data-lot="{lot["lot"]}">(.*?)</tr>', block, re.S).group(1)
        assert lot["acquired_on"] in row
        assert ("Long-term" if lot["long_term"] else "Short-term") in row
        assert f"{lot['gain']:,.2f}" in row
    buy = _trade(run_a, "MSFT")
    assert buy["side"] == "buy"
    assert re.search(r'<tbody class="trade" data-ticker="MSFT"', html)


def test_run_page_explains_every_trade_with_its_drivers_in_words(client, pm, run_a):
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    panel = re.search(r'id="run-explanation".*?</section>', html, re.S).group(0)
    for t in run_a.trades:
        item = re.search(rf'<li data-ticker="{t["ticker"]}">(.*?)</li>', panel, re.S).group(1)
        assert t["explanation"].replace("'", "&#x27;") in item
        for code in t["drivers"]:
            assert f'<span class="badge">{driver_words(code)}</span>' in item


def test_every_driver_code_of_the_optimizer_reads_as_words():
    assert set(DRIVERS) <= set(DRIVER_WORDS)
    assert driver_words("drift") == "drift from target"
    assert driver_words("gains_budget") == "realized-gains budget"
    assert driver_words("some_new_code") == "some new code"


def test_run_page_shows_warnings(client, pm, run_a):
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    assert run_a.diagnostics["warnings"]
    for warning in run_a.diagnostics["warnings"]:
        assert warning.replace("'", "&#x27;") in html


def test_an_infeasible_run_names_the_conflicts_in_words(client, pm, book):
    run = RebalanceRun.objects.create(
        account=book["a"],
        mode="cash_raise",
        status=RunStatus.INFEASIBLE,
        error="The constraints of this account conflict: cash reserve $5,000.00 cannot be met",
        diagnostics={
            "conflicts": [
                {"constraint": "cash_reserve", "message": "cash reserve $5,000.00 cannot be met"}
            ]
        },
    )
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{run.pk}/"))
    assert "No proposal: the constraints conflict" in html
    assert '<ul id="run-conflicts">' in html
    assert "<li>cash reserve $5,000.00 cannot be met</li>" in html
    assert 'id="trades-table"' not in html
    assert "hx-trigger" not in html


def test_a_failed_run_shows_its_error(client, ops, book):
    run = RebalanceRun.objects.create(
        account=book["a"], mode="full", status=RunStatus.FAILED, error="Stale price for MSFT."
    )
    client.force_login(ops)
    html = _html(client.get(f"/rebalance/runs/{run.pk}/"))
    assert '<p id="run-error">Stale price for MSFT.</p>' in html


# ---------------------------------------------------------------------------
# Editing trades (htmx)
# ---------------------------------------------------------------------------


def _edit(client, run, security: int, quantity, **extra):
    return client.post(
        f"/rebalance/runs/{run.pk}/edit-trade/",
        {"security": security, "quantity": quantity, **extra},
        headers=HTMX,
    )


def test_editing_a_quantity_rerenders_the_result_with_recomputed_metrics(client, pm, run_a):
    client.force_login(pm)
    buy = _trade(run_a, "MSFT")
    before = run_a.diagnostics["metrics"]
    new_qty = int(buy["quantity"]) - 5
    response = _edit(client, run_a, buy["security"], new_qty, note="keep some cash")
    html = _html(response)
    assert response.status_code == 200
    assert html.startswith('<div id="run-result"')
    run_a.refresh_from_db()
    after = run_a.diagnostics["metrics"]
    # five fewer shares bought: their price, half-spread and commission stay in cash
    cost_rate = settings.REBALANCE_HALF_SPREAD_BPS / 1e4 + settings.REBALANCE_COMMISSION_RATE
    saved = 5 * buy["price"] * (1 + cost_rate)
    assert after["cash_after"] == pytest.approx(before["cash_after"] + saved, abs=0.01)
    assert after["total_drift_after"] != before["total_drift_after"]
    assert _metric_after(html, "total_drift") == f"{after['total_drift_after'] * 100:.2f}%"
    assert _metric_after(html, "cash") == f"{after['cash_after']:,.2f}"
    assert f'data-col="quantity">{new_qty}' in html
    assert f"MSFT: quantity {buy['quantity']:g} → {new_qty:g}." in html
    edits = re.search(r'id="edits-table".*?</table>', html, re.S).group(0)
    assert "keep some cash" in edits
    assert ">pm<" in edits
    assert run_a.edits[-1]["after"] == new_qty


def test_removing_a_trade_takes_it_out_and_recomputes(client, pm, run_a):
    client.force_login(pm)
    sell = _trade(run_a, "AAPL")
    before = run_a.diagnostics["metrics"]
    html = _html(_edit(client, run_a, sell["security"], 0))
    run_a.refresh_from_db()
    assert [t["ticker"] for t in run_a.trades] == ["MSFT"]
    assert 'data-ticker="AAPL"' not in re.search(r'id="trades-table".*?</table>', html, re.S)[0]
    assert TRADE_REMOVED.format(ticker="AAPL") in html
    after = run_a.diagnostics["metrics"]
    assert after["realized_st"] == 0
    assert after["realized_lt"] == 0
    assert after["cash_after"] < before["cash_after"]
    assert _metric_after(html, "cash") == f"{after['cash_after']:,.2f}"
    assert "removed" in re.search(r'id="edits-table".*?</table>', html, re.S)[0]


def test_an_edit_that_breaks_a_constraint_shows_the_violation_by_the_basket_button(
    client, pm, run_a
):
    client.force_login(pm)
    html = _html(_edit(client, run_a, _trade(run_a, "AAPL")["security"], 0))
    run_a.refresh_from_db()
    violations = run_a.diagnostics["metrics"]["violations"]
    assert violations  # the buy alone spends more than the account's cash
    banner = re.search(r'id="run-violations".*?</section>', html, re.S).group(0)
    for violation in violations:
        assert f"<li>{escape(violation)}</li>" in banner
    # the actions are part of the re-rendered result, so they know about it
    assert 'id="basket-violations"' in html
    assert 'id="create-basket"' in html


def test_an_edit_the_service_refuses_is_shown_next_to_the_trade(client, pm, run_a):
    client.force_login(pm)
    buy = _trade(run_a, "MSFT")
    html = _html(_edit(client, run_a, buy["security"], "2.5"))
    message = MSG_EDIT_WHOLE.format(
        account=f"{run_a.account.account_number} ({run_a.account.name})", got="2.5"
    )
    assert f'<p class="error" role="alert" id="edit-error-{buy["security"]}">{message}</p>' in (
        html
    )
    run_a.refresh_from_db()
    assert run_a.edits == []


def test_a_run_in_a_submitted_basket_is_locked(client, pm, run_a):
    client.force_login(pm)
    client.post(f"/rebalance/runs/{run_a.pk}/basket/")
    basket = TradeBasket.objects.get()
    TradeBasket.objects.filter(pk=basket.pk).update(state=BasketState.SUBMITTED)
    html = _html(client.get(f"/rebalance/runs/{run_a.pk}/"))
    assert 'id="run-locked"' in html
    assert 'class="trade-edit"' not in html
    assert 'id="create-basket"' not in html
    html = _html(_edit(client, run_a, _trade(run_a, "MSFT")["security"], 1))
    assert MSG_RUN_LOCKED.format(run=run_a.pk, basket=basket.pk, state="Submitted") in html


def test_an_edit_without_htmx_redirects_back_to_the_run_with_a_message(client, pm, run_a):
    client.force_login(pm)
    response = client.post(
        f"/rebalance/runs/{run_a.pk}/edit-trade/",
        {"security": _trade(run_a, "AAPL")["security"], "quantity": 0},
        follow=True,
    )
    assert response.redirect_chain == [(f"/rebalance/runs/{run_a.pk}/", 302)]
    assert TRADE_REMOVED.format(ticker="AAPL") in _html(response)


# ---------------------------------------------------------------------------
# Basket and replay
# ---------------------------------------------------------------------------


def test_create_draft_basket_makes_one_order_per_trade_and_says_so(client, pm, run_a):
    client.force_login(pm)
    response = client.post(f"/rebalance/runs/{run_a.pk}/basket/", follow=True)
    basket = TradeBasket.objects.get()
    assert basket.state == BasketState.DRAFT
    assert basket.orders.count() == len(run_a.trades)
    html = _html(response)
    orders = len(run_a.trades)
    assert BASKET_CREATED.format(basket=basket.pk, orders=orders, plural="s") in html
    assert f'In basket <a href="/baskets/{basket.pk}/"><strong>#{basket.pk}</strong></a>' in html
    assert 'id="create-basket"' not in html  # a run goes in one live basket at a time
    # a second click (an old page) is refused with the service's message
    response = client.post(f"/rebalance/runs/{run_a.pk}/basket/", follow=True)
    assert MSG_RUN_IN_BASKET.format(run=run_a.pk, basket=basket.pk, state="Draft") in _html(
        response
    )
    assert TradeBasket.objects.count() == 1


def test_rerun_from_stored_inputs_opens_the_new_run_which_says_the_trades_match(client, pm, run_a):
    client.force_login(pm)
    response = client.post(f"/rebalance/runs/{run_a.pk}/replay/")
    replay = RebalanceRun.objects.exclude(pk=run_a.pk).get()
    assert response["Location"] == f"/rebalance/runs/{replay.pk}/"
    assert replay.replay_of_id == run_a.pk
    rebalance_run_execute(run_id=replay.pk)
    html = _html(client.get(f"/rebalance/runs/{replay.pk}/"))
    assert f'Re-run of run <a href="/rebalance/runs/{run_a.pk}/">{run_a.pk}</a>' in html
    assert '<span class="badge good">Same trades</span>' in html


def test_a_replay_that_differs_lists_the_differences(client, pm, run_a):
    replay = RebalanceRun.objects.create(
        account=run_a.account,
        mode="full",
        status=RunStatus.SUCCEEDED,
        replay_of=run_a,
        input_snapshot=run_a.input_snapshot,
        diagnostics={
            **run_a.diagnostics,
            "replay": {
                "original": run_a.pk,
                "matches": False,
                "differences": [
                    {
                        "security": _trade(run_a, "MSFT")["security"],
                        "side": "buy",
                        "original": 18,
                        "replay": 17,
                    }
                ],
            },
        },
        trades=run_a.trades,
    )
    client.force_login(pm)
    html = _html(client.get(f"/rebalance/runs/{replay.pk}/"))
    assert "Different trades" in html
    table = re.search(r'id="replay-differences".*?</table>', html, re.S).group(0)
    row = '<th scope="row">MSFT</th><td>Buy</td><td class="num">18</td><td class="num">17</td>'
    assert row in table


# ---------------------------------------------------------------------------
# Runs list
# ---------------------------------------------------------------------------


def _runs_rows(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-run="(\d+)"', html)]


def test_runs_list_shows_only_the_runs_of_visible_accounts(client, pm, ops, run_a, run_b):
    client.force_login(pm)
    assert _runs_rows(_html(client.get("/rebalance/runs/"))) == [run_a.pk]
    client.force_login(ops)
    assert _runs_rows(_html(client.get("/rebalance/runs/"))) == [run_b.pk, run_a.pk]


def test_runs_list_filters_by_status_mode_and_batch(client, pm, run_a, book):
    failed = RebalanceRun.objects.create(account=book["a"], mode="tolerance", status="failed")
    batch = RebalanceBatch.objects.create(mode="full", runs_total=1, created_by=pm)
    RebalanceRun.objects.filter(pk=run_a.pk).update(batch=batch)
    client.force_login(pm)
    assert _runs_rows(_html(client.get("/rebalance/runs/", {"status": "failed"}))) == [failed.pk]
    assert _runs_rows(_html(client.get("/rebalance/runs/", {"mode": "full"}))) == [run_a.pk]
    assert _runs_rows(_html(client.get("/rebalance/runs/", {"batch": batch.pk}))) == [run_a.pk]
    # a filter that is not valid is ignored, not passed to the query
    assert len(_runs_rows(_html(client.get("/rebalance/runs/", {"status": "nope"})))) == 2


def test_runs_list_offers_a_checkbox_only_for_succeeded_runs_the_user_may_trade(
    client, pm, ops, run_a, book
):
    failed = RebalanceRun.objects.create(account=book["a"], mode="full", status="failed")
    client.force_login(pm)
    html = _html(client.get("/rebalance/runs/"))
    assert f'name="runs" value="{run_a.pk}"' in html
    assert f'name="runs" value="{failed.pk}"' not in html
    assert 'id="basket-from-selected"' in html
    client.force_login(ops)
    html = _html(client.get("/rebalance/runs/"))
    assert 'name="runs"' not in html
    assert 'id="basket-from-selected"' not in html


def test_runs_list_shows_the_basket_holding_a_run_and_offers_it_no_checkbox(client, pm, run_a):
    client.force_login(pm)
    client.post(f"/rebalance/runs/{run_a.pk}/basket/")
    basket = TradeBasket.objects.get()
    html = _html(client.get("/rebalance/runs/"))
    row = re.search(rf'<tr data-run="{run_a.pk}">(.*?)</tr>', html, re.S).group(1)
    assert f'#{basket.pk} <span class="badge">Draft</span>' in row
    assert 'name="runs"' not in row
    TradeBasket.objects.filter(pk=basket.pk).update(state=BasketState.CANCELLED)
    row = re.search(
        rf'<tr data-run="{run_a.pk}">(.*?)</tr>', _html(client.get("/rebalance/runs/")), re.S
    ).group(1)
    assert 'name="runs"' in row


def test_create_basket_from_selected_runs(client, pm, run_a, household_a, core_model, security):
    second = factories.AccountFactory(household=household_a, name="Alpha Joint", model=core_model)
    factories.TaxLotFactory(account=second, security=security, quantity=Decimal("30"))
    run_2 = _run(pm, second)
    client.force_login(pm)
    response = client.post(
        "/rebalance/runs/basket/",
        {"runs": [run_a.pk, run_2.pk], "next": "/rebalance/runs/"},
        follow=True,
    )
    basket = TradeBasket.objects.get()
    assert set(basket.runs.values_list("pk", flat=True)) == {run_a.pk, run_2.pk}
    orders = len(run_a.trades) + len(run_2.trades)
    assert basket.orders.count() == orders
    assert BASKET_CREATED.format(basket=basket.pk, orders=orders, plural="s") in _html(response)


def test_create_basket_with_nothing_selected_says_so(client, pm, run_a):
    client.force_login(pm)
    response = client.post("/rebalance/runs/basket/", {}, follow=True)
    assert "Choose at least one proposal to put in the basket." in _html(response)
    assert not TradeBasket.objects.exists()


def _many_runs(account, n: int) -> None:
    RebalanceRun.objects.bulk_create(
        RebalanceRun(account=account, mode="full", status="failed", error="x") for _ in range(n)
    )


@pytest.mark.parametrize("size", [3, RUNS_PER_PAGE + 10])
@pytest.mark.parametrize("persona", ["pm", "ops"])
def test_runs_list_uses_the_same_number_of_queries_for_few_or_many_runs(
    client, request, book, run_a, django_assert_max_num_queries, size, persona
):
    _many_runs(book["a"], size)
    client.force_login(request.getfixturevalue(persona))
    with django_assert_max_num_queries(RUN_LIST_QUERY_BUDGET):
        html = _html(client.get("/rebalance/runs/"))
    assert len(_runs_rows(html)) == min(size + 1, RUNS_PER_PAGE)


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


def _breach(account) -> None:
    DriftSnapshot.objects.create(
        account=account, total_drift=0.2, max_drift=0.2, breach_count=2, breached=True
    )


def test_dashboard_offers_a_pm_the_batch_form_with_the_models_of_their_accounts(
    client, pm, ops, book
):
    client.force_login(pm)
    html = _html(client.get("/drift/"))
    form = re.search(r'id="batch-propose-form".*?</form>', html, re.S).group(0)
    assert f'<option value="{book["a"].model_id}">Core 50/45</option>' in form
    assert 'value="cash_raise"' not in form
    client.force_login(ops)
    assert 'id="batch-propose-form"' not in _html(client.get("/drift/"))


def test_batch_form_proposes_for_every_breached_account_and_opens_the_batch(
    client, pm, book, household_a, core_model
):
    _breach(book["a"])
    calm = factories.AccountFactory(household=household_a, name="Calm", model=core_model)
    frozen = factories.AccountFactory(
        household=household_a, name="Frozen", model=core_model, status="frozen"
    )
    _breach(frozen)
    client.force_login(pm)
    response = client.post("/rebalance/batches/new/", {"model": core_model.pk, "mode": "full"})
    batch = RebalanceBatch.objects.get()
    assert response["Location"] == f"/rebalance/batches/{batch.pk}/"
    assert list(batch.runs.values_list("account_id", flat=True)) == [book["a"].pk]
    assert calm.pk not in [s["account"] for s in batch.skipped]
    html = _html(client.get(response["Location"]))
    assert f'hx-get="/rebalance/batches/{batch.pk}/status/" hx-trigger="every 1s"' in html
    assert '<dd data-count="queued">1</dd>' in html
    assert 'id="batch-done">0 of 1</strong>' in html
    run = batch.runs.get()
    assert f'<tr data-run="{run.pk}">' in html
    skipped = re.search(r'id="skipped-table".*?</table>', html, re.S).group(0)
    assert frozen.account_number in skipped
    assert "frozen: no rebalance can be proposed" in skipped

    rebalance_run_execute(run_id=run.pk)
    partial = _html(client.get(f"/rebalance/batches/{batch.pk}/status/", headers=HTMX))
    assert "<html" not in partial
    assert "hx-trigger" not in partial.split(">", 1)[0]
    assert '<dd data-count="succeeded">1</dd>' in partial
    assert 'id="batch-finished"' in partial


def test_batch_form_with_no_breached_account_says_why_on_the_dashboard(
    client, pm, book, core_model
):
    client.force_login(pm)
    response = client.post(
        "/rebalance/batches/new/", {"model": core_model.pk, "mode": "full"}, follow=True
    )
    why = "no breached account of this model that you manage"
    assert MSG_BATCH_EMPTY.format(why=why) in _html(response)
    assert not RebalanceBatch.objects.exists()


def test_batch_form_is_refused_to_ops(client, ops, book, core_model):
    client.force_login(ops)
    response = client.post("/rebalance/batches/new/", {"model": core_model.pk, "mode": "full"})
    assert response.status_code == 403
    assert not RebalanceBatch.objects.exists()


# ---------------------------------------------------------------------------
# The account page and the nav
# ---------------------------------------------------------------------------


def test_account_page_shows_the_propose_button_to_its_pm_and_the_proposals_to_all(
    client, pm, ops, run_a
):
    url = f"/accounts/{run_a.account_id}/"
    client.force_login(pm)
    html = _html(client.get(url))
    assert f'href="/accounts/{run_a.account_id}/rebalance/">Propose rebalance</a>' in html
    panel = re.search(r'id="proposals".*?</section>', html, re.S).group(0)
    assert f'<a href="/rebalance/runs/{run_a.pk}/">Run {run_a.pk}</a>' in panel
    assert "Succeeded" in panel
    assert "Full rebalance to target" in panel
    client.force_login(ops)
    html = _html(client.get(url))
    assert "Propose rebalance</a>" not in html
    assert f'<a href="/rebalance/runs/{run_a.pk}/">Run {run_a.pk}</a>' in html


@pytest.mark.parametrize(
    ("persona", "shown"),
    [("pm", True), ("ops", True), ("compliance", True), ("admin_user", True), ("outsider", False)],
)
def test_nav_has_a_proposals_link_for_every_role(client, request, persona, shown):
    client.force_login(request.getfixturevalue(persona))
    html = _html(client.get("/accounts/"))
    assert ('<a href="/rebalance/runs/"' in html) is shown
