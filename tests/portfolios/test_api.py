"""The portfolios API: who sees what (a generated permission matrix), account detail with
holdings and lots, filters, constant query counts, and the audited account PATCH."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from portfolios.api.serializers import UNKNOWN_FIELD, AccountUpdateSerializer
from portfolios.models import Account, AccountStatus, DriftSnapshot, RegistrationType
from portfolios.permissions import ACCOUNT_CHANGE_FORBIDDEN
from portfolios.services import ACCOUNT_EDITABLE_FIELDS, TargetSpec, model_version_create
from tests import factories

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "outsider", "pm", "other_pm", "ops", "compliance", "admin_user"]


def client_for(request: pytest.FixtureRequest, persona: str) -> APIClient:
    client = APIClient()
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


@pytest.fixture
def world(account_a, account_b, security, admin_user):
    """Two teams' accounts plus reference data: a model with two versions."""
    model = factories.ModelPortfolioFactory(name="Core Equity")
    model_version_create(
        model=model,
        targets=[TargetSpec(security.pk, Decimal("0.90"))],
        cash_target=Decimal("0.10"),
        actor=admin_user,
        note="first",
    )
    model_version_create(
        model=model,
        targets=[TargetSpec(security.pk, Decimal("0.95"))],
        cash_target=Decimal("0.05"),
        actor=admin_user,
        note="second",
    )
    return {
        "account_a": account_a,
        "account_b": account_b,
        "household_a": account_a.household,
        "security": security,
        "price": security.prices.get(),
        "model": model,
    }


# ---------------------------------------------------------------------------
# The permission matrix: endpoints x personas, generated
# ---------------------------------------------------------------------------

ENDPOINTS = {
    "accounts": lambda w: "/api/v1/accounts/",
    "account-of-team-a": lambda w: f"/api/v1/accounts/{w['account_a'].pk}/",
    "households": lambda w: "/api/v1/households/",
    "household-of-team-a": lambda w: f"/api/v1/households/{w['household_a'].pk}/",
    "securities": lambda w: "/api/v1/securities/",
    "security": lambda w: f"/api/v1/securities/{w['security'].pk}/",
    "prices": lambda w: "/api/v1/prices/",
    "price": lambda w: f"/api/v1/prices/{w['price'].pk}/",
    "models": lambda w: "/api/v1/models/",
    "model": lambda w: f"/api/v1/models/{w['model'].pk}/",
    "model-versions": lambda w: f"/api/v1/models/{w['model'].pk}/versions/",
}
TEAM_A_OBJECTS = {"account-of-team-a", "household-of-team-a"}
REFERENCE_DATA = {"securities", "security", "prices", "price", "models", "model", "model-versions"}


def expected_status(endpoint: str, persona: str) -> int:
    if persona == "anonymous":
        return 401
    if persona == "outsider" and endpoint in REFERENCE_DATA:
        return 403  # no role, so no view permission on reference data
    if persona in {"outsider", "other_pm"} and endpoint in TEAM_A_OBJECTS:
        return 404  # another team's object does not exist for them
    return 200


MATRIX = [
    pytest.param(endpoint, persona, expected_status(endpoint, persona), id=f"{endpoint}-{persona}")
    for endpoint in ENDPOINTS
    for persona in PERSONAS
]


@pytest.mark.parametrize(("endpoint", "persona", "status"), MATRIX)
def test_permission_matrix_answers_each_persona_as_its_role_and_team_allow(
    request, world, endpoint, persona, status
):
    response = client_for(request, persona).get(ENDPOINTS[endpoint](world))
    assert response.status_code == status, response.content
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Token"
        assert response.json() == {
            "message": "Authentication credentials were not provided.",
            "extra": {},
        }
    if status == 404:
        assert response.json() == {
            "message": "Account {id} not found.".format(id=world["account_a"].pk)
            if endpoint == "account-of-team-a"
            else "Not found.",
            "extra": {},
        }


@pytest.mark.parametrize(
    ("persona", "accounts", "households"),
    [
        ("outsider", [], []),
        ("pm", ["account_a"], ["household_a"]),
        ("other_pm", ["account_b"], ["household_b"]),
        ("ops", ["account_a", "account_b"], ["household_a", "household_b"]),
        ("compliance", ["account_a", "account_b"], ["household_a", "household_b"]),
        ("admin_user", ["account_a", "account_b"], ["household_a", "household_b"]),
    ],
)
def test_lists_show_each_persona_only_the_accounts_and_households_of_their_team(
    request, world, household_b, persona, accounts, households
):
    client = client_for(request, persona)
    objects = {**world, "household_b": household_b}
    listed = client.get("/api/v1/accounts/").json()
    assert listed["count"] == len(accounts)
    assert [row["id"] for row in listed["results"]] == [objects[a].pk for a in accounts]
    listed = client.get("/api/v1/households/").json()
    assert [row["id"] for row in listed["results"]] == [objects[h].pk for h in households]


