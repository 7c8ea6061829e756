"""Routing and execution (DESIGN 9): approved baskets become block orders with a written
allocation statement, blocks go to the broker over the FIX 4.4 session (or into a custodian
trade file), execution reports update routes and blocks, and a finished block is allocated
back to its orders at the block's average price and booked into each account's lots, cash
and transactions.

Idempotency, from the outside in:

- ``routing_request`` writes a ``RoutingJob`` row and enqueues its task after commit; a basket
  already in a live job, or no longer approved, is refused (409), so a second click does
  nothing.
- The task claims the job row (``rebalance_app.work``). Preparing is one transaction under
  the baskets' locks: compliance re-runs, the approval hash is checked, the baskets move to
  ``routing``, blocks, allocation statements and routes (each with its ClOrdID) are written.
  A retried task finds the routes written and goes straight to sending.
- A route is sent at most once: its NewOrderSingle is stored (with its sequence number) by
  the FIX store before it is written to the socket, and a route whose 35=D is stored is never
  sent again. If the process died between store and write, the broker sees the sequence gap
  at the next Logon and asks for a resend, which goes out with PossDupFlag=Y.
- Execution reports are applied under the route's lock; an ExecID already recorded, an
  unknown ClOrdID or a fill beyond the block's quantity is recorded with a clear message and
  changes no books. A block is allocated and booked once (``allocated_at``).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.models import ComplianceResult, Severity
from compliance.services.audit import audit_record
from orders.allocation import ALLOCATION_RULE, Request, allocate_pro_rata, average_price
from orders.models import (
    ROUTE_CANCELLABLE_STATES,
    ROUTE_DONE_STATES,
    ROUTE_OPEN_STATES,
    BasketState,
    BlockAllocation,
    BlockOrder,
    Destination,
    Execution,
    FixMessage,
    MessageDirection,
    Order,
    OrderLot,
    OrderStatus,
    Route,
    RouteState,
    RoutingJob,
    TradeBasket,
    TradeFile,
)
from orders.services import _require_ops as require_ops
from orders.services import basket_orders_hash
from orders.tradefile import trade_file_render
from orders.workflow import transition_allowed
from rebalance_app.exceptions import (
    ApplicationError,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from rebalance_app.work import (
    WorkStatus,
    work_claim,
    work_enqueue,
    work_fail,
    work_finish,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from django.contrib.auth.models import AbstractBaseUser

    from orders.fix.session import FixInitiator, Inbound

log = logging.getLogger(__name__)

ROUTING_ACTOR = "system:routing"
FIX_ACTOR = "system:fix"

MSG_NOT_OPS = "Only Operations may route baskets or work their orders at the broker."
MSG_NO_BASKETS = "Choose at least one approved basket to route."
MSG_BASKET_NOT_FOUND = "Basket {id} not found."
MSG_NOT_APPROVED = "Basket {basket} is {state}: only an approved basket can be routed."
MSG_IN_JOB = "Basket {basket} is already being routed (routing job {job}, {status})."
MSG_BAD_DESTINATION = "Destination must be one of {choices}, not {value!r}."
MSG_HASH_CHANGED = (
    "Basket {basket}'s orders changed since they were approved (approval hash {approved}, now "
    "{now}): it was not routed."
)
MSG_NEW_FAILURES = (
    "The pre-routing compliance check found {count} new hard failure(s) in basket {basket}: "
    "it is on compliance hold and was not routed. {first}"
)
MSG_NOTHING_TO_ROUTE = "Routing job {job}: none of its baskets could be routed."
MSG_BROKER_DOWN = (
    "Could not reach the broker's FIX session at {host}:{port}: {error}. Unsent orders stay "
    "pending; resume routing when the broker is up."
)
MSG_DISCONNECTED = (
    "The FIX session dropped while sending {cl_ord_id} ({sent} of {total} orders sent): "
    "{error}. Resume routing to send the rest; nothing is sent twice."
)
MSG_BOOKING_FAILED = (
    "Block {block} is done but its fills could not be booked: {error} The fills are recorded; "
    "put the account right and retry the booking."
)
MSG_BLOCK_NOT_FOUND = "Block {id} not found."
MSG_ALREADY_ALLOCATED = "Block {block} is already allocated and booked."
MSG_BLOCK_OPEN = "Block {block} still has an open order at the broker: it is booked when done."
MSG_SESSION_BUSY = "The FIX session stayed in use by {owner}; resume routing to try again."
MSG_UNKNOWN_CLORDID = "Execution report for unknown ClOrdID {cl_ord_id}: recorded, not applied."
MSG_DUPLICATE_EXEC = "Duplicate execution {exec_id} for {cl_ord_id}: already applied, ignored."
MSG_OVERFILL = (
    "Execution {exec_id} for {cl_ord_id} fills {qty} more, beyond the block's {total} "
    "(already {cum}): recorded, not applied."
)
MSG_REJECTED = "The broker rejected {cl_ord_id}: {text}"
MSG_ROUTE_NOT_FOUND = "Route {id} not found."
MSG_ROUTE_NOT_OPEN = "Route {route} is {state}: only an open order can be cancelled."
MSG_NOT_FIX = "Route {route} goes to a {destination}: only FIX orders can be cancelled."
MSG_JOB_NOT_FOUND = "Routing job {id} not found."
MSG_NO_TRADE_FILE = "Routing job {job} has no trade file."
MSG_ALREADY_SENT = "Trade file {name} was already marked sent by {user} at {at}."
MSG_NOT_RESUMABLE = "Routing job {job} is {status}: only a failed job can be resumed."
MSG_CONFIRM_COLUMNS = "The confirmation file needs the columns {columns}; it has {found}."
MSG_CONFIRM_ROW = "Line {line}: {error}"

ACTION_REQUESTED = "routing.requested"
ACTION_RESUMED = "routing.resumed"
ACTION_HELD = "routing.compliance_hold"
ACTION_STOPPED = "routing.stopped"
ACTION_STARTED = "basket.routing"
ACTION_STATE = "basket.state_changed"
ACTION_STATEMENT = "block.allocation_statement"
ACTION_ALLOCATED = "block.allocated"
ACTION_ALLOCATION_FAILED = "block.allocation_failed"
ACTION_ALLOCATION_RETRY = "block.allocation_retry"
ACTION_ROUTE_SENT = "route.sent"
ACTION_ROUTE_STATE = "route.state_changed"
ACTION_CANCEL_REQUESTED = "route.cancel_requested"
ACTION_EXECUTION = "execution.recorded"
ACTION_EXEC_UNKNOWN = "execution.unknown_clordid"
ACTION_EXEC_DUPLICATE = "execution.duplicate"
ACTION_EXEC_OVERFILL = "execution.overfill"
ACTION_FILE_WRITTEN = "trade_file.written"
ACTION_FILE_SENT = "trade_file.sent"

# FIX ExecType (150) and OrdStatus (39) values used here.
EXEC_NEW, EXEC_TRADE, EXEC_CANCELED, EXEC_REJECTED = "0", "F", "4", "8"
EXEC_PARTIAL_OLD, EXEC_FILL_OLD = "1", "2"  # FIX 4.2 trade ExecTypes, accepted too
ORD_STATUS_STATE = {
    "0": RouteState.NEW,
    "1": RouteState.PARTIALLY_FILLED,
    "2": RouteState.FILLED,
    "4": RouteState.CANCELLED,
    "8": RouteState.REJECTED,
    "6": RouteState.CANCEL_REQUESTED,
}
ROUTE_STATE_ORDER = {
    RouteState.PENDING: 0,
    RouteState.SENT: 1,
    RouteState.NEW: 2,
    RouteState.PARTIALLY_FILLED: 3,
    RouteState.CANCEL_REQUESTED: 3,
    RouteState.FILLED: 4,
    RouteState.CANCELLED: 4,
    RouteState.REJECTED: 4,
}
LIVE_JOB_STATES = (WorkStatus.QUEUED, WorkStatus.RUNNING)
# How much longer than a routing task's own wait another one waits for the FIX session.
LEASE_GRACE_SECONDS = 15.0


# ---------------------------------------------------------------------------
# Requests (web and API)
# ---------------------------------------------------------------------------


def _require_ops(actor: AbstractBaseUser) -> None:
    require_ops(actor, MSG_NOT_OPS)


def _basket_ids(basket_ids: Iterable[Any]) -> list[int]:
    ids: list[int] = []
    for raw in basket_ids:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            raise NotFound(MSG_BASKET_NOT_FOUND.format(id=raw)) from None
    if not ids:
        raise ValidationFailed(MSG_NO_BASKETS)
    return sorted(set(ids))


def routing_request(
    *,
    actor: AbstractBaseUser,
    basket_ids: Iterable[Any],
    destination: str = Destination.FIX,
    enqueue: bool = True,
) -> RoutingJob:
    """Ops asks to route approved baskets: a queued ``RoutingJob``, its task sent after commit.

    Raises NotFound (a basket the actor cannot see), PermissionDenied (not Ops),
    ValidationFailed (no basket, unknown destination), InvalidTransition (a basket not
    approved, or already in a live routing job)."""
    from orders.selectors import baskets_visible_to

    ids = _basket_ids(basket_ids)
    if destination not in Destination.values:
        raise ValidationFailed(
            MSG_BAD_DESTINATION.format(choices=", ".join(Destination.values), value=destination)
        )
    with transaction.atomic():
        visible = set(baskets_visible_to(actor).filter(pk__in=ids).values_list("pk", flat=True))
        for pk in ids:
            if pk not in visible:
                raise NotFound(MSG_BASKET_NOT_FOUND.format(id=pk))
        _require_ops(actor)
        baskets = list(TradeBasket.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        for basket in baskets:
            live = (
                RoutingJob.objects.filter(baskets=basket, status__in=LIVE_JOB_STATES)
                .order_by("-pk")
                .first()
            )
            if live is not None:
                raise InvalidTransition(
                    MSG_IN_JOB.format(basket=basket.pk, job=live.pk, status=live.status),
                    {"state": basket.state, "job": live.pk},
                )
            if basket.state != BasketState.APPROVED:
                raise InvalidTransition(
                    MSG_NOT_APPROVED.format(
                        basket=basket.pk, state=basket.get_state_display().lower()
                    ),
                    {"state": basket.state, "basket": basket.pk},
                )
        job = RoutingJob.objects.create(destination=destination, requested_by=actor)
        job.baskets.set(baskets)
        for basket in baskets:
            audit_record(
                actor=actor,
                action=ACTION_REQUESTED,
                obj=basket,
                after={"job": job.pk, "destination": destination, "state": basket.state},
            )
        if enqueue:
            work_enqueue(item=job)
    return job


def routing_resume(*, actor: AbstractBaseUser, job_id: Any) -> RoutingJob:
    """Put a failed routing job (the broker was down, the worker gave up) back in the queue.
    Only what was never sent is sent."""
    _require_ops(actor)
    with transaction.atomic():
        job = _job_visible(actor=actor, job_id=job_id, lock=True)
        if job.status != WorkStatus.FAILED:
            raise InvalidTransition(
                MSG_NOT_RESUMABLE.format(job=job.pk, status=job.status), {"status": job.status}
            )
        before = {"status": job.status, "error": job.error}
        job.status = WorkStatus.QUEUED
        job.attempts = 0
        job.error = ""
        job.error_detail = ""
        job.queued_at = timezone.now()
        job.save(update_fields=["status", "attempts", "error", "error_detail", "queued_at"])
        audit_record(
            actor=actor, action=ACTION_RESUMED, obj=job, before=before, after={"status": job.status}
        )
        work_enqueue(item=job)
    return job


def _job_visible(*, actor: AbstractBaseUser, job_id: Any, lock: bool = False) -> RoutingJob:
    """The job, if ``actor`` may see it (``routing_job_get``), locked when asked."""
    from orders.selectors_routing import routing_job_get

    job = routing_job_get(user=actor, pk=job_id)
    return RoutingJob.objects.select_for_update().get(pk=job.pk) if lock else job


# ---------------------------------------------------------------------------
# The routing task
# ---------------------------------------------------------------------------


def routing_job_execute(*, job_id: int) -> dict[str, Any]:
    """The task body: claim the job, prepare (compliance, blocks, routes), send, and for FIX
    wait a while for execution reports. Safe to run twice or after a crash."""
    if not work_claim(model=RoutingJob, pk=job_id):
        return {"job": job_id, "claimed": False}
    job = RoutingJob.objects.get(pk=job_id)
    try:
        prepared = routing_prepare(job=job)
        if not Route.objects.filter(block__job=job).exists():
            message = MSG_NOTHING_TO_ROUTE.format(job=job.pk)
            work_fail(model=RoutingJob, pk=job.pk, error=message, detail=str(prepared))
            return {"job": job.pk, "status": "failed", **prepared}
        if job.destination == Destination.TRADE_FILE:
            tf = trade_file_write(job=job)
            result = {**prepared, "trade_file": tf.pk, "sha256": tf.sha256}
        else:
            result = {**prepared, **fix_routes_send(job=job)}
    except RoutingStopped as exc:
        work_fail(model=RoutingJob, pk=job.pk, error=exc.message, detail=str(exc.extra))
        audit_record(
            actor=ROUTING_ACTOR, action=ACTION_STOPPED, obj=job, after=exc.extra, reason=exc.message
        )
        return {"job": job.pk, "status": "failed", "error": exc.message}
    RoutingJob.objects.filter(pk=job.pk).update(result=_jsonable(result))
    work_finish(model=RoutingJob, pk=job.pk)
    return {"job": job.pk, "status": "succeeded", **result}


class RoutingStopped(ValidationFailed):
    """The job cannot go on (broker unreachable, session busy): it fails with this message
    and can be resumed."""


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in d.items()}


def _new_hard_failures(*, basket: TradeBasket, check_run: int) -> list[ComplianceResult]:
    """Hard failures of the pre-routing check that were not already failed and overridden by
    Compliance in the check the approval rested on (same rule, same order)."""
    failed = list(
        ComplianceResult.objects.filter(
            basket=basket, check_run=check_run, passed=False, severity=Severity.HARD
        ).order_by("pk")
    )
    overridden = set(
        ComplianceResult.objects.filter(
            basket=basket,
            check_run__lt=check_run,
            passed=False,
            override__isnull=False,
        ).values_list("rule_id", "order_id")
    )
    return [r for r in failed if (r.rule_id, r.order_id) not in overridden]


def _basket_set_state(*, basket: TradeBasket, target: str, actor: Any, reason: str = "") -> bool:
    if basket.state == target or not transition_allowed(basket.state, target):
        return False
    before = basket.state
    basket.state = target
    basket.save(update_fields=["state", "updated_at"])
    audit_record(
        actor=actor,
        action=ACTION_STATE,
        obj=basket,
        before={"state": before},
        after={"state": target},
        reason=reason,
    )
    return True


def routing_prepare(*, job: RoutingJob) -> dict[str, Any]:
    """Under the baskets' locks: re-run compliance on each still-approved basket (a new hard
    failure puts it on hold), check its approval hash, move it to ``routing``, then write the
    job's blocks with their allocation statements and one route (ClOrdID) per block. Baskets
    already in ``routing`` (a retried job) are taken as they are."""
    from compliance.services.checks import basket_compliance_check

    routed: list[int] = []
    held: list[dict[str, Any]] = []
    with transaction.atomic():
        baskets = list(
            TradeBasket.objects.select_for_update().filter(routing_jobs=job).order_by("pk")
        )
        for basket in baskets:
            if basket.state == BasketState.ROUTING:
                routed.append(basket.pk)
                continue
            if basket.state != BasketState.APPROVED:
                held.append({"basket": basket.pk, "state": basket.state})
                continue
            now_hash = basket_orders_hash(basket=basket)
            if now_hash != basket.approved_hash:
                message = MSG_HASH_CHANGED.format(
                    basket=basket.pk, approved=basket.approved_hash[:12], now=now_hash[:12]
                )
                _basket_set_state(
                    basket=basket,
                    target=BasketState.COMPLIANCE_HOLD,
                    actor=ROUTING_ACTOR,
                    reason=message,
                )
                held.append({"basket": basket.pk, "reason": message})
                continue
            outcome = basket_compliance_check(basket=basket, actor=ROUTING_ACTOR, stage="route")
            new = _new_hard_failures(basket=basket, check_run=outcome.check_run)
            if new:
                message = MSG_NEW_FAILURES.format(
                    count=len(new), basket=basket.pk, first=new[0].message
                )
                _basket_set_state(
                    basket=basket,
                    target=BasketState.COMPLIANCE_HOLD,
                    actor=ROUTING_ACTOR,
                    reason=message,
                )
                audit_record(
                    actor=ROUTING_ACTOR,
                    action=ACTION_HELD,
                    obj=basket,
                    after={"job": job.pk, "results": [r.pk for r in new]},
                    reason=message,
                )
                held.append({"basket": basket.pk, "reason": message})
                continue
            _basket_set_state(
                basket=basket,
                target=BasketState.ROUTING,
                actor=ROUTING_ACTOR,
                reason=f"routing job {job.pk}",
            )
            routed.append(basket.pk)
        if routed and not BlockOrder.objects.filter(job=job).exists():
            _blocks_write(job=job, basket_ids=routed)
    return {"routed_baskets": routed, "held": held}


def _blocks_write(*, job: RoutingJob, basket_ids: Sequence[int]) -> list[BlockOrder]:
    """One block per security and side over the baskets' orders, its allocation statement
    written and audited before anything is sent, and its first route."""
    orders = list(
        Order.objects.filter(basket_id__in=basket_ids)
        .select_related("account", "security")
        .order_by("security__ticker", "side", "pk")
    )
    groups: dict[tuple[int, str], list[Order]] = {}
    for o in orders:
        groups.setdefault((o.security_id, o.side), []).append(o)
    blocks = []
    written_at = timezone.now()
    for (security_id, side), members in groups.items():
        total = sum((o.quantity for o in members), Decimal("0"))
        security = members[0].security
        statement = {
            "written_at": written_at.isoformat(),
            "security": security.ticker,
            "side": side,
            "quantity": _qty(total),
            "rule": ALLOCATION_RULE,
            "orders": [
                {
                    "order": o.pk,
                    "basket": o.basket_id,
                    "account": o.account_id,
                    "account_number": o.account.account_number,
                    "quantity": _qty(o.quantity),
                    "share": f"{(o.quantity / total):.6f}",
                }
                for o in members
            ],
        }
        block = BlockOrder.objects.create(
            job=job,
            security_id=security_id,
            side=side,
            quantity=total,
            allocation_statement=statement,
        )
        BlockAllocation.objects.bulk_create(
            BlockAllocation(block=block, order=o, quantity=o.quantity) for o in members
        )
        audit_record(actor=ROUTING_ACTOR, action=ACTION_STATEMENT, obj=block, after=statement)
        _route_create(block=block, destination=job.destination)
        blocks.append(block)
    return blocks


def _qty(value: Decimal) -> str:
    """A quantity as people write it: ``100``, ``0.5`` (not ``100.000000``)."""
    return f"{value.normalize():f}"


def _route_create(*, block: BlockOrder, destination: str) -> Route:
    n = Route.objects.filter(block=block).count() + 1
    # The host part keeps two installations (or a test run and the demo) sharing one broker
    # from ever reusing a ClOrdID.
    cl_ord_id = f"{settings.FIX_CLORDID_PREFIX}-{block.pk}-{n}"
    return Route.objects.create(block=block, destination=destination, cl_ord_id=cl_ord_id)


# ---------------------------------------------------------------------------
# FIX: sending, execution reports, cancels, periodic sync
# ---------------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _initiator() -> tuple[FixInitiator, Any]:
    from orders.fix.session import FixInitiator
    from orders.fix.store import DbSessionStore

    store = DbSessionStore(settings.FIX_SESSION_NAME)
    initiator = FixInitiator(
        host=settings.FIX_HOST,
        port=settings.FIX_PORT,
        store=store,
        sender_comp_id=settings.FIX_SENDER_COMP_ID,
        target_comp_id=settings.FIX_TARGET_COMP_ID,
        heartbeat_interval=settings.FIX_HEARTBEAT_SECONDS,
        connect_timeout=settings.FIX_CONNECT_TIMEOUT_SECONDS,
        on_app_message=execution_message_apply,
    )
    return initiator, store


class _Session:
    """Lease, connect and log on; log out and release on exit.

    One FIX session has one connection: a second routing task waits up to ``wait_for_lease``
    seconds for the first to log out (it holds the session while it waits for fills) before
    giving up with a clear message."""

    def __init__(self, lease_seconds: float, wait_for_lease: float = 0.0) -> None:
        self.lease_seconds = lease_seconds
        self.wait_for_lease = wait_for_lease
        self.owner = _owner()

    def __enter__(self) -> FixInitiator:
        import time

        from orders.fix.session import FixSessionError

        self.initiator, self.store = _initiator()
        deadline = time.monotonic() + self.wait_for_lease
        while not self.store.acquire(self.owner, self.lease_seconds):
            if time.monotonic() >= deadline:
                raise RoutingStopped(MSG_SESSION_BUSY.format(owner="another routing task"))
            time.sleep(0.5)
        try:
            self.initiator.logon(timeout=settings.FIX_CONNECT_TIMEOUT_SECONDS * 2)
        except (FixSessionError, OSError) as exc:
            self.store.release(self.owner)
            raise RoutingStopped(
                MSG_BROKER_DOWN.format(host=settings.FIX_HOST, port=settings.FIX_PORT, error=exc),
                {"error": str(exc)},
            ) from exc
        return self.initiator

    def __exit__(self, *exc: object) -> None:
        try:
            self.initiator.logout(timeout=3)
        except Exception:  # a dead socket at logout is not an error here
            log.info("fix logout failed", exc_info=True)
        finally:
            self.initiator.close()
            self.store.release(self.owner)


def _side_symbol(route: Route) -> tuple[str, str]:
    return route.block.side, route.block.security.ticker


def _route_already_sent(route: Route) -> bool:
    return FixMessage.objects.filter(
        direction=MessageDirection.OUT, msg_type="D", cl_ord_id=route.cl_ord_id
    ).exists()


def _route_mark_sent(route: Route) -> None:
    with transaction.atomic():
        locked = Route.objects.select_for_update().get(pk=route.pk)
        if locked.state != RouteState.PENDING:
            return
        locked.state = RouteState.SENT
        locked.sent_at = timezone.now()
        locked.sent_by = ROUTING_ACTOR
        locked.save(update_fields=["state", "sent_at", "sent_by", "updated_at"])
        audit_record(
            actor=ROUTING_ACTOR,
            action=ACTION_ROUTE_SENT,
            obj=locked,
            after={
                "cl_ord_id": locked.cl_ord_id,
                "state": locked.state,
                "block": locked.block_id,
                "quantity": str(locked.block.quantity),
            },
        )


def _order_terms(block: BlockOrder) -> tuple[str, Decimal | None]:
    """A block of limit orders goes as a limit order at the most conservative limit (the
    lowest for buys, the highest for sells); one market order makes the block market."""
    orders = list(
        Order.objects.filter(allocations__block=block).values("order_type", "limit_price")
    )
    if not orders or any(o["order_type"] != "limit" or o["limit_price"] is None for o in orders):
        return "market", None
    limits = [o["limit_price"] for o in orders]
    return "limit", (min(limits) if block.side == "buy" else max(limits))


def fix_routes_send(*, job: RoutingJob) -> dict[str, Any]:
    """Send the job's pending FIX routes once each, then stay logged on until every route is
    done or ``FIX_ROUTE_WAIT_SECONDS`` pass (the periodic sync collects the rest)."""
    from orders.fix.session import FixSessionError

    routes = list(
        Route.objects.filter(block__job=job, destination=Destination.FIX)
        .select_related("block__security")
        .order_by("pk")
    )
    sent = skipped = 0
    wait = float(settings.FIX_ROUTE_WAIT_SECONDS)
    with _Session(lease_seconds=wait + 60, wait_for_lease=wait + LEASE_GRACE_SECONDS) as initiator:
        for route in routes:
            route.refresh_from_db(fields=["state"])
            if route.state != RouteState.PENDING:
                skipped += 1
                continue
            if _route_already_sent(route):
                # Stored before a crash: the broker has it, or asks for it by resend request.
                _route_mark_sent(route)
                skipped += 1
                continue
            side, symbol = _side_symbol(route)
            ord_type, price = _order_terms(route.block)
            try:
                initiator.send_new_order(
                    cl_ord_id=route.cl_ord_id,
                    symbol=symbol,
                    side=side,
                    quantity=route.block.quantity,
                    ord_type=ord_type,
                    price=price,
                )
            except (FixSessionError, OSError) as exc:
                # The order may be stored and not written: the retry marks it sent and the
                # broker's resend request after the next Logon delivers it (PossDupFlag=Y).
                raise RoutingStopped(
                    MSG_DISCONNECTED.format(
                        cl_ord_id=route.cl_ord_id, sent=sent, total=len(routes), error=exc
                    ),
                    {"error": str(exc), "sent": sent},
                ) from exc
            _route_mark_sent(route)
            sent += 1
        _baskets_progress(job=job)
        ids = [r.pk for r in routes]
        done = initiator.run_until(
            lambda: not Route.objects.filter(pk__in=ids, state__in=ROUTE_OPEN_STATES).exists(),
            timeout=wait,
        )
    return {"routes": len(routes), "sent": sent, "already_sent": skipped, "all_done": done}


def fix_sync(*, wait: float = 5.0) -> dict[str, Any]:
    """The beat task: when FIX routes are open, log on, take in what the broker has for us
    (its resends fill any gap), wait up to ``wait`` seconds, log out."""
    open_routes = Route.objects.filter(destination=Destination.FIX, state__in=ROUTE_OPEN_STATES)
    if not open_routes.exists():
        return {"open": 0}
    try:
        with _Session(lease_seconds=wait + 60) as initiator:
            initiator.run_until(lambda: not open_routes.exists(), timeout=wait)
    except RoutingStopped as exc:
        return {"open": open_routes.count(), "error": exc.message}
    return {"open": open_routes.count()}


def route_cancel_request(*, actor: AbstractBaseUser, route_id: Any) -> Route:
    """Ops asks the broker to cancel the rest of an open FIX order (35=F). The answer (an
    execution report with ExecType 4, or a cancel reject) comes back through the session."""
    from orders.selectors_routing import routes_visible_to

    _require_ops(actor)
    try:
        pk = int(route_id)
    except (TypeError, ValueError):
        raise NotFound(MSG_ROUTE_NOT_FOUND.format(id=route_id)) from None
    with transaction.atomic():
        if not routes_visible_to(actor).filter(pk=pk).exists():
            raise NotFound(MSG_ROUTE_NOT_FOUND.format(id=pk))
        route = Route.objects.select_for_update().get(pk=pk)
        if route.destination != Destination.FIX:
            raise InvalidTransition(
                MSG_NOT_FIX.format(
                    route=route.cl_ord_id, destination=route.get_destination_display().lower()
                ),
                {"state": route.state},
            )
        if route.state not in ROUTE_CANCELLABLE_STATES:
            raise InvalidTransition(
                MSG_ROUTE_NOT_OPEN.format(
                    route=route.cl_ord_id, state=route.get_state_display().lower()
                ),
                {"state": route.state},
            )
        before = route.state
        route.state = RouteState.CANCEL_REQUESTED
        route.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=ACTION_CANCEL_REQUESTED,
            obj=route,
            before={"state": before},
            after={"state": route.state},
        )
        from orders.tasks import route_cancel_send

        transaction.on_commit(lambda: route_cancel_send.delay(route.pk), robust=True)
    return route


def route_cancel_send(*, route_id: int) -> dict[str, Any]:
    """The cancel task: send the OrderCancelRequest once, wait briefly for the answer."""
    route = Route.objects.select_related("block__security").get(pk=route_id)
    if route.state != RouteState.CANCEL_REQUESTED:
        return {"route": route_id, "sent": False, "state": route.state}
    cancel_id = f"{route.cl_ord_id}-X"
    already = FixMessage.objects.filter(
        direction=MessageDirection.OUT, msg_type="F", cl_ord_id=cancel_id
    ).exists()
    with _Session(lease_seconds=30) as initiator:
        if not already:
            initiator.send_cancel(
                cl_ord_id=cancel_id,
                orig_cl_ord_id=route.cl_ord_id,
                symbol=route.block.security.ticker,
                side=route.block.side,
                quantity=route.block.quantity,
            )
        initiator.run_until(
            lambda: Route.objects.filter(pk=route_id, state__in=ROUTE_DONE_STATES).exists(),
            timeout=5,
        )
    return {"route": route_id, "sent": not already}


def _route_for(cl_ord_id: str, orig_cl_ord_id: str) -> Route | None:
    for key in (cl_ord_id, orig_cl_ord_id):
        if not key:
            continue
        route = Route.objects.select_for_update().filter(cl_ord_id=key).order_by("pk").first()
        if route is not None:
            return route
        if key.endswith("-X"):
            route = (
                Route.objects.select_for_update().filter(cl_ord_id=key[:-2]).order_by("pk").first()
            )
            if route is not None:
                return route
    return None


def execution_message_apply(inbound: Inbound) -> None:
    """The session's callback for application messages (35=8 execution reports, 35=9 cancel
    rejects). Each is applied in one transaction under the route's lock."""
    from orders.fix.messages import parse_execution_report

    if inbound.msg_type == "9":
        fields = inbound.fields
        _cancel_rejected(
            cl_ord_id=fields.get("11", ""),
            orig_cl_ord_id=fields.get("41", ""),
            text=fields.get("58", ""),
            ord_status=fields.get("39", ""),
        )
        return
    if inbound.msg_type != "8":
        return
    try:
        report = parse_execution_report(inbound.fields)
    except ValueError as exc:
        audit_record(
            actor=FIX_ACTOR,
            action=ACTION_EXEC_UNKNOWN,
            object_type="orders.fixmessage",
            object_id=getattr(inbound, "message_id", ""),
            reason=str(exc),
        )
        return
    execution_report_apply(
        cl_ord_id=report.cl_ord_id,
        orig_cl_ord_id=report.orig_cl_ord_id or "",
        exec_id=report.exec_id,
        exec_type=report.exec_type,
        ord_status=report.ord_status,
        last_qty=report.last_qty,
        last_px=report.last_px,
        order_id=report.order_id or "",
        text=report.text or "",
        raw=dict(inbound.fields),
        poss_dup=bool(inbound.poss_dup),
    )


