"""The rebalance API: propose one account or many (202 and where to follow it), read runs and
batches, edit a trade, replay, make a basket; every endpoint with its permission boundary."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from portfolios.models import RebalanceRun
from portfolios.services import rebalance as svc
from portfolios.services.rebalance import rebalance_run_execute, rebalance_run_request
from tests.portfolios.rebalance_book import build_book

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/rebalance-runs/"


@pytest.fixture
def book(household_a, household_b):
    return build_book(household_a, household_b)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def done_run(pm: Any, account: Any) -> RebalanceRun:
    run = rebalance_run_request(actor=pm, account_id=account.pk, mode="full", enqueue=False)
    rebalance_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_pm_proposes_one_account_and_gets_where_to_follow_it(
    book, pm, django_capture_on_commit_callbacks, monkeypatch
):
    sent: list[Any] = []
    monkeypatch.setattr("rebalance_app.work._send", lambda m, t, pk: sent.append((t, pk)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(pm).post(
            RUNS, {"account": book.breached.pk, "mode": "full"}, format="json"
        )

    assert response.status_code == 202, response.json()
    run = RebalanceRun.objects.get()
    assert response.json()["run"] == run.pk
    assert response["Location"].endswith(f"{RUNS}{run.pk}/")
    assert sent == [("portfolios.rebalance_run", run.pk)]


@pytest.mark.parametrize(
    ("persona", "status"),
    [(None, 401), ("outsider", 404), ("other_pm", 404), ("ops", 403), ("compliance", 403)],
)
def test_who_may_not_propose(request, book, persona, status):
    user = request.getfixturevalue(persona) if persona else None
    response = client_for(user).post(
        RUNS, {"account": book.breached.pk, "mode": "full"}, format="json"
    )
    assert response.status_code == status
    assert not RebalanceRun.objects.exists()


def test_a_bad_request_answers_400_with_the_message_and_makes_nothing(book, pm):
    response = client_for(pm).post(
        RUNS,
        {"account": book.breached.pk, "mode": "cash_raise", "parameters": {"cash_amount": 1e9}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("Cannot raise $1,000,000,000.00")
    response = client_for(pm).post(RUNS, {"mode": "full"}, format="json")
    assert response.status_code == 400
    assert not RebalanceRun.objects.exists()


def test_a_run_reads_with_trades_metrics_and_hash_and_is_hidden_from_other_teams(
    book, pm, other_pm, ops
):
    run = done_run(pm, book.breached)

    body = client_for(pm).get(f"{RUNS}{run.pk}/").json()
    assert body["status"] == "succeeded"
    assert {t["ticker"] for t in body["trades"]} == {"AAA", "BBB"}
    assert body["metrics"]["total_drift_after"] < body["metrics"]["total_drift_before"]
    assert body["input_hash"] == run.input_hash
    assert client_for(ops).get(f"{RUNS}{run.pk}/").status_code == 200
    assert client_for(other_pm).get(f"{RUNS}{run.pk}/").status_code == 404
    bad = client_for(pm).get(RUNS, {"account": "abc"})
    assert bad.status_code == 400
    assert bad.json()["message"] == "Filter 'account' must be a number (got 'abc')."
    listed = client_for(pm).get(RUNS, {"account": book.breached.pk}).json()
    assert [r["id"] for r in listed["results"]] == [run.pk]
    assert client_for(other_pm).get(RUNS).json()["results"] == []


def test_edit_trade_replay_and_basket_actions(
    book, pm, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("rebalance_app.work._send", lambda m, t, pk: None)
    run = done_run(pm, book.breached)
    client = client_for(pm)

    edited = client.post(
        f"{RUNS}{run.pk}/edit-trade/",
        {"security": book.sec["BBB"].pk, "quantity": "0"},
        format="json",
    )
    assert edited.status_code == 200
    assert [t["ticker"] for t in edited.json()["trades"]] == ["AAA"]

    with django_capture_on_commit_callbacks(execute=True):
        replay = client.post(f"{RUNS}{run.pk}/replay/")
    assert replay.status_code == 202
    assert RebalanceRun.objects.get(pk=replay.json()["run"]).replay_of_id == run.pk

    basket = client.post(f"{RUNS}{run.pk}/basket/")
    assert basket.status_code == 201
    assert basket.json()["orders"] == 1
    assert basket.json()["state"] == "draft"
    again = client.post(f"{RUNS}basket/", {"runs": [run.pk]}, format="json")
    assert again.status_code == 409
    assert again.json()["message"].startswith(f"Run {run.pk} is already in basket")


def test_a_batch_request_answers_202_with_its_progress_url(book, pm, monkeypatch):
    from portfolios.models import DriftSnapshot

    DriftSnapshot.objects.create(account=book.breached, breached=True, is_latest=True)
    monkeypatch.setattr(svc, "_batch_dispatch", lambda b, ids: None)
    response = client_for(pm).post(
        RUNS, {"model": book.core.pk, "mode": "tolerance"}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["runs_total"] == 1
    assert body["skipped"] == []
    progress = client_for(pm).get(body["status_url"]).json()["progress"]
    assert progress["queued"] == 1
    assert progress["finished"] is False


def test_a_batch_is_visible_to_the_creators_teammates_but_not_to_another_team(
    book, pm, team_a, other_pm, monkeypatch
):
    from portfolios.models import DriftSnapshot
    from tests.conftest import _user

    DriftSnapshot.objects.create(account=book.breached, breached=True, is_latest=True)
    monkeypatch.setattr(svc, "_batch_dispatch", lambda b, ids: None)
    batch = client_for(pm).post(RUNS, {"model": book.core.pk, "mode": "full"}, format="json")
    url = batch.json()["status_url"]
    teammate = _user("pm-teammate", "PM", team_a.name)
    assert client_for(teammate).get(url).status_code == 200
    assert client_for(other_pm).get(url).status_code == 404
