"""The audit trail's hash chain and export escaping, as pure functions (no Django).

Each event's hash is ``SHA-256(prev_hash || canonical_json(fields))`` where the canonical JSON
has sorted keys, no insignificant white space, UTF-8 text, Decimals as strings and datetimes as
ISO 8601 in UTC with microseconds. Verification recomputes every hash in sequence order and
compares the head with externally kept checkpoints (DESIGN 8).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

GENESIS_HASH = "0" * 64

# The fields of an event that its hash covers, in the canonical form.
HASHED_FIELDS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "request_id",
    "ip",
    "reason",
)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in audit data")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not audit-serialisable")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, compact separators, non-ASCII kept as UTF-8."""
    return json.dumps(
        value,
        default=_default,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _round_trip_stable(value: Any) -> Any:
    # json writes floats from 1e16 up as "1e+16"; PostgreSQL's jsonb keeps the number as
    # numeric and hands it back as the integer 10000000000000000, which would no longer hash
    # the same. Such floats are whole numbers anyway, so store them as integers.
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e16:
        return int(value)
    if isinstance(value, dict):
        return {key: _round_trip_stable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_round_trip_stable(item) for item in value]
    return value


def normalise(value: Any) -> Any:
    """The JSON-native form of ``value`` (what the database stores and the hash covers)."""
    if value is None:
        return None
    return _round_trip_stable(json.loads(canonical_json(value)))


def event_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical JSON of the event's hashed fields."""
    payload = {name: fields.get(name) for name in HASHED_FIELDS}
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(payload).encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainEvent:
    """An event as read back from storage, for verification."""

    id: int
    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_id: int | None = None
    broken_seq: int | None = None
    problem: str = ""

    @property
    def message(self) -> str:
        if self.ok:
            return f"Audit chain intact: {self.checked} events verified (head #{self.head_seq})."
        where = f"event id {self.broken_id}, sequence {self.broken_seq}"
        if self.broken_id is None:
            where = f"sequence {self.broken_seq}"
        return f"Audit chain BROKEN at {where}: {self.problem}"


def verify_chain(
    events: Iterable[ChainEvent],
    checkpoints: Sequence[Checkpoint] = (),
    *,
    start: Checkpoint | None = None,
) -> VerifyResult:
    """Recompute the chain over ``events`` (in ascending ``seq``) and check the checkpoints.

    Names the first broken link: a sequence gap (a deleted or out-of-chain row), a
    ``prev_hash`` that does not match the previous event (an inserted or re-ordered row), a
    recomputed hash that differs (an altered row), or a checkpoint the chain no longer reaches
    or no longer matches (a cut tail or a rewritten chain).

    With ``start`` (a trusted earlier checkpoint) the events are those after it, and the first
    of them must link to the checkpoint's hash: an incremental check of what was appended since.
    """
    expected_prev = start.hash if start else GENESIS_HASH
    expected_seq = start.seq + 1 if start else 1
    checked = 0
    head_seq, head_hash = (start.seq, start.hash) if start else (0, GENESIS_HASH)
    by_seq: dict[int, str] = {}
    wanted = {cp.seq for cp in checkpoints}
    for event in events:
        if event.seq != expected_seq:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                event.id,
                event.seq,
                f"sequence gap: expected #{expected_seq}, found #{event.seq} "
                "(an event was deleted or inserted out of chain)",
            )
        if event.prev_hash != expected_prev:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                event.id,
                event.seq,
                "prev_hash does not match the previous event's hash "
                "(an event was inserted, re-ordered or rewritten)",
            )
        recomputed = event_hash(event.prev_hash, event.fields)
        if recomputed != event.hash:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                event.id,
                event.seq,
                "stored hash does not match the event's contents (the row was altered)",
            )
        if event.seq in wanted:
            by_seq[event.seq] = event.hash
        checked += 1
        expected_prev = event.hash
        expected_seq += 1
        head_seq, head_hash = event.seq, event.hash
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        if cp.seq > head_seq:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                None,
                cp.seq,
                f"the chain ends at #{head_seq} but a checkpoint recorded #{cp.seq}: "
                "the tail was cut",
            )
        if by_seq.get(cp.seq) != cp.hash:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                None,
                cp.seq,
                f"checkpoint #{cp.seq} does not match the chain: the chain was rewritten",
            )
    return VerifyResult(True, checked, head_seq, head_hash)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def csv_safe(value: Any) -> str:
    """A cell value safe to open in a spreadsheet (OWASP ASVS formula-injection escaping).

    A text cell that begins with ``= + - @``, a tab, a carriage return or a null is prefixed
    with a single quote so that spreadsheet programs show it as text, never run it.
    """
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)  # a number is data, never a formula
    text = (
        value
        if isinstance(value, str)
        else (canonical_json(value) if isinstance(value, dict | list) else str(value))
    )
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text
