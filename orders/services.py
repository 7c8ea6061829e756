"""Order writes: a draft basket made from reviewed proposals, manual edits of its orders while
it is a draft, and every workflow transition of DESIGN 7 (submit, approve, reject, cancel,
release of a compliance hold).

Each transition follows one recipe: in one transaction, check that the actor may see the
basket (NotFound otherwise), lock its row (``select_for_update``), check the actor's role and
object permission (PermissionDenied), re-check the state under the lock against the table in
``orders.workflow`` (InvalidTransition, with the current state in ``extra``), apply the
four-eyes rule where it applies (FourEyesViolation), save, and write the audit event with the
comment. A second click or two people at once therefore change nothing twice: the second
caller waits for the lock, then finds the state moved on and gets a 409.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from compliance.models import ComplianceResult, Severity
from compliance.services.audit import audit_record
from orders.models import BasketState, Order, OrderLot, OrderReason, OrderType, TradeBasket
from orders.workflow import orders_hash, transition_allowed
from portfolios.models import Account, RebalanceRun, RunStatus, Security, Side
from portfolios.selectors import accounts_visible_to, latest_prices
from rebalance_app.exceptions import (
    FourEyesViolation,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from rebalance_app.roles import Role, user_has_role

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

MSG_BASKET_NOT_FOUND = "Basket {id} not found."
MSG_ORDER_NOT_FOUND = "Order {id} not found in basket {basket}."
MSG_ACCOUNT_NOT_FOUND = "Account {id} not found."
MSG_NOT_TRADER = "You may view basket {basket} but not trade its accounts."
MSG_ACCOUNT_NOT_CHANGEABLE = "You may view account {account} but not trade it."
MSG_NOT_OPS = "Only Operations may approve or reject a basket."
MSG_NOT_COMPLIANCE = "Only Compliance may release a compliance hold."
MSG_BAD_STATE = "Basket {basket} is {state}: it cannot be {verb}."
MSG_NOT_DRAFT = "Basket {basket} is {state}: orders can only change while it is a draft."
MSG_EMPTY = "Basket {basket} has no orders: add one before submitting."
MSG_FOUR_EYES = (
    "Four-eyes rule: you created, edited or submitted basket {basket}, so someone else must "
    "approve it."
)
MSG_OPEN_FAILURES = (
    "Basket {basket} has {count} hard compliance failure(s) without an override: it cannot be "
    "approved."
)
MSG_ACK_WARNINGS = "Basket {basket} has {count} compliance warning(s): acknowledge them to approve."
MSG_COMMENT_REQUIRED = "Say why the basket is rejected: a comment is required."
MSG_ROUTING_NO_CANCEL = (
    "Basket {basket} is in routing job {job}: its orders are in block orders now, so it cannot "
    "be cancelled; Operations cancels open orders at the broker."
)
MSG_UNKNOWN_SECURITY = "Unknown security {security}."
MSG_BAD_QUANTITY = "Quantity must be a positive number of shares, not {quantity}."
MSG_BAD_SIDE = "Side must be buy or sell, not {side!r}."
MSG_BAD_ORDER_TYPE = "Order type must be market or limit, not {order_type!r}."
MSG_LIMIT_PRICE = "A limit order needs a positive limit price."
MSG_NO_PRICE = "{ticker} has no price: give a limit price or import prices first."

ACTION_SUBMITTED = "basket.submitted"
ACTION_CHECKED = "basket.checked"
ACTION_APPROVED = "basket.approved"
ACTION_REJECTED = "basket.rejected"
ACTION_CANCELLED = "basket.cancelled"
ACTION_HOLD_RELEASED = "basket.hold_released"
ACTION_ORDER_ADDED = "basket.order_added"
ACTION_ORDER_UPDATED = "basket.order_updated"
ACTION_ORDER_REMOVED = "basket.order_removed"

# Baskets that still hold their runs: a run in one of these cannot go into another basket.
ACTIVE_STATES = [
    s for s in BasketState.values if s not in (BasketState.CANCELLED, BasketState.REJECTED)
]
SHARES = Decimal("0.000001")
CENTS = Decimal("0.01")


def _dec(x: float, quantum: Decimal) -> Decimal:
    return Decimal(str(x)).quantize(quantum, rounding=ROUND_HALF_UP)


def _run_authors(runs: Sequence[RebalanceRun]) -> set[int]:
    """Who proposed the runs or edited their trades: they shaped the orders (four-eyes)."""
    ids = {r.created_by_id for r in runs if r.created_by_id}
    names = {e.get("by") for r in runs for e in (r.edits or []) if isinstance(e, dict)}
    names.discard(None)
    if names:
        users = get_user_model().objects.filter(username__in=names)
        ids |= set(users.values_list("pk", flat=True))
    return ids


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
        basket.editors.set(_run_authors(runs) | {actor.pk})
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


# ---------------------------------------------------------------------------
# The workflow (DESIGN 7)
# ---------------------------------------------------------------------------


def _state_error(basket: TradeBasket, verb: str) -> InvalidTransition:
    return InvalidTransition(
        MSG_BAD_STATE.format(basket=basket.pk, state=basket.get_state_display().lower(), verb=verb),
        {"state": basket.state, "basket": basket.pk},
    )


def _basket_lock(*, actor: AbstractBaseUser, basket_id: Any) -> TradeBasket:
    """The basket's row, locked for this transaction, if ``actor`` may see it."""
    from orders.selectors import baskets_visible_to

    try:
        pk = int(basket_id)
    except (TypeError, ValueError):
        raise NotFound(MSG_BASKET_NOT_FOUND.format(id=basket_id)) from None
    if not baskets_visible_to(actor).filter(pk=pk).exists():
        raise NotFound(MSG_BASKET_NOT_FOUND.format(id=pk))
    return TradeBasket.objects.select_for_update().get(pk=pk)


