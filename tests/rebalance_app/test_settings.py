"""Settings read from the environment: production defaults pass ``check --deploy``, and a
missing or malformed value stops the process at start with a message naming it."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
SETUP = "import django; django.setup()"
NO_SECRET_KEY = (
    "ImproperlyConfigured: SECRET_KEY is not set. Set SECRET_KEY (50+ random characters) or "
    "DEBUG=1 for local development."
)


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run our interpreter with only ``env`` (plus PATH and the settings module) set."""
    clean_env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "rebalance_app.settings",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, *args],
        cwd=BASE_DIR,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deploy_check():
    result = run_python(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="rebalance.example.com",
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_python("-c", SETUP)

    assert result.returncode != 0
    assert NO_SECRET_KEY in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DEBUG",
            "maybe",
            "ImproperlyConfigured: DEBUG='maybe' is not a boolean: use one of true, on, ok, y, "
            "yes, 1, false, off, no, n, 0.",
        ),
        (
            "AXES_FAILURE_LIMIT",
            "abc",
            "ImproperlyConfigured: AXES_FAILURE_LIMIT='abc' is not a valid int: invalid literal "
            "for int() with base 10: 'abc'",
        ),
        (
            "LOG_JSON",
            "sometimes",
            "ImproperlyConfigured: LOG_JSON='sometimes' is not a boolean: use one of true, on, "
            "ok, y, yes, 1, false, off, no, n, 0.",
        ),
    ],
)
def test_a_malformed_value_stops_the_process_naming_the_variable(variable, value, message):
    env = {"SECRET_KEY": secrets.token_urlsafe(64), variable: value}

    result = run_python("-c", SETUP, **env)

    assert result.returncode != 0
    assert message in result.stderr


def test_debug_accepts_the_usual_spellings_of_yes_and_no():
    code = f"{SETUP}; from django.conf import settings; print(settings.DEBUG)"
    answers = {
        spelling: run_python("-c", code, DEBUG=spelling, SECRET_KEY="k" * 50).stdout.strip()
        for spelling in ("1", "true", "Yes", "0", "false", "off")
    }

    assert answers == {
        "1": "True",
        "true": "True",
        "Yes": "True",
        "0": "False",
        "false": "False",
        "off": "False",
    }


def test_docs_list_every_environment_variable_the_settings_read():
    source = (BASE_DIR / "rebalance_app" / "settings.py").read_text(encoding="utf-8")
    variables = set(re.findall(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    docs = (BASE_DIR / "docs" / "configuration.md").read_text(encoding="utf-8")

    assert "SECRET_KEY" in variables  # the pattern finds them
    assert sorted(v for v in variables if f"`{v}`" not in docs) == []
