"""Template context: the current user's roles, for navigation by role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from rebalance_app.roles import Role, user_roles


def roles(request: HttpRequest) -> dict[str, Any]:
    names = user_roles(request.user) if hasattr(request, "user") else set()
    return {
        "user_roles": names,
        "is_pm": Role.PM.value in names,
        "is_ops": Role.OPS.value in names,
        "is_compliance": Role.COMPLIANCE.value in names,
        "is_admin_role": Role.ADMIN.value in names,
    }
