"""CSV export of the audit trail (DESIGN 8): the events a filter selects, in chain order, with
every cell escaped against spreadsheet formula injection (OWASP ASVS) and the export itself
recorded as an audit event.

Rows are produced lazily so a view can stream millions of events without holding them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any

from compliance.audit_chain import canonical_json, csv_safe
from compliance.filters import AuditEventFilter
from compliance.selectors import audit_event_list
from compliance.services.audit import audit_record

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.db.models import QuerySet

    from compliance.models import AuditEvent

EXPORT_ACTION = "audit.export"
EXPORT_COLUMNS = (
    "seq",
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "reason",
    "request_id",
    "ip",
    "prev_hash",
    "hash",
)
_VALUE_FIELDS = (
    "seq",
    "created_at",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "reason",
    "request_id",
    "ip",
    "prev_hash",
    "hash",
)
CHUNK_SIZE = 2000


class _Echo:
    """A file-like object whose ``write`` hands the line back, for ``csv.writer``."""

    def write(self, value: str) -> str:
        return value


def _json_cell(value: Any) -> str:
    return "" if value is None else canonical_json(value)


def audit_export_row(values: Mapping[str, Any]) -> list[str]:
    """One event's cells in ``EXPORT_COLUMNS`` order, each passed through ``csv_safe``."""
    cells: list[Any] = [
        values["seq"],
        values["created_at"].astimezone(UTC).isoformat(timespec="microseconds"),
        values["actor_label"],
        values["action"],
        values["object_type"],
        values["object_id"],
        _json_cell(values["before"]),
        _json_cell(values["after"]),
        values["reason"],
        values["request_id"],
        values["ip"],
        values["prev_hash"],
        values["hash"],
    ]
    return [csv_safe(cell) for cell in cells]


def audit_export_filters(filters: Mapping[str, Any] | None) -> dict[str, str]:
    """The filters that narrow the export (known names with a value), as recorded."""
    if not filters:
        return {}
    return {
        name: str(filters.get(name))
        for name in AuditEventFilter.base_filters
        if filters.get(name) not in (None, "")
    }


def _lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for values in events.values(*_VALUE_FIELDS).iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow(audit_export_row(values))


def audit_export_csv(
    *, user: AbstractBaseUser, filters: Mapping[str, Any] | None = None
) -> Iterator[str]:
    """CSV lines (header first) of the events ``filters`` select, oldest first.

    Checks the permission and records the ``audit.export`` event at once, before the first
    line is produced. Raises ``PermissionDenied`` unless the user is Compliance or Admin.
    """
    events = audit_event_list(user=user, filters=filters)  # type: ignore[arg-type]
    audit_record(
        actor=user,
        action=EXPORT_ACTION,
        object_type="compliance.auditevent",
        after={"filters": audit_export_filters(filters)},
    )
    return _lines(events.order_by("seq"))
