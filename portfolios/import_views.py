"""Pages for getting data in and checking it (DESIGN 10 and 11): the imports page (upload a
file of a kind, optionally as a dry run or forced past the duplicate check; the result with
every bad row; progress polled by htmx while a large file is imported by a worker; the
history of batches), one batch's detail, the reconciliations with their breaks and a resolve
form, and the data-quality report.

Ops, Compliance and Admin use all of them. A PM may read the reconciliations and the
data-quality report, restricted to their own accounts, but not the imports (403). Views only
parse input, call one service or selector and render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from portfolios.models import ImportKind, Reconciliation
from portfolios.selectors.data_quality import data_quality_report
from portfolios.selectors.reconciliation import (
    IMPORTS_FORBIDDEN,
    import_batch_get,
    import_batch_list,
    reconciliation_break_get,
    reconciliation_breaks,
    reconciliation_get,
    reconciliation_list,
    user_sees_firm_data,
)
from portfolios.services.reconciliation import (
    RESOLUTION_MAX,
    reconciliation_break_resolve,
    user_may_reconcile,
)
from rebalance_app.exceptions import ApplicationError, NotFound, PermissionDenied
from rebalance_app.roles import user_roles
from rebalance_app.work import WorkStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.models import ImportBatch

HISTORY_PER_PAGE = 25
RECONCILIATIONS_PER_PAGE = 25
ERRORS_SHOWN = 200
POLL_SECONDS = 1
NO_ROLE = "Your account has no role: ask an administrator for one."
RESOLVE_FORBIDDEN_PAGE = "Only Ops, Compliance and Admin users may resolve breaks."
BREAK_RESOLVED = "Break resolved: {resolution}"
UPLOAD_KINDS = [(value, label) for value, label in ImportKind.choices if value != ImportKind.DEMO]
_PENDING = (WorkStatus.QUEUED, WorkStatus.RUNNING)


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="File", help_text="CSV (UTF-8, with or without BOM) or XLSX (first sheet)."
    )
    kind = forms.ChoiceField(label="Kind", choices=UPLOAD_KINDS)
    dry_run = forms.BooleanField(
        label="Dry run (validate only, write nothing)", required=False, initial=False
    )
    force = forms.BooleanField(
        label="Import even if this file was imported before", required=False, initial=False
    )


class BreakResolveForm(forms.Form):
    resolution = forms.CharField(label="Resolution", max_length=RESOLUTION_MAX)


def _wants_partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _require_firm(user: AbstractBaseUser) -> None:
    if not user_sees_firm_data(user):
        raise DjangoPermissionDenied(IMPORTS_FORBIDDEN)


def _require_role(user: AbstractBaseUser) -> None:
    if not (user.is_superuser or user_roles(user)):
        raise DjangoPermissionDenied(NO_ROLE)


# ---------------------------------------------------------------------------
# Imports
# ---------------------------------------------------------------------------


def _history(request: HttpRequest) -> dict[str, Any]:
    page = Paginator(import_batch_list(user=request.user), HISTORY_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return {"history_page": page, "history": list(page.object_list)}


def _summary_items(summary: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The batch summary as (label, value) pairs, without the id lists (the service stores
    their counts beside them) and the truncation flags."""
    return [
        (key.replace("_", " "), value)
        for key, value in (summary or {}).items()
        if not key.endswith(("_ids", "_truncated")) and key != "dry_run"
    ]