def _require_trader(*, actor: AbstractBaseUser, basket: TradeBasket) -> None:
    """The PM side: ``actor`` may change every account the basket trades (an empty basket: its
    creator). Admin may do anything."""
    if actor.is_superuser:
        return
    changeable = accounts_visible_to(actor, perm="change_household").values("pk")
    orders = Order.objects.filter(basket=basket)
    if not orders.exists():
        if basket.created_by_id == actor.pk:
            return
        raise PermissionDenied(MSG_NOT_TRADER.format(basket=basket.pk))
    if orders.exclude(account__in=changeable).exists():
        raise PermissionDenied(MSG_NOT_TRADER.format(basket=basket.pk))


def _require_ops(actor: AbstractBaseUser, message: str = MSG_NOT_OPS) -> None:
    """Operations (or Admin) only; ``message`` says what the refused action was."""
    if not (actor.is_superuser or user_has_role(actor, Role.OPS)):
        raise PermissionDenied(message)


def basket_participant_ids(*, basket: TradeBasket) -> set[int]:
    """Everyone who created, edited or submitted the basket: none of them may approve it."""
    ids = {basket.created_by_id}
    if basket.submitted_by_id:
        ids.add(basket.submitted_by_id)
    ids |= set(basket.editors.values_list("pk", flat=True))
    return ids


def _latest_results(basket: TradeBasket) -> list[ComplianceResult]:
    latest = ComplianceResult.objects.filter(basket=basket).aggregate(m=Max("check_run"))["m"]
    if latest is None:
        return []
    return list(
        ComplianceResult.objects.filter(basket=basket, check_run=latest, passed=False)
        .select_related("rule", "override")
        .order_by("pk")
    )


def basket_open_hard_failures(*, basket: TradeBasket) -> list[ComplianceResult]:
    """Failed hard results of the latest check that no Compliance officer has overridden."""
    return [
        r
        for r in _latest_results(basket)
        if r.severity == Severity.HARD and not hasattr(r, "override")
    ]


def basket_failed_warnings(*, basket: TradeBasket) -> list[ComplianceResult]:
    """Failed warning results of the latest check: the approver must acknowledge them."""
    return [r for r in _latest_results(basket) if r.severity == Severity.WARNING]