def _cancel_rejected(*, cl_ord_id: str, orig_cl_ord_id: str, text: str, ord_status: str) -> None:
    with transaction.atomic():
        route = _route_for(cl_ord_id, orig_cl_ord_id)
        if route is None:
            audit_record(
                actor=FIX_ACTOR,
                action=ACTION_EXEC_UNKNOWN,
                object_type="orders.route",
                reason=MSG_UNKNOWN_CLORDID.format(cl_ord_id=orig_cl_ord_id or cl_ord_id),
            )
            return
        if route.state == RouteState.CANCEL_REQUESTED:
            before = route.state
            route.state = ORD_STATUS_STATE.get(ord_status) or (
                RouteState.PARTIALLY_FILLED if route.cum_qty > 0 else RouteState.NEW
            )
            route.text = f"Cancel rejected: {text}"[:500]
            route.save(update_fields=["state", "text", "updated_at"])
            audit_record(
                actor=FIX_ACTOR,
                action=ACTION_ROUTE_STATE,
                obj=route,
                before={"state": before},
                after={"state": route.state},
                reason=route.text,
            )
    _after_route_change(route_id=route.pk)


@dataclass(frozen=True)
class ApplyResult:
    status: str  # applied, duplicate, unknown, overfill, state
    message: str = ""