def _result_context(
    *,
    batch: ImportBatch | None = None,
    error: str = "",
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the result partial shows: the batch (with its progress while pending), or the
    refusal's message, and the per-row errors (the exception's, else the batch's)."""
    if errors is None:
        errors = list(batch.errors or []) if batch is not None else []
    pending = batch is not None and batch.status in _PENDING
    return {
        "batch": batch,
        "summary_items": _summary_items(batch.summary if batch is not None else None),
        "result_error": error,
        "row_errors": errors[:ERRORS_SHOWN],
        "row_errors_total": len(errors),
        "row_errors_more": max(len(errors) - ERRORS_SHOWN, 0),
        "poll": pending,
        "poll_seconds": POLL_SECONDS,
    }


@login_required
@require_GET
def imports_view(request: HttpRequest) -> HttpResponse:
    _require_firm(request.user)
    context = {"form": ImportUploadForm(), **_history(request), **_result_context()}
    context["shown"] = False
    context["max_mb"] = settings.IMPORT_MAX_BYTES // (1024 * 1024)
    return render(request, "portfolios/imports.html", context)


@login_required
@require_POST
def import_submit_view(request: HttpRequest) -> HttpResponse:
    """Run ``import_submit`` on the uploaded file; htmx gets the result partial (and the
    refreshed history out of band), a plain form post the whole page."""
    _require_firm(request.user)
    from portfolios.services.imports import import_submit

    form = ImportUploadForm(request.POST, request.FILES)
    result: dict[str, Any]
    if not form.is_valid():
        fields = [
            {"line": "", "column": name, "message": " ".join(errs)}
            for name, errs in form.errors.items()
        ]
        result = _result_context(error="The upload form is incomplete.", errors=fields)
        status = 400
    else:
        upload = form.cleaned_data["file"]
        try:
            batch = import_submit(
                actor=request.user,
                kind=form.cleaned_data["kind"],
                file_name=upload.name,
                data=upload.read(),
                dry_run=form.cleaned_data["dry_run"],
                force=form.cleaned_data["force"],
            )
        except ApplicationError as exc:
            # PermissionDenied too: Compliance may open the page but import restrictions only.
            result = _result_context(error=exc.message, errors=list(exc.extra.get("errors", [])))
            status = exc.http_status
        else:
            result = _result_context(batch=batch)
            status = 200
    context = {**result, "shown": True, **_history(request)}
    if _wants_partial(request):
        context["history_oob"] = True
        response = render(request, "portfolios/partials/_import_result.html", context, status=200)
    else:
        context["form"] = form
        context["max_mb"] = settings.IMPORT_MAX_BYTES // (1024 * 1024)
        response = render(request, "portfolios/imports.html", context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def import_status_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The batch's result partial, polled every second while it is queued or running; the
    answer that ends the polling also refreshes the history (out of band)."""
    try:
        batch = import_batch_get(user=request.user, pk=pk)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None
    except NotFound as exc:
        raise Http404(exc.message) from None
    context = {**_result_context(batch=batch), "shown": True}
    if not context["poll"]:
        context.update(_history(request))
        context["history_oob"] = True
    return render(request, "portfolios/partials/_import_result.html", context)


@login_required
@require_GET
def import_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        batch = import_batch_get(user=request.user, pk=pk)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None
    except NotFound as exc:
        raise Http404(exc.message) from None
    try:
        reconciliation = batch.reconciliation
    except Reconciliation.DoesNotExist:
        reconciliation = None
    context = {
        **_result_context(batch=batch),
        "shown": True,
        "reconciliation": reconciliation,
        "detail": True,
    }
    return render(request, "portfolios/import_detail.html", context)


# ---------------------------------------------------------------------------
# Reconciliations
# ---------------------------------------------------------------------------


@login_required
@require_GET
def reconciliation_list_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    page = Paginator(reconciliation_list(user=request.user), RECONCILIATIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "page_obj": page,
        "reconciliations": list(page.object_list),
        "firm": user_sees_firm_data(request.user),
        "can_upload": user_sees_firm_data(request.user),
    }
    return render(request, "portfolios/reconciliation_list.html", context)


@login_required
@require_GET
def reconciliation_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    _require_role(request.user)
    try:
        reconciliation = reconciliation_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    open_only = request.GET.get("open") in ("1", "true", "on")
    breaks = reconciliation_breaks(
        user=request.user, reconciliation=reconciliation, open_only=open_only
    )
    context = {
        "reconciliation": reconciliation,
        "breaks": list(breaks),
        "open_only": open_only,
        "can_resolve": user_may_reconcile(request.user),
        "resolution_max": RESOLUTION_MAX,
    }
    return render(request, "portfolios/reconciliation_detail.html", context)


@login_required
@require_POST
def reconciliation_break_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not user_may_reconcile(request.user):
        raise DjangoPermissionDenied(RESOLVE_FORBIDDEN_PAGE)
    try:
        brk = reconciliation_break_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    form = BreakResolveForm(request.POST)
    target = reverse("portfolios:reconciliation_detail", args=[brk.reconciliation_id])
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("resolution", [])))
        return redirect(f"{target}#break-{brk.pk}")
    try:
        brk = reconciliation_break_resolve(
            brk=brk, actor=request.user, resolution=form.cleaned_data["resolution"]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, BREAK_RESOLVED.format(resolution=brk.resolution))
    return redirect(f"{target}#break-{brk.pk}")


# ---------------------------------------------------------------------------
# Data quality
# ---------------------------------------------------------------------------


@login_required
@require_GET
def data_quality_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    report = data_quality_report(user=request.user)
    context = {"report": report, "firm": user_sees_firm_data(request.user)}
    return render(request, "portfolios/data_quality.html", context)
