"""``manage.py fix_broker`` as ``make run`` starts it: a separate process on a free port that
prices fills from the database (PostgreSQL: the subprocess reads the committed test data),
answers our FIX session and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from orders.fix.session import FixInitiator
from orders.fix.store import MemoryStore
from tests import factories
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_command_fills_at_the_latest_stored_price_and_stops_on_sigterm(tmp_path, settings):
    sec = factories.SecurityFactory(ticker="CMDX", name="Command test")
    factories.PriceFactory(security=sec, price=Decimal("123.45"))
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rebalance_app.settings_test",
        "DATABASE_URL": _database_url(),
    }
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "manage.py",
            "fix_broker",
            "--port",
            str(port),
            "--delay",
            "0",
            "--state",
            str(tmp_path / "state.json"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reports: list[dict[str, str]] = []
    initiator = FixInitiator(
        host="127.0.0.1",
        port=port,
        store=MemoryStore(),
        sender_comp_id=settings.FIX_SENDER_COMP_ID,
        target_comp_id=settings.FIX_TARGET_COMP_ID,
        on_app_message=lambda inbound: reports.append(inbound.fields),
        connect_timeout=1.0,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                initiator.logon(timeout=2)
                break
            except Exception:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the broker never answered"
                time.sleep(0.3)
        initiator.send_new_order(cl_ord_id="CMD-1", symbol="CMDX", side="buy", quantity=Decimal(7))
        initiator.send_new_order(cl_ord_id="CMD-2", symbol="NOPE", side="buy", quantity=Decimal(1))
        assert initiator.run_until(lambda: len(reports) >= 3, timeout=15)
        initiator.logout(timeout=3)
    finally:
        initiator.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    by_id = {}
    for r in reports:
        by_id.setdefault(r["11"], []).append(r)
    fill = by_id["CMD-1"][-1]
    assert (fill["150"], fill["39"], Decimal(fill["31"]), Decimal(fill["32"])) == (
        "F",
        "2",
        Decimal("123.45"),
        Decimal("7"),
    )
    reject = by_id["CMD-2"][-1]
    assert reject["150"] == "8"
    assert "NOPE" in reject.get("58", "")
    assert proc.returncode == 0
    assert f"listening on 127.0.0.1:{port}" in out
    assert "Simulated broker stopped." in out