def execution_report_apply(
    *,
    cl_ord_id: str,
    exec_id: str,
    exec_type: str,
    ord_status: str,
    last_qty: Decimal | None = None,
    last_px: Decimal | None = None,
    orig_cl_ord_id: str = "",
    order_id: str = "",
    text: str = "",
    raw: dict[str, Any] | None = None,
    poss_dup: bool = False,
    actor: Any = FIX_ACTOR,
) -> ApplyResult:
    """Apply one execution report (FIX or a custodian confirmation) to its route and block.

    A trade (ExecType F) records an ``Execution`` (unique per route and ExecID), raises the
    route's cumulative quantity and average price and the block's filled quantity. When the
    route is done (filled, cancelled, rejected) the block is allocated and booked."""
    raw = raw or {}
    with transaction.atomic():
        route = _route_for(cl_ord_id, orig_cl_ord_id)
        if route is None:
            message = MSG_UNKNOWN_CLORDID.format(cl_ord_id=cl_ord_id)
            audit_record(
                actor=actor,
                action=ACTION_EXEC_UNKNOWN,
                object_type="orders.route",
                object_id=cl_ord_id,
                after={"exec_id": exec_id, "fields": raw},
                reason=message,
            )
            return ApplyResult("unknown", message)
        block = BlockOrder.objects.select_for_update().get(pk=route.block_id)
        before = {"state": route.state, "cum_qty": str(route.cum_qty)}
        if order_id and not route.order_id:
            route.order_id = order_id[:64]
        is_trade = exec_type in (EXEC_TRADE, EXEC_PARTIAL_OLD, EXEC_FILL_OLD)
        if is_trade:
            qty = Decimal(last_qty or 0)
            price = Decimal(last_px or 0)
            if Execution.objects.filter(route=route, exec_id=exec_id).exists():
                message = MSG_DUPLICATE_EXEC.format(exec_id=exec_id, cl_ord_id=route.cl_ord_id)
                audit_record(
                    actor=actor,
                    action=ACTION_EXEC_DUPLICATE,
                    obj=route,
                    after={"exec_id": exec_id, "poss_dup": poss_dup},
                    reason=message,
                )
                return ApplyResult("duplicate", message)
            if qty <= 0 or price <= 0 or route.cum_qty + qty > block.quantity:
                message = MSG_OVERFILL.format(
                    exec_id=exec_id,
                    cl_ord_id=route.cl_ord_id,
                    qty=_qty(qty),
                    total=_qty(block.quantity),
                    cum=_qty(route.cum_qty),
                )
                route.text = message[:500]
                route.save(update_fields=["text", "order_id", "updated_at"])
                audit_record(
                    actor=actor,
                    action=ACTION_EXEC_OVERFILL,
                    obj=route,
                    after={"exec_id": exec_id, "fields": raw},
                    reason=message,
                )
                return ApplyResult("overfill", message)
            execution = Execution.objects.create(
                route=route, exec_id=exec_id[:64], quantity=qty, price=price, raw=raw
            )
            fills = list(Execution.objects.filter(route=route).values_list("quantity", "price"))
            route.cum_qty += qty
            route.avg_px = average_price(fills)
            all_fills = list(
                Execution.objects.filter(route__block=block).values_list("quantity", "price")
            )
            block.filled_quantity = sum((q for q, _ in all_fills), Decimal("0"))
            block.avg_price = average_price(all_fills)
            block.save(update_fields=["filled_quantity", "avg_price"])
            audit_record(
                actor=actor,
                action=ACTION_EXECUTION,
                obj=execution,
                after={
                    "cl_ord_id": route.cl_ord_id,
                    "exec_id": exec_id,
                    "quantity": str(qty),
                    "price": str(price),
                    "cum_qty": str(route.cum_qty),
                    "poss_dup": poss_dup,
                },
            )
        new_state = _next_state(
            route=route, exec_type=exec_type, ord_status=ord_status, block=block
        )
        if new_state is not None:
            route.state = new_state
        if exec_type == EXEC_REJECTED or (new_state == RouteState.CANCELLED and text):
            route.text = (
                MSG_REJECTED.format(cl_ord_id=route.cl_ord_id, text=text or "no reason")
                if exec_type == EXEC_REJECTED
                else text
            )[:500]
        route.save(update_fields=["state", "cum_qty", "avg_px", "text", "order_id", "updated_at"])
        if route.state != before["state"]:
            audit_record(
                actor=actor,
                action=ACTION_ROUTE_STATE,
                obj=route,
                before=before,
                after={"state": route.state, "cum_qty": str(route.cum_qty)},
                reason=route.text if exec_type == EXEC_REJECTED else "",
            )
        route_id = route.pk
    _after_route_change(route_id=route_id)
    return ApplyResult("applied")


