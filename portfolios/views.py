"""Pages of the portfolios app: the accounts list (search and filters with htmx), the account
detail (holdings against target with tolerance bands, drift over time, breaches, tax lots,
recent transactions) and the drift dashboard (every visible account by drift, sorted, filtered
and paginated in the database, with a histogram, open alerts and a "Scan now" button).

Views only parse input, call selectors and render. Every read goes through the visibility
selectors, so another team's account answers 404 exactly like an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from portfolios.charts import (
    CASH_LABEL,
    drift_histogram_figure,
    drift_history_figure,
    holdings_vs_target_figure,
)
from portfolios.forms_rebalance import BATCH_MODES
from portfolios.models import Account, DriftPosition, ScanTrigger
from portfolios.selectors import (
    account_get,
    account_holdings,
    account_list,
    account_lots,
    account_transactions,
    accounts_visible_to,
    households_visible_to,
)
from portfolios.selectors.drift import (
    DASHBOARD_SORTS,
    account_drift_history,
    account_latest_positions,
    drift_alerts_open,
    drift_dashboard,
    drift_dashboard_histogram,
    drift_dashboard_summary,
    drift_histogram_width,
    drift_scan_get,
    drift_snapshot_list,
)
from portfolios.valuation import (
    AccountValue,
    account_market_values,
    holding_rows,
    holdings_unrealized,
    lot_rows,
)
from portfolios.views_rebalance import account_rebalance_context, batch_models
from rebalance_app.exceptions import ApplicationError, NotFound
from rebalance_app.roles import Role, user_roles
from rebalance_app.work import WorkStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

ACCOUNTS_PER_PAGE = 50
RECENT_TRANSACTIONS = 50
MISSING_PRICE = "No price for {ticker}: valued at nothing; weights exclude it."

DASHBOARD_PER_PAGE = 50
DASHBOARD_DEFAULT_SORT = "-drift"
DASHBOARD_ALERTS = 10
SCAN_POLL_SECONDS = 1
SCAN_NOT_ALLOWED = "You may not start a drift scan."
SCAN_NOTHING_TO_SCAN = "There are no accounts for you to scan."
SCAN_STARTED = "Drift scan {id} started."
NOT_SCANNED = "Not scanned yet"
FIRM_SCAN_ROLES = frozenset({Role.OPS.value, Role.COMPLIANCE.value, Role.ADMIN.value})
_SCAN_PENDING = (WorkStatus.QUEUED, WorkStatus.RUNNING)

# The dashboard's columns: (sort key or "" when not sortable, label, first direction, numeric).
DASHBOARD_COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("account", "Account", "", False),
    ("household", "Household", "", False),
    ("", "Team", "", False),
    ("model", "Model", "", False),
    ("value", "Value", "-", True),
    ("drift", "Total drift", "-", True),
    ("max_drift", "Max drift", "-", True),
    ("breaches", "Breaches", "-", True),
    ("cash_drift", "Cash drift", "-", True),
    ("scanned", "Last scan", "-", False),
    ("", "Status", "", False),
)


@dataclass(frozen=True)
class AccountRow:
    account: Account
    value: AccountValue

    @property
    def total(self) -> Decimal:
        return self.value.market_value + self.account.cash_balance


def _wants_partial(request: HttpRequest) -> bool:
    """An htmx swap gets the fragment; a history restore (cache miss) needs the whole page."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


