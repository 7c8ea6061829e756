"""Session stores: ``DbSessionStore`` on the database (sequence numbers across instances, the
lease, messages linked to their Route and audited) and the in-memory store's lease."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from compliance.models import AuditEvent
from orders.fix import messages as m
from orders.fix.store import DbSessionStore, MemoryStore
from orders.models import BlockOrder, FixMessage, FixSession, Route
from tests import factories
from tests.orders.test_fix_session import PRICES, WAIT

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)

pytestmark = pytest.mark.django_db(transaction=True)


def _order_bytes(seq: int, cl_ord_id: str = "RB-1") -> tuple[bytes, dict[str, str]]:
    raw = m.encode(
        m.new_order_single(
            cl_ord_id=cl_ord_id,
            symbol="MSFT",
            side="buy",
            quantity=Decimal("5"),
            transact_time=NOW,
        ),
        sender="REBAL",
        target="SIMBROKER",
        seq=seq,
        sending_time=NOW,
    )
    return raw, m.decode_one(raw).fields


def _route(cl_ord_id: str) -> Route:
    block = BlockOrder.objects.create(
        security=factories.SecurityFactory(ticker="MSFT"), side="buy", quantity=Decimal("5")
    )
    return Route.objects.create(block=block, destination="fix", cl_ord_id=cl_ord_id)


def test_session_row_is_created_from_settings_on_first_use(settings):
    settings.FIX_SENDER_COMP_ID = "REBAL"
    settings.FIX_TARGET_COMP_ID = "SIMBROKER"
    store = DbSessionStore("broker-a")
    assert store.load() == (1, 1)
    row = FixSession.objects.get(name="broker-a")
    assert (row.sender_comp_id, row.target_comp_id) == ("REBAL", "SIMBROKER")


def test_sequence_numbers_survive_a_new_store_instance():
    first = DbSessionStore("broker-b")
    assert [first.reserve_out_seq() for _ in range(3)] == [1, 2, 3]
    first.set_next_in(8)
    second = DbSessionStore("broker-b")
    assert second.load() == (4, 8)
    assert second.reserve_out_seq() == 4
    second.set_next_out(10)
    assert DbSessionStore("broker-b").load() == (10, 8)


def test_outbound_messages_round_trip_for_resends_and_skip_possible_duplicates():
    store = DbSessionStore("broker-c")
    raw1, f1 = _order_bytes(1, "RB-1")
    raw2, f2 = _order_bytes(2, "RB-2")
    store.store_outbound(1, "D", raw1, f1, cl_ord_id="RB-1")
    store.store_outbound(2, "D", raw2, f2, cl_ord_id="RB-2")
    again = m.as_possible_duplicate(raw1, sending_time=NOW)
    store.store_outbound(1, "D", again, m.decode_one(again).fields, "RB-1", poss_dup=True)
    assert store.outbound(1, 0) == [(1, "D", raw1), (2, "D", raw2)]
    assert store.outbound(2, 2) == [(2, "D", raw2)]
    with pytest.raises(IntegrityError):
        store.store_outbound(2, "D", raw2, f2, cl_ord_id="RB-2")


def test_messages_are_linked_to_their_route_and_audited_except_heartbeats():
    route = _route("RB-9")
    store = DbSessionStore("broker-d")
    raw, fields = _order_bytes(1, "RB-9")
    out_id = store.store_outbound(1, "D", raw, fields, cl_ord_id="RB-9")
    report = m.encode(
        m.execution_report(
            order_id="O1",
            cl_ord_id="RB-9",
            exec_id="E1",
            exec_type="0",
            ord_status="0",
            symbol="MSFT",
            side="buy",
            order_qty=Decimal("5"),
            cum_qty=Decimal("0"),
            avg_px=Decimal("0"),
            leaves_qty=Decimal("5"),
            transact_time=NOW,
            text="accepted",
        ),
        sender="SIMBROKER",
        target="REBAL",
        seq=1,
        sending_time=NOW,
    )
    parsed = m.decode_one(report)
    in_id = store.record_inbound(1, "8", report, parsed.fields, poss_dup=False)
    hb = m.encode(m.heartbeat(), sender="REBAL", target="SIMBROKER", seq=2, sending_time=NOW)
    hb_id = store.store_outbound(2, "0", hb, m.decode_one(hb).fields)

    sent, received = FixMessage.objects.get(pk=out_id), FixMessage.objects.get(pk=in_id)
    assert (sent.route, received.route) == (route, route)
    assert (sent.direction, received.direction) == ("out", "in")
    assert received.text == "accepted"
    assert sent.raw.encode("latin-1") == raw
    assert FixMessage.objects.get(pk=hb_id).route is None

    events = AuditEvent.objects.filter(object_type="orders.fixmessage").order_by("seq")
    assert [(e.action, e.object_id) for e in events] == [
        ("fix.sent", str(out_id)),
        ("fix.received", str(in_id)),
    ]
    assert events[0].actor_label == "system:fix"
    assert events[1].after == {
        "seq": 1,
        "msg_type": "8",
        "cl_ord_id": "RB-9",
        "poss_dup": False,
        "text": "accepted",
    }


def test_message_without_a_route_is_stored_unlinked():
    store = DbSessionStore("broker-e")
    raw, fields = _order_bytes(1, "NO-ROUTE")
    row = FixMessage.objects.get(pk=store.store_outbound(1, "D", raw, fields, "NO-ROUTE"))
    assert row.route is None
    assert row.cl_ord_id == "NO-ROUTE"


def test_lease_is_exclusive_until_released_or_expired():
    a, b = DbSessionStore("broker-f"), DbSessionStore("broker-f")
    assert a.acquire("worker-1", 30)
    assert not b.acquire("worker-2", 30)
    assert a.acquire("worker-1", 30)  # re-entrant for its owner
    assert a.renew("worker-1", 30)
    assert not b.renew("worker-2", 30)
    a.release("worker-1")
    assert b.acquire("worker-2", 30)
    # An expired lease is free for the taking.
    FixSession.objects.filter(name="broker-f").update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert a.acquire("worker-1", 30)
    assert not a.renew("worker-2", 30)


def test_logged_on_flag_and_last_error_are_recorded():
    store = DbSessionStore("broker-g")
    store.load()
    store.set_logged_on(True)
    row = FixSession.objects.get(name="broker-g")
    assert row.logged_on
    assert row.last_logon_at is not None
    store.set_logged_on(False, "Connection to SIMBROKER lost")
    row.refresh_from_db()
    assert not row.logged_on
    assert row.last_error == "Connection to SIMBROKER lost"


def test_initiator_runs_on_the_database_store(tmp_path):
    from orders.fix.broker import SimulatedBroker
    from orders.fix.session import FixInitiator

    _route("DB-1")
    broker = SimulatedBroker(state_path=tmp_path / "b.json", price_for=PRICES.get)
    port = broker.start()
    received = []
    store = DbSessionStore("broker-h")
    init = FixInitiator(
        host="127.0.0.1",
        port=port,
        store=store,
        sender_comp_id="REBAL",
        target_comp_id="SIMBROKER",
        on_app_message=received.append,
    )
    try:
        init.logon(timeout=WAIT)
        init.send_new_order(cl_ord_id="DB-1", symbol="MSFT", side="buy", quantity=Decimal("1"))
        assert init.run_until(lambda: any(r.fields.get("39") == "2" for r in received), WAIT)
        init.logout(timeout=WAIT)
    finally:
        init.close()
        broker.stop()
    assert DbSessionStore("broker-h").load() == (4, 5)
    linked = FixMessage.objects.filter(route__cl_ord_id="DB-1")
    assert sorted(linked.values_list("direction", "msg_type")) == [
        ("in", "8"),
        ("in", "8"),
        ("out", "D"),
    ]
    assert {r.message_id for r in received} <= set(linked.values_list("pk", flat=True))
    assert not FixSession.objects.get(name="broker-h").logged_on


def test_memory_store_lease():
    store = MemoryStore()
    assert store.acquire("a", 10, now=0.0)
    assert not store.acquire("b", 10, now=5.0)
    assert store.acquire("b", 10, now=11.0)
    store.release("a")  # not the owner: no effect
    assert not store.acquire("a", 10, now=12.0)
