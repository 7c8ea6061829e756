"""Imports (DESIGN 11): submit a file, then process it all-or-nothing with lineage.

``import_submit`` checks who may import the kind, refuses a file already imported (same
SHA-256 and kind, a succeeded batch that was not a dry run) unless forced, stores the file
and records an ``ImportBatch`` (audited ``import.submitted``). Small files are processed at
once, in the caller's process; files of more than ``IMPORT_ASYNC_ROWS`` rows are processed by
the Celery task ``portfolios.import_process``, enqueued after commit.

``import_process`` claims the batch (``work_claim``: a second delivery of the task does
nothing), reads the file, validates every row and then:

- on any error, writes nothing: the batch is failed with every error (line, column, message);
- on a dry run, writes nothing: the batch succeeds with the rows it would have written;
- else writes every row in ONE transaction (``portfolios.imports.writers.import_write``), and
  the batch's success and its ``import.succeeded`` event commit with the rows. Any exception
  rolls the whole write back and fails the batch with the error and its traceback
  (``import.failed``).

Progress: ``rows_total`` is known once the file is read and ``rows_processed`` counts the rows
written. Inside the write transaction the count is written through a second database
connection (PostgreSQL, autocommit, ``SKIP LOCKED`` so it never waits), so a page polling the
batch sees it move while the rows are still uncommitted; on SQLite it moves at the stages only.

After the commit, price imports rescan the accounts holding the priced securities
(``prices_changed``) and lot, transaction and cash-flow imports the accounts they touched
(``holdings_changed``).
"""

from __future__ import annotations

import hashlib
import io
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, connections, transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from compliance.services.audit import audit_record
from portfolios.models import ImportBatch, ImportKind
from rebalance_app.exceptions import (
    ApplicationError,
    ImportRejected,
    PermissionDenied,
    ValidationFailed,
)
from rebalance_app.roles import Role, user_roles
from rebalance_app.work import WorkStatus, work_claim, work_enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.imports.validate import ValidatedImport

PROCESS_TASK = "portfolios.import_process"
IMPORT_ACTOR = "system:import"

ACTION_SUBMITTED = "import.submitted"
ACTION_SUCCEEDED = "import.succeeded"
ACTION_FAILED = "import.failed"

DUPLICATE_FILE = (
    "This file was already imported as batch {id} on {date}; submit it again with force to "
    "import it twice."
)
UNKNOWN_KIND = "Unknown import kind '{kind}'. Choose one of: {kinds}."
FILE_TOO_LARGE = "The file is {size} MB; files of at most {max} MB can be imported."
IMPORT_FORBIDDEN = "Only {roles} users may import {kind}."
ROWS_REFUSED = "The file was refused: {count} {noun} found; nothing was imported."
IMPORT_CRASHED = "The import failed and nothing was written: {error}"
DRY_RUN_NOTE = "Dry run: the file is valid; nothing was written."
FILE_MISSING = "The stored file of batch {id} cannot be read: {error}"

IMPORTABLE_KINDS = tuple(k for k in ImportKind.values if k != ImportKind.DEMO)
# Restricted lists belong to compliance (DESIGN 1); books and reference data to operations.
KIND_ROLES: dict[str, tuple[Role, ...]] = {
    ImportKind.RESTRICTIONS: (Role.COMPLIANCE, Role.ADMIN),
}
DEFAULT_ROLES: tuple[Role, ...] = (Role.OPS, Role.ADMIN)
HOLDINGS_KINDS = frozenset({ImportKind.LOTS, ImportKind.TRANSACTIONS, ImportKind.CASH_FLOWS})
MAX_STORED_ERRORS = 10_000  # a file with more bad rows keeps the first ones and the count
SUMMARY_MAX_IDS = 1_000


# ---------------------------------------------------------------------------
# Who may import what
# ---------------------------------------------------------------------------


def import_roles(kind: str) -> tuple[Role, ...]:
    """The roles that may import ``kind``."""
    return KIND_ROLES.get(kind, DEFAULT_ROLES)


