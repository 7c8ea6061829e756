"""A simulated broker: a FIX 4.4 acceptor on 127.0.0.1 that acknowledges NewOrderSingles and
fills them at the latest price (optionally in two partial fills), rejects restricted or
unpriced symbols and duplicate ClOrdIDs, rests non-marketable limit orders and cancels open
orders on OrderCancelRequest. It follows the same session rules as our initiator (it shares
``session.FixSessionCore``), and persists its state (sequence numbers, every message it sent,
its orders) to a JSON file after every message, so a restarted broker carries on where it
stopped. Reports generated while the client is away are stored with their sequence numbers
and reach the client through its ResendRequest after the next Logon, as in real FIX.

Used by ``manage.py fix_broker`` (``make run``) and by the tests. No Django imports.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from orders.fix import messages as m
from orders.fix.session import FixSessionCore, _utcnow
from orders.fix.store import MemoryStore, StoredMessage

DUPLICATE_CLORDID = "Duplicate ClOrdID {cl_ord_id}"
RESTRICTED_SYMBOL = "Symbol {symbol} is not accepted by the broker"
NO_PRICE = "No price for {symbol}"
UNKNOWN_ORDER = "Unknown order {cl_ord_id}"
ORDER_DONE = "Order {cl_ord_id} is already {state}"
UNSUPPORTED = "Unsupported MsgType {msg_type}"

STATUS_NAMES = {"2": "filled", "4": "cancelled", "8": "rejected"}
DONE_STATUSES = frozenset(STATUS_NAMES)


class BrokerStateStore(MemoryStore):
    """A MemoryStore saved on every change, with the broker's orders and id counters.

    Two files: ``path`` is a JSON snapshot of the sequence numbers, counters and orders
    (temp file + rename), and ``<path>.sent.jsonl`` an append-only log of every message the
    broker sent (for resend requests), one JSON line each, so that a long session costs one
    appended line per message instead of rewriting every message so far. The log is written
    before the snapshot; on load the next outbound sequence number is the larger of the
    snapshot's and the log's. Inbound messages are kept in memory only."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        super().__init__()
        # None: keep the state in memory only (benchmarks; a restart then starts afresh)
        self.path = Path(path) if path is not None else None
        self.sent_path = self.path.with_name(self.path.name + ".sent.jsonl") if self.path else None
        self.orders: dict[str, dict[str, Any]] = {}
        self.cancels: list[str] = []
        self.counter = 0
        self._logged = 0  # how many of self.messages the sent log has seen
        self._loading = True
        if self.path is not None and self.path.exists():
            self._load()
        self._loading = False

    def next_id(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}{self.counter}"

    def save(self) -> None:
        self._changed()

    def sent_rows(self) -> list[dict[str, Any]]:
        """The sent log as stored (seq, type, raw, poss_dup), oldest first."""
        if self.sent_path is None or not self.sent_path.exists():
            return []
        with self.sent_path.open() as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        self.next_out = int(data["next_out"])
        self.next_in = int(data["next_in"])
        self.orders = data.get("orders", {})
        self.cancels = data.get("cancels", [])
        self.counter = int(data.get("counter", 0))
        rows = self.sent_rows()
        self.messages = [
            StoredMessage(
                id=i + 1,
                direction="out",
                seq=int(row["seq"]),
                msg_type=row["type"],
                raw=row["raw"].encode("latin-1"),
                fields={},
                poss_dup=bool(row.get("poss_dup")),
            )
            for i, row in enumerate(rows)
        ]
        self._logged = len(self.messages)
        if rows:
            self.next_out = max(self.next_out, max(int(r["seq"]) for r in rows) + 1)

    def _changed(self) -> None:
        if self._loading or self.path is None:
            return
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = self.messages[self._logged :]
            lines = [
                json.dumps(
                    {
                        "seq": msg.seq,
                        "type": msg.msg_type,
                        "raw": msg.raw.decode("latin-1"),
                        "poss_dup": msg.poss_dup,
                    }
                )
                for msg in fresh
                if msg.direction == "out" and not msg.poss_dup
            ]
            if lines:
                with self.sent_path.open("a") as fh:
                    fh.write("\n".join(lines) + "\n")
            self._logged = len(self.messages)
            data = {
                "next_out": self.next_out,
                "next_in": self.next_in,
                "counter": self.counter,
                "orders": self.orders,
                "cancels": self.cancels,
            }
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fix-broker-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)


