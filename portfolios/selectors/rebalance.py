"""Reads of rebalance runs and batches, restricted to the accounts the user may see."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet

from portfolios.models import RebalanceBatch, RebalanceRun
from portfolios.selectors import accounts_visible_to
from rebalance_app.exceptions import NotFound, ValidationFailed
from rebalance_app.work import WorkStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

RUN_NOT_FOUND = "Rebalance run {id} not found."
BATCH_NOT_FOUND = "Rebalance batch {id} not found."
BAD_FILTER = "Filter '{name}' must be a number (got '{value}')."
LIST_FIELDS = (
    "id",
    "account",
    "account_id",
    "batch_id",
    "mode",
    "status",
    "trigger",
    "created_at",
    "finished_at",
    "solver",
    "solve_ms",
    "error",
    "input_hash",
    "created_by",
    "replay_of_id",
)


def rebalance_run_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[RebalanceRun]:
    """Runs of the accounts ``user`` may see, newest first; ``filters``: account, batch, status,
    mode, trigger. The big JSON columns are left out (use :func:`rebalance_run_get`)."""
    qs = RebalanceRun.objects.filter(account__in=accounts_visible_to(user).values("pk"))
    for key in ("account", "batch", "status", "mode", "trigger"):
        value = (filters or {}).get(key)
        if value in (None, ""):
            continue
        if key in ("account", "batch"):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValidationFailed(BAD_FILTER.format(name=key, value=value)) from None
            key = f"{key}_id"
        qs = qs.filter(**{key: value})
    return (
        qs.select_related("account", "created_by")
        .defer("input_snapshot", "diagnostics", "trades", "edits")
        .order_by("-created_at", "-pk")
    )


def rebalance_run_get(*, user: AbstractBaseUser, pk: Any) -> RebalanceRun:
    """One run ``user`` may see; anything else is NotFound."""
    try:
        return (
            RebalanceRun.objects.filter(account__in=accounts_visible_to(user).values("pk"))
            .select_related("account", "account__household", "model_version__model", "created_by")
            .get(pk=pk)
        )
    except (RebalanceRun.DoesNotExist, ValueError, TypeError):
        raise NotFound(RUN_NOT_FOUND.format(id=pk)) from None


def rebalance_batches_visible_to(user: AbstractBaseUser) -> QuerySet[RebalanceBatch]:
    """A batch is visible to its creator, to whoever may see one of its accounts (a PM's
    teammates), and to roles that see the whole firm."""
    if not user.is_authenticated:
        return RebalanceBatch.objects.none()
    if user.is_superuser or user.has_perm("portfolios.view_rebalancerun"):
        return RebalanceBatch.objects.all()
    with_visible_runs = RebalanceRun.objects.filter(
        account__in=accounts_visible_to(user).values("pk")
    ).values("batch_id")
    return RebalanceBatch.objects.filter(Q(created_by=user) | Q(pk__in=with_visible_runs))


def rebalance_batch_get(*, user: AbstractBaseUser, pk: Any) -> RebalanceBatch:
    try:
        return rebalance_batches_visible_to(user).select_related("created_by").get(pk=pk)
    except (RebalanceBatch.DoesNotExist, ValueError, TypeError):
        raise NotFound(BATCH_NOT_FOUND.format(id=pk)) from None


def rebalance_batch_progress(*, batch: RebalanceBatch) -> dict[str, Any]:
    """Counts of the batch's runs by status, and whether it is done (one query)."""
    counts = batch.runs.aggregate(
        queued=Count("pk", filter=Q(status=WorkStatus.QUEUED)),
        running=Count("pk", filter=Q(status=WorkStatus.RUNNING)),
        succeeded=Count("pk", filter=Q(status="succeeded")),
        infeasible=Count("pk", filter=Q(status="infeasible")),
        failed=Count("pk", filter=Q(status="failed")),
    )
    done = counts["succeeded"] + counts["infeasible"] + counts["failed"]
    total = batch.runs_total
    return {
        **counts,
        "total": total,
        "done": done,
        "percent": round(100 * done / total, 1) if total else 100.0,
        "finished": done >= total,
    }


def rebalance_run_live_baskets(*, run_ids: list[int]) -> dict[int, tuple[int, str]]:
    """Run id to (basket id, state label) for the runs held by a live basket (one query): such
    a run cannot go into another basket, nor be edited."""
    from orders.models import BasketState, TradeBasket
    from orders.services import ACTIVE_STATES

    if not run_ids:
        return {}
    labels = dict(BasketState.choices)
    rows = TradeBasket.runs.through.objects.filter(
        rebalancerun_id__in=run_ids, tradebasket__state__in=ACTIVE_STATES
    ).values_list("rebalancerun_id", "tradebasket_id", "tradebasket__state")
    return {run: (basket, labels.get(state, state)) for run, basket, state in rows}