def user_may_import(user: AbstractBaseUser | str, kind: str) -> bool:
    """A system actor (a string: the command without ``--user``) may import every kind."""
    if isinstance(user, str):
        return True
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    allowed = {r.value for r in import_roles(kind)}
    return bool(user_roles(user) & allowed)


def _check(actor: AbstractBaseUser | str, kind: str, size: int) -> None:
    if kind not in IMPORTABLE_KINDS:
        raise ValidationFailed(
            UNKNOWN_KIND.format(kind=kind, kinds=", ".join(IMPORTABLE_KINDS)),
            extra={"kinds": list(IMPORTABLE_KINDS)},
        )
    if not user_may_import(actor, kind):
        roles = " or ".join(r.value for r in import_roles(kind))
        label = ImportKind(kind).label.lower()
        raise PermissionDenied(IMPORT_FORBIDDEN.format(roles=roles, kind=label))
    if size > settings.IMPORT_MAX_BYTES:
        raise ValidationFailed(
            FILE_TOO_LARGE.format(
                size=round(size / 2**20, 1), max=round(settings.IMPORT_MAX_BYTES / 2**20, 1)
            )
        )


# ---------------------------------------------------------------------------
# Submit
# ---------------------------------------------------------------------------


def _estimate_rows(data: bytes, file_name: str) -> int:
    """Data rows, cheaply: lines of a CSV (a quoted line break counts twice), the sheet's
    dimension of an XLSX. Decides inline against Celery only; reading counts them exactly."""
    if Path(file_name).suffix.lower() == ".xlsx":
        try:
            from openpyxl import load_workbook

            workbook = load_workbook(io.BytesIO(data), read_only=True)
            rows = workbook.worksheets[0].max_row or 0
            workbook.close()
        except Exception:
            return 0
        return max(rows - 1, 0)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return max(lines - 1, 0)


def _previous_import(kind: str, digest: str) -> ImportBatch | None:
    return (
        ImportBatch.objects.filter(
            kind=kind, sha256=digest, status=WorkStatus.SUCCEEDED, dry_run=False
        )
        .order_by("created_at", "pk")
        .first()
    )


def import_submit(
    *,
    actor: AbstractBaseUser | str,
    kind: str,
    file_name: str,
    data: bytes,
    dry_run: bool = False,
    force: bool = False,
    inline: bool | None = None,
) -> ImportBatch:
    """Record and start an import of ``data``. ``inline`` forces processing in this process
    (True, the command) or in a worker (False); None decides by ``IMPORT_ASYNC_ROWS``.

    Returns the batch: processed already when inline (look at its status and errors), else
    queued. Raises PermissionDenied (role), ValidationFailed (unknown kind, too large, already
    imported).
    """
    _check(actor, kind, len(data))
    digest = hashlib.sha256(data).hexdigest()
    previous = _previous_import(kind, digest)
    if previous is not None and not force:
        day = timezone.localtime(previous.created_at).date().isoformat()
        raise ValidationFailed(
            DUPLICATE_FILE.format(id=previous.pk, date=day),
            extra={"batch": previous.pk},
        )
    rows = _estimate_rows(data, file_name)
    run_inline = inline if inline is not None else rows <= settings.IMPORT_ASYNC_ROWS
    user = None if isinstance(actor, str) else actor
    name = Path(str(file_name).replace("\\", "/")).name[:255] or "upload"
    with transaction.atomic():
        batch = ImportBatch(
            kind=kind,
            file_name=name,
            sha256=digest,
            size_bytes=len(data),
            created_by=user,
            dry_run=dry_run,
            forced=previous is not None,
            rows_total=rows,
            status=WorkStatus.QUEUED,
        )
        batch.file.save(f"{digest[:16]}-{get_valid_filename(name)}", ContentFile(data), save=False)
        batch.save()
        audit_record(
            actor=actor,
            action=ACTION_SUBMITTED,
            obj=batch,
            after={
                "kind": kind,
                "file_name": name,
                "sha256": digest,
                "size_bytes": len(data),
                "dry_run": dry_run,
                "forced": batch.forced,
                "runs": "inline" if run_inline else "worker",
            },
        )
        if not run_inline:
            work_enqueue(item=batch)
    if run_inline:
        import_process(batch_id=batch.pk)
        batch.refresh_from_db()
    return batch


