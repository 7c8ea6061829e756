"""Where a FIX session keeps what must survive a restart: its sequence numbers, every message
sent (stored before it is written to the socket, so a resend or a crash between store and
write can replay it with PossDupFlag=Y), every message received, and a lease so only one
process holds the connection.

``SessionStore`` is the protocol the session layer uses; ``MemoryStore`` keeps it in memory
(unit tests, the simulated broker's base); ``DbSessionStore`` keeps it in ``FixSession`` and
``FixMessage`` rows. Django is imported inside ``DbSessionStore`` only, so the pure session
and broker modules can use this module without a configured Django.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

FIX_ACTOR = "system:fix"
# Heartbeats and test requests are stored (the sequence needs them) but not audited: they
# carry no business content and would flood the audit chain.
UNAUDITED_TYPES = frozenset({"0", "1"})
TEXT_MAX = 500


class SessionStore(Protocol):
    def load(self) -> tuple[int, int]:
        """(next outbound seq, next expected inbound seq)."""
        ...

    def reserve_out_seq(self) -> int:
        """The next outbound seq, durably incremented before it is returned."""
        ...

    def set_next_out(self, n: int) -> None: ...

    def store_outbound(
        self,
        seq: int,
        msg_type: str,
        raw: bytes,
        fields: dict[str, str],
        cl_ord_id: str = "",
        poss_dup: bool = False,
    ) -> int: ...

    def outbound(self, begin: int, end: int) -> list[tuple[int, str, bytes]]:
        """Original (not PossDup) outbound messages with begin <= seq <= end (end 0: all)."""
        ...

    def record_inbound(
        self, seq: int, msg_type: str, raw: bytes, fields: dict[str, str], poss_dup: bool
    ) -> int: ...

    def set_next_in(self, n: int) -> None: ...

    def set_logged_on(self, logged_on: bool, error: str = "") -> None: ...

    def acquire(self, owner: str, seconds: float) -> bool: ...

    def renew(self, owner: str, seconds: float) -> bool: ...

    def release(self, owner: str) -> None: ...


@dataclass
class StoredMessage:
    id: int
    direction: str
    seq: int
    msg_type: str
    raw: bytes
    fields: dict[str, str]
    cl_ord_id: str = ""
    poss_dup: bool = False


@dataclass
class MemoryStore:
    """A SessionStore in memory (thread-safe). ``messages`` is every message, in order."""

    next_out: int = 1
    next_in: int = 1
    messages: list[StoredMessage] = field(default_factory=list)
    logged_on: bool = False
    last_error: str = ""
    lease_owner: str = ""
    lease_until: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def load(self) -> tuple[int, int]:
        with self.lock:
            return self.next_out, self.next_in

    def reserve_out_seq(self) -> int:
        with self.lock:
            seq = self.next_out
            self.next_out += 1
            self._changed()
            return seq

    def set_next_out(self, n: int) -> None:
        with self.lock:
            self.next_out = n
            self._changed()

    def store_outbound(
        self,
        seq: int,
        msg_type: str,
        raw: bytes,
        fields: dict[str, str],
        cl_ord_id: str = "",
        poss_dup: bool = False,
    ) -> int:
        return self._append("out", seq, msg_type, raw, fields, cl_ord_id, poss_dup)

    def outbound(self, begin: int, end: int) -> list[tuple[int, str, bytes]]:
        with self.lock:
            return sorted(
                (m.seq, m.msg_type, m.raw)
                for m in self.messages
                if m.direction == "out"
                and not m.poss_dup
                and m.seq >= begin
                and (end == 0 or m.seq <= end)
            )

    def record_inbound(
        self, seq: int, msg_type: str, raw: bytes, fields: dict[str, str], poss_dup: bool
    ) -> int:
        return self._append("in", seq, msg_type, raw, fields, fields.get("11", ""), poss_dup)

    def set_next_in(self, n: int) -> None:
        with self.lock:
            self.next_in = n
            self._changed()

    def set_logged_on(self, logged_on: bool, error: str = "") -> None:
        with self.lock:
            self.logged_on = logged_on
            if error or logged_on:
                self.last_error = error

    def acquire(self, owner: str, seconds: float, *, now: float | None = None) -> bool:
        import time

        t = time.monotonic() if now is None else now
        with self.lock:
            if self.lease_owner and self.lease_owner != owner and self.lease_until > t:
                return False
            self.lease_owner, self.lease_until = owner, t + seconds
            return True

    def renew(self, owner: str, seconds: float) -> bool:
        with self.lock:
            if self.lease_owner != owner:
                return False
            return self.acquire(owner, seconds)

    def release(self, owner: str) -> None:
        with self.lock:
            if self.lease_owner == owner:
                self.lease_owner, self.lease_until = "", 0.0

    def inbound_messages(self) -> list[StoredMessage]:
        with self.lock:
            return [m for m in self.messages if m.direction == "in"]

    def outbound_messages(self) -> list[StoredMessage]:
        with self.lock:
            return [m for m in self.messages if m.direction == "out"]

    def _append(
        self,
        direction: str,
        seq: int,
        msg_type: str,
        raw: bytes,
        fields: dict[str, str],
        cl_ord_id: str,
        poss_dup: bool,
    ) -> int:
        with self.lock:
            self.messages.append(
                StoredMessage(
                    id=len(self.messages) + 1,
                    direction=direction,
                    seq=seq,
                    msg_type=msg_type,
                    raw=bytes(raw),
                    fields=dict(fields),
                    cl_ord_id=cl_ord_id,
                    poss_dup=poss_dup,
                )
            )
            self._changed()
            return len(self.messages)

    def _changed(self) -> None:
        """Hook for subclasses that persist (the simulated broker's JSON state)."""


def _raw_text(raw: bytes) -> str:
    # FIX is ASCII on the wire; latin-1 maps every byte, so the text round-trips exactly.
    return raw.decode("latin-1")


class DbSessionStore:
    """A SessionStore on ``FixSession``/``FixMessage``. Every write is its own short
    transaction (autocommit), so a stored message is committed before its bytes are written
    and never rolled back by a caller's transaction. Messages are linked to their ``Route``
    by ClOrdID, and every message but Heartbeat and TestRequest is audited."""

    def __init__(self, session_name: str | None = None) -> None:
        from django.conf import settings

        self.session_name = session_name or settings.FIX_SESSION_NAME
        self._session_id: int | None = None

    # -- helpers --
    def _session(self) -> Any:
        from django.conf import settings

        from orders.models import FixSession

        obj, _ = FixSession.objects.get_or_create(
            name=self.session_name,
            defaults={
                "sender_comp_id": settings.FIX_SENDER_COMP_ID,
                "target_comp_id": settings.FIX_TARGET_COMP_ID,
            },
        )
        self._session_id = obj.pk
        return obj

    def _sid(self) -> int:
        if self._session_id is None:
            self._session()
        return self._session_id  # type: ignore[return-value]

    def _rows(self) -> Any:
        from orders.models import FixSession

        return FixSession.objects.filter(pk=self._sid())

    # -- protocol --
    def load(self) -> tuple[int, int]:
        s = self._session()
        return s.next_out_seq, s.next_in_seq

    def reserve_out_seq(self) -> int:
        from django.db import transaction
        from django.db.models import F

        from orders.models import FixSession

        with transaction.atomic():
            self._rows().update(next_out_seq=F("next_out_seq") + 1)
            value = FixSession.objects.values_list("next_out_seq", flat=True).get(pk=self._sid())
        return int(value) - 1

    def set_next_out(self, n: int) -> None:
        self._rows().update(next_out_seq=n)

    def store_outbound(
        self,
        seq: int,
        msg_type: str,
        raw: bytes,
        fields: dict[str, str],
        cl_ord_id: str = "",
        poss_dup: bool = False,
    ) -> int:
        return self._write("out", seq, msg_type, raw, fields, cl_ord_id, poss_dup)

    def outbound(self, begin: int, end: int) -> list[tuple[int, str, bytes]]:
        from orders.models import FixMessage

        qs = FixMessage.objects.filter(
            session_id=self._sid(), direction="out", poss_dup=False, seq_num__gte=begin
        )
        if end:
            qs = qs.filter(seq_num__lte=end)
        rows = qs.order_by("seq_num").values_list("seq_num", "msg_type", "raw")
        return [(seq, t, raw.encode("latin-1")) for seq, t, raw in rows]

    def record_inbound(
        self, seq: int, msg_type: str, raw: bytes, fields: dict[str, str], poss_dup: bool
    ) -> int:
        return self._write("in", seq, msg_type, raw, fields, fields.get("11", ""), poss_dup)

    def set_next_in(self, n: int) -> None:
        self._rows().update(next_in_seq=n)

    def set_logged_on(self, logged_on: bool, error: str = "") -> None:
        from django.utils import timezone

        values: dict[str, Any] = {"logged_on": logged_on, "updated_at": timezone.now()}
        if logged_on:
            values["last_logon_at"] = timezone.now()
            values["last_error"] = ""
        if error:
            values["last_error"] = error[:TEXT_MAX]
        self._rows().update(**values)

    def acquire(self, owner: str, seconds: float) -> bool:
        """Take the lease if it is free, expired or already ours: one conditional UPDATE, so
        two processes racing for it cannot both win (SQLite and PostgreSQL alike)."""
        from django.db.models import Q
        from django.utils import timezone

        now = timezone.now()
        until = now + dt.timedelta(seconds=seconds)
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
        return (
            self._rows().filter(free).update(lease_owner=owner, lease_until=until, updated_at=now)
            == 1
        )

    def renew(self, owner: str, seconds: float) -> bool:
        from django.utils import timezone

        now = timezone.now()
        until = now + dt.timedelta(seconds=seconds)
        return self._rows().filter(lease_owner=owner).update(lease_until=until) == 1

    def release(self, owner: str) -> None:
        self._rows().filter(lease_owner=owner).update(lease_owner="", lease_until=None)

    def _write(
        self,
        direction: str,
        seq: int,
        msg_type: str,
        raw: bytes,
        fields: dict[str, str],
        cl_ord_id: str,
        poss_dup: bool,
    ) -> int:
        from django.db import transaction

        from compliance.services.audit import audit_record
        from orders.models import FixMessage, Route

        text = fields.get("58", "")[:TEXT_MAX]
        route = Route.objects.filter(cl_ord_id=cl_ord_id).first() if cl_ord_id else None
        with transaction.atomic():
            row = FixMessage.objects.create(
                session_id=self._sid(),
                direction=direction,
                seq_num=seq,
                msg_type=msg_type,
                cl_ord_id=cl_ord_id[:64],
                route=route,
                poss_dup=poss_dup,
                raw=_raw_text(raw),
                fields=fields,
                text=text,
            )
            if msg_type not in UNAUDITED_TYPES:
                audit_record(
                    actor=FIX_ACTOR,
                    action="fix.sent" if direction == "out" else "fix.received",
                    obj=row,
                    after={
                        "seq": seq,
                        "msg_type": msg_type,
                        "cl_ord_id": cl_ord_id,
                        "poss_dup": poss_dup,
                        "text": text,
                    },
                )
        return row.pk