def basket_orders_hash(*, basket: TradeBasket) -> str:
    """SHA-256 of the canonical JSON of the basket's orders (see ``orders.workflow``): what an
    approval is bound to. Routing recomputes it and refuses a basket whose orders changed."""
    orders = Order.objects.filter(basket=basket).prefetch_related("lots")
    return orders_hash(
        {
            "account": o.account_id,
            "security": o.security_id,
            "side": o.side,
            "quantity": o.quantity,
            "order_type": o.order_type,
            "limit_price": o.limit_price,
            "lots": [(lot.lot_id, lot.quantity) for lot in o.lots.all()],
        }
        for o in orders
    )


def _compliance_check(*, basket: TradeBasket, actor: AbstractBaseUser) -> Any:
    from compliance.services.checks import basket_compliance_check

    return basket_compliance_check(basket=basket, actor=actor, stage="submit")


def basket_submit(*, actor: AbstractBaseUser, basket_id: Any, comment: str = "") -> TradeBasket:
    """draft -> submitted, then the pre-trade compliance check in the same transaction ->
    ``compliance_hold`` when a hard failure has no override, else ``pending_approval``.

    Raises NotFound, PermissionDenied (not the basket's PM team), InvalidTransition (not a
    draft: a second submit runs no second check), ValidationFailed (no orders)."""
    with transaction.atomic():
        basket = _basket_lock(actor=actor, basket_id=basket_id)
        _require_trader(actor=actor, basket=basket)
        if not transition_allowed(basket.state, BasketState.SUBMITTED):
            raise _state_error(basket, "submitted")
        if not Order.objects.filter(basket=basket).exists():
            raise ValidationFailed(MSG_EMPTY.format(basket=basket.pk))
        before = basket.state
        basket.state = BasketState.SUBMITTED
        basket.submitted_by = actor
        basket.submitted_at = timezone.now()
        basket.save(update_fields=["state", "submitted_by", "submitted_at", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_SUBMITTED,
            obj=basket,
            before={"state": before},
            after={"state": basket.state},
            reason=comment,
        )
        outcome = _compliance_check(basket=basket, actor=actor)
        target = (
            BasketState.COMPLIANCE_HOLD if outcome.hard_failures else BasketState.PENDING_APPROVAL
        )
        basket.state = target
        basket.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_CHECKED,
            obj=basket,
            before={"state": BasketState.SUBMITTED},
            after={
                "state": target,
                "check_run": outcome.check_run,
                "hard_failures": outcome.hard_failures,
                "warnings": outcome.warnings,
            },
        )
    return basket


def basket_approve(
    *,
    actor: AbstractBaseUser,
    basket_id: Any,
    comment: str = "",
    acknowledge_warnings: bool = False,
) -> TradeBasket:
    """pending_approval -> approved, bound to ``basket_orders_hash``.

    Raises NotFound, PermissionDenied (not Ops), InvalidTransition (wrong state, or an open
    hard failure), FourEyesViolation (the approver created, edited or submitted the basket;
    Admin included), ValidationFailed (warnings not acknowledged; ``extra["warnings"]`` lists
    them)."""
    with transaction.atomic():
        basket = _basket_lock(actor=actor, basket_id=basket_id)
        _require_ops(actor)
        if not transition_allowed(basket.state, BasketState.APPROVED):
            raise _state_error(basket, "approved")
        if actor.pk in basket_participant_ids(basket=basket):
            raise FourEyesViolation(MSG_FOUR_EYES.format(basket=basket.pk))
        open_failures = basket_open_hard_failures(basket=basket)
        if open_failures:
            raise InvalidTransition(
                MSG_OPEN_FAILURES.format(basket=basket.pk, count=len(open_failures)),
                {"state": basket.state, "results": [r.pk for r in open_failures]},
            )
        warnings = basket_failed_warnings(basket=basket)
        if warnings and not acknowledge_warnings:
            raise ValidationFailed(
                MSG_ACK_WARNINGS.format(basket=basket.pk, count=len(warnings)),
                {
                    "warnings": [
                        {"result": r.pk, "rule": r.rule.name, "message": r.message}
                        for r in warnings
                    ]
                },
            )
        before = basket.state
        basket.state = BasketState.APPROVED
        basket.approved_by = actor
        basket.approved_at = timezone.now()
        basket.approved_hash = basket_orders_hash(basket=basket)
        basket.save(
            update_fields=["state", "approved_by", "approved_at", "approved_hash", "updated_at"]
        )
        audit_record(
            actor=actor,
            action=ACTION_APPROVED,
            obj=basket,
            before={"state": before},
            after={
                "state": basket.state,
                "approved_hash": basket.approved_hash,
                "acknowledged_warnings": [r.pk for r in warnings],
            },
            reason=comment,
        )
    return basket


