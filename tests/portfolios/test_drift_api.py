"""The drift API: who sees which snapshots and scans (a generated permission matrix), who may
scan what, the filters, the 202 answer of a scan request and a constant number of queries."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from rest_framework.test import APIClient

from portfolios.models import DriftScan, DriftSnapshot
from rebalance_app.celery import app
from tests.portfolios.test_drift_service import build_firm, run_scan

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "outsider", "pm", "other_pm", "ops", "compliance", "admin_user"]
NOT_FOUND = {"message": "One or more of the accounts to scan were not found.", "extra": {}}
FORBIDDEN = {"message": "Only Ops, Compliance or Admin users may scan the whole firm.", "extra": {}}


def client_for(request: pytest.FixtureRequest, persona: str) -> APIClient:
    client = APIClient()
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


@pytest.fixture
def firm(household_a, household_b):
    firm = build_firm(household_a, household_b)
    firm.scan = run_scan()
    return firm


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> SimpleNamespace:
        calls.append((name, list(args or [])))
        return SimpleNamespace(id=options.get("task_id"))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def team_a_ids(firm) -> set[int]:
    return set(
        DriftSnapshot.objects.filter(account__household__team__name="Team A").values_list(
            "pk", flat=True
        )
    )


# ---------------------------------------------------------------------------
# Snapshots: who sees what
# ---------------------------------------------------------------------------

SNAPSHOT_LIST = {
    "anonymous": (401, None),
    "outsider": (200, "none"),
    "pm": (200, "team_a"),
    "other_pm": (200, "team_b"),
    "ops": (200, "all"),
    "compliance": (200, "all"),
    "admin_user": (200, "all"),
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_snapshot_list_shows_each_persona_only_what_they_may_see(request, firm, persona):
    status, scope = SNAPSHOT_LIST[persona]

    response = client_for(request, persona).get("/api/v1/drift-snapshots/?page_size=100")

    assert response.status_code == status
    if scope is None:
        return
    ids = {row["id"] for row in response.json()["results"]}
    everything = set(DriftSnapshot.objects.values_list("pk", flat=True))
    expected = {
        "none": set(),
        "team_a": team_a_ids(firm),
        "team_b": everything - team_a_ids(firm),
        "all": everything,
    }[scope]
    assert ids == expected
    assert len(expected) in (0, 2, 6, 8)


SNAPSHOT_DETAIL = {
    "anonymous": 401,
    "outsider": 404,
    "pm": 200,
    "other_pm": 404,
    "ops": 200,
    "compliance": 200,
    "admin_user": 200,
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_a_team_a_snapshot_is_404_to_everyone_who_may_not_see_team_a(request, firm, persona):
    snap = DriftSnapshot.objects.get(account=firm.acc.breached)

    response = client_for(request, persona).get(f"/api/v1/drift-snapshots/{snap.pk}/")

    assert response.status_code == SNAPSHOT_DETAIL[persona]


def test_a_snapshot_detail_lists_its_per_security_rows(request, firm):
    snap = DriftSnapshot.objects.get(account=firm.acc.breached)

    body = client_for(request, "pm").get(f"/api/v1/drift-snapshots/{snap.pk}/").json()

    assert (body["account"], body["breach_count"], body["breached"]) == (
        firm.acc.breached.pk,
        2,
        True,
    )
    rows = {(p["ticker"], p["breached"]) for p in body["positions"]}
    assert rows == {("AAA", True), ("BBB", True), (None, False)}


@pytest.mark.parametrize(
    ("query", "accounts"),
    [
        ("breached=true", {"breached", "outside"}),
        ("breached=false&is_latest=true", {"on_target", "no_model", "broken", "empty"}),
        ("account={on_target}", {"on_target"}),
        ("date_from=2000-01-01&date_to=2999-01-01&breached=true", {"breached", "outside"}),
        ("date_to=2000-01-01", set()),
    ],
)
def test_snapshot_filters(request, firm, query, accounts):
    names = {a.pk: name for name, a in vars(firm.acc).items()}
    url = "/api/v1/drift-snapshots/?" + query.format(on_target=firm.acc.on_target.pk)

    response = client_for(request, "pm").get(url)

    assert response.status_code == 200
    assert {names[row["account"]] for row in response.json()["results"]} == accounts


def test_a_malformed_filter_is_a_400_naming_the_field(request, firm):
    response = client_for(request, "pm").get("/api/v1/drift-snapshots/?date_from=yesterday")

    assert response.status_code == 400
    assert response.json()["message"] == "Invalid input."
    assert "date_from" in response.json()["extra"]["fields"]


def test_the_snapshot_list_runs_a_constant_number_of_queries(
    request, firm, django_assert_max_num_queries
):
    client = client_for(request, "ops")
    client.get("/api/v1/drift-snapshots/")  # warm the session and permission caches
    with django_assert_max_num_queries(8) as small:
        client.get("/api/v1/drift-snapshots/")
    for _ in range(3):
        run_scan()
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get("/api/v1/drift-snapshots/")
    assert response.json()["count"] == 32


# ---------------------------------------------------------------------------
# Scans: who may request what
# ---------------------------------------------------------------------------

FIRM_SCAN = {
    "anonymous": (401, None),
    "outsider": (403, FORBIDDEN),
    "pm": (403, FORBIDDEN),
    "other_pm": (403, FORBIDDEN),
    "ops": (202, None),
    "compliance": (202, None),
    "admin_user": (202, None),
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_only_firm_wide_roles_may_scan_the_whole_firm(request, firm, sent, persona):
    status, body = FIRM_SCAN[persona]
    before = DriftScan.objects.count()

    response = client_for(request, persona).post("/api/v1/drift-scans/", {}, format="json")

    assert response.status_code == status
    if body is not None:
        assert response.json() == body
    assert DriftScan.objects.count() == before + (1 if status == 202 else 0)


ACCOUNT_SCAN = {
    "anonymous": 401,
    "outsider": 404,
    "pm": 202,
    "other_pm": 404,
    "ops": 202,
    "compliance": 202,
    "admin_user": 202,
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_scanning_a_team_a_account_is_404_to_everyone_who_may_not_see_it(
    request, firm, sent, persona
):
    client = client_for(request, persona)

    response = client.post(
        "/api/v1/drift-scans/", {"account_ids": [firm.acc.breached.pk]}, format="json"
    )

    assert response.status_code == ACCOUNT_SCAN[persona]
    if response.status_code == 404:
        assert response.json() == NOT_FOUND


def test_a_scan_of_a_visible_and_an_invisible_account_is_refused_whole(request, firm, sent):
    response = client_for(request, "pm").post(
        "/api/v1/drift-scans/",
        {"account_ids": [firm.acc.breached.pk, firm.acc.stale.pk]},
        format="json",
    )

    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert DriftScan.objects.count() == 1  # the fixture's own scan


@pytest.mark.django_db(transaction=True)
def test_a_scan_request_answers_202_with_the_task_id_and_where_to_follow_it(request, firm, sent):
    # Committed for real (no test transaction around the request), as in production: the
    # task is sent when the request's transaction commits, before the answer is written.
    response = client_for(request, "pm").post(
        "/api/v1/drift-scans/", {"account_ids": [firm.acc.breached.pk]}, format="json"
    )

    assert response.status_code == 202
    scan = DriftScan.objects.latest("pk")
    body = response.json()
    assert body == {
        "scan": scan.pk,
        "task_id": scan.task_id,
        "status_url": f"http://testserver/api/v1/drift-scans/{scan.pk}/",
    }
    assert len(scan.task_id) == 36
    assert response["Location"] == body["status_url"]
    assert sent == [("portfolios.drift_scan", [scan.pk])]
    assert (scan.trigger, scan.account_ids) == ("manual", [firm.acc.breached.pk])


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"account_ids": []}, "account_ids"), ({"account_ids": ["x"]}, "account_ids")],
)
def test_a_malformed_scan_request_is_a_400(request, firm, sent, payload, field):
    response = client_for(request, "ops").post("/api/v1/drift-scans/", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]


SCAN_STATUS = {
    "anonymous": 401,
    "outsider": 404,
    "pm": 200,
    "other_pm": 404,
    "ops": 200,
    "compliance": 200,
    "admin_user": 200,
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_a_pms_scan_can_be_followed_by_them_and_by_firm_wide_roles(request, firm, sent, persona):
    pm = request.getfixturevalue("pm")
    scan = run_scan([firm.acc.breached.pk], actor=pm)

    response = client_for(request, persona).get(f"/api/v1/drift-scans/{scan.pk}/")

    assert response.status_code == SCAN_STATUS[persona]


def test_scan_status_reports_progress_and_unscannable_reasons(request, firm):
    body = client_for(request, "ops").get(f"/api/v1/drift-scans/{firm.scan.pk}/").json()

    assert body["status"] == "succeeded"
    assert (body["chunks_total"], body["chunks_done"]) == (1, 1)
    assert (body["accounts_total"], body["accounts_scanned"], body["accounts_unscannable"]) == (
        8,
        3,
        5,
    )
    assert (body["accounts_breached"], body["alerts_raised"]) == (2, 2)
    assert body["unscannable"][str(firm.acc.no_model.pk)] == "Account has no model"
    assert body["account_ids"] is None
