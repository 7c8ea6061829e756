"""The audit service against the database: appends chain, verification catches tampering,
checkpoints, and (on PostgreSQL) the append-only triggers and serialised concurrent appends."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from compliance.models import AuditEvent
from compliance.selectors import audit_chain_verify
from compliance.services.audit import audit_checkpoint_write, audit_checkpoints_read, audit_record


def _tamper(sql: str, params: list) -> None:
    """Change an audit row behind the application's back (as an attacker with DB access would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # a superuser can switch user triggers off for the session: the chain still tells
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("RESET session_replication_role")


@pytest.mark.django_db
def test_audit_record_chains_events_with_gap_free_sequence(pm):
    first = audit_record(actor=pm, action="test.one", object_type="x", object_id=1, after={"a": 1})
    second = audit_record(actor="system:test", action="test.two")
    assert (first.seq, second.seq) == (first.seq, first.seq + 1)
    assert second.prev_hash == first.hash
    assert second.actor is None
    assert second.actor_label == "system:test"
    assert audit_chain_verify().ok


@pytest.mark.django_db
def test_verify_catches_an_altered_row_and_names_it(pm):
    events = [audit_record(actor=pm, action=f"test.{i}", after={"i": i}) for i in range(4)]
    _tamper("UPDATE compliance_auditevent SET reason = %s WHERE id = %s", ["edited", events[2].pk])
    result = audit_chain_verify()
    assert not result.ok
    assert (result.broken_id, result.broken_seq) == (events[2].pk, events[2].seq)


@pytest.mark.django_db
def test_verify_catches_a_cut_tail_below_a_checkpoint(pm):
    events = [audit_record(actor=pm, action=f"test.{i}") for i in range(3)]
    audit_checkpoint_write()
    assert audit_checkpoints_read()[-1].seq == events[-1].seq
    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[-1].pk])
    result = audit_chain_verify()
    assert not result.ok
    assert "tail was cut" in result.problem


@pytest.mark.django_db
def test_checkpoint_file_only_grows_and_skips_an_unchanged_head(pm):
    audit_record(actor=pm, action="test.a")
    audit_checkpoint_write()
    audit_checkpoint_write()
    audit_record(actor=pm, action="test.b")
    audit_checkpoint_write()
    assert [c.seq for c in audit_checkpoints_read()][-2:] == [
        AuditEvent.objects.order_by("-seq")[1].seq,
        AuditEvent.objects.order_by("-seq")[0].seq,
    ]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE compliance_auditevent SET reason = 'x'",
        "DELETE FROM compliance_auditevent",
        "TRUNCATE compliance_auditevent",
    ],
)
def test_postgres_trigger_rejects_changes_to_audit_rows(pm, sql):
    audit_record(actor=pm, action="test.protected")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # settle deferred FK checks first
    with (
        pytest.raises(DatabaseError, match=r"append-only|Cannot update or delete"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEvent.objects.filter(action="test.protected").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_chain(pm):
    """Eight threads append at once; the lock makes them queue, so the chain never forks."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                audit_record(actor="system:thread", action=f"test.concurrent.{n}.{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    result = audit_chain_verify()
    assert result.ok, result.message


@pytest.mark.django_db
def test_scheduled_checkpoint_verifies_what_was_appended_since_the_last_one(pm):
    from compliance.services.audit import audit_checkpoint_take

    audit_record(actor=pm, action="test.a")
    first = audit_checkpoint_take()
    later = audit_record(actor=pm, action="test.b")
    assert audit_checkpoint_take()["seq"] == later.seq
    assert first["seq"] == later.seq - 1


@pytest.mark.django_db
def test_scheduled_checkpoint_refuses_a_chain_altered_since_the_last_one(pm):
    from compliance.services.audit import audit_checkpoint_take

    audit_record(actor=pm, action="test.a")
    audit_checkpoint_take()
    altered = audit_record(actor=pm, action="test.b")
    _tamper("UPDATE compliance_auditevent SET reason = %s WHERE id = %s", ["edited", altered.pk])
    result = audit_checkpoint_take()
    assert result["seq"] == 0
    assert f"sequence {altered.seq}" in result["refused"]
    assert audit_checkpoints_read()[-1].seq == altered.seq - 1
    assert AuditEvent.objects.filter(action="audit.checkpoint_refused").exists()


@pytest.mark.django_db
def test_scheduled_checkpoint_refuses_when_the_checkpointed_tail_was_cut(pm):
    from compliance.services.audit import audit_checkpoint_take

    event = audit_record(actor=pm, action="test.a")
    audit_checkpoint_take()
    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [event.pk])
    assert "tail was cut" in audit_checkpoint_take()["refused"]
