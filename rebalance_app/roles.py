"""The four roles of DESIGN 1, as Django groups, and what each may see and do globally.

PM teams are further groups (e.g. "Team A") that are granted object permissions on their
households; a PM belongs to the PM group and to one team group.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class Role(StrEnum):
    PM = "PM"
    OPS = "Ops"
    COMPLIANCE = "Compliance"
    ADMIN = "Admin"


# Model-level (global) permissions per role, as app_label.codename. Household visibility for
# PMs is per object (guardian), never global.
REFERENCE_VIEW = [
    "portfolios.view_security",
    "portfolios.view_price",
    "portfolios.view_modelportfolio",
    "portfolios.view_modelversion",
    "portfolios.view_modeltarget",
    "portfolios.view_riskmodel",
]
FIRM_VIEW = [
    "portfolios.view_household",
    "portfolios.view_account",
    "portfolios.view_taxlot",
    "portfolios.view_transaction",
    "portfolios.view_driftsnapshot",
    "portfolios.view_rebalancerun",
    "portfolios.view_importbatch",
    "orders.view_tradebasket",
    "orders.view_order",
    "compliance.view_restriction",
    "compliance.view_compliancerule",
    "compliance.view_complianceresult",
]
ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.PM: [*REFERENCE_VIEW, "compliance.view_restriction", "compliance.view_compliancerule"],
    Role.OPS: [*REFERENCE_VIEW, *FIRM_VIEW],
    Role.COMPLIANCE: [
        *REFERENCE_VIEW,
        *FIRM_VIEW,
        "compliance.view_auditevent",
        "compliance.add_restriction",
        "compliance.change_restriction",
        "compliance.add_compliancerule",
        "compliance.change_compliancerule",
        "compliance.add_override",
        "compliance.view_override",
    ],
    Role.ADMIN: [],  # Admin users are superusers: every permission
}


def user_roles(user: AbstractBaseUser) -> set[str]:
    """The role names of ``user`` (cached on the user object for the request)."""
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_role_names", None)
    if cached is None:
        names = set(
            user.groups.filter(name__in=[r.value for r in Role]).values_list("name", flat=True)
        )
        if user.is_superuser:
            names.add(Role.ADMIN.value)
        cached = names
        user._role_names = cached  # type: ignore[attr-defined]
    return cached


def user_has_role(user: AbstractBaseUser, role: Role) -> bool:
    return role.value in user_roles(user)