# ---------------------------------------------------------------------------
# Process
# ---------------------------------------------------------------------------


class _ClaimLost(Exception):
    """The batch is no longer this process's to finish (the sweep gave it to another)."""


class _Progress:
    """Writes ``rows_processed`` where a poller can see it (module docstring)."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        self._side: Any = None

    def __call__(self, rows: int) -> None:
        if not connection.in_atomic_block:
            ImportBatch.objects.filter(pk=self.batch_id).update(rows_processed=rows)
            return
        if connection.vendor != "postgresql":
            return
        if self._side is None:
            self._side = connections.create_connection("default")
        table = ImportBatch._meta.db_table
        with self._side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET rows_processed = %s WHERE id = ("  # noqa: S608
                f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE SKIP LOCKED)",
                [rows, self.batch_id],
            )

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None


def _read(batch: ImportBatch) -> bytes:
    try:
        with batch.file.open("rb") as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise ImportRejected(
            FILE_MISSING.format(id=batch.pk, error=exc),
            extra={"errors": [{"line": 0, "column": "", "message": str(exc)}]},
        ) from exc


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _stored_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The writer's summary with long id lists cut to ``SUMMARY_MAX_IDS`` (and counted)."""
    stored: dict[str, Any] = {}
    for key, value in summary.items():
        if key.endswith("_ids") and isinstance(value, list):
            stored[f"{key.removesuffix('_ids')}s_affected"] = len(value)
            stored[key] = value[:SUMMARY_MAX_IDS]
            if len(value) > SUMMARY_MAX_IDS:
                stored[f"{key}_truncated"] = True
        else:
            stored[key] = value
    return stored


def _audit_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.endswith("_ids")}


def _finish_succeeded(
    batch: ImportBatch,
    *,
    actor: AbstractBaseUser | str,
    rows: int,
    summary: dict[str, Any],
    started: float,
) -> None:
    """Mark the (still claimed) batch succeeded and audit it; call inside a transaction."""
    duration = _elapsed_ms(started)
    updated = ImportBatch.objects.filter(
        pk=batch.pk, status=WorkStatus.RUNNING, started_at=batch.started_at
    ).update(
        status=WorkStatus.SUCCEEDED,
        finished_at=timezone.now(),
        rows_total=rows,
        rows_processed=rows,
        rows_accepted=rows,
        summary=summary,
        errors=[],
        error="",
        error_detail="",
        duration_ms=duration,
    )
    if updated != 1:
        raise _ClaimLost
    audit_record(
        actor=actor,
        action=ACTION_SUCCEEDED,
        obj=batch,
        after={"rows_accepted": rows, "dry_run": batch.dry_run, **_audit_summary(summary)},
    )


def _finish_failed(
    batch: ImportBatch,
    *,
    actor: AbstractBaseUser | str,
    error: str,
    errors: list[dict[str, Any]],
    detail: str,
    started: float,
    rows_total: int | None = None,
    error_count: int | None = None,
) -> None:
    stored = errors[:MAX_STORED_ERRORS]
    count = len(errors) if error_count is None else error_count
    fields: dict[str, Any] = {
        "status": WorkStatus.FAILED,
        "finished_at": timezone.now(),
        "error": error[:500],
        "error_detail": detail,
        "errors": stored,
        "rows_accepted": 0,
        "rows_processed": 0,
        "duration_ms": _elapsed_ms(started),
        "summary": {"error_count": count, "errors_truncated": count > len(stored)},
    }
    if rows_total is not None:
        fields["rows_total"] = rows_total
    with transaction.atomic():
        updated = ImportBatch.objects.filter(
            pk=batch.pk, status=WorkStatus.RUNNING, started_at=batch.started_at
        ).update(**fields)
        if updated != 1:
            return
        audit_record(
            actor=actor,
            action=ACTION_FAILED,
            obj=batch,
            after={"error": error[:500], "error_count": count},
        )