def test_an_unknown_account_id_answers_404_like_an_invisible_one(request, world):
    client = client_for(request, "pm")
    assert client.get("/api/v1/accounts/999999/").json() == {
        "message": "Account 999999 not found.",
        "extra": {},
    }
    assert client.get("/api/v1/accounts/not-a-number/").status_code == 404


def test_the_api_is_read_only_apart_from_the_account_patch(request, world):
    client = client_for(request, "admin_user")
    assert client.post("/api/v1/accounts/", {"name": "x"}).status_code == 405
    assert client.delete(f"/api/v1/accounts/{world['account_a'].pk}/").status_code == 405
    assert client.put(f"/api/v1/accounts/{world['account_a'].pk}/", {}).status_code == 405
    assert client.patch(f"/api/v1/households/{world['household_a'].pk}/", {}).status_code == 405
    assert client.post("/api/v1/securities/", {"ticker": "X"}).status_code == 403


# ---------------------------------------------------------------------------
# Account detail, households, reference data
# ---------------------------------------------------------------------------


def test_account_detail_has_holdings_lots_and_the_latest_drift_snapshot(request, world):
    account = world["account_a"]
    for minutes_ago, drift in [(60, 0.08), (5, 0.03)]:
        DriftSnapshot.objects.create(
            account=account,
            scanned_at=timezone.now() - timedelta(minutes=minutes_ago),
            total_value=Decimal("2500"),
            total_drift=drift,
            max_drift=drift,
            cash_drift=0.0,
            breach_count=1,
            is_latest=minutes_ago == 5,
        )
    body = client_for(request, "pm").get(f"/api/v1/accounts/{account.pk}/").json()
    assert body["household_name"] == "Alpha Family"
    assert body["team"] == "Team A"
    # 10 AAPL at 150 plus 1,000 cash
    assert body["holdings"]["total_value"] == "2500.00"
    assert body["holdings"]["cash_weight"] == pytest.approx(0.4)
    [holding] = body["holdings"]["holdings"]
    assert (holding["ticker"], holding["quantity"], holding["market_value"]) == (
        "AAPL",
        "10.000000",
        "1500.00",
    )
    assert holding["weight"] == pytest.approx(0.6)
    assert holding["unrealized"] == "700.00"
    [lot] = body["lots"]
    assert (lot["ticker"], lot["quantity"], lot["cost_basis"], lot["acquired_on"]) == (
        "AAPL",
        "10.000000",
        "80.000000",
        "2024-01-02",
    )
    assert body["latest_drift"]["total_drift"] == pytest.approx(0.03)


def test_account_detail_latest_drift_is_null_before_any_scan(request, world):
    body = client_for(request, "pm").get(f"/api/v1/accounts/{world['account_a'].pk}/").json()
    assert body["latest_drift"] is None


def test_household_detail_lists_its_account_ids(request, world):
    household = world["household_a"]
    second = factories.AccountFactory(household=household)
    body = client_for(request, "pm").get(f"/api/v1/households/{household.pk}/").json()
    assert body == {
        "id": household.pk,
        "name": "Alpha Family",
        "team": "Team A",
        "created_at": body["created_at"],
        "accounts": sorted([world["account_a"].pk, second.pk]),
    }


def test_model_shows_its_current_version_and_the_versions_action_lists_all(request, world):
    client = client_for(request, "pm")
    body = client.get(f"/api/v1/models/{world['model'].pk}/").json()
    current = body["current_version"]
    assert (current["version"], current["is_current"], current["cash_target"]) == (
        2,
        True,
        "0.050000",
    )
    assert [(t["ticker"], t["weight"]) for t in current["targets"]] == [("AAPL", "0.950000")]
    versions = client.get(f"/api/v1/models/{world['model'].pk}/versions/").json()
    assert [(v["version"], v["is_current"], v["note"]) for v in versions] == [
        (2, True, "second"),
        (1, False, "first"),
    ]


