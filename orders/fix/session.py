"""The FIX 4.4 session rules, shared by our initiator (``FixInitiator``, which the routing
service drives) and the simulated broker's acceptor: sequence numbers kept in a
``SessionStore`` (so they survive restarts), gap detection with ResendRequest, answering the
counterparty's ResendRequest from stored messages (PossDupFlag=Y, OrigSendingTime; session
messages replaced by SequenceReset-GapFill), SequenceReset, TestRequest/Heartbeat and the
Logout handshake.

Single-threaded and synchronous: nothing happens unless ``poll``/``run_until`` is running,
which reads the socket, dispatches application messages to the callback and sends the
heartbeats that are due. An inbound message's sequence number is consumed only after the
callback returned, so a crash in the callback makes the counterparty resend it (the routing
service dedupes executions by ExecID). No Django imports: see ``store.DbSessionStore``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import select
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import simplefix

from orders.fix import messages as m

if TYPE_CHECKING:
    from orders.fix.store import SessionStore

SEQ_TOO_LOW = "MsgSeqNum too low, expecting {expected} but received {received}"
WRONG_BEGIN_STRING = "Wrong BeginString {value!r}: this session speaks FIX.4.4"
WRONG_COMP_IDS = "Wrong CompIDs: expected {expected_sender}->{expected_target}, got {got}"
CONNECT_FAILED = "Could not connect to the FIX acceptor at {host}:{port}: {error}"
LOGON_TIMEOUT = "No Logon answer from {target} within {timeout:.1f} s"
LOGON_REFUSED = "Logon refused by {target}: {text}"
CONNECTION_LOST = "Connection to {target} lost"
NOT_LOGGED_ON = "The FIX session with {target} is not logged on"
LEASE_HELD = "Another process holds the FIX session {target} (lease not acquired)"
NO_HEARTBEAT = "No answer to TestRequest from {target}: connection considered dead"
FIRST_NOT_LOGON = "First message must be Logon, got MsgType {msg_type}"

APP_DISPATCH_TYPES = frozenset({"3", "8", "9"})


class FixSessionError(Exception):
    """The session could not be established or was ended by a protocol error."""


@dataclass(frozen=True)
class Inbound:
    """An application message (or session Reject) handed to ``on_app_message``."""

    msg_type: str
    seq_num: int
    poss_dup: bool
    fields: dict[str, str]
    raw: bytes
    message_id: int


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Queued:
    parsed: m.Parsed
    handled: bool  # processed already (Logon, ResendRequest): only its seq is consumed later


class FixSessionCore:
    """One side of a FIX session on a connected socket. Subclasses decide how the socket is
    obtained and what application messages mean (``_on_app``)."""

    def __init__(
        self,
        *,
        store: SessionStore,
        sender_comp_id: str,
        target_comp_id: str,
        heartbeat_interval: float = 30,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | Any | None = None,
        test_request_grace: float | None = None,
    ) -> None:
        self.store = store
        self.sender_comp_id = sender_comp_id
        self.target_comp_id = target_comp_id
        self.heartbeat_interval = heartbeat_interval
        self.grace = (
            test_request_grace
            if test_request_grace is not None
            else max(0.2 * heartbeat_interval, 0.5)
        )
        self.clock = clock
        self.log = logger or logging.getLogger("orders.fix")
        self.sock: socket.socket | None = None
        self.logged_on = False
        self.logout_sent = False
        self.logout_received = False
        self.last_error = ""
        self._decoder = m.Decoder()
        self._queue: dict[int, _Queued] = {}
        self._resend_until = 0  # highest seq a pending ResendRequest of ours will bring
        self._resend_sent_at = 0.0
        self._last_sent = 0.0
        self._last_received = 0.0
        self._test_req_id: str | None = None
        self._test_req_sent_at = 0.0
        self._last_record_id = 0
        self._need_resend = False
        self._next_in = 1  # mirrors the store's next_in while connected (one read per logon)

    # --- sending -------------------------------------------------------------------------

    def _send(
        self, msg: simplefix.FixMessage, *, cl_ord_id: str = "", poss_dup: bool = False
    ) -> int:
        """Reserve a seq, store the message, then write it. Store before write: a crash in
        between leaves a stored message that the counterparty's ResendRequest will replay."""
        seq = self.store.reserve_out_seq()
        raw = m.encode(
            msg,
            sender=self.sender_comp_id,
            target=self.target_comp_id,
            seq=seq,
            sending_time=_utcnow(),
            poss_dup=poss_dup,
        )
        parsed = m.decode_one(raw)
        # Stored as an original (poss_dup False): this seq is new, even when the content is an
        # application-level resend carrying 43=Y; ``fields`` keep the flag.
        self.store.store_outbound(seq, parsed.msg_type, raw, parsed.fields, cl_ord_id, False)
        self._write(raw)
        return seq

    def _send_resend(self, raw: bytes, *, seq: int, msg_type: str, cl_ord_id: str = "") -> None:
        parsed = m.decode_one(raw)
        self.store.store_outbound(seq, msg_type, raw, parsed.fields, cl_ord_id, True)
        self._write(raw)

    def _write(self, raw: bytes) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendall(raw)
            self._last_sent = self.clock()
        except OSError as exc:
            self._lost(f"{CONNECTION_LOST.format(target=self.target_comp_id)}: {exc}")

    # --- receiving -----------------------------------------------------------------------

    def _read(self, timeout: float) -> int:
        """Wait up to ``timeout`` for bytes and process every complete message; returns how
        many messages were read (0 on timeout or lost connection)."""
        if self.sock is None:
            return 0
        try:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        except (OSError, ValueError):
            self._lost(CONNECTION_LOST.format(target=self.target_comp_id))
            return 0
        if not ready:
            return 0
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            self._lost(f"{CONNECTION_LOST.format(target=self.target_comp_id)}: {exc}")
            return 0
        if not data:
            self._lost(CONNECTION_LOST.format(target=self.target_comp_id))
            return 0
        self._last_received = self.clock()
        parsed = self._decoder.feed(data)
        for err in self._decoder.errors:
            self.log.warning("fix.garbled: %s", err)
        self._decoder.errors.clear()
        for p in parsed:
            if self.sock is None:
                break
            try:
                self._handle(p)
            except Exception:
                # The callback failed: this message's seq was not consumed and the rest of
                # the batch is dropped, so ask for everything from the expected seq again.
                self._queue.clear()
                self._resend_until = 0
                self._need_resend = True
                raise
        return len(parsed)

    def _handle(self, p: m.Parsed) -> None:
        if p.begin_string != m.BEGIN_STRING:
            self._fatal(WRONG_BEGIN_STRING.format(value=p.begin_string))
            return
        got = (p.fields.get("49"), p.fields.get("56"))
        if got != (self.target_comp_id, self.sender_comp_id):
            self._fatal(
                WRONG_COMP_IDS.format(
                    expected_sender=self.target_comp_id,
                    expected_target=self.sender_comp_id,
                    got=f"{got[0]}->{got[1]}",
                )
            )
            return
        if not self.logged_on and p.msg_type != m.MsgType.LOGON and not self.logout_sent:
            self._fatal(FIRST_NOT_LOGON.format(msg_type=p.msg_type))
            return
        expected = self._next_in
        seq = p.seq_num
        # SequenceReset-Reset ignores MsgSeqNum and moves the expected number on.
        if p.msg_type == m.MsgType.SEQUENCE_RESET and p.fields.get("123") != "Y":
            self._record(p)
            new_seq = int(p.fields.get("36", "0") or 0)
            if new_seq > expected:
                self._set_next_in(new_seq)
                self._drain()
            else:
                self._write_admin(m.reject(seq, f"NewSeqNo {new_seq} is not above {expected}"))
            return
        if seq < expected:
            if p.poss_dup:
                self._record(p)  # already processed: ignore, but keep it on record
                return
            self._record(p)
            self._fatal(SEQ_TOO_LOW.format(expected=expected, received=seq))
            return
        if seq > expected:
            handled = False
            if p.msg_type in (m.MsgType.LOGON, m.MsgType.RESEND_REQUEST, m.MsgType.LOGOUT):
                # Processed at once even out of order (FIX 4.4 vol. 2): a Logon starts the
                # session, a ResendRequest must be answered before ours is, a Logout ends it.
                self._record(p)
                self._process(p)
                handled = True
            self._queue[seq] = _Queued(parsed=p, handled=handled)
            self._request_resend(expected, seq)
            return
        self._accept(p, handled=False)
        self._drain()

    def _accept(self, p: m.Parsed, *, handled: bool) -> None:
        """Process the message that carries the expected seq, then consume the seq."""
        if not handled:
            self._record(p)
            new_next = self._process(p)
        else:
            new_next = None
        if self.sock is None and not handled and p.msg_type != m.MsgType.LOGOUT:
            return
        self._set_next_in(max(new_next or 0, p.seq_num + 1))

    def _drain(self) -> None:
        while True:
            expected = self._next_in
            for s in [s for s in self._queue if s < expected]:
                del self._queue[s]
            q = self._queue.pop(expected, None)
            if q is None:
                break
            self._accept(q.parsed, handled=q.handled)
        expected = self._next_in
        if expected > self._resend_until:
            self._resend_until = 0

    def _request_resend(self, expected: int, seen: int) -> None:
        now = self.clock()
        if self._resend_until and now - self._resend_sent_at < max(self.heartbeat_interval, 2.0):
            # Our ResendRequest in flight asks for everything up to infinity: it covers this.
            self._resend_until = max(seen, self._resend_until)
            return
        self._resend_until = max(seen, self._resend_until)
        self._resend_sent_at = now
        self.log.info("fix.gap: expected %s, received %s: ResendRequest", expected, seen)
        self._send(m.resend_request(expected, 0))

    def _set_next_in(self, n: int) -> None:
        self._next_in = n
        self.store.set_next_in(n)

    def _record(self, p: m.Parsed) -> int:
        self._last_record_id = self.store.record_inbound(
            p.seq_num, p.msg_type, p.raw, p.fields, p.poss_dup
        )
        return self._last_record_id

    def _process(self, p: m.Parsed) -> int | None:
        """Act on one in-sequence message; returns the next expected seq when the message
        moves it other than by one (SequenceReset-GapFill)."""
        t = p.msg_type
        f = p.fields
        if t == m.MsgType.LOGON:
            self._on_logon(p)
        elif t == m.MsgType.HEARTBEAT:
            if self._test_req_id and f.get("112") == self._test_req_id:
                self._test_req_id = None
        elif t == m.MsgType.TEST_REQUEST:
            self._send(m.heartbeat(f.get("112", "")))
        elif t == m.MsgType.RESEND_REQUEST:
            self._answer_resend(int(f.get("7", "1") or 1), int(f.get("16", "0") or 0))
        elif t == m.MsgType.SEQUENCE_RESET:
            return int(f.get("36", "0") or 0)
        elif t == m.MsgType.LOGOUT:
            self.logout_received = True
            text = f.get("58", "")
            if not self.logout_sent:
                self._send(m.logout())
                self.last_error = text
            self._disconnect(error=text)
        else:
            self._on_app(p)
        return None

    def _answer_resend(self, begin: int, end: int) -> None:
        """Replay our stored messages begin..end: application messages as themselves with
        PossDupFlag=Y, runs of session messages (and seqs never stored) as one
        SequenceReset-GapFill each."""
        next_out, _ = self.store.load()
        last = next_out - 1 if end == 0 or end >= next_out else end
        if begin > last:
            return
        stored = {seq: (t, raw) for seq, t, raw in self.store.outbound(begin, last)}
        gap_start: int | None = None
        now = _utcnow()
        for seq in range(begin, last + 1):
            item = stored.get(seq)
            if item is None or item[0] in m.ADMIN_TYPES:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                self._gap_fill(gap_start, seq)
                gap_start = None
            raw = m.as_possible_duplicate(item[1], sending_time=now)
            cl_ord_id = m.decode_one(raw).fields.get("11", "")
            self._send_resend(raw, seq=seq, msg_type=item[0], cl_ord_id=cl_ord_id)
        if gap_start is not None:
            self._gap_fill(gap_start, last + 1)

    def _gap_fill(self, seq: int, new_seq: int) -> None:
        now = _utcnow()
        raw = m.encode(
            m.sequence_reset(new_seq, gap_fill=True),
            sender=self.sender_comp_id,
            target=self.target_comp_id,
            seq=seq,
            sending_time=now,
            poss_dup=True,
            orig_sending_time=now,
        )
        self._send_resend(raw, seq=seq, msg_type=m.MsgType.SEQUENCE_RESET)

    def _write_admin(self, msg: simplefix.FixMessage) -> None:
        self._send(msg)

    # --- timers --------------------------------------------------------------------------

    def _timers(self) -> None:
        if self.sock is None or not self.logged_on:
            return
        if self._need_resend:
            self._need_resend = False
            expected = self._next_in
            self._request_resend(expected, expected)
        now = self.clock()
        if self._test_req_id is not None:
            if now - self._test_req_sent_at >= self.heartbeat_interval + self.grace:
                self._lost(NO_HEARTBEAT.format(target=self.target_comp_id))
            return
        if now - self._last_received >= self.heartbeat_interval + self.grace:
            self._test_req_id = f"TEST-{uuid.uuid4().hex[:8]}"
            self._test_req_sent_at = now
            self._send(m.test_request(self._test_req_id))
        elif now - self._last_sent >= self.heartbeat_interval:
            self._send(m.heartbeat())

    def _next_timer_in(self) -> float:
        if self.sock is None or not self.logged_on:
            return 0.5
        now = self.clock()
        due = [
            self._last_sent + self.heartbeat_interval,
            self._last_received + self.heartbeat_interval + self.grace,
        ]
        if self._test_req_id is not None:
            due.append(self._test_req_sent_at + self.heartbeat_interval + self.grace)
        return max(min(due) - now, 0.0)

    # --- endings -------------------------------------------------------------------------

    def _fatal(self, text: str) -> None:
        """A session-level error: Logout with the reason, then disconnect (FIX rule)."""
        self.log.error("fix.session_error: %s", text)
        self.last_error = text
        if self.sock is not None:
            self._send(m.logout(text))
            self.logout_sent = True
        self._disconnect(error=text)

    def _lost(self, text: str) -> None:
        if self.sock is None:
            return
        self.log.warning("fix.disconnected: %s", text)
        if not self.logout_sent and not self.logout_received:
            self.last_error = text
        self._disconnect(error="" if self.logout_sent else text)

    def _disconnect(self, *, error: str = "") -> None:
        sock, self.sock = self.sock, None
        was_on = self.logged_on
        self.logged_on = False
        self._decoder = m.Decoder()
        self._queue.clear()
        self._resend_until = 0
        self._test_req_id = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if was_on or error:
            self.store.set_logged_on(False, error)

    # --- hooks ---------------------------------------------------------------------------

    def _on_logon(self, p: m.Parsed) -> None:
        raise NotImplementedError

    def _on_app(self, p: m.Parsed) -> None:
        raise NotImplementedError

    def _start_connection(self, sock: socket.socket) -> None:
        self.sock = sock
        self.logged_on = False
        self.logout_sent = False
        self.logout_received = False
        self._decoder = m.Decoder()
        self._queue.clear()
        self._resend_until = 0
        self._need_resend = False
        self._next_in = self.store.load()[1]
        self._test_req_id = None
        now = self.clock()
        self._last_sent = self._last_received = now