def _after_commit_hooks(kind: str, summary: dict[str, Any]) -> None:
    """Request event drift scans of the affected accounts once the import commits (and, for
    prices, a risk model rebuild)."""
    from portfolios import services
    from portfolios.services import drift, risk

    if kind == ImportKind.PRICES:
        summary["rescanned_account_ids"] = drift.prices_changed(
            security_ids=summary.get("security_ids", [])
        )
        risk.risk_model_rebuild_request()
    elif kind in HOLDINGS_KINDS:
        services.holdings_changed(account_ids=summary.get("account_ids", []))


def _validate(batch: ImportBatch) -> tuple[ValidatedImport, int]:
    from portfolios.imports.readers import read_table
    from portfolios.imports.validate import import_validate

    frame = read_table(data=_read(batch), file_name=batch.file_name)
    ImportBatch.objects.filter(pk=batch.pk).update(rows_total=len(frame), rows_processed=0)
    validated = import_validate(kind=batch.kind, frame=frame)
    return validated, len(frame)


def import_process(*, batch_id: int) -> dict[str, Any]:
    """Read, validate and write one submitted batch, all or nothing (module docstring).

    Never raises for a bad file or a failed write: the outcome is on the batch (status,
    errors, error, error_detail). Returns a small JSON result for the task.
    """
    from portfolios.imports.writers import import_write

    if not work_claim(model=ImportBatch, pk=batch_id):
        return {"batch": batch_id, "claimed": False}
    batch = ImportBatch.objects.select_related("created_by").get(pk=batch_id)
    actor: AbstractBaseUser | str = batch.created_by or IMPORT_ACTOR
    started = time.perf_counter()
    progress = _Progress(batch.pk)
    rows_total: int | None = None
    try:
        validated, rows_total = _validate(batch)
        if validated.errors:
            errors = list(validated.errors)
            count = max(getattr(validated, "error_count", 0), len(errors))
            noun = "error" if count == 1 else "errors"
            _finish_failed(
                batch,
                actor=actor,
                error=ROWS_REFUSED.format(count=count, noun=noun),
                errors=errors,
                detail="",
                started=started,
                rows_total=rows_total,
                error_count=count,
            )
            return {"batch": batch.pk, "status": WorkStatus.FAILED, "errors": count}
        if batch.dry_run:
            summary = {"dry_run": True, "note": DRY_RUN_NOTE, "would_write": validated.rows}
            with transaction.atomic():
                _finish_succeeded(
                    batch, actor=actor, rows=validated.rows, summary=summary, started=started
                )
            return {"batch": batch.pk, "status": WorkStatus.SUCCEEDED, "dry_run": True}
        with transaction.atomic():
            summary = import_write(
                kind=batch.kind, frame=validated.frame, batch=batch, progress=progress
            )
            _after_commit_hooks(batch.kind, summary)
            _finish_succeeded(
                batch,
                actor=actor,
                rows=validated.rows,
                summary=_stored_summary(summary),
                started=started,
            )
    except _ClaimLost:
        return {"batch": batch.pk, "claimed": False}
    except ImportRejected as exc:
        errors = list(exc.extra.get("errors") or [])
        if not errors:
            errors = [{"line": 0, "column": "", "message": exc.message}]
        _finish_failed(
            batch, actor=actor, error=exc.message, errors=errors, detail="", started=started
        )
        return {"batch": batch.pk, "status": WorkStatus.FAILED, "errors": len(errors)}
    except Exception as exc:
        message = (
            exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
        )
        _finish_failed(
            batch,
            actor=actor,
            error=IMPORT_CRASHED.format(error=message),
            errors=[],
            detail=traceback.format_exc(),
            started=started,
            rows_total=rows_total,
        )
        return {"batch": batch.pk, "status": WorkStatus.FAILED, "error": message[:200]}
    finally:
        progress.close()
    return {"batch": batch.pk, "status": WorkStatus.SUCCEEDED, "rows": validated.rows}