def test_securities_carry_their_latest_price(request, world):
    body = client_for(request, "ops").get("/api/v1/securities/?ticker=aapl").json()
    assert [(s["ticker"], s["latest_price"]) for s in body["results"]] == [("AAPL", "150.000000")]


def test_prices_filter_by_ticker_and_date_range(request, world):
    security = world["security"]
    other = factories.SecurityFactory(ticker="MSFT")
    for day, price in [(20, "140"), (21, "145"), (23, "148")]:
        factories.PriceFactory(security=security, as_of=f"2026-11-{day}", price=Decimal(price))
        factories.PriceFactory(security=other, as_of=f"2026-11-{day}", price=Decimal("400"))
    client = client_for(request, "pm")
    body = client.get("/api/v1/prices/?ticker=AAPL&date_from=2026-11-21&date_to=2026-11-23").json()
    assert [(p["ticker"], p["as_of"], p["price"]) for p in body["results"]] == [
        ("AAPL", "2026-11-23", "148.000000"),
        ("AAPL", "2026-11-21", "145.000000"),
    ]
    bad = client.get("/api/v1/prices/?date_from=yesterday")
    assert bad.status_code == 400
    assert bad.json() == {
        "message": "Invalid input.",
        "extra": {"fields": {"date_from": ["Enter a valid date."]}},
    }


# ---------------------------------------------------------------------------
# Account filters and query counts
# ---------------------------------------------------------------------------


@pytest.fixture
def team_a_accounts(household_a, team_a):
    """Accounts of team A that differ in one attribute each, for the filters."""
    model = factories.ModelPortfolioFactory(name="Balanced")
    other_household = factories.HouseholdFactory(name="Gamma Trust")
    from portfolios.services import household_assign_team

    household_assign_team(household=other_household, team=team_a, actor="system:test")
    return {
        "plain": factories.AccountFactory(
            household=household_a, name="Plain", account_number="P-1"
        ),
        "ira": factories.AccountFactory(
            household=household_a,
            name="Retirement",
            registration_type=RegistrationType.IRA,
            taxable=False,
        ),
        "frozen": factories.AccountFactory(
            household=household_a, name="Frozen one", status=AccountStatus.FROZEN
        ),
        "modelled": factories.AccountFactory(household=household_a, name="Modelled", model=model),
        "gamma": factories.AccountFactory(household=other_household, name="Gamma main"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=frozen", ["frozen"]),
        ("registration_type=ira", ["ira"]),
        ("taxable=false", ["ira"]),
        ("model={model}", ["modelled"]),
        ("household={gamma_household}", ["gamma"]),
        ("search=gamma", ["gamma"]),
        ("search=P-1", ["plain"]),
        ("search=retire", ["ira"]),
        ("team=Team%20B", []),
    ],
)
def test_account_filters_narrow_the_list(
    request, team_a_accounts, other_pm, account_b, query, expected
):
    query = query.format(
        model=team_a_accounts["modelled"].model_id,
        gamma_household=team_a_accounts["gamma"].household_id,
    )
    body = client_for(request, "pm").get(f"/api/v1/accounts/?{query}").json()
    assert sorted(row["id"] for row in body["results"]) == sorted(
        team_a_accounts[name].pk for name in expected
    )


def test_account_team_filter_is_within_what_the_user_may_see(request, account_a, account_b):
    client = client_for(request, "ops")
    body = client.get("/api/v1/accounts/?team=Team%20B").json()
    assert [row["id"] for row in body["results"]] == [account_b.pk]
    # a PM of team A asking for team B's accounts gets none, not team B's
    body = client_for(request, "pm").get("/api/v1/accounts/?team=Team%20B").json()
    assert body["results"] == []


def _make_accounts(household, model, count: int) -> None:
    security = factories.SecurityFactory(ticker="QCNT")
    for _ in range(count):
        account = factories.AccountFactory(household=household, model=model)
        factories.TaxLotFactory(account=account, security=security)


@pytest.mark.parametrize("count", [2, 30])
@pytest.mark.parametrize("persona", ["pm", "ops"])
def test_account_list_runs_a_constant_number_of_queries(
    request, household_a, persona, count, django_assert_max_num_queries
):
    model = factories.ModelPortfolioFactory(name="Counted")
    _make_accounts(household_a, model, count)
    client = client_for(request, persona)
    with django_assert_max_num_queries(8):
        body = client.get("/api/v1/accounts/").json()
    assert body["count"] == count


