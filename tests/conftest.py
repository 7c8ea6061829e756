"""Fixtures shared by the whole suite: personas with their roles and object permissions,
a two-team firm, database and service guards, and the browser set-up.

Personas: ``pm`` (team A), ``other_pm`` (team B), ``ops``, ``ops2``, ``compliance``,
``admin_user`` and ``outsider`` (logged in, no role). Team A owns ``household_a`` with
``account_a``; team B owns ``household_b`` with ``account_b``.
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from portfolios.services import household_assign_team
from rebalance_app.roles import Role
from tests import factories

PASSWORD = "pw-for-tests-1"


# ---------------------------------------------------------------------------
# Environment guards: PostgreSQL-only tests, Redis, chromium
# ---------------------------------------------------------------------------


def _is_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _redis_answers() -> bool:
    from django.conf import settings

    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    skip_redis = pytest.mark.skip(reason="needs Redis at REDIS_URL (make test starts one)")
    skip_browser = pytest.mark.skip(reason="needs /usr/bin/chromium (make test installs it)")
    pg = _is_postgres()
    redis_ok = None
    for item in items:
        if "postgres" in item.keywords and not pg:
            item.add_marker(skip_pg)
        if "celery_worker" in item.keywords:
            if redis_ok is None:
                redis_ok = _redis_answers()
            if not redis_ok:
                item.add_marker(skip_redis)
        if "e2e" in item.keywords and not Path("/usr/bin/chromium").exists():
            item.add_marker(skip_browser)


@pytest.fixture(autouse=True)
def _audit_checkpoint_file(tmp_path, settings):
    """Each test has its own checkpoint file."""
    settings.AUDIT_CHECKPOINT_PATH = str(tmp_path / "audit-checkpoints.jsonl")


def _db_use(request) -> str:
    """'transactional', 'db' or '' for the test being set up."""
    names = set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if {"transactional_db", "live_server"} & names or (marker and marker.kwargs.get("transaction")):
        return "transactional"
    if "db" in names or marker:
        return "db"
    return ""


@pytest.fixture(autouse=True)
def _audit_triggers(request):
    """The audit trail's triggers are on during every test. Transactional tests end with a
    flush (TRUNCATE on PostgreSQL) that the trigger rightly refuses, so they are switched off
    for that test-only flush and on again at the start of the next test."""
    use = _db_use(request)
    if not use:
        yield
        return
    request.getfixturevalue("transactional_db" if use == "transactional" else "db")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")
    yield
    if use == "transactional" and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")


# ---------------------------------------------------------------------------
# Personas and a two-team firm
# ---------------------------------------------------------------------------


def _user(username: str, *groups: str, **extra) -> object:
    user = factories.UserFactory(username=username, **extra)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def team_a(db):
    return Group.objects.get_or_create(name="Team A")[0]


@pytest.fixture
def team_b(db):
    return Group.objects.get_or_create(name="Team B")[0]


@pytest.fixture
def pm(team_a):
    return _user("pm", Role.PM.value, "Team A")


@pytest.fixture
def other_pm(team_b):
    return _user("pm2", Role.PM.value, "Team B")


@pytest.fixture
def ops(db):
    return _user("ops", Role.OPS.value)


@pytest.fixture
def ops2(db):
    return _user("ops2", Role.OPS.value)


@pytest.fixture
def compliance(db):
    return _user("compliance", Role.COMPLIANCE.value)


@pytest.fixture
def admin_user(db):
    return _user("admin", Role.ADMIN.value, is_superuser=True, is_staff=True)


@pytest.fixture
def outsider(db):
    return _user("outsider")


@pytest.fixture
def household_a(team_a):
    household = factories.HouseholdFactory(name="Alpha Family")
    return household_assign_team(household=household, team=team_a, actor="system:test")


@pytest.fixture
def household_b(team_b):
    household = factories.HouseholdFactory(name="Beta Family")
    return household_assign_team(household=household, team=team_b, actor="system:test")


@pytest.fixture
def security(db):
    sec = factories.SecurityFactory(ticker="AAPL", name="Apple Inc.")
    factories.PriceFactory(security=sec, price=Decimal("150"))
    return sec


@pytest.fixture
def account_a(household_a, security):
    account = factories.AccountFactory(household=household_a, name="Alpha Taxable")
    factories.TaxLotFactory(account=account, security=security, quantity=Decimal("10"))
    return account


@pytest.fixture
def account_b(household_b, security):
    account = factories.AccountFactory(household=household_b, name="Beta IRA")
    factories.TaxLotFactory(account=account, security=security, quantity=Decimal("5"))
    return account


# ---------------------------------------------------------------------------
# Browser (Playwright driving Debian chromium, headless)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Playwright's sync API runs an event loop in the test thread; Django refuses ORM calls
    # from a thread with a running loop unless told the test owns it.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
