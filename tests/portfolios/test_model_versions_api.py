"""Editing a model through the API creates a new version; the old one stays readable."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from portfolios.services import TargetSpec, model_version_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def core_model(admin_user):
    model = factories.ModelPortfolioFactory(name="Core")
    a = factories.SecurityFactory(ticker="AAA")
    b = factories.SecurityFactory(ticker="BBB")
    model_version_create(
        model=model,
        targets=[TargetSpec(a.pk, Decimal("0.5")), TargetSpec(b.pk, Decimal("0.48"))],
        cash_target=Decimal("0.02"),
        actor=admin_user,
    )
    return model


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


NEW_VERSION = {
    "cash_target": "0.03",
    "note": "less BBB",
    "targets": [
        {"ticker": "AAA", "weight": "0.60", "abs_band": "0.02"},
        {"ticker": "bbb", "weight": "0.37", "rel_band": "0.25"},
    ],
}


def test_admin_creates_a_new_current_version_and_the_old_stays_readable(admin_user, core_model):
    response = _client(admin_user).post(
        f"/api/v1/models/{core_model.pk}/versions/", NEW_VERSION, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["version"], body["is_current"], body["note"]) == (2, True, "less BBB")
    versions = _client(admin_user).get(f"/api/v1/models/{core_model.pk}/versions/").json()
    assert [(v["version"], v["is_current"]) for v in versions] == [(2, True), (1, False)]
    assert {t["ticker"]: t["weight"] for t in versions[1]["targets"]} == {
        "AAA": "0.500000",
        "BBB": "0.480000",
    }
    assert AuditEvent.objects.filter(action="model.version_create", reason="less BBB").exists()


def test_weights_not_summing_to_100_percent_are_refused_and_nothing_changes(admin_user, core_model):
    bad = {**NEW_VERSION, "cash_target": "0.10"}
    response = _client(admin_user).post(
        f"/api/v1/models/{core_model.pk}/versions/", bad, format="json"
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Model 'Core' weights sum to 107.0000% including cash; "
        "they must sum to 100% (within 0.01%)."
    )
    assert core_model.versions.count() == 1


def test_unknown_tickers_are_named(admin_user, core_model):
    bad = {**NEW_VERSION, "targets": [{"ticker": "NOPE", "weight": "0.97"}]}
    response = _client(admin_user).post(
        f"/api/v1/models/{core_model.pk}/versions/", bad, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "Model 'Core': unknown tickers: NOPE.",
        "extra": {"unknown_tickers": ["NOPE"]},
    }


@pytest.mark.parametrize("persona", ["pm", "ops", "compliance"])
def test_roles_without_the_model_permission_may_not_edit_models(request, persona, core_model):
    user = request.getfixturevalue(persona)
    response = _client(user).post(
        f"/api/v1/models/{core_model.pk}/versions/", NEW_VERSION, format="json"
    )
    assert response.status_code == 403
    assert response.json()["message"] == "Your role may not edit model portfolios."
    assert core_model.versions.count() == 1
