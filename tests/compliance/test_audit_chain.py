"""Unit tests of the pure hash-chain module: canonical JSON, hashing, verification, CSV escaping."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.audit_chain import (
    GENESIS_HASH,
    ChainEvent,
    Checkpoint,
    canonical_json,
    csv_safe,
    event_hash,
    verify_chain,
)


def _chain(n: int) -> list[ChainEvent]:
    events, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        fields = {
            "seq": seq,
            "created_at": f"2026-11-25T12:00:0{seq % 10}.000000+00:00",
            "actor_id": 1,
            "actor_label": "pm",
            "action": "account.update",
            "object_type": "portfolios.account",
            "object_id": str(seq),
            "before": {"cash": "1.00"},
            "after": {"cash": "2.00"},
            "request_id": "r",
            "ip": "127.0.0.1",
            "reason": "",
        }
        digest = event_hash(prev, fields)
        events.append(ChainEvent(id=100 + seq, seq=seq, prev_hash=prev, hash=digest, fields=fields))
        prev = digest
    return events


def test_canonical_json_sorts_keys_and_is_compact():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_canonical_json_writes_decimals_as_strings_and_datetimes_in_utc():
    value = {"x": Decimal("1.50"), "t": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)}
    assert canonical_json(value) == '{"t":"2026-01-02T03:04:05.000006+00:00","x":"1.50"}'


def test_canonical_json_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"t": datetime(2026, 1, 1)})  # noqa: DTZ001


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_event_hash_does_not_depend_on_key_order(data):
    fields = {"action": "x", "after": data}
    reordered = {"after": dict(reversed(list(data.items()))), "action": "x"}
    assert event_hash(GENESIS_HASH, fields) == event_hash(GENESIS_HASH, reordered)


def test_event_hash_changes_with_any_field_and_with_prev_hash():
    fields = _chain(1)[0].fields
    base = event_hash(GENESIS_HASH, fields)
    assert event_hash("1" * 64, fields) != base
    assert event_hash(GENESIS_HASH, {**fields, "reason": "x"}) != base


def test_verify_chain_accepts_an_intact_chain_and_counts_it():
    events = _chain(5)
    result = verify_chain(events, [Checkpoint(3, events[2].hash), Checkpoint(5, events[4].hash)])
    assert result.ok
    assert result.checked == 5
    assert result.message == "Audit chain intact: 5 events verified (head #5)."


def test_verify_chain_names_an_altered_event():
    events = _chain(5)
    altered = events[2]
    events[2] = ChainEvent(
        altered.id,
        altered.seq,
        altered.prev_hash,
        altered.hash,
        {**altered.fields, "after": {"cash": "9.00"}},
    )
    result = verify_chain(events)
    assert not result.ok
    assert (result.broken_id, result.broken_seq) == (103, 3)
    assert "altered" in result.message


def test_verify_chain_names_a_deleted_event_as_a_gap():
    events = _chain(5)
    del events[1]
    result = verify_chain(events)
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "sequence gap" in result.problem


def test_verify_chain_detects_a_cut_tail_against_a_checkpoint():
    events = _chain(5)
    checkpoint = Checkpoint(5, events[4].hash)
    result = verify_chain(events[:3], [checkpoint])
    assert not result.ok
    assert "tail was cut" in result.problem


def test_verify_chain_detects_a_rewritten_chain_against_a_checkpoint():
    events = _chain(3)
    result = verify_chain(events, [Checkpoint(2, "f" * 64)])
    assert not result.ok
    assert "rewritten" in result.problem


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\0x"])
def test_csv_safe_escapes_formula_prefixes(cell):
    assert csv_safe(cell) == "'" + cell


def test_csv_safe_leaves_plain_text_and_numbers_alone():
    assert csv_safe("hello") == "hello"
    assert csv_safe(Decimal("-5.00")) == "-5.00"
    assert csv_safe(None) == ""
