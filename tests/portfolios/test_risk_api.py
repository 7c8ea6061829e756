"""Risk model API: who may read it (every role; anonymous 401; a user without a role 403),
the list without arrays, one version and the current one with arrays keyed by ticker, 404s
with their message, no writes, and a list whose query count does not grow with its rows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from rest_framework.test import APIClient

from portfolios.api.risk import NO_CURRENT_MODEL
from portfolios.models import RiskModel
from portfolios.services.risk import risk_model_build
from tests.portfolios.test_risk_service import BETAS, MIN_OBS, WINDOW, build_market

pytestmark = pytest.mark.django_db

LIST = "/api/v1/risk-models/"
CURRENT = "/api/v1/risk-models/current/"
ROLE_MESSAGE = "Your role does not allow reading this data."


@pytest.fixture
def model(settings) -> RiskModel:
    settings.RISK_FACTOR_TICKERS = ["MTUM", "QUAL"]
    settings.RISK_MODEL_WINDOW = WINDOW
    settings.RISK_MODEL_MIN_OBSERVATIONS = MIN_OBS
    build_market(short=20)
    return risk_model_build()


def _client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _urls(model: RiskModel) -> list[str]:
    return [LIST, f"{LIST}{model.pk}/", CURRENT]


@pytest.mark.parametrize("persona", ["pm", "other_pm", "ops", "compliance", "admin_user"])
def test_every_role_may_read_risk_models(request, model, persona):
    client = _client(request.getfixturevalue(persona))

    for url in _urls(model):
        assert client.get(url).status_code == 200, url


def test_anonymous_requests_are_unauthenticated(model):
    for url in _urls(model):
        assert _client().get(url).status_code == 401, url


def test_a_user_without_a_role_is_refused(model, outsider):
    for url in _urls(model):
        response = _client(outsider).get(url)
        assert response.status_code == 403, url
        assert response.json()["message"] == ROLE_MESSAGE


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_risk_models_cannot_be_written_through_the_api(model, admin_user, method):
    client = _client(admin_user)

    response = getattr(client, method)(f"{LIST}{model.pk}/", {}, format="json")
    listed = getattr(client, method)(LIST, {}, format="json")

    assert (response.status_code, listed.status_code) == (403, 403)
    assert RiskModel.objects.count() == 1


def test_the_list_summarises_each_version_without_its_arrays(model, pm):
    body = _client(pm).get(LIST).json()

    assert body["count"] == 1
    (row,) = body["results"]
    assert row == {
        "id": model.pk,
        "version": 1,
        "as_of": "2026-11-24",
        "is_current": True,
        "method": "etf_factor_regression",
        "window": WINDOW,
        "min_observations": MIN_OBS,
        "factors": ["MTUM", "QUAL"],
        "securities": 5,
        "fallback_count": 1,
        "created_at": row["created_at"],
    }


def test_one_version_has_its_raw_arrays_and_rows_keyed_by_ticker(model, pm):
    body = _client(pm).get(f"{LIST}{model.pk}/").json()

    assert body["security_ids"] == model.security_ids
    assert body["exposures"] == model.exposures
    assert body["specific_var"] == model.specific_var
    assert body["factor_cov"] == model.factor_cov
    assert body["fallbacks"] == model.fallbacks
    assert set(body["by_ticker"]) == {"MTUM", "QUAL", "AAA", "BBB", "NEW"}
    aaa = body["by_ticker"]["AAA"]
    assert list(aaa["exposures"]) == ["MTUM", "QUAL"]
    np.testing.assert_allclose(list(aaa["exposures"].values()), BETAS["AAA"], atol=1e-3)
    assert aaa["fallback"] is None
    assert body["by_ticker"]["MTUM"]["exposures"] == {"MTUM": 1.0, "QUAL": 0.0}
    new = body["by_ticker"]["NEW"]
    assert new["fallback"] == model.fallbacks[str(new["security"])]
    assert new["exposures"] == {"MTUM": 0.0, "QUAL": 0.0}


def test_current_answers_the_model_the_optimizer_uses(model, pm):
    newer = risk_model_build(force=True)

    body = _client(pm).get(CURRENT).json()

    assert (body["id"], body["version"], body["is_current"]) == (newer.pk, 2, True)
    older = _client(pm).get(f"{LIST}{model.pk}/").json()
    assert (older["version"], older["is_current"]) == (1, False)


def test_current_is_404_with_a_message_before_the_first_build(pm):
    response = _client(pm).get(CURRENT)

    assert response.status_code == 404
    assert response.json()["message"] == NO_CURRENT_MODEL
    assert NO_CURRENT_MODEL == (
        "No risk model has been built yet: import prices or run manage.py risk_model."
    )


@pytest.mark.parametrize("pk", ["999999", "abc"])
def test_an_unknown_version_is_404_with_a_message(model, pm, pk):
    response = _client(pm).get(f"{LIST}{pk}/")

    assert response.status_code == 404
    assert response.json()["message"] == f"Risk model {pk} not found."


def _stored(version: int) -> RiskModel:
    return RiskModel.objects.create(
        version=version,
        as_of=date(2026, 1, 1),
        is_current=False,
        window=252,
        min_observations=60,
        factors=["MTUM"],
        factor_cov=[[0.04]],
        security_ids=list(range(1, 301)),
        exposures=[[1.0]] * 300,
        specific_var=[0.01] * 300,
    )


@pytest.mark.parametrize("rows", [1, 20])
def test_the_list_takes_the_same_few_queries_whatever_its_length(
    pm, rows, django_assert_max_num_queries
):
    for version in range(1, rows + 1):
        _stored(version)
    client = _client(pm)

    with django_assert_max_num_queries(4):
        body = client.get(LIST).json()

    assert body["count"] == rows