class FixInitiator(FixSessionCore):
    """Our side of the broker session: connects, logs on, sends orders and cancels, and hands
    ExecutionReports, OrderCancelRejects and Rejects to ``on_app_message``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        store: SessionStore,
        sender_comp_id: str,
        target_comp_id: str,
        on_app_message: Callable[[Inbound], None],
        heartbeat_interval: float = 30,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | Any | None = None,
        test_request_grace: float | None = None,
        lease_owner: str | None = None,
        lease_seconds: float = 60.0,
        reconnect_backoff: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__(
            store=store,
            sender_comp_id=sender_comp_id,
            target_comp_id=target_comp_id,
            heartbeat_interval=heartbeat_interval,
            clock=clock,
            logger=logger,
            test_request_grace=test_request_grace,
        )
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.on_app_message = on_app_message
        self.lease_owner = lease_owner
        self.lease_seconds = lease_seconds
        self.reconnect_backoff = reconnect_backoff
        self._lease_renewed_at = 0.0

    # --- connection ----------------------------------------------------------------------

    def logon(self, timeout: float = 10) -> None:
        """Connect and log on; raises FixSessionError on refusal, timeout or Logout."""
        if self.logged_on and self.sock is not None:
            return
        if self.sock is not None:
            self._disconnect()  # a half-open attempt: start again
        if self.lease_owner is not None:
            if not self.store.acquire(self.lease_owner, self.lease_seconds):
                raise FixSessionError(LEASE_HELD.format(target=self.target_comp_id))
            self._lease_renewed_at = self.clock()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            text = CONNECT_FAILED.format(host=self.host, port=self.port, error=exc)
            self.last_error = text
            self.store.set_logged_on(False, text)
            raise FixSessionError(text) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._start_connection(sock)
        self.last_error = ""
        self._send(m.logon(int(self.heartbeat_interval)))
        deadline = self.clock() + timeout
        while not self.logged_on:
            if self.sock is None:
                text = self.last_error or CONNECTION_LOST.format(target=self.target_comp_id)
                raise FixSessionError(LOGON_REFUSED.format(target=self.target_comp_id, text=text))
            left = deadline - self.clock()
            if left <= 0:
                text = LOGON_TIMEOUT.format(target=self.target_comp_id, timeout=timeout)
                self.last_error = text
                self._disconnect(error=text)
                raise FixSessionError(text)
            self._read(min(left, 0.5))

    def _on_logon(self, p: m.Parsed) -> None:
        self.logged_on = True
        self.store.set_logged_on(True)
        self.log.info("fix.logged_on: %s->%s", self.sender_comp_id, self.target_comp_id)

    def _on_app(self, p: m.Parsed) -> None:
        self._dispatch(p)

    def _dispatch(self, p: m.Parsed) -> None:
        self.on_app_message(
            Inbound(
                msg_type=p.msg_type,
                seq_num=p.seq_num,
                poss_dup=p.poss_dup,
                fields=p.fields,
                raw=p.raw,
                message_id=self._last_record_id,
            )
        )

    def _process(self, p: m.Parsed) -> int | None:
        if p.msg_type == m.MsgType.REJECT:
            self.log.warning("fix.reject: %s", p.fields.get("58", ""))
            self._dispatch(p)
            return None
        return super()._process(p)

    # --- sending -------------------------------------------------------------------------

    def _require_logged_on(self) -> None:
        if not self.logged_on or self.sock is None:
            raise FixSessionError(NOT_LOGGED_ON.format(target=self.target_comp_id))

    def send_app(
        self, msg: simplefix.FixMessage, cl_ord_id: str = "", *, poss_dup: bool = False
    ) -> int:
        """Send an application message; returns its MsgSeqNum. Stored before it is written:
        if the write fails the message goes out on the broker's ResendRequest after the
        next logon. ``poss_dup`` marks an application-level resend (a retried route that
        may have been sent before): new seq, PossDupFlag=Y, so the broker drops it if it
        already has the ClOrdID."""
        self._require_logged_on()
        return self._send(msg, cl_ord_id=cl_ord_id, poss_dup=poss_dup)

    def send_new_order(
        self,
        *,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        ord_type: str = "market",
        price: Decimal | None = None,
        account: str = "",
        transact_time: dt.datetime | None = None,
        poss_dup: bool = False,
    ) -> int:
        msg = m.new_order_single(
            cl_ord_id=cl_ord_id,
            symbol=symbol,
            side=side,
            quantity=quantity,
            ord_type=ord_type,
            price=price,
            account=account,
            transact_time=transact_time or _utcnow(),
        )
        return self.send_app(msg, cl_ord_id=cl_ord_id, poss_dup=poss_dup)

    def send_cancel(
        self,
        *,
        cl_ord_id: str,
        orig_cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        transact_time: dt.datetime | None = None,
    ) -> int:
        msg = m.order_cancel_request(
            cl_ord_id=cl_ord_id,
            orig_cl_ord_id=orig_cl_ord_id,
            symbol=symbol,
            side=side,
            quantity=quantity,
            transact_time=transact_time or _utcnow(),
        )
        return self.send_app(msg, cl_ord_id=cl_ord_id)

    # --- driving -------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> int:
        """Process inbound messages and due heartbeats for up to ``timeout`` seconds;
        returns how many messages were read. Returns early if the connection drops."""
        deadline = self.clock() + timeout
        count = 0
        while True:
            self._timers()
            self._renew_lease()
            if self.sock is None:
                return count
            left = deadline - self.clock()
            wait = min(max(left, 0.0), self._next_timer_in(), 0.5)
            count += self._read(wait)
            if deadline - self.clock() <= 0:
                self._timers()
                return count

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll until ``predicate()`` is true (returns True) or ``timeout`` passes (False).
        A dropped connection is re-established (with backoff) and logged on again; the
        gap, if any, is closed by the usual ResendRequest."""
        deadline = self.clock() + timeout
        backoff = self.reconnect_backoff[0]
        while True:
            if predicate():
                return True
            left = deadline - self.clock()
            if left <= 0:
                return False
            if self.sock is None or not self.logged_on:
                try:
                    self.logon(timeout=min(left, max(self.connect_timeout, 1.0)))
                    backoff = self.reconnect_backoff[0]
                except FixSessionError as exc:
                    self.log.warning("fix.reconnect_failed: %s", exc)
                    time.sleep(min(backoff, max(deadline - self.clock(), 0)))
                    backoff = min(backoff * 2, self.reconnect_backoff[1])
                continue
            self.poll(min(left, 0.05))

    def logout(self, timeout: float = 5) -> None:
        """Logout handshake: send Logout, wait for the broker's, then close."""
        if self.sock is not None and self.logged_on:
            self._send(m.logout())
            self.logout_sent = True
            deadline = self.clock() + timeout
            while self.sock is not None and not self.logout_received:
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._read(min(left, 0.5))
        self.close()

    def close(self) -> None:
        """Close the socket (no Logout) and give up the lease."""
        self._disconnect()
        if self.lease_owner is not None:
            self.store.release(self.lease_owner)

    def _renew_lease(self) -> None:
        if self.lease_owner is None or self.sock is None:
            return
        now = self.clock()
        if now - self._lease_renewed_at >= self.lease_seconds / 3:
            self._lease_renewed_at = now
            if not self.store.renew(self.lease_owner, self.lease_seconds):
                self._fatal(LEASE_HELD.format(target=self.target_comp_id))