def _next_state(*, route: Route, exec_type: str, ord_status: str, block: BlockOrder) -> str | None:
    """The route's state after a report: ExecType decides rejects and cancels, OrdStatus the
    rest; a late or resent report never moves a route backwards, and the cumulative
    quantity decides filled over what the broker says."""
    if exec_type == EXEC_REJECTED:
        target = RouteState.REJECTED
    elif exec_type == EXEC_CANCELED:
        target = RouteState.CANCELLED
    elif route.cum_qty >= block.quantity and block.quantity > 0:
        target = RouteState.FILLED
    elif route.cum_qty > 0:
        target = RouteState.PARTIALLY_FILLED
    else:
        target = ORD_STATUS_STATE.get(ord_status, RouteState.NEW)
    if route.state in ROUTE_DONE_STATES:
        return None
    if route.state == RouteState.CANCEL_REQUESTED and target in (
        RouteState.NEW,
        RouteState.PARTIALLY_FILLED,
    ):
        return None
    if ROUTE_STATE_ORDER[target] < ROUTE_STATE_ORDER[route.state]:
        return None
    return target


def _after_route_change(*, route_id: int) -> None:
    """A route that is done gets its block allocated and booked; the baskets follow."""
    route = Route.objects.select_related("block").get(pk=route_id)
    if route.state in ROUTE_DONE_STATES:
        try:
            block_allocate(block_id=route.block_id)
        except ApplicationError as exc:
            # The fills stay recorded; the books refuse them (e.g. the lots changed since the
            # orders were approved). Never let this poison the FIX session: record, show, and
            # let Ops retry once the account is put right.
            _block_allocation_failed(block_id=route.block_id, message=exc.message)
    if route.block.job_id:
        _baskets_progress(job=route.block.job)


