"""Drift reads: the dashboard rows, snapshots, history and alerts, always through the
visibility selectors (an account the user may not see contributes nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import (
    Count,
    Exists,
    F,
    FilteredRelation,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.functions import Cast, Floor

from portfolios.models import (
    Account,
    DriftAlert,
    DriftPosition,
    DriftScan,
    DriftSnapshot,
    ReconciliationBreak,
)
from portfolios.selectors import accounts_visible_to
from rebalance_app.exceptions import NotFound

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

SCAN_NOT_FOUND = "Drift scan {id} not found."

# The histogram of total drift uses the narrowest of these bucket widths for which at most
# HISTOGRAM_MAX_BUCKETS buckets cover the largest drift.
HISTOGRAM_WIDTHS = (0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1)
HISTOGRAM_MAX_BUCKETS = 40


# Sort keys the dashboard accepts (a leading "-" for descending): name -> ORM expression.
DASHBOARD_SORTS = {
    "drift": "latest__total_drift",
    "max_drift": "latest__max_drift",
    "breaches": "latest__breach_count",
    "cash_drift": "latest__cash_drift",
    "scanned": "latest__scanned_at",
    "account": "account_number",
    "household": "household__name",
    "model": "model__name",
    "value": "latest__total_value",
}


def drift_dashboard(
    *,
    user: AbstractBaseUser,
    sort: str = "-drift",
    team: str = "",
    model: str = "",
    breached_only: bool = False,
    search: str = "",
) -> QuerySet[Account]:
    """Visible accounts joined to their latest snapshot (``latest__*``), filtered and sorted in
    the database: one query per page whatever the number of accounts."""
    qs = (
        accounts_visible_to(user)
        .annotate(
            latest=FilteredRelation("drift_snapshots", condition=Q(drift_snapshots__is_latest=True))
        )
        .select_related("household", "household__team", "model")
        .annotate(
            latest_id=F("latest__id"),
            latest_total_drift=F("latest__total_drift"),
            latest_max_drift=F("latest__max_drift"),
            latest_cash_drift=F("latest__cash_drift"),
            latest_breach_count=F("latest__breach_count"),
            latest_breached=F("latest__breached"),
            latest_scannable=F("latest__scannable"),
            latest_unscannable_reason=F("latest__unscannable_reason"),
            latest_scanned_at=F("latest__scanned_at"),
            latest_total_value=F("latest__total_value"),
            latest_not_in_model=F("latest__not_in_model_count"),
            open_breaks=Exists(
                ReconciliationBreak.objects.filter(account=OuterRef("pk"), resolved_at__isnull=True)
            ),
        )
    )
    if team:
        qs = qs.filter(household__team__name=team)
    if model:
        qs = qs.filter(model_id=model)
    if breached_only:
        qs = qs.filter(latest_breached=True)  # the annotation reuses the latest-snapshot join
    if search:
        qs = qs.filter(
            Q(name__icontains=search)
            | Q(account_number__icontains=search)
            | Q(household__name__icontains=search)
        )
    descending = sort.startswith("-")
    field = DASHBOARD_SORTS.get(sort.lstrip("-"), DASHBOARD_SORTS["drift"])
    order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return qs.order_by(order, "pk")


def drift_snapshot_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[DriftSnapshot]:
    """Snapshots of visible accounts, newest first; ``filters``: account, date_from, date_to,
    breached, latest (booleans as "true"/"false")."""
    qs = DriftSnapshot.objects.filter(
        account__in=accounts_visible_to(user).values("pk")
    ).select_related("account")
    filters = filters or {}
    if filters.get("account"):
        qs = qs.filter(account_id=filters["account"])
    if filters.get("date_from"):
        qs = qs.filter(scanned_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(scanned_at__date__lte=filters["date_to"])
    for key in ("breached", "is_latest"):
        if key in filters and filters[key] not in (None, ""):
            qs = qs.filter(**{key: str(filters[key]).lower() in ("1", "true", "yes")})
    return qs.order_by("-scanned_at", "-id")


def account_drift_history(*, account: Account, limit: int = 500) -> list[dict[str, Any]]:
    """The account's scannable snapshots, oldest first: time, total drift, max drift, breaches."""
    rows = (
        DriftSnapshot.objects.filter(account=account, scannable=True)
        .order_by("-scanned_at")
        .values("scanned_at", "total_drift", "max_drift", "cash_drift", "breach_count")[:limit]
    )
    return list(reversed(list(rows)))


def account_latest_positions(*, account: Account) -> list[DriftPosition]:
    """The per-security rows of the account's latest snapshot (cash has no security)."""
    return list(
        DriftPosition.objects.filter(snapshot__account=account, snapshot__is_latest=True)
        .select_related("security")
        .order_by("-breached", F("security__ticker").asc(nulls_last=True))
    )


def drift_alerts_open(*, user: AbstractBaseUser) -> QuerySet[DriftAlert]:
    """Open alerts of the accounts ``user`` may see, newest first."""
    return (
        DriftAlert.objects.filter(
            cleared_at__isnull=True, account__in=accounts_visible_to(user).values("pk")
        )
        .select_related("account", "account__household")
        .order_by("-raised_at")
    )


def drift_scan_get(*, user: AbstractBaseUser, pk: Any) -> DriftScan:
    """A scan the user may follow: their own, or any for firm-wide roles."""
    qs = DriftScan.objects.all()
    if not (user.is_superuser or user.has_perm("portfolios.view_household")):
        qs = qs.filter(requested_by=user)
    try:
        return qs.get(pk=pk)
    except (DriftScan.DoesNotExist, ValueError, TypeError):
        raise NotFound(SCAN_NOT_FOUND.format(id=pk)) from None


@dataclass(frozen=True)
class DashboardSummary:
    accounts: int
    breached: int
    unscannable: int
    not_scanned: int
    max_drift: float | None

    @property
    def scanned(self) -> int:
        return self.accounts - self.unscannable - self.not_scanned


def drift_dashboard_summary(*, accounts: QuerySet[Account]) -> DashboardSummary:
    """Counts over the dashboard's (filtered) queryset in one aggregate query; the ``latest_*``
    annotations reuse the joined latest snapshot instead of joining it again."""
    totals = accounts.order_by().aggregate(
        accounts=Count("pk"),
        breached=Count("pk", filter=Q(latest_breached=True)),
        unscannable=Count("pk", filter=Q(latest_scannable=False)),
        not_scanned=Count("pk", filter=Q(latest_id__isnull=True)),
        max_drift=Max("latest_total_drift"),
    )
    return DashboardSummary(**totals)


def drift_histogram_width(max_drift: float | None) -> float:
    top = max_drift or 0.0
    for width in HISTOGRAM_WIDTHS:
        if top / width < HISTOGRAM_MAX_BUCKETS:
            return width
    return HISTOGRAM_WIDTHS[-1]


def drift_dashboard_histogram(
    *, accounts: QuerySet[Account], width: float
) -> list[tuple[int, int]]:
    """``(bucket, accounts)`` pairs of the scanned accounts' total drift, bucket ``k`` holding
    ``[k * width, (k+1) * width)``, counted by the database in one GROUP BY query."""
    rows = (
        accounts.order_by()
        .filter(latest_scannable=True, latest_total_drift__isnull=False)
        .annotate(bucket=Cast(Floor(F("latest_total_drift") / width), IntegerField()))
        .values_list("bucket")
        .annotate(n=Count("pk"))
        .order_by("bucket")
    )
    return [(int(bucket), n) for bucket, n in rows]
