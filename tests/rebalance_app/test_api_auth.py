"""API authentication: token issue and use, 401 for anonymous callers, and the django-axes
lockout applying to the token endpoint as it does to the login page."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
BAD_CREDENTIALS = {
    "message": "Invalid input.",
    "extra": {"fields": {"non_field_errors": ["Unable to log in with provided credentials."]}},
}


def test_token_endpoint_issues_a_token_that_authenticates_api_calls(pm, account_a):
    client = APIClient()
    response = client.post(TOKEN_URL, {"username": "pm", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["token"]
    assert token == Token.objects.get(user=pm).key
    assert AuditEvent.objects.filter(action="auth.token", actor=pm).count() == 1
    listed = APIClient().get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Token {token}")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [account_a.pk]


def test_token_endpoint_refuses_a_wrong_password_with_a_400(pm):
    response = APIClient().post(TOKEN_URL, {"username": "pm", "password": "not-it"})
    assert response.status_code == 400
    assert response.json() == BAD_CREDENTIALS
    assert not Token.objects.filter(user=pm).exists()
    assert AuditEvent.objects.filter(action="auth.login_failed", object_id="pm").count() == 1


def test_token_endpoint_needs_both_fields(pm):
    response = APIClient().post(TOKEN_URL, {"username": "pm"})
    assert response.status_code == 400
    assert response.json() == {
        "message": "Invalid input.",
        "extra": {"fields": {"password": ["This field is required."]}},
    }


def test_anonymous_api_calls_get_401_with_a_token_challenge(account_a):
    response = APIClient().get("/api/v1/accounts/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert response.json() == {
        "message": "Authentication credentials were not provided.",
        "extra": {},
    }


def test_an_unknown_token_is_refused_with_401(account_a):
    response = APIClient().get("/api/v1/accounts/", HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid token.", "extra": {}}


def test_lockout_after_repeated_failures_refuses_even_the_right_password(pm, ops):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(TOKEN_URL, {"username": "pm", "password": "guess"}).status_code == 400
    # the failure that reaches the limit is answered with the lockout, like the login page
    assert client.post(TOKEN_URL, {"username": "pm", "password": "guess"}).status_code == 429
    response = client.post(TOKEN_URL, {"username": "pm", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json() == {
        "message": "This account is locked after too many failed sign-in attempts. "
        "Try again in 15 minutes or ask an administrator.",
        "extra": {},
    }
    assert not Token.objects.filter(user=pm).exists()
    # every attempt, the refused right one included, is on the audit trail
    failures = AuditEvent.objects.filter(action="auth.login_failed", object_id="pm").count()
    assert failures == settings.AXES_FAILURE_LIMIT + 1
    # the lockout is per username: another user still gets a token
    assert client.post(TOKEN_URL, {"username": "ops", "password": PASSWORD}).status_code == 200


def test_failures_below_the_limit_do_not_lock_the_user_out(pm):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(TOKEN_URL, {"username": "pm", "password": "guess"})
    assert client.post(TOKEN_URL, {"username": "pm", "password": PASSWORD}).status_code == 200