def basket_reject(*, actor: AbstractBaseUser, basket_id: Any, comment: str) -> TradeBasket:
    """pending_approval or compliance_hold -> rejected, with a required comment. The runs are
    free again for a new basket.

    Raises ValidationFailed (no comment), NotFound, PermissionDenied (not Ops),
    InvalidTransition."""
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed(MSG_COMMENT_REQUIRED)
    with transaction.atomic():
        basket = _basket_lock(actor=actor, basket_id=basket_id)
        _require_ops(actor)
        if not transition_allowed(basket.state, BasketState.REJECTED):
            raise _state_error(basket, "rejected")
        before = basket.state
        basket.state = BasketState.REJECTED
        basket.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_REJECTED,
            obj=basket,
            before={"state": before},
            after={"state": basket.state},
            reason=comment,
        )
    return basket


def basket_cancel(*, actor: AbstractBaseUser, basket_id: Any, comment: str = "") -> TradeBasket:
    """Any state before routed -> cancelled, by the basket's PM team (or Admin).

    Raises NotFound, PermissionDenied, InvalidTransition."""
    with transaction.atomic():
        basket = _basket_lock(actor=actor, basket_id=basket_id)
        _require_trader(actor=actor, basket=basket)
        if not transition_allowed(basket.state, BasketState.CANCELLED):
            raise _state_error(basket, "cancelled")
        _refuse_cancel_while_routing(basket)
        before = basket.state
        basket.state = BasketState.CANCELLED
        basket.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_CANCELLED,
            obj=basket,
            before={"state": before},
            after={"state": basket.state},
            reason=comment,
        )
    return basket


def _refuse_cancel_while_routing(basket: TradeBasket) -> None:
    """Once a routing job holds the basket its orders are in block orders (maybe shared with
    other baskets, maybe at the broker): the basket cannot be cancelled as a whole any more;
    Ops cancels open orders at the broker, route by route."""
    from orders.models import BlockAllocation, RoutingJob
    from rebalance_app.work import WorkStatus

    job = (
        RoutingJob.objects.filter(baskets=basket)
        .filter(
            Q(status__in=[WorkStatus.QUEUED, WorkStatus.RUNNING])
            | Q(blocks__allocations__order__basket=basket)
        )
        .order_by("-pk")
        .first()
    )
    in_blocks = BlockAllocation.objects.filter(order__basket=basket).exists()
    if job is not None or in_blocks:
        raise InvalidTransition(
            MSG_ROUTING_NO_CANCEL.format(basket=basket.pk, job=job.pk if job else "?"),
            {"state": basket.state},
        )


