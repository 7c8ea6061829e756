"""The FIX initiator against the simulated broker on a real TCP socket (port 0, a thread),
with a MemoryStore: logon/logout, order flow, gap handling, resend after a crash or a broker
restart, heartbeats and test requests. No database."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orders.fix import messages as m
from orders.fix.broker import SimulatedBroker
from orders.fix.session import FixInitiator, FixSessionError, Inbound
from orders.fix.store import MemoryStore

PRICES = {"MSFT": Decimal("400"), "AAPL": Decimal("190.5")}
WAIT = 5.0


@dataclass
class Harness:
    """A broker on a free port, an initiator wired to it and the reports it received."""

    state_path: Path
    broker_options: dict[str, Any] = field(default_factory=dict)
    store: MemoryStore = field(default_factory=MemoryStore)
    received: list[Inbound] = field(default_factory=list)
    brokers: list[SimulatedBroker] = field(default_factory=list)
    initiators: list[FixInitiator] = field(default_factory=list)
    port: int = 0
    heartbeat: float = 30

    def start_broker(self, **options: Any) -> SimulatedBroker:
        opts = {**self.broker_options, **options}
        broker = SimulatedBroker(
            port=self.port, state_path=self.state_path, price_for=PRICES.get, **opts
        )
        self.port = broker.start()
        self.brokers.append(broker)
        return broker

    @property
    def broker(self) -> SimulatedBroker:
        return self.brokers[-1]

    def initiator(self, **options: Any) -> FixInitiator:
        init = FixInitiator(
            host="127.0.0.1",
            port=self.port,
            store=self.store,
            sender_comp_id="REBAL",
            target_comp_id="SIMBROKER",
            heartbeat_interval=options.pop("heartbeat_interval", self.heartbeat),
            connect_timeout=2.0,
            on_app_message=self.received.append,
            **options,
        )
        self.initiators.append(init)
        return init

    def reports(self, cl_ord_id: str | None = None) -> list[m.ExecReport]:
        out = [m.parse_execution_report(r.fields) for r in self.received if r.msg_type == "8"]
        return [r for r in out if cl_ord_id is None or r.cl_ord_id == cl_ord_id]

    def status_reached(self, cl_ord_id: str, status: str) -> bool:
        return any(r.ord_status == status for r in self.reports(cl_ord_id))

    def close(self) -> None:
        for init in self.initiators:
            init.close()
        for broker in self.brokers:
            broker.stop()


@pytest.fixture
def harness(tmp_path):
    h = Harness(state_path=tmp_path / "broker.json")
    yield h
    h.close()


def _connected(h: Harness, **broker_options: Any) -> FixInitiator:
    h.start_broker(**broker_options)
    init = h.initiator()
    init.logon(timeout=WAIT)
    return init


def test_logon_and_logout_handshake_keeps_both_sides_in_sequence(harness):
    init = _connected(harness)
    assert init.logged_on
    assert harness.store.logged_on
    init.logout(timeout=WAIT)
    assert not harness.store.logged_on
    assert harness.store.last_error == ""
    out_types = [msg.msg_type for msg in harness.store.outbound_messages()]
    in_types = [msg.msg_type for msg in harness.store.inbound_messages()]
    assert out_types == ["A", "5"]
    assert in_types == ["A", "5"]
    next_out, next_in = harness.store.load()
    assert (next_out, next_in) == (3, 3)
    deadline = time.monotonic() + WAIT
    while harness.broker.store.load() != (3, 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert harness.broker.store.load() == (3, 3)


def test_logon_to_a_closed_port_raises_a_clear_error(harness):
    broker = harness.start_broker()
    broker.stop()
    init = harness.initiator()
    with pytest.raises(FixSessionError, match="Could not connect to the FIX acceptor"):
        init.logon(timeout=1)
    assert "Could not connect" in harness.store.last_error


def test_logon_with_wrong_comp_id_is_refused(harness):
    harness.start_broker(target_comp_id="SOMEONE_ELSE")
    init = harness.initiator()
    with pytest.raises(FixSessionError, match="Wrong CompIDs"):
        init.logon(timeout=WAIT)


def test_new_order_is_acknowledged_and_filled_through_the_callback(harness):
    init = _connected(harness)
    seq = init.send_new_order(cl_ord_id="RB-1", symbol="MSFT", side="buy", quantity=Decimal("10"))
    assert seq == 2
    assert init.run_until(lambda: harness.status_reached("RB-1", "2"), WAIT)
    ack, fill = harness.reports("RB-1")
    assert (ack.exec_type, ack.ord_status, ack.leaves_qty) == ("0", "0", Decimal("10"))
    assert (fill.exec_type, fill.ord_status) == ("F", "2")
    assert (fill.last_qty, fill.last_px, fill.cum_qty, fill.leaves_qty) == (
        Decimal("10"),
        Decimal("400"),
        Decimal("10"),
        Decimal("0"),
    )
    # The stored outbound order is what went on the wire, and the inbound ids are the
    # store's ids of the recorded messages.
    sent = [msg for msg in harness.store.outbound_messages() if msg.msg_type == "D"]
    assert len(sent) == 1
    assert sent[0].seq == 2
    assert sent[0].cl_ord_id == "RB-1"
    ids = {msg.id for msg in harness.store.inbound_messages()}
    assert all(r.message_id in ids for r in harness.received)


def test_next_in_advances_only_after_the_callback_returns(harness):
    harness.start_broker()
    calls: list[int] = []

    def explode(inbound: Inbound) -> None:
        calls.append(inbound.seq_num)
        if len(calls) == 1:
            raise RuntimeError("booking failed")
        harness.received.append(inbound)

    init = FixInitiator(
        host="127.0.0.1",
        port=harness.port,
        store=harness.store,
        sender_comp_id="REBAL",
        target_comp_id="SIMBROKER",
        on_app_message=explode,
    )
    harness.initiators.append(init)
    init.logon(timeout=WAIT)
    init.send_new_order(cl_ord_id="RB-X", symbol="MSFT", side="buy", quantity=Decimal("1"))
    _, before = harness.store.load()
    with pytest.raises(RuntimeError, match="booking failed"):
        init.run_until(lambda: False, WAIT)
    assert harness.store.load()[1] == before  # the ack's seq was not consumed
    # The failed ack is asked for again (the fill arrives ahead of it: a gap) and delivered.
    assert init.run_until(lambda: harness.status_reached("RB-X", "2"), WAIT)
    assert [r.exec_type for r in harness.reports("RB-X")] == ["0", "F"]
    assert calls[0] == calls[1]


def test_sequence_gap_triggers_a_resend_request_and_delivers_each_report_once(harness):
    init = _connected(harness, skip_seq_once=True)
    init.send_new_order(cl_ord_id="RB-2", symbol="AAPL", side="sell", quantity=Decimal("4"))
    assert init.run_until(lambda: harness.status_reached("RB-2", "2"), WAIT)
    init.poll(0.3)  # let any resent duplicates arrive
    resend_requests = [m for m in harness.store.outbound_messages() if m.msg_type == "2"]
    assert len(resend_requests) == 1
    assert resend_requests[0].fields["7"] == "2"  # the skipped seq
    exec_ids = [r.exec_id for r in harness.reports("RB-2")]
    assert len(exec_ids) == 2
    assert len(set(exec_ids)) == 2
    gap_fills = [
        msg
        for msg in harness.store.inbound_messages()
        if msg.msg_type == "4" and msg.fields.get("123") == "Y"
    ]
    assert gap_fills
    assert gap_fills[0].seq == 2
    assert gap_fills[0].fields["43"] == "Y"
    assert harness.store.load()[1] == harness.broker.store.load()[0]
    # The originals queued behind the gap were delivered; the resent copies were dropped.
    assert not any(r.poss_dup for r in harness.received)
    assert init.logged_on
    assert harness.store.last_error == ""


def test_reports_generated_while_disconnected_arrive_by_resend_after_relogon(harness):
    init = _connected(harness, fill_delay=0.4)
    init.send_new_order(cl_ord_id="RB-3", symbol="MSFT", side="buy", quantity=Decimal("2"))
    assert init.run_until(lambda: harness.status_reached("RB-3", "0"), WAIT)
    init.close()  # drop the connection before the fill is generated
    time.sleep(0.6)
    assert not harness.status_reached("RB-3", "2")
    assert init.run_until(lambda: harness.status_reached("RB-3", "2"), WAIT)
    fill = next(r for r in harness.received if r.fields.get("150") == "F")
    assert fill.poss_dup
    assert "122" in fill.fields


def test_broker_restart_reconnects_inside_run_until_and_keeps_sequence_numbers(harness):
    init = _connected(harness)
    init.send_new_order(cl_ord_id="RB-4", symbol="MSFT", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("RB-4", "2"), WAIT)
    out_before, in_before = harness.store.load()
    harness.broker.stop()
    init.poll(0.3)
    assert not init.logged_on
    assert "lost" in harness.store.last_error
    restarted = harness.start_broker()  # same port, same state file
    assert restarted.store.load() == (in_before, out_before)
    assert init.run_until(lambda: init.logged_on, WAIT)
    init.send_new_order(cl_ord_id="RB-5", symbol="MSFT", side="sell", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("RB-5", "2"), WAIT)
    # The second Logon continued the numbering instead of resetting to 1.
    logons = [msg.seq for msg in harness.store.outbound_messages() if msg.msg_type == "A"]
    assert logons == [1, out_before]
    broker_logons = [msg.seq for msg in harness.store.inbound_messages() if msg.msg_type == "A"]
    assert broker_logons == [1, in_before]
    assert not any(msg.msg_type == "2" for msg in harness.store.outbound_messages())


def test_message_stored_but_never_written_is_resent_with_possdup_and_executed_once(harness):
    init = _connected(harness)
    written = init._write
    init._write = lambda raw: None  # the process dies between store and write
    init.send_new_order(cl_ord_id="RB-6", symbol="AAPL", side="buy", quantity=Decimal("3"))
    init._write = written
    init.close()
    assert "RB-6" not in harness.broker.store.orders
    restarted = harness.initiator()  # a new process on the same store
    restarted.logon(timeout=WAIT)
    assert restarted.run_until(lambda: harness.status_reached("RB-6", "2"), WAIT)
    restarted.poll(0.3)
    resent = [
        msg for msg in harness.store.outbound_messages() if msg.msg_type == "D" and msg.poss_dup
    ]
    assert len(resent) == 1
    assert resent[0].fields["43"] == "Y"
    assert "122" in resent[0].fields
    assert [r.exec_type for r in harness.reports("RB-6")] == ["0", "F"]
    # The new Logon (seq 3) fell inside the broker's request: session messages are never
    # resent as themselves, a SequenceReset-GapFill stands in for them.
    assert not any(msg.msg_type == "A" and msg.poss_dup for msg in harness.store.messages)
    gap_fill = next(
        msg for msg in harness.store.outbound_messages() if msg.msg_type == "4" and msg.poss_dup
    )
    assert (gap_fill.seq, gap_fill.fields["123"], gap_fill.fields["36"]) == (3, "Y", "4")
    # The broker's session received the order once, as a possible duplicate, and executed it
    # once.
    received = [
        msg
        for msg in harness.broker.store.inbound_messages()
        if msg.msg_type == "D" and msg.fields.get("11") == "RB-6"
    ]
    assert len(received) == 1
    assert received[0].poss_dup
    assert harness.broker.store.orders["RB-6"]["cum"] == "3"


def test_application_level_resend_with_possdup_is_not_executed_twice(harness):
    init = _connected(harness)
    init.send_new_order(cl_ord_id="RB-7", symbol="MSFT", side="buy", quantity=Decimal("5"))
    assert init.run_until(lambda: harness.status_reached("RB-7", "2"), WAIT)
    init.send_new_order(
        cl_ord_id="RB-7", symbol="MSFT", side="buy", quantity=Decimal("5"), poss_dup=True
    )
    init.poll(0.5)
    assert [r.exec_type for r in harness.reports("RB-7")] == ["0", "F"]
    assert harness.broker.store.orders["RB-7"]["cum"] == "5"


def test_heartbeats_are_sent_when_idle_and_test_requests_answered(harness):
    harness.heartbeat = 1
    init = _connected(harness)
    init.poll(2.3)
    assert init.logged_on
    assert any(msg.msg_type == "0" for msg in harness.store.outbound_messages())
    assert any(msg.msg_type == "0" for msg in harness.store.inbound_messages())
    # Our TestRequest is answered with a Heartbeat carrying its TestReqID.
    init._send(m.test_request("PING-1"))
    assert init.run_until(
        lambda: any(
            msg.msg_type == "0" and msg.fields.get("112") == "PING-1"
            for msg in harness.store.inbound_messages()
        ),
        WAIT,
    )
    # Silent for longer than interval + grace: the broker asks, and we answer.
    time.sleep(2.0)
    init.poll(1.0)
    assert init.logged_on
    asked = [msg for msg in harness.store.inbound_messages() if msg.msg_type == "1"]
    assert asked
    answers = {
        msg.fields.get("112") for msg in harness.store.outbound_messages() if msg.msg_type == "0"
    }
    assert asked[0].fields["112"] in answers


def test_sequence_number_too_low_ends_the_session_with_a_clear_logout(harness):
    init = _connected(harness)
    init.logout(timeout=WAIT)
    # The broker lost its state: it will send Logon with seq 1 while we expect 3.
    harness.broker.stop()
    harness.state_path.unlink()
    harness.start_broker()
    harness.store.set_next_out(harness.store.load()[0])
    init = harness.initiator()
    with pytest.raises(FixSessionError, match="MsgSeqNum too low, expecting 3 but received 1"):
        init.logon(timeout=WAIT)
    logout = [msg for msg in harness.store.outbound_messages() if msg.msg_type == "5"][-1]
    assert logout.fields["58"] == "MsgSeqNum too low, expecting 3 but received 1"


def test_lease_keeps_a_second_initiator_out(harness):
    harness.start_broker()
    first = harness.initiator(lease_owner="worker-1")
    first.logon(timeout=WAIT)
    second = harness.initiator(lease_owner="worker-2")
    with pytest.raises(FixSessionError, match="Another process holds the FIX session"):
        second.logon(timeout=WAIT)
    first.logout(timeout=WAIT)
    assert harness.store.acquire("worker-2", 10)


def test_harness_threads_are_cleaned_up(harness):
    before = threading.active_count()
    _connected(harness)
    harness.close()
    assert threading.active_count() <= before


def test_logon_answered_in_another_fix_version_is_refused(harness):
    import datetime as dt
    import socket

    import simplefix

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def acceptor() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            reply = simplefix.FixMessage()
            reply.append_pair(8, "FIX.4.2")
            reply.append_pair(35, "A")
            reply.append_pair(49, "SIMBROKER")
            reply.append_pair(56, "REBAL")
            reply.append_pair(34, 1)
            reply.append_utc_timestamp(52, dt.datetime.now(dt.UTC))
            reply.append_pair(98, 0)
            reply.append_pair(108, 30)
            conn.sendall(reply.encode())
            conn.recv(4096)

    thread = threading.Thread(target=acceptor, daemon=True)
    thread.start()
    harness.port = port
    init = harness.initiator()
    try:
        with pytest.raises(FixSessionError, match=r"Wrong BeginString 'FIX\.4\.2'"):
            init.logon(timeout=WAIT)
        assert harness.store.outbound_messages()[-1].fields["58"].startswith("Wrong BeginString")
    finally:
        listener.close()
        thread.join(timeout=WAIT)
