"""Signing in and out: the login page, audit of successes and failures, the lockout after
repeated failures (django-axes), and logout by POST only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from compliance.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

BAD_LOGIN = (
    "Please enter a correct username and password. Note that both fields may be case-sensitive."
)
LOCKED_OUT = (
    "This account is locked after too many failed sign-in attempts. Try again in 15 minutes or "
    "ask an administrator."
)


def _login(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_login_page_has_labelled_fields_and_a_csrf_token(client):
    html = client.get(reverse("login")).content.decode()
    assert '<label for="id_username">Username' in html
    assert '<label for="id_password">Password' in html
    assert 'autocomplete="current-password"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_login_without_a_csrf_token_is_refused(pm):
    client = Client(enforce_csrf_checks=True)
    response = _login(client, "pm", PASSWORD)
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_login_with_the_right_password_goes_home_and_is_audited(client, pm):
    response = _login(client, "pm", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    event = AuditEvent.objects.get(action="auth.login")
    assert (event.actor, event.object_id) == (pm, str(pm.pk))


def test_login_follows_next_to_the_page_asked_for(client, pm):
    next_url = reverse("portfolios:account_list")
    response = client.post(
        reverse("login"), {"username": "pm", "password": PASSWORD, "next": next_url}
    )
    assert response["Location"] == next_url


def test_login_with_a_wrong_password_shows_the_error_and_is_audited(client, pm):
    response = _login(client, "pm", "wrong-password")
    assert response.status_code == 200
    html = response.content.decode()
    assert BAD_LOGIN in html
    assert 'aria-invalid="true"' in html
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert (event.actor_label, event.object_id) == ("anonymous:pm", "pm")
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_login_is_locked_after_five_failures_even_with_the_right_password(client, pm):
    for _ in range(4):
        assert _login(client, "pm", "wrong-password").status_code == 200
    fifth = _login(client, "pm", "wrong-password")
    assert fifth.status_code == 429
    response = _login(client, "pm", PASSWORD)
    assert response.status_code == 429
    assert LOCKED_OUT in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.login_failed").count() >= 5


def test_lockout_of_one_user_does_not_lock_another(client, pm, ops):
    for _ in range(5):
        _login(client, "pm", "wrong-password")
    assert _login(client, "ops", PASSWORD).status_code == 302


def test_login_page_sends_a_signed_in_user_home(client, pm):
    client.force_login(pm)
    response = client.get(reverse("login"))
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_logout_by_get_is_refused(client, pm):
    client.force_login(pm)
    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session


def test_logout_by_post_signs_out_and_returns_to_login(client, pm):
    client.force_login(pm)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.logout", actor=pm).exists()


def test_every_page_has_a_logout_button_posting_with_csrf(client, pm):
    client.force_login(pm)
    html = client.get(reverse("home")).content.decode()
    assert '<form method="post" action="/logout/">' in html
    assert 'name="csrfmiddlewaretoken"' in html