def basket_release_hold(*, basket: TradeBasket, actor: AbstractBaseUser | str) -> TradeBasket:
    """compliance_hold -> pending_approval once no hard failure of the latest check is left
    without an override (called by the override service, in its transaction). Anything else
    (not on hold, failures still open) changes nothing and returns the basket as it is.

    Raises PermissionDenied when a user ``actor`` is not Compliance (or Admin)."""
    if (
        not isinstance(actor, str)
        and not actor.is_superuser
        and not user_has_role(actor, Role.COMPLIANCE)
    ):
        raise PermissionDenied(MSG_NOT_COMPLIANCE)
    with transaction.atomic():
        locked = TradeBasket.objects.select_for_update().get(pk=basket.pk)
        if locked.state != BasketState.COMPLIANCE_HOLD:
            return locked
        if basket_open_hard_failures(basket=locked):
            return locked
        locked.state = BasketState.PENDING_APPROVAL
        locked.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_HOLD_RELEASED,
            obj=locked,
            before={"state": BasketState.COMPLIANCE_HOLD},
            after={"state": locked.state},
        )
    basket.state = locked.state
    return locked


# ---------------------------------------------------------------------------
# Order edits while the basket is a draft
# ---------------------------------------------------------------------------


def _draft_for_edit(*, actor: AbstractBaseUser, basket_id: Any) -> TradeBasket:
    basket = _basket_lock(actor=actor, basket_id=basket_id)
    _require_trader(actor=actor, basket=basket)
    if basket.state != BasketState.DRAFT:
        raise InvalidTransition(
            MSG_NOT_DRAFT.format(basket=basket.pk, state=basket.get_state_display().lower()),
            {"state": basket.state, "basket": basket.pk},
        )
    return basket


def _quantity(raw: Any) -> Decimal:
    try:
        q = Decimal(str(raw))
    except (ArithmeticError, ValueError):
        raise ValidationFailed(MSG_BAD_QUANTITY.format(quantity=raw)) from None
    if not q.is_finite() or q <= 0:
        raise ValidationFailed(MSG_BAD_QUANTITY.format(quantity=raw))
    return q.quantize(SHARES, rounding=ROUND_HALF_UP)


def _order_terms(order_type: str, limit_price: Any) -> tuple[str, Decimal | None]:
    if order_type not in OrderType.values:
        raise ValidationFailed(MSG_BAD_ORDER_TYPE.format(order_type=order_type))
    if order_type == OrderType.MARKET:
        return order_type, None
    try:
        price = Decimal(str(limit_price)) if limit_price is not None else None
    except (ArithmeticError, ValueError):
        price = None
    if price is None or not price.is_finite() or price <= 0:
        raise ValidationFailed(MSG_LIMIT_PRICE)
    return order_type, price.quantize(SHARES, rounding=ROUND_HALF_UP)


def _order_snapshot(order: Order) -> dict[str, Any]:
    return {
        "order": order.pk,
        "account": order.account_id,
        "security": order.security_id,
        "side": order.side,
        "quantity": str(order.quantity),
        "order_type": order.order_type,
        "limit_price": str(order.limit_price) if order.limit_price is not None else None,
        "lots": [[lot.lot_id, str(lot.quantity)] for lot in order.lots.order_by("pk")],
    }


def basket_order_add(
    *,
    actor: AbstractBaseUser,
    basket_id: Any,
    account_id: Any,
    security_id: Any,
    side: str,
    quantity: Any,
    order_type: str = OrderType.MARKET,
    limit_price: Any = None,
) -> Order:
    """A manual order in a draft basket, estimated at the latest price (or the limit price).

    Raises ValidationFailed (unknown security, quantity not positive, bad side or order type,
    no price), NotFound (basket or account not visible), PermissionDenied (account or basket
    not tradable by ``actor``), InvalidTransition (not a draft)."""
    if side not in Side.values:
        raise ValidationFailed(MSG_BAD_SIDE.format(side=side))
    qty = _quantity(quantity)
    order_type, limit = _order_terms(order_type, limit_price)
    try:
        security = Security.objects.get(pk=int(security_id))
    except (Security.DoesNotExist, TypeError, ValueError):
        raise ValidationFailed(MSG_UNKNOWN_SECURITY.format(security=security_id)) from None
    with transaction.atomic():
        basket = _draft_for_edit(actor=actor, basket_id=basket_id)
        try:
            account = accounts_visible_to(actor).get(pk=int(account_id))
        except (ValueError, TypeError, Account.DoesNotExist):
            raise NotFound(MSG_ACCOUNT_NOT_FOUND.format(id=account_id)) from None
        if not accounts_visible_to(actor, perm="change_household").filter(pk=account.pk).exists():
            raise PermissionDenied(MSG_ACCOUNT_NOT_CHANGEABLE.format(account=account.pk))
        price = limit
        if price is None:
            latest = latest_prices(security_ids=[security.pk]).get(security.pk)
            if latest is None:
                raise ValidationFailed(MSG_NO_PRICE.format(ticker=security.ticker))
            price = Decimal(latest[0])
        order = Order.objects.create(
            basket=basket,
            account=account,
            security=security,
            side=side,
            quantity=qty,
            order_type=order_type,
            limit_price=limit,
            est_price=price.quantize(SHARES, rounding=ROUND_HALF_UP),
            est_notional=(qty * price).quantize(CENTS, rounding=ROUND_HALF_UP),
            reason=OrderReason.MANUAL,
        )
        basket.editors.add(actor)
        audit_record(
            actor=actor, action=ACTION_ORDER_ADDED, obj=basket, after=_order_snapshot(order)
        )
    return order


