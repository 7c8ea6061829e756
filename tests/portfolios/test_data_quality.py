"""The data-quality report: each planted problem is found (and its harmless look-alike is
not), a clean firm reports nothing, a PM's report covers only their accounts, the query count
does not grow with the firm, and the one-line summary names what was found.

The clock is fixed (``NOW``, Wednesday 2026-11-25 after the close): with three trading days
of tolerance, prices dated before Friday 2026-11-20 are stale.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portfolios.models import (
    AccountStatus,
    ImportBatch,
    ModelTarget,
    ModelVersion,
    Reconciliation,
    ReconciliationBreak,
)
from portfolios.selectors.data_quality import (
    CLEAN,
    data_quality_firm_report,
    data_quality_report,
    data_quality_summary,
)
from portfolios.services import TargetSpec, model_version_create
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
CUTOFF = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def _three_days(settings):
    settings.STALE_PRICE_TRADING_DAYS = 3


def balanced_model(name: str, security) -> object:
    model = factories.ModelPortfolioFactory(name=name)
    model_version_create(
        model=model,
        targets=[TargetSpec(security_id=security.pk, weight=Decimal("0.9"))],
        cash_target=Decimal("0.1"),
        actor="system:test",
    )
    return model


@pytest.fixture
def clean_firm(account_a, account_b, security):
    """Both accounts follow a model of AAPL 90% + cash 10%; AAPL has a fresh price."""
    factories.PriceFactory(security=security, as_of=date(2026, 11, 25), price=Decimal("151"))
    model = balanced_model("Balanced", security)
    for account in (account_a, account_b):
        account.model = model
        account.save(update_fields=["model"])
    return model


def test_a_clean_firm_reports_nothing(clean_firm, ops):
    report = data_quality_report(user=ops, now=NOW)
    assert report.clean
    assert report.problems == 0
    assert [c.count for c in report.checks] == [0, 0, 0, 0, 0, 0]
    assert report.stale_cutoff == CUTOFF
    assert data_quality_summary(report) == CLEAN


@pytest.fixture
def planted(clean_firm, account_a, account_b, household_a, household_b, security, ops):
    """One of each problem on team A's side, one look-alike that is fine, and a team-B
    account without a model."""
    stale = factories.SecurityFactory(ticker="STALE")
    factories.PriceFactory(security=stale, as_of=date(2026, 11, 19))
    edge = factories.SecurityFactory(ticker="EDGE")  # dated on the cutoff: not stale
    factories.PriceFactory(security=edge, as_of=CUTOFF)
    unpriced = factories.SecurityFactory(ticker="NOPRICE")
    idle = factories.SecurityFactory(ticker="IDLE")  # stale but held by nobody
    factories.PriceFactory(security=idle, as_of=date(2025, 1, 2))
    for sec in (stale, edge, unpriced):
        factories.TaxLotFactory(account=account_a, security=sec, quantity=Decimal("1"))
    # a sold-out lot of an unpriced security is not a holding
    gone = factories.SecurityFactory(ticker="GONE")
    factories.TaxLotFactory(account=account_a, security=gone, quantity=Decimal("0"))
    # accounts without a model: an open one (planted), a closed one (fine), team B's one
    no_model = factories.AccountFactory(household=household_a, account_number="NOMODEL")
    factories.AccountFactory(
        household=household_a, account_number="CLOSED", status=AccountStatus.CLOSED
    )
    factories.AccountFactory(household=household_b, account_number="B-NOMODEL")
    # a model whose current version sums to 90%; its old version summed to 100%
    broken = balanced_model("Broken", security)
    ModelVersion.objects.filter(model=broken).update(is_current=False)
    version = ModelVersion.objects.create(
        model=broken, version=2, is_current=True, cash_target=Decimal("0.4")
    )
    ModelTarget.objects.create(version=version, security=security, weight=Decimal("0.5"))
    # a future lot
    factories.TaxLotFactory(
        account=account_a, security=security, quantity=Decimal("2"), acquired_on=date(2026, 12, 1)
    )
    # open and resolved breaks
    batch = ImportBatch.objects.create(kind="custodian_positions", file_name="p.csv", sha256="0")
    reconciliation = Reconciliation.objects.create(import_batch=batch, as_of=date(2026, 11, 24))
    for account, resolved in ((account_a, None), (account_b, NOW)):
        ReconciliationBreak.objects.create(
            reconciliation=reconciliation,
            account=account,
            security=security,
            custodian_quantity=Decimal("9"),
            book_quantity=Decimal("10"),
            difference=Decimal("-1"),
            resolved_at=resolved,
        )
    return {"no_model": no_model}


def test_the_report_finds_each_planted_problem(planted, account_a, ops):
    report = data_quality_report(user=ops, now=NOW)
    assert [(i["ticker"], i["last_price"]) for i in report.stale_prices.items] == [
        ("NOPRICE", None),
        ("STALE", date(2026, 11, 19)),
    ]
    assert [i["account_number"] for i in report.accounts_without_model.items] == [
        "B-NOMODEL",
        "NOMODEL",
    ]
    assert [(i["model__name"], i["total"]) for i in report.models_not_100.items] == [
        ("Broken", Decimal("0.9"))
    ]
    # STALE, EDGE and NOPRICE are held by account_a but not in its model (AAPL only)
    assert [
        (i["account__account_number"], i["security__ticker"])
        for i in report.held_not_in_model.items
    ] == [(account_a.account_number, t) for t in ("EDGE", "NOPRICE", "STALE")]
    assert [
        (i["account__account_number"], i["security__ticker"], i["acquired_on"])
        for i in report.future_lots.items
    ] == [(account_a.account_number, "AAPL", date(2026, 12, 1))]
    assert [(i["account__account_number"], i["breaks"]) for i in report.open_breaks.items] == [
        (account_a.account_number, 1)
    ]
    assert [c.count for c in report.checks] == [2, 2, 1, 3, 1, 1]
    assert not report.clean


def test_a_pm_sees_the_problems_of_their_own_accounts_only(planted, pm):
    report = data_quality_report(user=pm, now=NOW)
    assert [i["account_number"] for i in report.accounts_without_model.items] == ["NOMODEL"]
    assert report.open_breaks.count == 1
    # models are reference data: every role sees the broken one
    assert report.models_not_100.count == 1


def test_the_other_team_sees_none_of_team_a_s_problems(planted, other_pm):
    report = data_quality_report(user=other_pm, now=NOW)
    assert report.stale_prices.count == 0
    assert [i["account_number"] for i in report.accounts_without_model.items] == ["B-NOMODEL"]
    assert report.held_not_in_model.count == 0
    assert report.future_lots.count == 0
    assert report.open_breaks.count == 0  # team B's break is resolved


def test_items_stop_at_the_limit_and_say_how_many_more(planted, ops):
    report = data_quality_report(user=ops, now=NOW, limit=1)
    assert len(report.held_not_in_model.items) == 1
    assert report.held_not_in_model.count == 3
    assert report.held_not_in_model.more == 2


def test_the_summary_line_names_every_check_that_found_something(planted):
    report = data_quality_firm_report(now=NOW)
    assert data_quality_summary(report) == (
        "Data quality: 2 held securities with stale or missing prices, 2 accounts without a "
        "model, 1 model not summing to 100%, 3 held positions not in the model, 1 lot with a "
        "future acquisition date, 1 account with open reconciliation breaks."
    )


def test_the_report_costs_the_same_queries_for_a_bigger_firm(planted, household_a, pm, ops):
    def count(user) -> int:
        with CaptureQueriesContext(connection) as ctx:
            data_quality_report(user=user, now=NOW)
        return len(ctx.captured_queries)

    count(ops), count(pm)  # the first call caches each user's roles and permissions
    before = {"ops": count(ops), "pm": count(pm)}
    for n in range(15):
        account = factories.AccountFactory(household=household_a, account_number=f"MORE{n}")
        sec = factories.SecurityFactory(ticker=f"X{n}")
        factories.TaxLotFactory(account=account, security=sec, acquired_on=date(2027, 1, 4))
    assert {"ops": count(ops), "pm": count(pm)} == before
    assert before["ops"] <= 12


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------


def api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_the_api_answers_the_report_of_the_accounts_you_see(planted, pm, monkeypatch):
    from portfolios import calendar

    monkeypatch.setattr(calendar, "stale_price_cutoff", lambda **kwargs: CUTOFF)
    body = api(pm).get("/api/v1/data-quality/", {"limit": "1"}).json()
    checks = {c["key"]: c for c in body["checks"]}
    assert body["stale_cutoff"] == "2026-11-20"
    assert body["limit"] == 1
    assert body["clean"] is False
    assert checks["accounts_without_model"]["count"] == 1
    assert checks["accounts_without_model"]["items"][0]["account_number"] == "NOMODEL"
    assert checks["held_not_in_model"]["count"] == 3
    assert checks["held_not_in_model"]["more"] == 2
    assert [c["key"] for c in body["checks"]] == [
        "stale_prices",
        "accounts_without_model",
        "models_not_100",
        "held_not_in_model",
        "future_lots",
        "open_breaks",
    ]


@pytest.mark.parametrize(("persona", "status"), [(None, 401), ("outsider", 403), ("pm", 200)])
def test_the_data_quality_api_needs_a_role(request, persona, status):
    user = request.getfixturevalue(persona) if persona else None
    assert api(user).get("/api/v1/data-quality/").status_code == status
