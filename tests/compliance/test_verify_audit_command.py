"""``manage.py verify_audit`` and ``manage.py audit_checkpoint``: exit codes and messages for
an intact chain, an altered, deleted or out-of-chain row, and a tail cut below a checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance.management.commands import audit_checkpoint, verify_audit
from compliance.models import AuditEvent
from compliance.services.audit import audit_checkpoints_read, audit_record


def _tamper(sql: str, params: list) -> None:
    """Change an audit row behind the application's back (as an attacker with DB access would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # a superuser can switch user triggers off for the session: the chain still tells
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("RESET session_replication_role")


def _verify() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def _broken() -> CommandError:
    with pytest.raises(CommandError) as info:
        _verify()
    assert info.value.returncode == 1
    return info.value


@pytest.fixture
def events(db) -> list[AuditEvent]:
    return [audit_record(actor="system:test", action=f"test.{i}", after={"i": i}) for i in range(4)]


def test_verify_audit_prints_intact_and_exits_zero(events):
    assert _verify() == "Audit chain intact: 4 events verified (head #4).\n"


def test_verify_audit_exits_one_from_the_command_line_when_broken(events, capsys):
    _tamper("UPDATE compliance_auditevent SET reason = 'x' WHERE id = %s", [events[2].pk])
    with pytest.raises(SystemExit) as info:
        verify_audit.Command().run_from_argv(["manage.py", "verify_audit"])
    assert info.value.code == 1
    assert f"event id {events[2].pk}, sequence 3" in capsys.readouterr().err


def test_verify_audit_names_an_altered_event(events):
    _tamper("UPDATE compliance_auditevent SET reason = 'x' WHERE id = %s", [events[2].pk])
    assert str(_broken()) == (
        f"Audit chain BROKEN at event id {events[2].pk}, sequence 3: "
        "stored hash does not match the event's contents (the row was altered)"
    )


def test_verify_audit_names_the_event_after_a_deleted_one(events):
    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[1].pk])
    assert str(_broken()) == (
        f"Audit chain BROKEN at event id {events[2].pk}, sequence 3: sequence gap: expected #2, "
        "found #3 (an event was deleted or inserted out of chain)"
    )


def test_verify_audit_names_an_event_inserted_out_of_chain(events):
    forged = AuditEvent.objects.create(
        seq=5,
        created_at=events[-1].created_at,
        actor_label="mallory",
        action="test.forged",
        prev_hash="f" * 64,
        hash="e" * 64,
    )
    assert str(_broken()) == (
        f"Audit chain BROKEN at event id {forged.pk}, sequence 5: prev_hash does not match the "
        "previous event's hash (an event was inserted, re-ordered or rewritten)"
    )


def test_verify_audit_sees_a_tail_cut_below_a_checkpoint(events):
    call_command("audit_checkpoint", stdout=io.StringIO())
    _tamper("DELETE FROM compliance_auditevent WHERE seq >= %s", [3])
    assert str(_broken()) == (
        "Audit chain BROKEN at sequence 4: the chain ends at #2 but a checkpoint recorded #4: "
        "the tail was cut"
    )


def test_verify_audit_without_a_checkpoint_cannot_see_a_cut_tail(events):
    """Why checkpoints exist: the chain alone still looks whole after its tail is cut."""
    _tamper("DELETE FROM compliance_auditevent WHERE seq >= %s", [3])
    assert _verify() == "Audit chain intact: 2 events verified (head #2).\n"


def test_verify_audit_exits_two_on_an_unreadable_checkpoint_file(events):
    Path(settings.AUDIT_CHECKPOINT_PATH).write_text("not json\n", encoding="utf-8")
    with pytest.raises(CommandError) as info:
        _verify()
    assert info.value.returncode == 2
    assert str(info.value) == (
        "Cannot read the audit checkpoints: "
        f"{settings.AUDIT_CHECKPOINT_PATH}: line 1 is not a checkpoint record"
    )


def test_verify_audit_help_describes_the_check():
    help_text = verify_audit.Command().create_parser("manage.py", "verify_audit").format_help()
    assert "hash chain" in help_text
    assert "AUDIT_CHECKPOINT_PATH" in help_text


def test_audit_checkpoint_writes_the_head_now(events):
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    head = events[-1]
    assert out.getvalue() == (
        f"Checkpoint #{head.seq} {head.hash} is in {settings.AUDIT_CHECKPOINT_PATH}.\n"
    )
    assert [(c.seq, c.hash) for c in audit_checkpoints_read()] == [(head.seq, head.hash)]


def test_audit_checkpoint_on_an_empty_trail_writes_nothing(db):
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert out.getvalue() == audit_checkpoint.EMPTY_TRAIL + "\n"
    assert audit_checkpoints_read() == []


def test_audit_checkpoint_refuses_to_bless_a_tampered_chain(events):
    _tamper("UPDATE compliance_auditevent SET reason = 'x' WHERE id = %s", [events[0].pk])
    with pytest.raises(CommandError) as info:
        call_command("audit_checkpoint", stdout=io.StringIO())
    assert info.value.returncode == 1
    assert str(info.value).startswith(
        f"No checkpoint written: Audit chain BROKEN at event id {events[0].pk}, sequence 1:"
    )
    assert audit_checkpoints_read() == []
    call_command("audit_checkpoint", "--no-verify", stdout=io.StringIO())
    assert [c.seq for c in audit_checkpoints_read()] == [4]


@pytest.mark.parametrize("number", [1e16, -2.5e20, 0.1 + 0.2, 1e-7, 12345678901234567890])
def test_verify_audit_finds_events_with_large_and_small_numbers_intact(db, number):
    """PostgreSQL's jsonb hands ``1e16`` back as an integer: the stored form must hash alike."""
    audit_record(actor="system:test", action="test.number", after={"v": number, "l": [number]})
    assert _verify() == "Audit chain intact: 1 events verified (head #1).\n"
