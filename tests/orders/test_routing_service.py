"""Routing and execution services (orders.services_routing) on the database, with the FIX
session replaced by a scripted stand-in (the real session and the simulated broker are tested
in test_fix_* and, end to end, in test_routing_worker): requests and their refusals, the
pre-routing compliance check, blocks and allocation statements, sending each route once,
execution reports (fills, partial fills, rejects, cancels, duplicates, unknown ClOrdIDs,
overfills), allocation and booking, basket states, and the custodian trade file."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule, Override
from orders.models import (
    BasketState,
    BlockAllocation,
    BlockOrder,
    Execution,
    FixMessage,
    Order,
    OrderStatus,
    Route,
    RouteState,
    RoutingJob,
    TradeBasket,
)
from orders.services import basket_cancel
from orders.services_routing import (
    block_allocate,
    execution_report_apply,
    routing_job_execute,
    routing_request,
    routing_resume,
    trade_confirmations_import,
    trade_file_mark_sent,
)
from portfolios.models import TaxLot, Transaction
from rebalance_app.exceptions import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests.orders.routing_support import Inbound, approved_basket

D = Decimal


def run_job(job: RoutingJob) -> dict[str, Any]:
    return routing_job_execute(job_id=job.pk)


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def test_only_ops_may_route_and_only_an_approved_basket(routable, pm, ops, other_pm, route_checks):
    with pytest.raises(PermissionDenied, match="Only Operations may route"):
        routing_request(actor=pm, basket_ids=[routable.pk], enqueue=False)
    with pytest.raises(NotFound):
        routing_request(actor=other_pm, basket_ids=[routable.pk], enqueue=False)
    with pytest.raises(ValidationFailed, match="Destination must be one of fix, trade_file"):
        routing_request(actor=ops, basket_ids=[routable.pk], destination="pigeon", enqueue=False)
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    assert job.status == "queued"
    assert list(job.baskets.all()) == [routable]
    # a second click while the job is queued changes nothing
    with pytest.raises(InvalidTransition, match=f"already being routed \\(routing job {job.pk}"):
        routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    assert RoutingJob.objects.count() == 1
    assert (
        AuditEvent.objects.filter(action="routing.requested", object_id=str(routable.pk)).count()
        == 1
    )


def test_a_basket_not_approved_is_refused(pm, ops, account_a, security):
    draft = TradeBasket.objects.create(name="d", created_by=pm)
    Order.objects.create(
        basket=draft,
        account=account_a,
        security=security,
        side="buy",
        quantity=D(1),
        est_price=D(1),
        est_notional=D(1),
        reason="drift",
    )
    with pytest.raises(InvalidTransition, match=f"Basket {draft.pk} is draft: only an approved"):
        routing_request(actor=ops, basket_ids=[draft.pk], enqueue=False)


# ---------------------------------------------------------------------------
# Preparing: compliance again, hash, blocks and allocation statements
# ---------------------------------------------------------------------------


def test_a_new_hard_failure_before_routing_holds_the_basket_and_sends_nothing(
    routable, ops, route_checks, broker
):
    route_checks.plan = [("restricted", False, 0)]
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    result = run_job(job)
    routable.refresh_from_db()
    job.refresh_from_db()
    assert routable.state == BasketState.COMPLIANCE_HOLD
    assert job.status == "failed"
    assert "none of its baskets could be routed" in job.error
    assert result["held"][0]["reason"].startswith("The pre-routing compliance check found 1 new")
    assert broker.sent == []
    assert not BlockOrder.objects.exists()
    assert AuditEvent.objects.filter(action="routing.compliance_hold").exists()


def test_a_failure_compliance_overrode_before_approval_does_not_stop_the_route(
    routable, ops, compliance, route_checks, broker
):
    rule = ComplianceRule.objects.create(rule_type="restricted", name="restricted", severity="hard")
    first = ComplianceResult.objects.create(
        rule=rule,
        basket=routable,
        check_run=1,
        passed=False,
        severity="hard",
        order=routable.orders.order_by("pk")[0],
        message="restricted failed",
    )
    Override.objects.create(result=first, overridden_by=compliance, justification="ok")
    route_checks.plan = [("restricted", False, 0)]
    run_job(routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False))
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    assert len(broker.sent) == 2


def test_orders_changed_after_approval_are_not_routed(routable, ops, route_checks, broker):
    Order.objects.filter(basket=routable, side="buy").update(quantity=D("101"))
    run_job(routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False))
    routable.refresh_from_db()
    assert routable.state == BasketState.COMPLIANCE_HOLD
    assert broker.sent == []


def test_blocks_aggregate_by_security_and_side_with_a_statement_written_before_sending(
    routable, ops, pm, account_a, account_a2, xyz, route_checks, broker
):
    second = approved_basket(creator=pm, approver=ops, lines=[(account_a2, xyz, "buy", "50", [])])
    job = routing_request(actor=ops, basket_ids=[routable.pk, second.pk], enqueue=False)
    run_job(job)
    blocks = {(b.security.ticker, b.side): b for b in BlockOrder.objects.filter(job=job)}
    assert set(blocks) == {("XYZ", "buy"), ("AAPL", "sell")}
    xyz_block = blocks[("XYZ", "buy")]
    assert xyz_block.quantity == D("450")
    statement = xyz_block.allocation_statement
    assert [o["quantity"] for o in statement["orders"]] == ["100", "300", "50"]
    assert "Pro rata" in statement["rule"]
    # the statement was audited before the block's order went out
    written = AuditEvent.objects.get(
        action="block.allocation_statement", object_id=str(xyz_block.pk)
    )
    route = xyz_block.routes.get()
    sent = AuditEvent.objects.get(action="route.sent", object_id=str(route.pk))
    assert written.seq < sent.seq
    assert [s["quantity"] for s in broker.sent if s["symbol"] == "XYZ"] == [D("450")]


# ---------------------------------------------------------------------------
# Sending once, and the whole loop with fills into the books
# ---------------------------------------------------------------------------


def test_fills_allocate_at_the_average_price_and_update_lots_cash_and_transactions(
    routable, ops, account_a, account_a2, xyz, security, route_checks, broker
):
    cash_a, cash_a2 = account_a.cash_balance, account_a2.cash_balance
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    out = run_job(job)
    assert out["status"] == "succeeded"
    assert out["sent"] == 2
    assert out["all_done"] is True
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    states = list(
        AuditEvent.objects.filter(action="basket.state_changed", object_id=str(routable.pk))
        .order_by("seq")
        .values_list("after__state", flat=True)
    )
    # the first block fills before the second: partially filled on the way
    assert states == ["routing", "routed", "partially_filled", "filled"]
    for order in Order.objects.filter(basket=routable):
        assert order.status == OrderStatus.FILLED
        assert order.filled_quantity == order.quantity
        assert order.avg_price == D("101.5")
    # buys: a new lot each at the fill price; cash down by exactly qty * price
    lot_a = TaxLot.objects.get(account=account_a, security=xyz)
    lot_a2 = TaxLot.objects.get(account=account_a2, security=xyz)
    assert (lot_a.quantity, lot_a.cost_basis) == (D("100"), D("101.5"))
    assert (lot_a2.quantity, lot_a2.cost_basis) == (D("300"), D("101.5"))
    account_a.refresh_from_db()
    account_a2.refresh_from_db()
    # account_a bought 100 XYZ (-10,150) and sold 4 AAPL (+406)
    assert account_a.cash_balance == cash_a - D("10150") + D("406")
    assert account_a2.cash_balance == cash_a2 - D("30450")
    # the sell relieved the instructed lot: 10 -> 6 shares, realized (101.5 - 80) * 4 = 86 LT
    aapl = TaxLot.objects.get(account=account_a, security=security, quantity__gt=0)
    assert aapl.quantity == D("6")
    sell = Transaction.objects.get(account=account_a, security=security, side="sell")
    assert (sell.quantity, sell.price, sell.realized_lt, sell.realized_st) == (
        D("4"),
        D("101.5"),
        D("86.00"),
        D("0"),
    )
    assert AuditEvent.objects.filter(action="block.allocated").count() == 2


def test_a_retried_route_task_never_sends_an_order_twice(routable, ops, route_checks, broker):
    broker.respond = lambda cid, qty, sym: []  # the broker says nothing yet
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    assert len(broker.sent) == 2
    # the message is redelivered (a worker lost its ack): the job is done, nothing is sent
    assert run_job(job) == {"job": job.pk, "claimed": False}
    # even a job put back in the queue (resume) finds every route sent
    RoutingJob.objects.filter(pk=job.pk).update(status="failed")
    routing_resume(actor=ops, job_id=job.pk)
    run_job(job)
    assert len(broker.sent) == 2
    assert FixMessage.objects.filter(direction="out", msg_type="D").count() == 2


def test_a_worker_killed_between_store_and_write_does_not_resend(
    routable, ops, route_checks, broker
):
    broker.crash_after_store = True
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    with pytest.raises(RuntimeError):
        run_job(job)
    assert broker.sent == []
    first = Route.objects.filter(block__job=job).order_by("pk").first()
    assert first.state == RouteState.PENDING
    # the stored 35=D means the broker has it or will ask for it by resend request
    broker.crash_after_store = False
    RoutingJob.objects.filter(pk=job.pk).update(status="failed")
    routing_resume(actor=ops, job_id=job.pk)
    run_job(job)
    assert [s["cl_ord_id"] for s in broker.sent] == [
        r.cl_ord_id for r in Route.objects.filter(block__job=job).order_by("pk")[1:]
    ]
    first.refresh_from_db()
    assert first.state == RouteState.SENT
    assert FixMessage.objects.filter(msg_type="D", cl_ord_id=first.cl_ord_id).count() == 1


def test_the_broker_down_fails_the_job_with_a_clear_message_and_resume_sends(
    routable, ops, route_checks, broker
):
    broker.fail_logon = ConnectionRefusedError(111, "Connection refused")
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("Could not reach the broker's FIX session at 127.0.0.1:")
    assert "Unsent orders stay pending" in job.error
    assert set(Route.objects.filter(block__job=job).values_list("state", flat=True)) == {"pending"}
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        basket_cancel(actor=routable.created_by, basket_id=routable.pk)
    broker.fail_logon = None
    routing_resume(actor=ops, job_id=job.pk)
    run_job(job)
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    assert len(broker.sent) == 2


def test_a_disconnect_mid_basket_stops_the_job_and_resume_sends_only_the_rest(
    routable, ops, route_checks, broker
):
    broker.drop_on_send = 2  # the second order's write hits a reset connection
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    job.refresh_from_db()
    first, second = Route.objects.filter(block__job=job).order_by("pk")
    assert job.status == "failed"
    assert job.error.startswith(
        f"The FIX session dropped while sending {second.cl_ord_id} (1 of 2 orders sent): "
    )
    assert "Resume routing to send the rest" in job.error
    assert [s["cl_ord_id"] for s in broker.sent] == [first.cl_ord_id]
    assert AuditEvent.objects.filter(action="routing.stopped", object_id=str(job.pk)).exists()
    # the stored 35=D of the second is not sent again: the broker asks for it by resend
    broker.drop_on_send = None
    routing_resume(actor=ops, job_id=job.pk)
    run_job(job)
    assert [s["cl_ord_id"] for s in broker.sent] == [first.cl_ord_id]
    second.refresh_from_db()
    assert second.state == RouteState.SENT
    assert FixMessage.objects.filter(msg_type="D", cl_ord_id=second.cl_ord_id).count() == 1


def test_a_second_routing_task_waits_for_the_session_then_stops_clearly(
    routable, ops, route_checks, broker, monkeypatch, settings
):
    monkeypatch.setattr("orders.services_routing.LEASE_GRACE_SECONDS", 0.6)
    settings.FIX_ROUTE_WAIT_SECONDS = 0
    broker.store.busy = True
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    started = time.monotonic()
    run_job(job)
    assert time.monotonic() - started >= 0.5  # it waited for the lease
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == (
        "The FIX session stayed in use by another routing task; resume routing to try again."
    )
    assert broker.sent == []
    broker.store.busy = False
    routing_resume(actor=ops, job_id=job.pk)
    run_job(job)
    assert len(broker.sent) == 2


# ---------------------------------------------------------------------------
# Execution reports: partials, rejects, cancels and bad input
# ---------------------------------------------------------------------------


def test_a_partially_filled_block_cancelled_allocates_pro_rata(
    routable, ops, account_a, account_a2, xyz, route_checks, broker
):
    def partial(cid: str, qty: D, symbol: str) -> list[Inbound]:
        if symbol != "XYZ":
            return broker.fill_all(cid, qty, symbol)
        return [
            broker.report(cid, f"{cid}-A", "0", "0"),
            broker.report(cid, f"{cid}-P1", "F", "1", "150", "100"),
            broker.report(cid, f"{cid}-P2", "F", "1", "101", "104"),
        ]

    broker.respond = partial
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    routable.refresh_from_db()
    assert routable.state == BasketState.PARTIALLY_FILLED
    block = BlockOrder.objects.get(job=job, security=xyz)
    route = block.routes.get()
    assert (route.state, route.cum_qty, block.filled_quantity) == (
        "partially_filled",
        D(251),
        D(251),
    )
    assert block.avg_price == D("101.609562")  # (150*100 + 101*104) / 251
    assert block.allocated_at is None  # open: nothing booked yet
    assert not TaxLot.objects.filter(security=xyz).exists()
    # Ops cancels the rest; the cancel report closes the route and the block is allocated
    from orders.services_routing import route_cancel_request, route_cancel_send

    # (the cancel task is enqueued on commit, which a test transaction never reaches)
    route_cancel_request(actor=ops, route_id=route.pk)
    route_cancel_send(route_id=route.pk)
    route.refresh_from_db()
    block.refresh_from_db()
    assert route.state == RouteState.CANCELLED
    assert block.allocated_at is not None
    # 251 of 400: exact 62.75 and 188.25 -> 62 and 188, one share left to the .75 (order 1)
    allocs = {a.order.account_id: a for a in BlockAllocation.objects.filter(block=block)}
    assert allocs[account_a.pk].filled_quantity == D(63)
    assert allocs[account_a2.pk].filled_quantity == D(188)
    assert {a.price for a in allocs.values()} == {D("101.609562")}
    lots = {lot.account_id: lot for lot in TaxLot.objects.filter(security=xyz)}
    assert lots[account_a.pk].quantity == D(63)
    assert lots[account_a2.pk].quantity == D(188)
    orders = {o.account_id: o for o in Order.objects.filter(basket=routable, security=xyz)}
    assert orders[account_a.pk].status == OrderStatus.PARTIALLY_FILLED
    routable.refresh_from_db()
    assert routable.state == BasketState.PARTIALLY_FILLED


def test_duplicates_unknown_ids_overfills_and_rejects_never_double_count(
    routable, ops, account_a2, xyz, route_checks, broker
):
    broker.respond = lambda cid, qty, sym: []
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    block = BlockOrder.objects.get(job=job, security=xyz)
    route = block.routes.get()
    cid = route.cl_ord_id
    first = execution_report_apply(
        cl_ord_id=cid, exec_id="E1", exec_type="F", ord_status="1", last_qty=D(100), last_px=D(100)
    )
    assert first.status == "applied"
    dup = execution_report_apply(
        cl_ord_id=cid,
        exec_id="E1",
        exec_type="F",
        ord_status="1",
        last_qty=D(100),
        last_px=D(100),
        poss_dup=True,
    )
    assert dup.status == "duplicate"
    assert "already applied" in dup.message
    unknown = execution_report_apply(
        cl_ord_id="NOPE-1", exec_id="E9", exec_type="F", ord_status="2", last_qty=D(1), last_px=D(1)
    )
    assert unknown.status == "unknown"
    assert unknown.message == "Execution report for unknown ClOrdID NOPE-1: recorded, not applied."
    over = execution_report_apply(
        cl_ord_id=cid, exec_id="E2", exec_type="F", ord_status="2", last_qty=D(301), last_px=D(100)
    )
    assert over.status == "overfill"
    assert "beyond the block's 400" in over.message
    route.refresh_from_db()
    block.refresh_from_db()
    assert route.cum_qty == D(100)
    assert block.filled_quantity == D(100)
    assert Execution.objects.filter(route=route).count() == 1
    for action in ("execution.duplicate", "execution.unknown_clordid", "execution.overfill"):
        assert AuditEvent.objects.filter(action=action).count() == 1
    # the other block is rejected by the broker: recorded with the broker's text
    other = Route.objects.filter(block__job=job).exclude(pk=route.pk).get()
    execution_report_apply(
        cl_ord_id=other.cl_ord_id, exec_id="R1", exec_type="8", ord_status="8", text="Symbol halted"
    )
    other.refresh_from_db()
    assert other.state == RouteState.REJECTED
    assert other.text == f"The broker rejected {other.cl_ord_id}: Symbol halted"
    rejected = Order.objects.get(basket=routable, side="sell")
    assert rejected.status == OrderStatus.REJECTED
    assert rejected.filled_quantity == 0
    # a late ack never moves a route backwards
    execution_report_apply(cl_ord_id=cid, exec_id="A-late", exec_type="0", ord_status="0")
    route.refresh_from_db()
    assert route.state == RouteState.PARTIALLY_FILLED
    # finishing the fill books exactly once, even if the allocation is asked for again
    execution_report_apply(
        cl_ord_id=cid, exec_id="E3", exec_type="F", ord_status="2", last_qty=D(300), last_px=D(100)
    )
    assert block_allocate(block_id=block.pk) is False
    assert TaxLot.objects.get(account=account_a2, security=xyz).quantity == D(300)
    routable.refresh_from_db()
    assert routable.state == BasketState.PARTIALLY_FILLED  # the sell was rejected


# ---------------------------------------------------------------------------
# The custodian trade file
# ---------------------------------------------------------------------------


def test_trade_file_is_written_marked_sent_and_confirmations_fill_the_orders(
    routable, ops, ops2, account_a2, xyz, route_checks
):
    import hashlib

    job = routing_request(
        actor=ops, basket_ids=[routable.pk], destination="trade_file", enqueue=False
    )
    out = run_job(job)
    tf = job.trade_file
    assert out["sha256"] == tf.sha256 == hashlib.sha256(tf.content.encode()).hexdigest()
    lines = tf.content.strip().split("\r\n")
    assert len(lines) == 1 + 3
    assert tf.rows == 3
    assert lines[0].startswith("trade_date,client_order_id,block_id")
    routable.refresh_from_db()
    assert routable.state == BasketState.ROUTING  # until Ops says it went out
    trade_file_mark_sent(actor=ops, job_id=job.pk)
    routable.refresh_from_db()
    assert routable.state == BasketState.ROUTED
    with pytest.raises(InvalidTransition, match="was already marked sent by ops"):
        trade_file_mark_sent(actor=ops2, job_id=job.pk)
    routes = {r.block.security.ticker: r.cl_ord_id for r in Route.objects.filter(block__job=job)}
    bad = (
        f"client_order_id,exec_id,quantity,price\n{routes['XYZ']},C1,400,100\n"
        f"NOPE,C2,1,1\n{routes['AAPL']},C3,5,100\n"
    )
    with pytest.raises(ValidationFailed) as info:
        trade_confirmations_import(actor=ops, job_id=job.pk, content=bad)
    assert info.value.extra["errors"] == [
        f"Line 3: unknown client_order_id 'NOPE' for routing job {job.pk}",
        f"Line 4: {routes['AAPL']} would be filled 5 of 4 shares",
    ]
    assert not Execution.objects.exists()  # all or nothing
    good = (
        f"client_order_id,exec_id,quantity,price\n{routes['XYZ']},C1,400,100\n"
        f"{routes['AAPL']},C3,4,100\n"
    )
    assert trade_confirmations_import(actor=ops, job_id=job.pk, content=good) == {
        "rows": 2,
        "applied": 2,
        "duplicates": 0,
    }
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    assert TaxLot.objects.get(account=account_a2, security=xyz).quantity == D(300)
    assert AuditEvent.objects.filter(action="trade_file.sent").count() == 1


def test_the_fix_sync_takes_in_reports_that_came_after_the_routing_task(
    routable, ops, route_checks, broker
):
    from orders.services_routing import fix_sync

    assert fix_sync() == {"open": 0}  # nothing open: no logon at all
    assert broker.logons == 0
    held = []
    broker.respond = lambda cid, qty, sym: held.extend(broker.fill_all(cid, qty, sym)) or []
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    run_job(job)
    routable.refresh_from_db()
    assert routable.state == BasketState.ROUTED
    broker.queue.extend(held)  # the broker's reports arrive while the beat task is logged on
    assert fix_sync(wait=1) == {"open": 0}
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED


def test_a_fill_the_books_refuse_is_recorded_shown_and_booked_on_retry(
    routable, ops, pm, account_a, security, route_checks, broker
):
    from orders.services_routing import block_allocate_retry

    def fill_after_lots_changed(cid: str, qty: D, symbol: str) -> list[Inbound]:
        if symbol == "AAPL":
            # between routing and the fill, an import left the account 2 AAPL shares
            TaxLot.objects.filter(account=account_a, security=security).update(quantity=D(2))
        return broker.fill_all(cid, qty, symbol)

    broker.respond = fill_after_lots_changed
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    out = run_job(job)
    assert out["status"] == "succeeded"  # the session went on
    block = BlockOrder.objects.get(job=job, security=security)
    route = block.routes.get()
    assert route.state == RouteState.FILLED
    assert Execution.objects.filter(route=route).count() == 1  # the fill is recorded
    assert block.allocated_at is None
    assert block.allocation_error.startswith(f"Block {block.pk} is done but its fills could not")
    assert "put the account right and retry the booking" in block.allocation_error
    assert AuditEvent.objects.filter(action="block.allocation_failed").count() == 1
    assert not Transaction.objects.filter(account=account_a, side="sell").exists()
    routable.refresh_from_db()
    assert routable.state == BasketState.PARTIALLY_FILLED  # the XYZ block was booked

    with pytest.raises(PermissionDenied):
        block_allocate_retry(actor=pm, block_id=block.pk)
    with pytest.raises(ValidationFailed):  # still short: refused again, still recorded
        block_allocate_retry(actor=ops, block_id=block.pk)
    TaxLot.objects.filter(account=account_a, security=security).update(quantity=D(10))
    block = block_allocate_retry(actor=ops, block_id=block.pk)
    assert block.allocated_at is not None
    assert block.allocation_error == ""
    sell = Transaction.objects.get(account=account_a, security=security, side="sell")
    assert sell.quantity == D(4)
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    with pytest.raises(InvalidTransition, match="already allocated and booked"):
        block_allocate_retry(actor=ops, block_id=block.pk)