def _block_allocation_failed(*, block_id: int, message: str) -> None:
    text = MSG_BOOKING_FAILED.format(block=block_id, error=message)[:500]
    with transaction.atomic():
        block = BlockOrder.objects.select_for_update().get(pk=block_id)
        if block.allocated_at is not None:
            return
        block.allocation_error = text
        block.save(update_fields=["allocation_error"])
        audit_record(
            actor=ROUTING_ACTOR,
            action=ACTION_ALLOCATION_FAILED,
            obj=block,
            after={"filled": str(block.filled_quantity)},
            reason=text,
        )


def block_allocate_retry(*, actor: AbstractBaseUser, block_id: Any) -> BlockOrder:
    """Ops books a done block whose booking failed, once the cause is put right."""
    from orders.selectors_routing import routes_visible_to

    _require_ops(actor)
    try:
        pk = int(block_id)
    except (TypeError, ValueError):
        raise NotFound(MSG_BLOCK_NOT_FOUND.format(id=block_id)) from None
    if not routes_visible_to(actor).filter(block_id=pk).exists():
        raise NotFound(MSG_BLOCK_NOT_FOUND.format(id=pk))
    block = BlockOrder.objects.get(pk=pk)
    if block.allocated_at is not None:
        raise InvalidTransition(MSG_ALREADY_ALLOCATED.format(block=pk), {"block": pk})
    if Route.objects.filter(block=block).exclude(state__in=ROUTE_DONE_STATES).exists():
        raise InvalidTransition(MSG_BLOCK_OPEN.format(block=pk), {"block": pk})
    audit_record(
        actor=actor,
        action=ACTION_ALLOCATION_RETRY,
        obj=block,
        before={"allocation_error": block.allocation_error},
    )
    try:
        block_allocate(block_id=pk)
    except ApplicationError as exc:
        _block_allocation_failed(block_id=pk, message=exc.message)
        raise
    block.refresh_from_db()
    if block.job_id:
        _baskets_progress(job=block.job)
    return block


