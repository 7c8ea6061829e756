"""Pages of the restricted list and the configured compliance rules (DESIGN 6 and 10): lists
for every role (each sees the firm-wide entries and those of the households and accounts it may
see), create and edit forms for Compliance officers (and Admin). The forms parse; the services
(``compliance.services.restrictions``, ``compliance.services.checks``) validate, write and
audit, and a refusal shows their message on the form with nothing changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from compliance.forms_rules import RestrictionForm, RuleForm
from compliance.selectors_rules import (
    compliance_rule_get,
    compliance_rule_list,
    restriction_get,
    restriction_list,
    user_can_edit_compliance,
)
from rebalance_app.exceptions import ApplicationError, NotFound, PermissionDenied
from rebalance_app.roles import user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

PER_PAGE = 50
NO_ROLE = "Your account has no role: ask an administrator for one."
EDIT_FORBIDDEN = "Only Compliance officers may create or change restrictions and rules."
RESTRICTION_SAVED = "Restriction {id} saved."
RULE_SAVED = "Rule “{name}” saved."


def _require_role(user: AbstractBaseUser) -> None:
    if not (user.is_superuser or user_roles(user)):
        raise DjangoPermissionDenied(NO_ROLE)


def _require_editor(user: AbstractBaseUser) -> None:
    if not user_can_edit_compliance(user):
        raise DjangoPermissionDenied(EDIT_FORBIDDEN)


def _service_refused(exc: ApplicationError) -> str:
    if isinstance(exc, NotFound):
        raise Http404(exc.message)
    if isinstance(exc, PermissionDenied):
        raise DjangoPermissionDenied(exc.message)
    return exc.message


# ---------------------------------------------------------------------------
# Restrictions
# ---------------------------------------------------------------------------


@login_required
@require_GET
def restriction_list_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    page_obj = Paginator(restriction_list(user=request.user), PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "page_obj": page_obj,
        "restrictions": list(page_obj.object_list),
        "may_edit": user_can_edit_compliance(request.user),
    }
    return render(request, "compliance/rules/restriction_list.html", context)


def _restriction_args(form: RestrictionForm) -> dict[str, Any]:
    data = form.cleaned_data
    return {
        "scope": data["scope"],
        "household": data["household"],
        "account": data["account"],
        "security": data["security"],
        "sector": data["sector"],
        "esg_tag": data["esg_tag"],
        "kind": data["kind"],
        "reason": data["reason"],
        "effective_from": data["effective_from"],
        "effective_to": data["effective_to"],
    }


@login_required
@require_http_methods(["GET", "POST"])
def restriction_form_view(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """New restriction (``pk`` None) or edit one; POST calls the service."""
    from compliance.services.restrictions import restriction_create, restriction_update

    _require_editor(request.user)
    restriction = None
    if pk is not None:
        try:
            restriction = restriction_get(user=request.user, pk=pk)
        except NotFound as exc:
            raise Http404(exc.message) from None
    error = ""
    if request.method == "POST":
        form = RestrictionForm(request.POST)
        if form.is_valid():
            try:
                if restriction is None:
                    saved = restriction_create(actor=request.user, **_restriction_args(form))
                else:
                    saved = restriction_update(
                        actor=request.user,
                        restriction_id=restriction.pk,
                        **_restriction_args(form),
                    )
            except ApplicationError as exc:
                error = _service_refused(exc)
            else:
                messages.success(request, RESTRICTION_SAVED.format(id=saved.pk))
                return redirect(reverse("compliance:restriction_list"))
    else:
        initial = RestrictionForm.initial_from(restriction) if restriction else {}
        form = RestrictionForm(initial=initial)
    context = {"form": form, "restriction": restriction, "service_error": error}
    status = 400 if error or form.errors else 200
    return render(request, "compliance/rules/restriction_form.html", context, status=status)


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


@login_required
@require_GET
def rule_list_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    page_obj = Paginator(compliance_rule_list(user=request.user), PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "page_obj": page_obj,
        "rules": list(page_obj.object_list),
        "may_edit": user_can_edit_compliance(request.user),
    }
    return render(request, "compliance/rules/rule_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_form_view(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """New rule (``pk`` None) or edit one (its type is fixed); POST calls the service."""
    from compliance.services.checks import compliance_rule_create, compliance_rule_update

    _require_editor(request.user)
    rule = None
    if pk is not None:
        try:
            rule = compliance_rule_get(user=request.user, pk=pk)
        except NotFound as exc:
            raise Http404(exc.message) from None
    error = ""
    if request.method == "POST":
        form = RuleForm(request.POST, initial=RuleForm.initial_from(rule) if rule else None)
        if rule is not None:
            form.fields["rule_type"].disabled = True
        if form.is_valid():
            fields = {
                k: form.cleaned_data[k]
                for k in ("name", "parameters", "severity", "scope", "model", "account", "enabled")
            }
            try:
                if rule is None:
                    saved = compliance_rule_create(
                        actor=request.user, rule_type=form.cleaned_data["rule_type"], **fields
                    )
                else:
                    saved = compliance_rule_update(actor=request.user, rule_id=rule.pk, data=fields)
            except ApplicationError as exc:
                error = _service_refused(exc)
            else:
                messages.success(request, RULE_SAVED.format(name=saved.name))
                return redirect(reverse("compliance:rule_list"))
    else:
        form = RuleForm(initial=RuleForm.initial_from(rule) if rule else {"enabled": True})
        if rule is not None:
            form.fields["rule_type"].disabled = True
    context = {"form": form, "rule": rule, "service_error": error}
    status = 400 if error or form.errors else 200
    return render(request, "compliance/rules/rule_form.html", context, status=status)