class _BrokerSession(FixSessionCore):
    def __init__(self, broker: SimulatedBroker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broker = broker
        self._skipped = False

    def _on_logon(self, p: m.Parsed) -> None:
        try:
            hb = int(p.fields.get("108", "30"))
        except ValueError:
            hb = 30
        self.heartbeat_interval = max(hb, 1)
        self.grace = max(0.2 * self.heartbeat_interval, 0.5)
        self._send(m.logon(self.heartbeat_interval))
        self.logged_on = True
        self.store.set_logged_on(True)
        self.log.info("fix_broker.logon: %s", self.target_comp_id)

    def _on_app(self, p: m.Parsed) -> None:
        if p.msg_type == m.MsgType.NEW_ORDER_SINGLE:
            self.broker._new_order(p)
        elif p.msg_type == m.MsgType.ORDER_CANCEL_REQUEST:
            self.broker._cancel(p)
        else:
            self._send(m.reject(p.seq_num, UNSUPPORTED.format(msg_type=p.msg_type)))

    def send_report(self, msg: Any, *, cl_ord_id: str) -> int:
        if self.broker.skip_seq_once and not self._skipped:
            # Burn one sequence number, never stored: the client sees a gap and must ask.
            self._skipped = True
            self.store.reserve_out_seq()
        return self._send(msg, cl_ord_id=cl_ord_id)


class SimulatedBroker:
    """The acceptor; ``start()`` serves in a background thread and returns the bound port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_path: str | os.PathLike[str] | None,
        price_for: Callable[[str], Decimal | None],
        sender_comp_id: str = "SIMBROKER",
        target_comp_id: str = "REBAL",
        fill_delay: float = 0.0,
        partial_fill: float | None = None,
        complete_partials: bool = True,
        reject_symbols: frozenset[str] | set[str] = frozenset(),
        skip_seq_once: bool = False,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.price_for = price_for
        self.fill_delay = fill_delay
        self.partial_fill = partial_fill
        self.complete_partials = complete_partials
        self.reject_symbols = frozenset(s.upper() for s in reject_symbols)
        self.skip_seq_once = skip_seq_once
        self.log = logger or logging.getLogger("orders.fix.broker")
        self.store = BrokerStateStore(state_path)
        self.session = _BrokerSession(
            self,
            store=self.store,
            sender_comp_id=sender_comp_id,
            target_comp_id=target_comp_id,
            heartbeat_interval=30,
            logger=self.log,
        )
        self._due: dict[str, float] = {}
        now = time.monotonic()
        for cl, order in self.store.orders.items():
            if order.get("plan"):
                self._due[cl] = now + self.fill_delay
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------

    def bind(self) -> int:
        if self._listener is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(4)
            self._listener = sock
            self.port = sock.getsockname()[1]
        return self.port

    def start(self) -> int:
        port = self.bind()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"fix-broker-{port}", daemon=True
        )
        self._thread.start()
        return port

    def stop(self) -> None:
        """Stop serving and drop the connection without a Logout (like a crash or restart)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def serve_forever(self) -> None:
        self.bind()
        listener = self._listener
        assert listener is not None  # noqa: S101
        try:
            while not self._stop.is_set():
                watch = [listener] + ([self.session.sock] if self.session.sock else [])
                ready, _, _ = select.select(watch, [], [], self._wait())
                if listener in ready:
                    conn, addr = listener.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if self.session.sock is not None:
                        self.session._disconnect(error="replaced by a new connection")
                    self.log.info("fix_broker.connected: %s", addr)
                    self.session._start_connection(conn)
                try:
                    if self.session.sock is not None and self.session.sock in ready:
                        self.session._read(0)
                    self.session._timers()
                    self._run_fills()
                except Exception as exc:
                    # Keep serving: drop the connection; the unconsumed message comes back
                    # through the client's resend after it logs on again.
                    self.log.exception("fix_broker.error")
                    self.session._disconnect(error=str(exc)[:200])
        finally:
            self.session._disconnect()
            listener.close()
            self._listener = None

    def _wait(self) -> float:
        wait = 0.05
        if self._due:
            wait = min(wait, max(min(self._due.values()) - time.monotonic(), 0.0))
        return wait

    # --- orders --------------------------------------------------------------------------

    def _report(
        self,
        order: dict[str, Any],
        *,
        exec_type: str,
        cl_ord_id: str | None = None,
        last_qty: Decimal | None = None,
        last_px: Decimal | None = None,
        orig_cl_ord_id: str = "",
        text: str = "",
    ) -> None:
        cl = cl_ord_id or order["cl_ord_id"]
        msg = m.execution_report(
            order_id=order["order_id"],
            cl_ord_id=cl,
            exec_id=self.store.next_id("EX"),
            exec_type=exec_type,
            ord_status=order["status"],
            symbol=order["symbol"],
            side=order["side"],
            order_qty=Decimal(order["qty"]),
            cum_qty=Decimal(order["cum"]),
            avg_px=Decimal(order["avg"]),
            leaves_qty=Decimal(order["leaves"]),
            last_qty=last_qty,
            last_px=last_px,
            orig_cl_ord_id=orig_cl_ord_id,
            text=text,
            transact_time=_utcnow(),
        )
        self.session.send_report(msg, cl_ord_id=cl)

    def _new_order(self, p: m.Parsed) -> None:
        f = p.fields
        cl = f.get("11", "")
        if cl in self.store.orders:
            if p.poss_dup:
                self.log.info("fix_broker.possdup_ignored: %s", cl)
                return
            dup = dict(self.store.orders[cl], status="8", leaves="0")
            self._report(dup, exec_type="8", text=DUPLICATE_CLORDID.format(cl_ord_id=cl))
            return
        symbol = f.get("55", "")
        side = m.SIDE_NAMES.get(f.get("54", ""), "buy")
        qty = Decimal(f.get("38", "0") or "0")
        order: dict[str, Any] = {
            "cl_ord_id": cl,
            "order_id": self.store.next_id("ORD"),
            "symbol": symbol,
            "side": side,
            "qty": str(qty),
            "ord_type": "limit" if f.get("40") == "2" else "market",
            "price": f.get("44", ""),
            "cum": "0",
            "avg": "0",
            "leaves": str(qty),
            "status": "0",
            "plan": [],
        }
        reason = ""
        price = None
        if symbol.upper() in self.reject_symbols:
            reason = RESTRICTED_SYMBOL.format(symbol=symbol)
        else:
            price = self._price(symbol)
            if price is None:
                reason = NO_PRICE.format(symbol=symbol)
        if price is None or qty <= 0:
            order.update(status="8", leaves="0")
            self.store.orders[cl] = order
            self._report(order, exec_type="8", text=reason)
            return
        order["plan"] = [str(q) for q in self._plan(qty)] if self._marketable(order, price) else []
        self.store.orders[cl] = order
        self._report(order, exec_type="0")
        if order["plan"]:
            self._due[cl] = time.monotonic() + self.fill_delay

    def _price(self, symbol: str) -> Decimal | None:
        """The latest price, or None when there is none or the lookup fails (logged): a
        broken price source must not take the acceptor down."""
        try:
            return self.price_for(symbol)
        except Exception:
            self.log.exception("fix_broker.price_failed: %s", symbol)
            return None

    def _marketable(self, order: dict[str, Any], price: Decimal) -> bool:
        if order["ord_type"] != "limit" or not order["price"]:
            return True
        limit = Decimal(order["price"])
        return limit >= price if order["side"] == "buy" else limit <= price

    def _plan(self, qty: Decimal) -> list[Decimal]:
        if self.partial_fill is None:
            return [qty]
        first = Decimal(max(math.floor(qty * Decimal(str(self.partial_fill))), 1))
        if first >= qty:
            return [qty]
        return [first, qty - first] if self.complete_partials else [first]

    def _run_fills(self) -> None:
        now = time.monotonic()
        for cl in [cl for cl, due in self._due.items() if due <= now]:
            del self._due[cl]
            order = self.store.orders.get(cl)
            if order is None or order["status"] in DONE_STATUSES or not order["plan"]:
                continue
            price = self._price(order["symbol"]) or Decimal(order["avg"] or "0")
            if price <= 0:
                continue
            qty = Decimal(order["plan"].pop(0))
            cum = Decimal(order["cum"])
            avg = (Decimal(order["avg"]) * cum + price * qty) / (cum + qty)
            order["cum"] = str(cum + qty)
            order["avg"] = str(avg.quantize(Decimal("0.000001")))
            order["leaves"] = str(Decimal(order["qty"]) - cum - qty)
            order["status"] = "2" if Decimal(order["leaves"]) <= 0 else "1"
            self._report(order, exec_type="F", last_qty=qty, last_px=price)
            if order["plan"]:
                self._due[cl] = time.monotonic() + self.fill_delay

    def _cancel(self, p: m.Parsed) -> None:
        f = p.fields
        cl, orig = f.get("11", ""), f.get("41", "")
        if cl in self.store.cancels and p.poss_dup:
            return
        self.store.cancels.append(cl)
        order = self.store.orders.get(orig)
        if order is None or order["status"] in DONE_STATUSES:
            text = (
                UNKNOWN_ORDER.format(cl_ord_id=orig)
                if order is None
                else ORDER_DONE.format(cl_ord_id=orig, state=STATUS_NAMES[order["status"]])
            )
            msg = m.order_cancel_reject(
                order_id=order["order_id"] if order else "",
                cl_ord_id=cl,
                orig_cl_ord_id=orig,
                ord_status=order["status"] if order else "8",
                text=text,
            )
            self.session._send(msg, cl_ord_id=cl)
            return
        order.update(status="4", leaves="0", plan=[])
        self._due.pop(orig, None)
        self._report(order, exec_type="4", cl_ord_id=cl, orig_cl_ord_id=orig)
