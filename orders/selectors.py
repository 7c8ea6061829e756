"""Order reads. Selectors own visibility: a basket is visible to a user who may see every
account it trades (a PM sees the baskets of their team's households), to the basket's creator
while it holds no order, and to Ops, Compliance and Admin (global ``orders.view_tradebasket``).
Another team's basket is NotFound, like an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum

from compliance.models import AuditEvent, ComplianceResult, Override
from orders.models import BasketState, Order, TradeBasket
from orders.workflow import CANCELLABLE
from portfolios.models import Household
from portfolios.selectors import accounts_visible_to, households_visible_to
from rebalance_app.exceptions import NotFound
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

BASKET_NOT_FOUND = "Basket {id} not found."
# The Ops approval queue: baskets waiting for a decision (a hold waits on Compliance first).
QUEUE_STATES = (BasketState.PENDING_APPROVAL, BasketState.COMPLIANCE_HOLD)


def baskets_visible_to(user: AbstractBaseUser) -> QuerySet[TradeBasket]:
    """Baskets ``user`` may see: every one of their orders is in an account the user sees."""
    if not user.is_authenticated:
        return TradeBasket.objects.none()
    if user.is_superuser or user.has_perm("orders.view_tradebasket"):
        return TradeBasket.objects.all()
    visible = accounts_visible_to(user).values("pk")
    hidden_order = Order.objects.filter(basket=OuterRef("pk")).exclude(account__in=visible)
    any_order = Order.objects.filter(basket=OuterRef("pk"))
    return TradeBasket.objects.filter(~Exists(hidden_order)).filter(
        Exists(any_order) | Q(created_by=user)
    )


def basket_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[TradeBasket]:
    """Visible baskets, newest first, each annotated with its order and account counts and
    gross notional (one query for the page, whatever its length). Filters: ``state``,
    ``team`` (a team group's name: baskets trading one of its households), ``date_from`` and
    ``date_to`` (creation date, inclusive)."""
    filters = filters or {}
    qs = baskets_visible_to(user).select_related("created_by", "submitted_by", "approved_by")
    if filters.get("state"):
        qs = qs.filter(state=filters["state"])
    if filters.get("team"):
        qs = qs.filter(
            Exists(
                Order.objects.filter(
                    basket=OuterRef("pk"), account__household__team__name=filters["team"]
                )
            )
        )
    if filters.get("date_from"):
        qs = qs.filter(created_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(created_at__date__lte=filters["date_to"])
    return qs.annotate(
        order_count=Count("orders"),
        account_count=Count("orders__account", distinct=True),
        gross_notional=Sum("orders__est_notional"),
    ).order_by("-created_at", "-pk")


def basket_queue(*, user: AbstractBaseUser) -> QuerySet[TradeBasket]:
    """Baskets waiting for approval (or on compliance hold), oldest submission first."""
    return (
        basket_list(user=user)
        .filter(state__in=QUEUE_STATES)
        .order_by("submitted_at", "created_at", "pk")
    )


def basket_teams(*, basket_ids: list[int]) -> dict[int, list[str]]:
    """The PM teams whose households each basket trades (one query)."""
    out: dict[int, list[str]] = {pk: [] for pk in basket_ids}
    if not basket_ids:
        return out
    rows = (
        Order.objects.filter(basket_id__in=basket_ids)
        .exclude(account__household__team=None)
        .values_list("basket_id", "account__household__team__name")
        .distinct()
        .order_by("basket_id", "account__household__team__name")
    )
    for basket_id, team in rows:
        out[basket_id].append(team)
    return out


def basket_team_choices(*, user: AbstractBaseUser) -> list[str]:
    """Team names of the households ``user`` may see (the list's team filter)."""
    return list(
        Household.objects.filter(pk__in=households_visible_to(user).values("pk"))
        .exclude(team=None)
        .order_by("team__name")
        .values_list("team__name", flat=True)
        .distinct()
    )


def basket_get(*, user: AbstractBaseUser, pk: Any) -> TradeBasket:
    """One basket ``user`` may see; anything else is NotFound (never tell it exists)."""
    try:
        return (
            baskets_visible_to(user)
            .select_related("created_by", "submitted_by", "approved_by")
            .get(pk=pk)
        )
    except (TradeBasket.DoesNotExist, ValueError, TypeError):
        raise NotFound(BASKET_NOT_FOUND.format(id=pk)) from None


def basket_orders(*, basket: TradeBasket) -> list[Order]:
    """The basket's orders with account, household, security and the lots of each sell."""
    return list(
        basket.orders.select_related("account", "account__household", "security")
        .prefetch_related("lots__lot")
        .order_by("account__account_number", "side", "security__ticker", "pk")
    )


@dataclass(frozen=True)
class BasketTotals:
    bought: Decimal
    sold: Decimal
    realized_st: Decimal
    realized_lt: Decimal
    est_tax: Decimal
    est_costs: Decimal


def basket_totals(*, orders: list[Order]) -> BasketTotals:
    """Gross bought and sold, realized gains by holding period, estimated tax (each lot's
    gain at its account's short- or long-term rate, taxable accounts only) and estimated
    costs (commission plus half-spread on the notional, the optimizer's firm settings)."""
    cost_rate = Decimal(str(settings.REBALANCE_COMMISSION_RATE)) + Decimal(
        str(settings.REBALANCE_HALF_SPREAD_BPS)
    ) / Decimal("10000")
    bought = sold = st = lt = tax = costs = Decimal("0")
    for order in orders:
        if order.side == "buy":
            bought += order.est_notional
        else:
            sold += order.est_notional
        costs += order.est_notional * cost_rate
        for lot in order.lots.all():
            if lot.long_term:
                lt += lot.est_gain
            else:
                st += lot.est_gain
            if order.account.taxable:
                rate = order.account.lt_tax_rate if lot.long_term else order.account.st_tax_rate
                tax += lot.est_gain * rate
    cents = Decimal("0.01")
    return BasketTotals(
        bought=bought,
        sold=sold,
        realized_st=st,
        realized_lt=lt,
        est_tax=tax.quantize(cents),
        est_costs=costs.quantize(cents),
    )


def basket_latest_results(*, basket: TradeBasket) -> list[ComplianceResult]:
    """The results of the basket's latest compliance check, failures first, with rule, order
    and ``overridden`` (the Override, or None) on each (constant queries)."""
    latest = basket.compliance_results.aggregate(m=Max("check_run"))["m"]
    if latest is None:
        return []
    results = list(
        ComplianceResult.objects.filter(basket=basket, check_run=latest)
        .select_related(
            "rule",
            "order",
            "order__security",
            "order__account",
            "override",
            "override__overridden_by",
        )
        .order_by("passed", "severity", "rule__name", "order_id", "pk")
    )
    for result in results:
        try:
            result.overridden = result.override  # type: ignore[attr-defined]
        except Override.DoesNotExist:
            result.overridden = None  # type: ignore[attr-defined]
    return results


def basket_history(*, basket: TradeBasket) -> QuerySet[AuditEvent]:
    """Audit events about the basket, its orders and its compliance results, oldest first.
    The caller has already established (``basket_get``) that the user may see the basket."""
    order_ids = [str(pk) for pk in basket.orders.values_list("pk", flat=True)]
    result_ids = [str(pk) for pk in basket.compliance_results.values_list("pk", flat=True)]
    where = Q(object_type=TradeBasket._meta.label_lower, object_id=str(basket.pk))
    if order_ids:
        where |= Q(object_type=Order._meta.label_lower, object_id__in=order_ids)
    if result_ids:
        where |= Q(object_type=ComplianceResult._meta.label_lower, object_id__in=result_ids)
        override_ids = [
            str(pk)
            for pk in Override.objects.filter(result__basket=basket).values_list("pk", flat=True)
        ]
        if override_ids:
            where |= Q(object_type=Override._meta.label_lower, object_id__in=override_ids)
    return AuditEvent.objects.filter(where).select_related("actor").order_by("seq")


def basket_editor_ids(*, basket: TradeBasket) -> set[int]:
    """Users who created, submitted or edited the basket (four-eyes: none of them approves)."""
    ids = {basket.created_by_id, *basket.editors.values_list("pk", flat=True)}
    if basket.submitted_by_id:
        ids.add(basket.submitted_by_id)
    return ids


def basket_changeable_by(*, user: AbstractBaseUser, basket: TradeBasket) -> bool:
    """Whether ``user`` may change every account the basket trades (its team's PMs, Admin; an
    empty basket: its creator)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    changeable = accounts_visible_to(user, perm="change_household").values("pk")
    orders = basket.orders.all()
    if not orders.exists():
        return basket.created_by_id == user.pk
    return not orders.exclude(account__in=changeable).exists()


# States in which Ops decide (a basket on hold can be rejected but not yet approved).
APPROVABLE = (BasketState.PENDING_APPROVAL,)
REJECTABLE = (BasketState.PENDING_APPROVAL, BasketState.COMPLIANCE_HOLD)


def basket_actions(*, user: AbstractBaseUser, basket: TradeBasket) -> set[str]:
    """The workflow actions ``user`` may take on ``basket`` now, for showing buttons: "submit"
    and "cancel" (who may change its accounts), "approve" and "reject" (Ops or Admin who neither
    created, edited nor submitted it), "override" (Compliance, while it is on hold). The
    services decide; this only keeps buttons away from those who would be refused."""
    actions: set[str] = set()
    if not user.is_authenticated:
        return actions
    if basket_changeable_by(user=user, basket=basket):
        if basket.state == BasketState.DRAFT:
            actions.add("submit")
        if basket.state in CANCELLABLE:
            actions.add("cancel")
    decides = user.is_superuser or user_has_role(user, Role.OPS)
    if decides and basket.state in REJECTABLE and user.pk not in basket_editor_ids(basket=basket):
        actions.add("reject")
        if basket.state in APPROVABLE:
            actions.add("approve")
    if basket.state == BasketState.COMPLIANCE_HOLD and user_has_role(user, Role.COMPLIANCE):
        actions.add("override")
    return actions


@dataclass(frozen=True)
class BasketDetail:
    """Everything a basket's page shows, read for one user."""

    basket: TradeBasket
    orders: list[Order]
    totals: BasketTotals
    results: list[ComplianceResult]
    history: list[AuditEvent]
    actions: set[str]

    @property
    def failed_warnings(self) -> list[ComplianceResult]:
        return [r for r in self.results if not r.passed and r.severity == "warning"]

    @property
    def open_hard(self) -> list[ComplianceResult]:
        return [
            r
            for r in self.results
            if not r.passed and r.severity == "hard" and r.overridden is None  # type: ignore[attr-defined]
        ]


def basket_detail_get(*, user: AbstractBaseUser, pk: Any) -> BasketDetail:
    """A basket ``user`` may see with its orders and lots, totals, latest compliance results,
    history and the actions the user may take (NotFound otherwise)."""
    basket = basket_get(user=user, pk=pk)
    orders = basket_orders(basket=basket)
    return BasketDetail(
        basket=basket,
        orders=orders,
        totals=basket_totals(orders=orders),
        results=basket_latest_results(basket=basket),
        history=list(basket_history(basket=basket)),
        actions=basket_actions(user=user, basket=basket),
    )
