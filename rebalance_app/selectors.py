"""Reads for the home page: what each role has to look at."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Sum

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def home_summary(*, user: AbstractBaseUser) -> dict[str, Any]:
    from compliance.selectors import user_can_read_audit
    from portfolios.selectors import accounts_visible_to, households_visible_to

    accounts = accounts_visible_to(user)
    summary: dict[str, Any] = {
        "households": households_visible_to(user).count(),
        "accounts": accounts.count(),
        "cash": accounts.aggregate(total=Sum("cash_balance"))["total"] or 0,
    }
    if user_can_read_audit(user):
        from compliance.models import AuditEvent

        summary["audit_events"] = AuditEvent.objects.count()
        summary["recent_events"] = list(AuditEvent.objects.order_by("-seq")[:8])
    return summary
