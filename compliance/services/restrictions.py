"""Restricted-list writes: a Compliance officer (or Admin) creates and edits restrictions, each
change audited with its before and after values (DESIGN 6 and 8). Restrictions have no delete
path: one is ended by setting its last effective date."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from django.db import transaction

from compliance.models import Restriction, RestrictionKind, RestrictionScope
from compliance.services.audit import audit_diff, audit_record, audit_snapshot
from portfolios.models import Account, Household, Security
from rebalance_app.exceptions import NotFound, PermissionDenied, ValidationFailed
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

MSG_FORBIDDEN = "Only Compliance officers may create or change restrictions."
MSG_NOT_FOUND = "Restriction {id} not found."
MSG_SCOPE = "Scope must be one of: {choices}."
MSG_KIND = "Kind must be one of: {choices}."
MSG_NEEDS_HOUSEHOLD = "A household restriction needs a household."
MSG_NEEDS_ACCOUNT = "An account restriction needs an account."
MSG_FIRM_TARGET = (
    "A firm-wide restriction applies to every account: leave household and account empty."
)
MSG_ONE_TARGET = "Choose the household or the account the scope names, not both."
MSG_ONE_SUBJECT = "Restrict exactly one of a security, a sector or an ESG tag."
MSG_NO_REASON = "Give the reason for the restriction."
MSG_DATES = "The restriction cannot end ({end}) before it starts ({start})."
MSG_UNKNOWN = "Unknown {what} {id}."
ACTION_CREATED = "restriction.created"
ACTION_UPDATED = "restriction.updated"

FIELDS = (
    "scope",
    "household",
    "account",
    "security",
    "sector",
    "esg_tag",
    "kind",
    "reason",
    "effective_from",
    "effective_to",
)


def _require_compliance(actor: AbstractBaseUser) -> None:
    if not (actor.is_superuser or user_has_role(actor, Role.COMPLIANCE)):
        raise PermissionDenied(MSG_FORBIDDEN)


def _resolve(model: Any, value: Any, what: str) -> Any:
    """A model instance from an instance or an id (None stays None)."""
    if value is None or value == "" or isinstance(value, model):
        return value or None
    try:
        return model.objects.get(pk=value)
    except (model.DoesNotExist, ValueError, TypeError):
        raise ValidationFailed(MSG_UNKNOWN.format(what=what, id=value)) from None


def _validate(data: dict[str, Any]) -> dict[str, Any]:
    """The restriction's fields checked and normalised; a ValidationFailed names the problem."""
    scope, kind = data.get("scope"), data.get("kind")
    if scope not in RestrictionScope.values:
        raise ValidationFailed(MSG_SCOPE.format(choices=", ".join(RestrictionScope.values)))
    if kind not in RestrictionKind.values:
        raise ValidationFailed(MSG_KIND.format(choices=", ".join(RestrictionKind.values)))
    household = _resolve(Household, data.get("household"), "household")
    account = _resolve(Account, data.get("account"), "account")
    security = _resolve(Security, data.get("security"), "security")
    if scope == RestrictionScope.FIRM and (household or account):
        raise ValidationFailed(MSG_FIRM_TARGET)
    if scope == RestrictionScope.HOUSEHOLD:
        if account:
            raise ValidationFailed(MSG_ONE_TARGET)
        if not household:
            raise ValidationFailed(MSG_NEEDS_HOUSEHOLD)
    if scope == RestrictionScope.ACCOUNT:
        if household:
            raise ValidationFailed(MSG_ONE_TARGET)
        if not account:
            raise ValidationFailed(MSG_NEEDS_ACCOUNT)
    sector = (data.get("sector") or "").strip()
    esg_tag = (data.get("esg_tag") or "").strip()
    if sum(bool(x) for x in (security, sector, esg_tag)) != 1:
        raise ValidationFailed(MSG_ONE_SUBJECT)
    reason = (data.get("reason") or "").strip()
    if not reason:
        raise ValidationFailed(MSG_NO_REASON)
    start = data.get("effective_from") or date.today()  # noqa: DTZ011 - a calendar date
    end = data.get("effective_to")
    if end is not None and end < start:
        raise ValidationFailed(MSG_DATES.format(start=start, end=end))
    return {
        "scope": scope,
        "household": household,
        "account": account,
        "security": security,
        "sector": sector,
        "esg_tag": esg_tag,
        "kind": kind,
        "reason": reason[:300],
        "effective_from": start,
        "effective_to": end,
    }


def restriction_create(
    *,
    actor: AbstractBaseUser,
    scope: str,
    kind: str,
    reason: str,
    household: Household | int | None = None,
    account: Account | int | None = None,
    security: Security | int | None = None,
    sector: str = "",
    esg_tag: str = "",
    effective_from: date | None = None,
    effective_to: date | None = None,
) -> Restriction:
    """A new restricted-list entry. Raises PermissionDenied (not Compliance) or
    ValidationFailed (naming the problem); nothing is written then."""
    _require_compliance(actor)
    clean = _validate(
        {
            "scope": scope,
            "household": household,
            "account": account,
            "security": security,
            "sector": sector,
            "esg_tag": esg_tag,
            "kind": kind,
            "reason": reason,
            "effective_from": effective_from,
            "effective_to": effective_to,
        }
    )
    with transaction.atomic():
        restriction = Restriction.objects.create(**clean, created_by=actor)
        audit_record(
            actor=actor, action=ACTION_CREATED, obj=restriction, after=audit_snapshot(restriction)
        )
    return restriction


def restriction_update(
    *, actor: AbstractBaseUser, restriction_id: Any, reason_for_change: str = "", **changes: Any
) -> Restriction:
    """Change some of a restriction's fields (``FIELDS``); the whole result is validated as on
    create. Audited with the changed fields before and after."""
    _require_compliance(actor)
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValidationFailed(
            f"These restriction fields cannot be edited: {', '.join(sorted(unknown))}."
        )
    with transaction.atomic():
        try:
            restriction = Restriction.objects.select_for_update().get(pk=restriction_id)
        except (Restriction.DoesNotExist, ValueError, TypeError):
            raise NotFound(MSG_NOT_FOUND.format(id=restriction_id)) from None
        current = {name: getattr(restriction, name) for name in FIELDS}
        clean = _validate({**current, **changes})
        before = audit_snapshot(restriction)
        for name, value in clean.items():
            setattr(restriction, name, value)
        restriction.save(update_fields=list(FIELDS))
        b, a = audit_diff(before, audit_snapshot(restriction))
        if a:
            audit_record(
                actor=actor,
                action=ACTION_UPDATED,
                obj=restriction,
                before=b,
                after=a,
                reason=reason_for_change,
            )
    return restriction