# ---------------------------------------------------------------------------
# Allocation and booking
# ---------------------------------------------------------------------------


def block_allocate(*, block_id: int, trade_date: date | None = None) -> bool:
    """Allocate a done block's filled quantity to its orders (``orders.allocation``), each at
    the block's average price, update the orders and book each allocation into its account
    (``portfolios.services.fills.fill_book``). Once per block: False when already done or
    still open."""
    from portfolios.services import holdings_changed
    from portfolios.services.fills import fill_book

    with transaction.atomic():
        block = BlockOrder.objects.select_for_update().select_related("security").get(pk=block_id)
        if block.allocated_at is not None:
            return False
        if Route.objects.filter(block=block).exclude(state__in=ROUTE_DONE_STATES).exists():
            return False
        allocations = list(BlockAllocation.objects.filter(block=block).order_by("order_id"))
        shares = allocate_pro_rata(
            block.filled_quantity,
            [Request(order_id=a.order_id, quantity=a.quantity) for a in allocations],
        )
        price = block.avg_price
        day = trade_date or timezone.localdate()
        table = []
        touched: set[int] = set()
        ids = [a.order_id for a in allocations]
        # the orders locked and their lot instructions read once for the whole block
        orders = {
            o.pk: o for o in Order.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        instructions: dict[int, list[tuple[int, Decimal]]] = {}
        for order_id, lot_id, quantity in (
            OrderLot.objects.filter(order_id__in=ids)
            .order_by("order_id", "pk")
            .values_list("order_id", "lot_id", "quantity")
        ):
            instructions.setdefault(order_id, []).append((lot_id, quantity))
        for alloc in allocations:
            qty = shares[alloc.order_id]
            order = orders[alloc.order_id]
            alloc.filled_quantity = qty
            alloc.price = price if qty > 0 else None
            order.filled_quantity = qty
            order.avg_price = price if qty > 0 else None
            order.status = _order_status(order=order, qty=qty, block=block)
            booking = None
            if qty > 0:
                booking = fill_book(
                    account_id=order.account_id,
                    security_id=block.security_id,
                    side=block.side,
                    quantity=qty,
                    price=price,
                    trade_date=day,
                    lot_instructions=instructions.get(order.pk, []),
                    reference=f"alloc:{alloc.pk}",
                    actor=ROUTING_ACTOR,
                    notify=False,
                )
                touched.update(booking.touched_account_ids)
            table.append(
                {
                    "order": order.pk,
                    "account": order.account_id,
                    "ordered": str(alloc.quantity),
                    "allocated": str(qty),
                    "price": str(price) if qty > 0 else None,
                    "status": order.status,
                    "transactions": list(booking.transaction_ids) if booking else [],
                }
            )
        BlockAllocation.objects.bulk_update(allocations, ["filled_quantity", "price"])
        Order.objects.bulk_update(list(orders.values()), ["filled_quantity", "avg_price", "status"])
        block.allocated_at = timezone.now()
        block.allocation_error = ""
        block.save(update_fields=["allocated_at", "allocation_error"])
        # one event drift scan of every booked account, after commit
        holdings_changed(account_ids=sorted(touched))
        audit_record(
            actor=ROUTING_ACTOR,
            action=ACTION_ALLOCATED,
            obj=block,
            after={
                "filled": str(block.filled_quantity),
                "avg_price": str(price),
                "rule": ALLOCATION_RULE,
                "allocations": table,
            },
        )
    return True


def _order_status(*, order: Order, qty: Decimal, block: BlockOrder) -> str:
    if qty >= order.quantity:
        return OrderStatus.FILLED
    if qty > 0:
        return OrderStatus.PARTIALLY_FILLED
    states = set(Route.objects.filter(block=block).values_list("state", flat=True))
    return OrderStatus.REJECTED if RouteState.REJECTED in states else OrderStatus.CANCELLED


def _baskets_progress(*, job: RoutingJob) -> None:
    """Move the job's baskets forward: routing -> routed once every route is sent ->
    partially_filled at the first fill -> filled when every order is filled. A basket whose
    routes are all done short of full stays partially filled (or routed when nothing
    filled), its rejected or cancelled orders shown on its page."""
    for basket_id in job.baskets.values_list("pk", flat=True):
        with transaction.atomic():
            basket = TradeBasket.objects.select_for_update().get(pk=basket_id)
            if basket.state not in (
                BasketState.ROUTING,
                BasketState.ROUTED,
                BasketState.PARTIALLY_FILLED,
            ):
                continue
            routes = Route.objects.filter(block__allocations__order__basket=basket).distinct()
            states = list(routes.values_list("state", flat=True))
            if not states or RouteState.PENDING in states:
                continue
            steps = [BasketState.ROUTED]
            orders = Order.objects.filter(basket=basket)
            any_fill = routes.filter(cum_qty__gt=0).exists()
            all_filled = not orders.exclude(status=OrderStatus.FILLED).exists()
            if all_filled:
                steps.append(BasketState.FILLED)
            elif any_fill:
                steps.append(BasketState.PARTIALLY_FILLED)
            for target in steps:
                _basket_set_state(basket=basket, target=target, actor=ROUTING_ACTOR)


# ---------------------------------------------------------------------------
# Custodian trade files
# ---------------------------------------------------------------------------


def trade_file_write(*, job: RoutingJob) -> TradeFile:
    """Write the job's trade file once (docs/trade-files.md): one row per order of each
    block, the SHA-256 recorded and audited. A second call returns the same file."""
    existing = TradeFile.objects.filter(job=job).first()
    if existing is not None:
        return existing
    routes = {
        r.block_id: r
        for r in Route.objects.filter(block__job=job, destination=Destination.TRADE_FILE)
    }
    allocations = (
        BlockAllocation.objects.filter(block__job=job)
        .select_related("block", "order", "order__account", "order__security")
        .order_by("block__security__ticker", "block__side", "order__account__account_number")
    )
    day = timezone.localdate()
    rows = [
        {
            "trade_date": day.isoformat(),
            "client_order_id": routes[a.block_id].cl_ord_id,
            "block_id": a.block_id,
            "basket_id": a.order.basket_id,
            "order_id": a.order_id,
            "custodian": a.order.account.custodian,
            "account_number": a.order.account.account_number,
            "ticker": a.order.security.ticker,
            "cusip": a.order.security.cusip,
            "side": a.block.side.upper(),
            "quantity": f"{a.quantity.normalize():f}",
            "order_type": a.order.order_type.upper(),
            "limit_price": a.order.limit_price or "",
            "est_price": a.order.est_price,
        }
        for a in allocations
    ]
    content, digest, count = trade_file_render(rows)
    with transaction.atomic():
        tf = TradeFile.objects.create(
            job=job,
            filename=f"trades-job{job.pk}-{day:%Y%m%d}.csv",
            content=content,
            sha256=digest,
            rows=count,
        )
        audit_record(
            actor=ROUTING_ACTOR,
            action=ACTION_FILE_WRITTEN,
            obj=tf,
            after={"filename": tf.filename, "sha256": digest, "rows": count},
        )
    return tf


def trade_file_mark_sent(*, actor: AbstractBaseUser, job_id: Any) -> TradeFile:
    """Ops confirms the file went to the custodian: its routes are sent, baskets routed."""
    _require_ops(actor)
    with transaction.atomic():
        job = _job_visible(actor=actor, job_id=job_id, lock=True)
        tf = TradeFile.objects.select_for_update().filter(job=job).first()
        if tf is None:
            raise NotFound(MSG_NO_TRADE_FILE.format(job=job.pk))
        if tf.sent_at is not None:
            raise InvalidTransition(
                MSG_ALREADY_SENT.format(name=tf.filename, user=tf.sent_by, at=tf.sent_at),
                {"sent_at": tf.sent_at.isoformat()},
            )
        tf.sent_at = timezone.now()
        tf.sent_by = actor
        tf.save(update_fields=["sent_at", "sent_by"])
        audit_record(
            actor=actor,
            action=ACTION_FILE_SENT,
            obj=tf,
            after={"filename": tf.filename, "sha256": tf.sha256},
        )
        now = timezone.now()
        for route in (
            Route.objects.select_for_update(of=("self",))
            .filter(block__job=job, state=RouteState.PENDING)
            .order_by("pk")
        ):
            route.state = RouteState.SENT
            route.sent_at = now
            route.sent_by = actor.get_username()
            route.save(update_fields=["state", "sent_at", "sent_by", "updated_at"])
            audit_record(
                actor=actor,
                action=ACTION_ROUTE_SENT,
                obj=route,
                after={
                    "cl_ord_id": route.cl_ord_id,
                    "state": route.state,
                    "trade_file": tf.filename,
                },
            )
    _baskets_progress(job=job)
    return tf


CONFIRM_COLUMNS = ("client_order_id", "exec_id", "quantity", "price")


def trade_confirmations_import(
    *, actor: AbstractBaseUser, job_id: Any, content: bytes | str
) -> dict[str, Any]:
    """Ops loads the custodian's execution confirmations for a trade-file job (CSV columns
    client_order_id, exec_id, quantity, price, and optionally status "done" to close a route
    short). Validated whole first: any bad line and nothing is applied."""
    import csv
    import io

    _require_ops(actor)
    job = _job_visible(actor=actor, job_id=job_id)
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    reader = csv.DictReader(io.StringIO(text))
    found = [c.strip() for c in (reader.fieldnames or [])]
    if not set(CONFIRM_COLUMNS) <= set(found):
        raise ValidationFailed(
            MSG_CONFIRM_COLUMNS.format(
                columns=", ".join(CONFIRM_COLUMNS), found=", ".join(found) or "none"
            )
        )
    routes = {r.cl_ord_id: r for r in Route.objects.filter(block__job=job).select_related("block")}
    rows, errors = [], []
    pending_qty: dict[str, Decimal] = {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        cid = row.get("client_order_id", "")
        try:
            route = routes.get(cid)
            if route is None:
                raise ValueError(f"unknown client_order_id {cid!r} for routing job {job.pk}")
            if route.state == RouteState.PENDING:
                raise ValueError(f"{cid} was never marked sent")
            qty, price = Decimal(row["quantity"]), Decimal(row["price"])
            if qty <= 0 or price <= 0:
                raise ValueError("quantity and price must be positive")
            if not row["exec_id"]:
                raise ValueError("exec_id is empty")
            total = pending_qty.get(cid, route.cum_qty) + qty
            if total > route.block.quantity:
                raise ValueError(
                    f"{cid} would be filled {_qty(total)} of {_qty(route.block.quantity)} shares"
                )
            pending_qty[cid] = total
        except (ValueError, ArithmeticError, KeyError) as exc:
            errors.append(MSG_CONFIRM_ROW.format(line=line, error=exc))
            continue
        rows.append((route, row, qty, price))
    if errors:
        raise ValidationFailed(errors[0], {"errors": errors})
    applied = []
    with transaction.atomic():
        for route, row, qty, price in rows:
            done = row.get("status", "").lower() == "done"
            filled = pending_qty[route.cl_ord_id] >= route.block.quantity
            result = execution_report_apply(
                cl_ord_id=route.cl_ord_id,
                exec_id=row["exec_id"],
                exec_type=EXEC_TRADE,
                ord_status="2" if filled else "1",
                last_qty=qty,
                last_px=price,
                raw=row,
                actor=actor,
            )
            applied.append(result.status)
            if done and not filled:
                execution_report_apply(
                    cl_ord_id=route.cl_ord_id,
                    exec_id=f"{row['exec_id']}-done",
                    exec_type=EXEC_CANCELED,
                    ord_status="4",
                    actor=actor,
                    text="Closed short by the custodian's confirmation.",
                )
    return {
        "rows": len(rows),
        "applied": applied.count("applied"),
        "duplicates": applied.count("duplicate"),
    }


__all__ = [
    "block_allocate",
    "block_allocate_retry",
    "execution_report_apply",
    "fix_routes_send",
    "fix_sync",
    "route_cancel_request",
    "routing_job_execute",
    "routing_prepare",
    "routing_request",
    "routing_resume",
    "trade_confirmations_import",
    "trade_file_mark_sent",
    "trade_file_write",
]
