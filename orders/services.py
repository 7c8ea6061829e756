"""Order writes. For now: a draft basket made from reviewed proposals (DESIGN 7: the proposal
stays editable until its basket is submitted). The approval workflow builds on this."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from compliance.services.audit import audit_record
from orders.models import BasketState, Order, OrderLot, OrderReason, TradeBasket
from portfolios.models import RebalanceRun, RunStatus
from portfolios.selectors import accounts_visible_to
from rebalance_app.exceptions import InvalidTransition, NotFound, PermissionDenied, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.contrib.auth.models import AbstractBaseUser

MSG_NO_RUNS = "Choose at least one proposal to put in the basket."
MSG_RUN_NOT_FOUND = "Rebalance run {id} not found."
MSG_NOT_ALLOWED = "You may view run {run} but not trade its account."
MSG_RUN_NOT_READY = "Run {run} is {status}: only a succeeded proposal can become orders."
MSG_RUN_NO_TRADES = "Run {run} proposes no trades: there is nothing to put in a basket."
MSG_RUN_IN_BASKET = "Run {run} is already in basket {basket} ({state})."
ACTION_CREATED = "basket.created"

# Baskets that still hold their runs: a run in one of these cannot go into another basket.
ACTIVE_STATES = [
    s for s in BasketState.values if s not in (BasketState.CANCELLED, BasketState.REJECTED)
]
SHARES = Decimal("0.000001")
CENTS = Decimal("0.01")


def _dec(x: float, quantum: Decimal) -> Decimal:
    return Decimal(str(x)).quantize(quantum, rounding=ROUND_HALF_UP)


def basket_create_from_runs(
    *, actor: AbstractBaseUser, run_ids: Sequence[Any], name: str = ""
) -> TradeBasket:
    """A draft basket with one order per proposed trade of each run (sells carry their lots and
    estimated gains). The runs are locked first, so a double click makes one basket; a run
    already in a live basket is refused."""
    ids = []
    for raw in run_ids:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            raise NotFound(MSG_RUN_NOT_FOUND.format(id=raw)) from None
    if not ids:
        raise ValidationFailed(MSG_NO_RUNS)
    visible = accounts_visible_to(actor).values("pk")
    changeable = set(
        accounts_visible_to(actor, perm="change_household").values_list("pk", flat=True)
    )
    with transaction.atomic():
        runs = list(
            RebalanceRun.objects.select_for_update()
            .filter(pk__in=ids, account__in=visible)
            .order_by("pk")
        )
        found = {r.pk for r in runs}
        for pk in ids:
            if pk not in found:
                raise NotFound(MSG_RUN_NOT_FOUND.format(id=pk))
        for run in runs:
            if run.account_id not in changeable:
                raise PermissionDenied(MSG_NOT_ALLOWED.format(run=run.pk))
            if run.status != RunStatus.SUCCEEDED:
                raise InvalidTransition(MSG_RUN_NOT_READY.format(run=run.pk, status=run.status))
            if not run.trades:
                raise ValidationFailed(MSG_RUN_NO_TRADES.format(run=run.pk))
            live = run.baskets.filter(state__in=ACTIVE_STATES).first()
            if live is not None:
                raise InvalidTransition(
                    MSG_RUN_IN_BASKET.format(
                        run=run.pk, basket=live.pk, state=live.get_state_display()
                    ),
                    {"basket": live.pk},
                )
        label = name.strip() or (
            f"Rebalance {timezone.localdate():%Y-%m-%d} ({len(runs)} account"
            f"{'s' if len(runs) != 1 else ''})"
        )
        basket = TradeBasket.objects.create(name=label[:200], created_by=actor)
        basket.runs.set(runs)
        orders: list[tuple[Order, list[dict[str, Any]]]] = []
        for run in runs:
            for t in run.trades:
                reason = t["reason"] if t["reason"] in OrderReason.values else OrderReason.DRIFT
                order = Order(
                    basket=basket,
                    account_id=run.account_id,
                    security_id=t["security"],
                    side=t["side"],
                    quantity=_dec(t["quantity"], SHARES),
                    est_price=_dec(t["price"], SHARES),
                    est_notional=_dec(t["notional"], CENTS),
                    reason=reason,
                    run=run,
                )
                orders.append((order, t.get("lots", [])))
        created = Order.objects.bulk_create([o for o, _ in orders])
        OrderLot.objects.bulk_create(
            OrderLot(
                order=order,
                lot_id=lot["lot"],
                quantity=_dec(lot["quantity"], SHARES),
                est_gain=_dec(lot["gain"], CENTS),
                long_term=lot["long_term"],
            )
            for order, (_, lots) in zip(created, orders, strict=True)
            for lot in lots
        )
        audit_record(
            actor=actor,
            action=ACTION_CREATED,
            obj=basket,
            after={
                "state": basket.state,
                "name": basket.name,
                "runs": [r.pk for r in runs],
                "orders": len(created),
            },
        )
    return basket