@login_required
def account_list_view(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()[:100]
    team = request.GET.get("team", "").strip()[:150]
    model = request.GET.get("model", "").strip()
    if not model.isdigit():
        model = ""
    accounts = account_list(user=request.user, search=search, team=team, model=model)
    page = Paginator(accounts, ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    page_accounts = list(page.object_list)
    values = account_market_values(account_ids=[a.pk for a in page_accounts])
    context = {
        "page_obj": page,
        "rows": [AccountRow(a, values[a.pk]) for a in page_accounts],
        "search": search,
        "team": team,
        "model": model,
        "filtered": bool(search or team or model),
    }
    if _wants_partial(request):
        response = render(request, "portfolios/partials/_account_rows.html", context)
    else:
        context["teams"] = list(
            households_visible_to(request.user)
            .exclude(team=None)
            .order_by("team__name")
            .values_list("team__name", flat=True)
            .distinct()
        )
        context["models"] = list(
            accounts_visible_to(request.user)
            .exclude(model=None)
            .order_by("model__name")
            .values_list("model_id", "model__name")
            .distinct()
        )
        response = render(request, "portfolios/account_list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@dataclass(frozen=True)
class BreachRow:
    position: DriftPosition
    band: float | None

    @property
    def label(self) -> str:
        return _position_label(self.position)


def _position_label(position: DriftPosition) -> str:
    return position.security.ticker if position.security_id else CASH_LABEL


def position_band(position: DriftPosition) -> float | None:
    """The half-width of the position's tolerance band around its target (a fraction): the
    tighter of the absolute band and the relative band times the target, as the engine breaches
    on either; None when the position has no band."""
    candidates = []
    if position.abs_band is not None:
        candidates.append(position.abs_band)
    if position.rel_band is not None and position.target > 0:
        candidates.append(position.rel_band * position.target)
    return min(candidates) if candidates else None


@login_required
def account_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        account = account_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    holdings = account_holdings(account=account)
    version = account.model.current_version if account.model_id else None
    positions = account_latest_positions(account=account)
    bands = {_position_label(p): position_band(p) for p in positions}
    history = [
        {**row, "scanned_at": timezone.localtime(row["scanned_at"])}
        for row in account_drift_history(account=account)
    ]
    context = {
        "account": account,
        "model_version": version,
        "holdings": holdings,
        "holding_rows": holding_rows(holdings=holdings),
        "unrealized": holdings_unrealized(holdings=holdings),
        "missing_price_messages": [MISSING_PRICE.format(ticker=t) for t in holdings.missing_prices],
        "chart": holdings_vs_target_figure(holdings=holdings, bands=bands),
        "has_bands": any(b is not None for b in bands.values()),
        "snapshot": drift_snapshot_list(
            user=request.user, filters={"account": account.pk, "is_latest": "true"}
        ).first(),
        "breaches": [BreachRow(p, bands[_position_label(p)]) for p in positions if p.breached],
        "history": history,
        "history_chart": drift_history_figure(history=history),
        "alert": drift_alerts_open(user=request.user).filter(account=account).first(),
        "lots": lot_rows(
            lots=account_lots(account=account), holdings=holdings, today=timezone.localdate()
        ),
        "transactions": list(account_transactions(account=account)[:RECENT_TRANSACTIONS]),
        "recent_transactions": RECENT_TRANSACTIONS,
    }
    context.update(account_rebalance_context(request.user, account))
    return render(request, "portfolios/account_detail.html", context)


# ---------------------------------------------------------------------------
# Drift dashboard
# ---------------------------------------------------------------------------


class _CountedPaginator(Paginator):
    """A paginator told the row count (already counted with the summary), to save a query."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count


@dataclass(frozen=True)
class DashboardParams:
    sort: str
    team: str
    model: str
    breached: bool
    search: str

    @property
    def filtered(self) -> bool:
        return bool(self.team or self.model or self.breached or self.search)


@dataclass(frozen=True)
class SortColumn:
    key: str
    label: str
    next_sort: str
    aria_sort: str
    numeric: bool


def _dashboard_params(request: HttpRequest) -> DashboardParams:
    sort = request.GET.get("sort", DASHBOARD_DEFAULT_SORT).strip()
    if sort.lstrip("-") not in DASHBOARD_SORTS or sort.startswith("--"):
        sort = DASHBOARD_DEFAULT_SORT
    model = request.GET.get("model", "").strip()
    return DashboardParams(
        sort=sort,
        team=request.GET.get("team", "").strip()[:150],
        model=model if model.isdigit() else "",
        breached=request.GET.get("breached", "") in ("1", "on", "true"),
        search=request.GET.get("q", "").strip()[:100],
    )


def _sort_columns(sort: str) -> list[SortColumn]:
    current, descending = sort.lstrip("-"), sort.startswith("-")
    columns = []
    for key, label, first, numeric in DASHBOARD_COLUMNS:
        if not key:
            columns.append(SortColumn("", label, "", "", numeric))
            continue
        if key == current:
            aria = "descending" if descending else "ascending"
            next_sort = key if descending else f"-{key}"
        else:
            aria = ""
            next_sort = f"{first}{key}"
        columns.append(SortColumn(key, label, next_sort, aria, numeric))
    return columns


def scan_scope(user: AbstractBaseUser) -> str:
    """ "firm" for Ops, Compliance and Admin, "visible" for a PM (their accounts), else ""."""
    names = user_roles(user)
    if user.is_superuser or names & FIRM_SCAN_ROLES:
        return "firm"
    if Role.PM.value in names:
        return "visible"
    return ""


def _dashboard_results(request: HttpRequest, params: DashboardParams) -> dict[str, Any]:
    accounts = drift_dashboard(
        user=request.user,
        sort=params.sort,
        team=params.team,
        model=params.model,
        breached_only=params.breached,
        search=params.search,
    )
    summary = drift_dashboard_summary(accounts=accounts)
    width = drift_histogram_width(summary.max_drift)
    buckets = drift_dashboard_histogram(accounts=accounts, width=width) if summary.scanned else []
    page = _CountedPaginator(accounts, DASHBOARD_PER_PAGE, count=summary.accounts).get_page(
        request.GET.get("page")
    )
    return {
        "params": params,
        "sort": params.sort,
        "columns": _sort_columns(params.sort),
        "page_obj": page,
        "rows": list(page.object_list),
        "summary": summary,
        "histogram": drift_histogram_figure(buckets=buckets, width=width),
        "histogram_buckets": buckets,
        "histogram_width": width,
        "filtered": params.filtered,
        "dashboard_url": reverse("portfolios:drift_dashboard"),
    }


@login_required
def drift_dashboard_view(request: HttpRequest) -> HttpResponse:
    params = _dashboard_params(request)
    context = _dashboard_results(request, params)
    if _wants_partial(request):
        response = render(request, "portfolios/partials/_drift_rows.html", context)
    else:
        user = request.user
        alerts = drift_alerts_open(user=user)
        scan_id = request.GET.get("scan", "")
        scan = None
        if scan_id.isdigit():
            try:
                scan = drift_scan_get(user=user, pk=int(scan_id))
            except NotFound:
                scan = None
        context.update(
            {
                "teams": list(
                    households_visible_to(user)
                    .exclude(team=None)
                    .order_by("team__name")
                    .values_list("team__name", flat=True)
                    .distinct()
                ),
                "models": list(
                    accounts_visible_to(user)
                    .exclude(model=None)
                    .order_by("model__name")
                    .values_list("model_id", "model__name")
                    .distinct()
                ),
                "alerts": list(alerts[:DASHBOARD_ALERTS]),
                "alerts_count": alerts.count(),
                "alerts_limit": DASHBOARD_ALERTS,
                "scan_scope": scan_scope(user),
                "scan": scan,
                "scan_poll": scan is not None and scan.status in _SCAN_PENDING,
                "poll_seconds": SCAN_POLL_SECONDS,
                # only PMs and Admin may propose: Ops and Compliance skip the query
                "batch_models": batch_models(user)
                if user.is_superuser or Role.PM.value in user_roles(user)
                else [],
                "batch_modes": BATCH_MODES,
            }
        )
        response = render(request, "portfolios/drift_dashboard.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _scan_status_response(request: HttpRequest, scan: Any, error: str = "") -> HttpResponse:
    context = {
        "scan": scan,
        "scan_poll": scan is not None and scan.status in _SCAN_PENDING,
        "scan_error": error,
        "poll_seconds": SCAN_POLL_SECONDS,
    }
    return render(request, "portfolios/partials/_drift_scan_status.html", context)


@login_required
@require_POST
def drift_scan_view(request: HttpRequest) -> HttpResponse:
    """Start a manual scan: the firm for Ops/Compliance/Admin, a PM's visible accounts."""
    scope = scan_scope(request.user)
    if not scope:
        raise DjangoPermissionDenied(SCAN_NOT_ALLOWED)
    account_ids = None
    if scope == "visible":
        account_ids = list(
            accounts_visible_to(request.user).order_by("pk").values_list("pk", flat=True)
        )
    error, scan = "", None
    if account_ids == []:
        error = SCAN_NOTHING_TO_SCAN
    else:
        from portfolios.services.drift import drift_scan_request

        try:
            scan = drift_scan_request(
                actor=request.user, account_ids=account_ids, trigger=ScanTrigger.MANUAL
            )
        except ApplicationError as exc:
            error = exc.message
    if _wants_partial(request):
        return _scan_status_response(request, scan, error)
    dashboard = reverse("portfolios:drift_dashboard")
    if error:
        messages.error(request, error)
        return redirect(dashboard)
    messages.success(request, SCAN_STARTED.format(id=scan.pk))
    return redirect(f"{dashboard}?scan={scan.pk}")


@login_required
def drift_scan_status_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The scan's progress, polled by htmx every second until it succeeds or fails."""
    try:
        scan = drift_scan_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return _scan_status_response(request, scan)