def _order_in(basket: TradeBasket, order_id: Any) -> Order:
    try:
        return Order.objects.select_for_update().get(pk=int(order_id), basket=basket)
    except (Order.DoesNotExist, TypeError, ValueError):
        raise NotFound(MSG_ORDER_NOT_FOUND.format(id=order_id, basket=basket.pk)) from None


def basket_order_update(
    *,
    actor: AbstractBaseUser,
    basket_id: Any,
    order_id: Any,
    quantity: Any = None,
    order_type: str | None = None,
    limit_price: Any = None,
) -> Order:
    """Change a draft order's quantity and/or terms. A smaller sell keeps its lot instructions
    in order and trims the last ones (their estimated gain pro rata); a larger one leaves the
    extra shares without instructions (relieved by the account's default method at fill).

    Raises as ``basket_order_add``, and NotFound for an order of another basket."""
    with transaction.atomic():
        basket = _draft_for_edit(actor=actor, basket_id=basket_id)
        order = _order_in(basket, order_id)
        before = _order_snapshot(order)
        fields = []
        if quantity is not None:
            qty = _quantity(quantity)
            order.quantity = qty
            order.est_notional = (qty * order.est_price).quantize(CENTS, rounding=ROUND_HALF_UP)
            fields += ["quantity", "est_notional"]
            remaining = qty
            for lot in order.lots.order_by("pk"):
                if remaining <= 0:
                    lot.delete()
                    continue
                if lot.quantity > remaining:
                    lot.est_gain = (lot.est_gain * remaining / lot.quantity).quantize(
                        CENTS, rounding=ROUND_HALF_UP
                    )
                    lot.quantity = remaining
                    lot.save(update_fields=["quantity", "est_gain"])
                remaining -= lot.quantity
        if order_type is not None or limit_price is not None:
            terms = _order_terms(order_type or order.order_type, limit_price)
            order.order_type, order.limit_price = terms
            fields += ["order_type", "limit_price"]
        if fields:
            order.save(update_fields=fields)
        basket.editors.add(actor)
        audit_record(
            actor=actor,
            action=ACTION_ORDER_UPDATED,
            obj=basket,
            before=before,
            after=_order_snapshot(order),
        )
    return order


def basket_order_remove(*, actor: AbstractBaseUser, basket_id: Any, order_id: Any) -> None:
    """Take an order (and its lot instructions) out of a draft basket. A draft order was
    never submitted, so it is deleted; the audit event keeps its full picture.

    Raises NotFound, PermissionDenied, InvalidTransition (not a draft)."""
    with transaction.atomic():
        basket = _draft_for_edit(actor=actor, basket_id=basket_id)
        order = _order_in(basket, order_id)
        before = _order_snapshot(order)
        order.lots.all().delete()
        order.delete()
        basket.editors.add(actor)
        audit_record(actor=actor, action=ACTION_ORDER_REMOVED, obj=basket, before=before)
