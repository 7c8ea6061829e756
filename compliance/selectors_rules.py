"""Reads of the restricted list and the configured rules, restricted by visibility: every role
sees the firm-wide entries; household and account entries only where the user may see the
household or account (Ops, Compliance and Admin see them all)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from compliance.models import ComplianceRule, Restriction, RestrictionScope, RuleScope
from portfolios.selectors import accounts_visible_to, households_visible_to
from rebalance_app.exceptions import NotFound
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

RESTRICTION_NOT_FOUND = "Restriction {id} not found."
RULE_NOT_FOUND = "Rule {id} not found."


def user_can_edit_compliance(user: AbstractBaseUser) -> bool:
    """Compliance officers (and Admin) maintain the restricted list and the rules."""
    return bool(
        user.is_authenticated and (user.is_superuser or user_has_role(user, Role.COMPLIANCE))
    )


def restriction_list(*, user: AbstractBaseUser) -> QuerySet[Restriction]:
    """Restrictions ``user`` may see, newest first, with their targets (constant queries)."""
    if not user.is_authenticated:
        return Restriction.objects.none()
    qs = Restriction.objects.select_related("household", "account", "security", "created_by")
    if not (user.is_superuser or user.has_perm("portfolios.view_household")):
        qs = qs.filter(
            Q(scope=RestrictionScope.FIRM)
            | Q(household__in=households_visible_to(user).values("pk"))
            | Q(account__in=accounts_visible_to(user).values("pk"))
        )
    return qs.order_by("-created_at", "-pk")


def restriction_get(*, user: AbstractBaseUser, pk: Any) -> Restriction:
    try:
        return restriction_list(user=user).get(pk=pk)
    except (Restriction.DoesNotExist, ValueError, TypeError):
        raise NotFound(RESTRICTION_NOT_FOUND.format(id=pk)) from None


def compliance_rule_list(*, user: AbstractBaseUser) -> QuerySet[ComplianceRule]:
    """Rules ``user`` may see: firm and model rules, and account rules of visible accounts."""
    if not user.is_authenticated:
        return ComplianceRule.objects.none()
    qs = ComplianceRule.objects.select_related("model", "account")
    if not (user.is_superuser or user.has_perm("portfolios.view_household")):
        qs = qs.filter(
            ~Q(scope=RuleScope.ACCOUNT) | Q(account__in=accounts_visible_to(user).values("pk"))
        )
    return qs.order_by("rule_type", "name", "pk")


def compliance_rule_get(*, user: AbstractBaseUser, pk: Any) -> ComplianceRule:
    try:
        return compliance_rule_list(user=user).get(pk=pk)
    except (ComplianceRule.DoesNotExist, ValueError, TypeError):
        raise NotFound(RULE_NOT_FOUND.format(id=pk)) from None
