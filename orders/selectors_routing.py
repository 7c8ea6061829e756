"""Reads of routing and execution: jobs, blocks, routes, executions and the FIX message log.

Visibility follows the baskets: whoever sees a basket sees its routing job, its blocks'
routes and fills (``baskets_visible_to``). The firm-wide lists (executions, the FIX message
log) are for Operations, Compliance and Admin, who hold the global ``view_tradebasket``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from orders.models import (
    BlockAllocation,
    BlockOrder,
    Execution,
    FixMessage,
    FixSession,
    Route,
    RoutingJob,
    TradeBasket,
    TradeFile,
)
from orders.selectors import baskets_visible_to
from rebalance_app.exceptions import NotFound, PermissionDenied

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

MSG_DESK_ONLY = "Only Operations, Compliance and Admin see the firm's executions and FIX log."
MSG_JOB_NOT_FOUND = "Routing job {id} not found."


def sees_desk(user: AbstractBaseUser) -> bool:
    """Operations, Compliance and Admin: the global basket view permission."""
    return bool(
        user.is_authenticated and (user.is_superuser or user.has_perm("orders.view_tradebasket"))
    )


def _require_desk(user: AbstractBaseUser) -> None:
    if not sees_desk(user):
        raise PermissionDenied(MSG_DESK_ONLY)


def routing_jobs_visible_to(user: AbstractBaseUser) -> QuerySet[RoutingJob]:
    if sees_desk(user):
        return RoutingJob.objects.all()
    return RoutingJob.objects.filter(baskets__in=baskets_visible_to(user)).distinct()


def routes_visible_to(user: AbstractBaseUser) -> QuerySet[Route]:
    if sees_desk(user):
        return Route.objects.all()
    visible = baskets_visible_to(user).values("pk")
    mine = BlockAllocation.objects.filter(block=OuterRef("block"), order__basket__in=visible)
    return Route.objects.filter(Exists(mine))


def routing_job_get(*, user: AbstractBaseUser, pk: Any) -> RoutingJob:
    try:
        return routing_jobs_visible_to(user).select_related("requested_by").get(pk=int(pk))
    except (RoutingJob.DoesNotExist, TypeError, ValueError):
        raise NotFound(MSG_JOB_NOT_FOUND.format(id=pk)) from None


@dataclass(frozen=True)
class RoutingView:
    """What a basket's page shows of its routing: jobs, blocks with routes and fills."""

    jobs: list[RoutingJob]
    blocks: list[BlockOrder]
    trade_files: list[TradeFile]

    @property
    def live(self) -> bool:
        from orders.models import ROUTE_OPEN_STATES, RouteState

        open_states = {*ROUTE_OPEN_STATES, RouteState.PENDING}
        return any(j.status in ("queued", "running") for j in self.jobs) or any(
            r.state in open_states for b in self.blocks for r in b.routes.all()
        )


def basket_routing(*, basket: TradeBasket) -> RoutingView:
    jobs = list(
        RoutingJob.objects.filter(baskets=basket).select_related("requested_by").order_by("pk")
    )
    blocks = list(
        BlockOrder.objects.filter(job__in=jobs, allocations__order__basket=basket)
        .distinct()
        .select_related("security")
        .prefetch_related(
            Prefetch("routes", queryset=Route.objects.order_by("pk")),
            Prefetch("routes__executions", queryset=Execution.objects.order_by("executed_at")),
            Prefetch(
                "allocations",
                queryset=BlockAllocation.objects.select_related("order__account").order_by(
                    "order__account__account_number"
                ),
            ),
        )
        .order_by("security__ticker", "side")
    )
    files = list(TradeFile.objects.filter(job__in=jobs).select_related("sent_by"))
    return RoutingView(jobs=jobs, blocks=blocks, trade_files=files)


def execution_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[Execution]:
    """Every fill, newest first (desk only). Filters: ``ticker``, ``cl_ord_id``, ``basket``,
    ``date_from``/``date_to`` (execution date, inclusive)."""
    _require_desk(user)
    filters = filters or {}
    qs = Execution.objects.select_related("route__block__security", "route__block__job")
    if filters.get("ticker"):
        qs = qs.filter(route__block__security__ticker__iexact=filters["ticker"])
    if filters.get("cl_ord_id"):
        qs = qs.filter(route__cl_ord_id=filters["cl_ord_id"])
    if filters.get("basket"):
        qs = qs.filter(route__block__allocations__order__basket_id=filters["basket"]).distinct()
    if filters.get("date_from"):
        qs = qs.filter(executed_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(executed_at__date__lte=filters["date_to"])
    return qs.order_by("-executed_at", "-pk")


def fix_message_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[FixMessage]:
    """The FIX message log, newest first (desk only). Filters: ``direction``, ``msg_type``,
    ``cl_ord_id``, ``route``."""
    _require_desk(user)
    filters = filters or {}
    qs = FixMessage.objects.select_related("session", "route")
    for key in ("direction", "msg_type", "cl_ord_id"):
        if filters.get(key):
            qs = qs.filter(**{key: filters[key]})
    if filters.get("route"):
        qs = qs.filter(route_id=filters["route"])
    return qs.order_by("-created_at", "-pk")


def fix_sessions(*, user: AbstractBaseUser) -> list[FixSession]:
    _require_desk(user)
    return list(FixSession.objects.order_by("name"))
