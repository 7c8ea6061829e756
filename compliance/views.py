"""Pages of the compliance app: the audit trail (list with filters, an object's timeline,
chain verification and CSV export) for Compliance and Admin users (DESIGN 8 and 10).

Reads go through ``compliance.selectors``, which refuse everyone but Compliance and Admin;
these views turn that refusal into a 403 page. htmx requests get the partials the full pages
include, so filtering and paging swap only the rows. The pages are never cached, and
``hx-history="false"`` keeps htmx from copying audit rows into the browser's localStorage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from compliance.export import audit_export_csv
from compliance.filters import AuditEventFilter
from compliance.selectors import (
    AUDIT_FORBIDDEN,
    audit_event_list,
    audit_object_timeline,
    user_can_read_audit,
)
from compliance.services.audit import audit_chain_verify_record
from rebalance_app.exceptions import PermissionDenied

if TYPE_CHECKING:
    from compliance.models import AuditEvent

AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditRow:
    """An event with its before/after values pretty-printed for a ``<details>`` element."""

    event: AuditEvent
    before: str
    after: str


def _pretty(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _rows(events: Any) -> list[AuditRow]:
    return [AuditRow(event, _pretty(event.before), _pretty(event.after)) for event in events]


def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return render(request, "compliance/forbidden.html", {"message": exc.message}, status=403)


def _wants_partial(request: HttpRequest) -> bool:
    # Back/forward navigation re-requests the page (the rows are kept out of htmx's history
    # cache) and needs the whole page, not the rows.
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _filter_form(request: HttpRequest) -> Any:
    form = AuditEventFilter(request.GET or None).form
    for name in ("date_from", "date_to"):
        form.fields[name].widget.input_type = "date"
    return form


@never_cache
@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit trail, newest first, filtered by actor, action, object and date."""
    try:
        events = audit_event_list(user=request.user, filters=request.GET)
    except PermissionDenied as exc:
        return _forbidden(request, exc)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    form = _filter_form(request)
    export_query = request.GET.copy()
    export_query.pop("page", None)
    context = {
        "page": page,
        "rows": _rows(page.object_list),
        "form": form,
        "export_query": export_query.urlencode(),
    }
    partial = _wants_partial(request)
    template = "compliance/partials/_audit_rows.html" if partial else "compliance/audit_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@never_cache
@login_required
@require_GET
def audit_timeline(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    """Every event about one object, oldest first."""
    try:
        events = audit_object_timeline(
            user=request.user, object_type=object_type, object_id=object_id
        )
    except PermissionDenied as exc:
        return _forbidden(request, exc)
    return render(
        request,
        "compliance/audit_timeline.html",
        {"object_type": object_type, "object_id": object_id, "rows": _rows(events)},
    )


@never_cache
@login_required
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Verify the chain against the checkpoints; htmx gets the result partial."""
    if not user_can_read_audit(request.user):
        return _forbidden(request, PermissionDenied(AUDIT_FORBIDDEN))
    result = audit_chain_verify_record(actor=request.user)
    if _wants_partial(request):
        return render(request, "compliance/partials/_verify_result.html", {"result": result})
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("compliance:audit_list")


@never_cache
@login_required
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered trail as CSV, streamed; the export itself is audited."""
    try:
        rows = audit_export_csv(user=request.user, filters=request.GET)
    except PermissionDenied as exc:
        return _forbidden(request, exc)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
    return response