@pytest.mark.parametrize("count", [2, 30])
def test_household_and_model_lists_run_a_constant_number_of_queries(
    request, household_a, security, count, admin_user, django_assert_max_num_queries
):
    for n in range(count):
        household = factories.HouseholdFactory()
        factories.AccountFactory(household=household)
        model = factories.ModelPortfolioFactory()
        model_version_create(
            model=model,
            targets=[TargetSpec(security.pk, Decimal("1"))],
            cash_target=Decimal("0"),
            actor=admin_user,
            note=f"v{n}",
        )
    client = client_for(request, "ops")
    with django_assert_max_num_queries(8):
        assert client.get("/api/v1/households/").status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get("/api/v1/models/").status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get("/api/v1/securities/").status_code == 200


# ---------------------------------------------------------------------------
# PATCH: audited, permission-checked, all-or-nothing
# ---------------------------------------------------------------------------


def test_the_patch_serializer_covers_exactly_the_editable_account_fields():
    assert set(AccountUpdateSerializer().fields) - {"reason"} == set(ACCOUNT_EDITABLE_FIELDS)


def test_account_patch_by_its_pm_is_saved_and_audited_with_before_and_after(request, world, pm):
    account, model = world["account_a"], world["model"]
    response = client_for(request, "pm").patch(
        f"/api/v1/accounts/{account.pk}/",
        {"cash_reserve": "250.00", "model": model.pk, "reason": "Client moved to Core Equity."},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["cash_reserve"], body["model"], body["model_name"]) == (
        "250.00",
        model.pk,
        "Core Equity",
    )
    assert "holdings" in body
    account.refresh_from_db()
    assert (account.cash_reserve, account.model_id) == (Decimal("250.00"), model.pk)
    event = AuditEvent.objects.get(action="account.update")
    assert (event.actor, event.object_type, event.object_id) == (
        pm,
        "portfolios.account",
        str(account.pk),
    )
    assert event.before == {"cash_reserve": "0.00", "model": None}
    assert event.after == {"cash_reserve": "250.00", "model": model.pk}
    assert event.reason == "Client moved to Core Equity."
    assert event.request_id == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("anonymous", 401),
        ("outsider", 404),
        ("other_pm", 404),
        ("ops", 403),
        ("compliance", 403),
        ("admin_user", 200),
    ],
)
def test_account_patch_needs_change_permission_on_the_household(request, world, persona, status):
    account = world["account_a"]
    response = client_for(request, persona).patch(
        f"/api/v1/accounts/{account.pk}/", {"auto_propose": True}, format="json"
    )
    assert response.status_code == status
    if status == 403:
        assert response.json() == {
            "message": ACCOUNT_CHANGE_FORBIDDEN.format(id=account.pk),
            "extra": {},
        }
    account.refresh_from_db()
    assert account.auto_propose is (status == 200)
    assert AuditEvent.objects.filter(action="account.update").count() == (status == 200)


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"cash_reserve": "abc"}, {"cash_reserve": ["A valid number is required."]}),
        (
            {"min_trade_amount": "-5"},
            {"min_trade_amount": ["Ensure this value is greater than or equal to 0."]},
        ),
        (
            {"st_tax_rate": "1.5"},
            {"st_tax_rate": ["Ensure this value is less than or equal to 1."]},
        ),
        ({"status": "deleted"}, {"status": ['"deleted" is not a valid choice.']}),
        ({"model": 999999}, {"model": ['Invalid pk "999999" - object does not exist.']}),
        ({"colour": "blue"}, {"colour": [UNKNOWN_FIELD]}),
        ({"cash_balance": "1000000"}, {"cash_balance": [UNKNOWN_FIELD]}),
        # one bad field spoils the whole request: the valid name is not saved either
        (
            {"name": "Renamed", "cash_reserve": "abc"},
            {"cash_reserve": ["A valid number is required."]},
        ),
    ],
)
def test_malformed_account_patch_is_refused_and_changes_nothing(request, world, payload, errors):
    account = world["account_a"]
    before = Account.objects.filter(pk=account.pk).values().get()
    response = client_for(request, "pm").patch(
        f"/api/v1/accounts/{account.pk}/", payload, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid input.", "extra": {"fields": errors}}
    assert Account.objects.filter(pk=account.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="account.update").exists()


def test_account_patch_that_changes_nothing_writes_no_audit_event(request, world):
    account = world["account_a"]
    response = client_for(request, "pm").patch(
        f"/api/v1/accounts/{account.pk}/", {"name": account.name}, format="json"
    )
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="account.update").exists()
