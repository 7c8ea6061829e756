"""Reads for the home page: what each role has to look at.

Everything goes through the visibility selectors, so a PM's home page counts only their
team's households and accounts while Ops, Compliance and Admin see the firm.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, Sum

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

RECENT_AUDIT_EVENTS = 8
HOME_TOP_DRIFT = 5


def home_drift(*, user: AbstractBaseUser) -> dict[str, Any]:
    """The top of the drift dashboard for the home page: the visible accounts' drift counts,
    the ``HOME_TOP_DRIFT`` most drifted accounts and the number of open alerts."""
    from portfolios.selectors.drift import (
        drift_alerts_open,
        drift_dashboard,
        drift_dashboard_summary,
    )

    accounts = drift_dashboard(user=user, sort="-drift")
    summary = drift_dashboard_summary(accounts=accounts)
    return {
        "summary": summary,
        "top": list(accounts.filter(latest_scannable=True)[:HOME_TOP_DRIFT])
        if summary.scanned
        else [],
        "alerts": drift_alerts_open(user=user).count(),
    }


def home_summary(*, user: AbstractBaseUser) -> dict[str, Any]:
    """Counts of visible households and accounts (by status), total cash, the households per
    team, the top of the drift dashboard, and for Compliance/Admin the size and latest events
    of the audit trail."""
    from compliance.selectors import user_can_read_audit
    from portfolios.models import AccountStatus
    from portfolios.selectors import accounts_visible_to, households_visible_to

    households = households_visible_to(user)
    totals = accounts_visible_to(user).aggregate(
        accounts=Count("pk"),
        cash=Sum("cash_balance"),
        frozen=Count("pk", filter=Q(status=AccountStatus.FROZEN)),
        closed=Count("pk", filter=Q(status=AccountStatus.CLOSED)),
        without_model=Count("pk", filter=Q(model__isnull=True)),
    )
    summary: dict[str, Any] = {
        "households": households.count(),
        "accounts": totals["accounts"],
        "cash": totals["cash"] or Decimal("0"),
        "frozen": totals["frozen"],
        "closed": totals["closed"],
        "without_model": totals["without_model"],
        "teams": list(
            households.exclude(team=None)
            .values("team__name")
            .annotate(households=Count("pk"))
            .order_by("team__name")
            .values_list("team__name", "households")
        ),
        "can_read_audit": user_can_read_audit(user),
    }
    if totals["accounts"]:
        summary["drift"] = home_drift(user=user)
    if summary["can_read_audit"]:
        from compliance.models import AuditEvent

        summary["audit_events"] = AuditEvent.objects.count()
        summary["recent_events"] = list(
            AuditEvent.objects.select_related("actor").order_by("-seq")[:RECENT_AUDIT_EVENTS]
        )
    return summary
