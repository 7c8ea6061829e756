"""Audit trail writes: ``audit_record`` is the one function every state change calls, plus
checkpointing of the chain head outside the database.

Appends are serialised by a database lock (a transaction-scoped advisory lock on PostgreSQL;
SQLite runs IMMEDIATE transactions, which hold the database write lock from BEGIN), so two
concurrent writers always see each other's head and never fork the chain.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from compliance.audit_chain import (
    GENESIS_HASH,
    Checkpoint,
    VerifyResult,
    event_hash,
    normalise,
)
from compliance.models import AuditEvent
from rebalance_app.context import current_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.db.models import Model

logger = structlog.get_logger(__name__)

# A fixed key for pg_advisory_xact_lock: "audit" in ASCII.
AUDIT_LOCK_KEY = 0x6175646974


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_LOCK_KEY])


def actor_label_for(actor: AbstractBaseUser | str | None) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.get_username() or "anonymous"


def audit_record(
    *,
    actor: AbstractBaseUser | str | None,
    action: str,
    obj: Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
    request_id: str | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction when there is one.

    ``actor`` is a user, or a string such as ``"system:scan_drift"`` for work done by the
    system. ``obj`` fills object type and id; ``before``/``after`` are JSON-able snapshots.
    """
    ctx = current_context()
    user = actor if actor is not None and not isinstance(actor, str) else None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    with transaction.atomic():
        _lock_chain()
        head = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
        seq = (head["seq"] + 1) if head else 1
        prev_hash = head["hash"] if head else GENESIS_HASH
        fields = {
            "seq": seq,
            # Microsecond precision survives both PostgreSQL and SQLite round trips.
            "created_at": timezone.now(),
            "actor_id": user.pk if user is not None else None,
            "actor_label": actor_label_for(actor)[:150],
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id) if object_id not in (None, "") else "",
            "before": normalise(before),
            "after": normalise(after),
            "request_id": request_id if request_id is not None else ctx.request_id,
            "ip": ip if ip is not None else ctx.ip,
            "reason": reason,
        }
        digest = event_hash(prev_hash, fields)
        return AuditEvent.objects.create(
            seq=seq,
            created_at=fields["created_at"],
            actor=user,
            actor_label=fields["actor_label"],
            action=action,
            object_type=fields["object_type"],
            object_id=fields["object_id"],
            before=fields["before"],
            after=fields["after"],
            request_id=fields["request_id"],
            ip=fields["ip"],
            reason=reason,
            prev_hash=prev_hash,
            hash=digest,
        )


def audit_snapshot(obj: Model) -> dict[str, Any]:
    """A JSON-able picture of a model instance's concrete fields, for before/after values."""
    data = model_to_dict(obj, fields=[f.name for f in obj._meta.concrete_fields])
    data["id"] = obj.pk
    return normalise(data)


def audit_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[Any, Any]:
    """Only the fields that changed, on both sides (the whole picture on create/delete)."""
    if before is None or after is None:
        return before, after
    keys = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def audit_chain_verify_record(*, actor: AbstractBaseUser | str) -> VerifyResult:
    """Recompute the chain, then record that it was verified and what the answer was.

    The event is appended after the check so that it never becomes part of what it reports on.
    """
    from compliance.selectors import audit_chain_verify

    result = audit_chain_verify()
    audit_record(
        actor=actor,
        action="audit.verify",
        object_type="compliance.auditevent",
        after={"ok": result.ok, "checked": result.checked, "broken_seq": result.broken_seq},
    )
    return result


# ---------------------------------------------------------------------------
# Checkpoints outside the database
# ---------------------------------------------------------------------------


def checkpoint_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_PATH)


def audit_checkpoint_write(*, now: datetime | None = None) -> Checkpoint | None:
    """Append the current chain head to the checkpoint file (if it moved since the last line).

    The file is opened in append mode and fsync'd: it only ever grows.
    """
    head = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    if head is None:
        return None
    checkpoint = Checkpoint(seq=head["seq"], hash=head["hash"])
    existing = audit_checkpoints_read()
    if existing and existing[-1] == checkpoint:
        return checkpoint
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "at": (now or timezone.now()).isoformat(),
        },
        sort_keys=True,
    )
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return checkpoint


def audit_checkpoint_take(*, actor: str = "system:audit_checkpoint") -> dict[str, Any]:
    """The scheduled checkpoint: verify what was appended since the last checkpoint, then write
    the new head. A chain that does not verify is never checkpointed; the refusal is audited."""
    from compliance.selectors import audit_chain_verify_since_last_checkpoint

    result = audit_chain_verify_since_last_checkpoint()
    if not result.ok:
        logger.error("audit checkpoint refused", problem=result.message)
        audit_record(
            actor=actor,
            action="audit.checkpoint_refused",
            object_type="compliance.auditevent",
            after={"broken_seq": result.broken_seq, "problem": result.problem},
        )
        return {"seq": 0, "hash": "", "refused": result.message}
    checkpoint = audit_checkpoint_write()
    if checkpoint is None:
        return {"seq": 0, "hash": ""}
    return {"seq": checkpoint.seq, "hash": checkpoint.hash}


def audit_checkpoints_read() -> list[Checkpoint]:
    path = checkpoint_path()
    if not path.exists():
        return []
    checkpoints = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                checkpoints.append(Checkpoint(seq=int(data["seq"]), hash=str(data["hash"])))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}: line {number} is not a checkpoint record") from exc
    return checkpoints
