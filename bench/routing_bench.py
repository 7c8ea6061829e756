"""Routing end to end: one approved basket of N accounts (a buy and a sell each) routed over
FIX to the simulated broker, filled, allocated and booked; and the FIX session's message
throughput.

In a throw-away test database (PostgreSQL when DATABASE_URL is set):

1. **Routing**: ``routing_job_execute`` of a basket with one buy of ``B`` and one sell of
   ``A`` (with its lot instruction) in each of N accounts: the real compliance check, two
   block orders with their allocation statements, two NewOrderSingles, the broker's acks and
   fills, and 2N bookings into lots, transactions and cash (each audited). Reported split into
   prepare (compliance, blocks), the FIX exchange, and allocation with booking.
   Baseline, measured in the same run: the same number of lot, transaction and cash rows
   written in bulk (``bulk_create``/``bulk_update``), the database's lower bound for the books
   without locks, tax logic or audit events. The ratio says what the per-account safety
   (locks, specific identification, wash-sale look-back, audit chain) costs.
2. **FIX session**: M NewOrderSingles through ``FixInitiator`` to the simulated broker and
   every ack and fill back (in-memory stores on both sides), against the raw simplefix encode
   and decode of the same messages in one process (the library's lower bound); and once more
   with the broker persisting its JSON state after every message, as ``make run`` runs it
   (that file holds every sent message, so it grows with the session).

DESIGN 12 sets no routing target; these figures say how far one routing task goes. Usage:
DATABASE_URL=postgres://... python bench/routing_bench.py [--accounts N] [--messages M]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings_test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

D = Decimal


def seed(n: int) -> dict[str, object]:
    from django.contrib.auth import get_user_model

    from orders.models import BasketState, Order, OrderLot, TradeBasket
    from orders.services import basket_orders_hash
    from portfolios.models import Account, Household, Price, Security, TaxLot

    users = get_user_model().objects
    pm = users.create_user("bench-pm", password=None)
    ops = users.create_user("bench-ops", password=None, is_superuser=True)
    a = Security.objects.create(ticker="BNCA", name="Bench A")
    b = Security.objects.create(ticker="BNCB", name="Bench B")
    from django.utils import timezone

    for sec, px in ((a, D("50")), (b, D("20"))):
        Price.objects.create(security=sec, price=px, as_of=timezone.now(), source="bench")
    # households of three accounts, as at an RIA (wash sales are looked up household-wide)
    households = Household.objects.bulk_create(
        Household(name=f"Bench household {k}") for k in range((n + 2) // 3)
    )
    accounts = Account.objects.bulk_create(
        Account(
            household=households[i // 3],
            name=f"Bench {i}",
            custodian="Schwab",
            account_number=f"B{i:07d}",
            registration_type="individual",
            cash_balance=D("100000"),
        )
        for i in range(n)
    )
    lots = TaxLot.objects.bulk_create(
        TaxLot(
            account=acc,
            security=a,
            quantity=D("100"),
            cost_basis=D("40"),
            acquired_on=date(2023, 3, 1),
        )
        for acc in accounts
    )
    basket = TradeBasket.objects.create(
        name="Bench", created_by=pm, state=BasketState.APPROVED, approved_by=ops
    )
    buys = Order.objects.bulk_create(
        Order(
            basket=basket,
            account=acc,
            security=b,
            side="buy",
            quantity=D("10"),
            est_price=D("20"),
            est_notional=D("200"),
            reason="drift",
        )
        for acc in accounts
    )
    sells = Order.objects.bulk_create(
        Order(
            basket=basket,
            account=acc,
            security=a,
            side="sell",
            quantity=D("5"),
            est_price=D("50"),
            est_notional=D("250"),
            reason="drift",
        )
        for acc in accounts
    )
    OrderLot.objects.bulk_create(
        OrderLot(order=o, lot=lot, quantity=D("5")) for o, lot in zip(sells, lots, strict=True)
    )
    basket.approved_hash = basket_orders_hash(basket=basket)
    basket.save()
    return {"basket": basket, "ops": ops, "a": a, "b": b, "orders": len(buys) + len(sells)}


def route(ctx: dict[str, object], broker_port: int) -> dict[str, float]:
    import orders.services_routing as routing

    settings.FIX_PORT = broker_port
    settings.FIX_ROUTE_WAIT_SECONDS = 600
    timings = {"prepare": 0.0, "allocate_book": 0.0}
    original_prepare, original_allocate = routing.routing_prepare, routing.block_allocate

    def timed(name, fn):
        def wrapper(**kwargs):
            t = time.perf_counter()
            try:
                return fn(**kwargs)
            finally:
                timings[name] += time.perf_counter() - t

        return wrapper

    routing.routing_prepare = timed("prepare", original_prepare)
    routing.block_allocate = timed("allocate_book", original_allocate)
    try:
        job = routing.routing_request(
            actor=ctx["ops"], basket_ids=[ctx["basket"].pk], enqueue=False
        )
        t0 = time.perf_counter()
        result = routing.routing_job_execute(job_id=job.pk)
        total = time.perf_counter() - t0
    finally:
        routing.routing_prepare, routing.block_allocate = original_prepare, original_allocate
    assert result["status"] == "succeeded", result
    ctx["basket"].refresh_from_db()
    assert ctx["basket"].state == "filled", ctx["basket"].state
    return {
        "total": total,
        "prepare": timings["prepare"],
        "allocate_book": timings["allocate_book"],
        "fix": total - timings["prepare"] - timings["allocate_book"],
    }


def books_baseline(n: int, ctx: dict[str, object]) -> float:
    """The same rows as the booking writes (n lots, 2n transactions, n cash updates), in bulk,
    inside a transaction that is rolled back."""
    from django.utils import timezone

    from portfolios.models import Account, TaxLot, Transaction

    accounts = list(Account.objects.filter(name__startswith="Bench ").order_by("pk"))
    t0 = time.perf_counter()
    with transaction.atomic():
        TaxLot.objects.bulk_create(
            TaxLot(
                account=acc,
                security=ctx["b"],
                quantity=D("10"),
                cost_basis=D("20"),
                acquired_on=timezone.localdate(),
            )
            for acc in accounts
        )
        Transaction.objects.bulk_create(
            [
                Transaction(
                    account=acc,
                    security=ctx["b"],
                    side="buy",
                    quantity=D("10"),
                    price=D("20"),
                    trade_date=timezone.localdate(),
                )
                for acc in accounts
            ]
            + [
                Transaction(
                    account=acc,
                    security=ctx["a"],
                    side="sell",
                    quantity=D("5"),
                    price=D("50"),
                    trade_date=timezone.localdate(),
                    realized_lt=D("50"),
                )
                for acc in accounts
            ]
        )
        for acc in accounts:
            acc.cash_balance += D("50")
        Account.objects.bulk_update(accounts, ["cash_balance"], batch_size=1000)
        elapsed = time.perf_counter() - t0
        transaction.set_rollback(True)
    return elapsed


def fix_throughput(m: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from orders.fix import messages as fm
    from orders.fix.broker import SimulatedBroker
    from orders.fix.session import FixInitiator
    from orders.fix.store import MemoryStore

    # baseline: encode every NewOrderSingle and an ack and a fill per order, then decode all
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    wire = bytearray()
    for i in range(m):
        order = fm.new_order_single(
            cl_ord_id=f"T-{i}", symbol="BNCB", side="buy", quantity=D(10), transact_time=now
        )
        wire += fm.encode(order, sender="A", target="B", seq=3 * i + 1, sending_time=now)
        for k, (et, os_) in enumerate((("0", "0"), ("F", "2"))):
            rpt = fm.execution_report(
                order_id=f"O{i}",
                cl_ord_id=f"T-{i}",
                exec_id=f"E{i}{k}",
                exec_type=et,
                ord_status=os_,
                symbol="BNCB",
                side="buy",
                order_qty=D(10),
                cum_qty=D(10),
                avg_px=D(20),
                leaves_qty=D(0),
                transact_time=now,
                last_qty=D(10),
                last_px=D(20),
            )
            wire += fm.encode(rpt, sender="B", target="A", seq=3 * i + 2 + k, sending_time=now)
    decoded = fm.Decoder().feed(bytes(wire))
    baseline = time.perf_counter() - t0
    assert len(decoded) == 3 * m

    def through_broker(state_path: Path | None) -> float:
        broker = SimulatedBroker(
            state_path=state_path,
            price_for=lambda s: D(20),
            sender_comp_id="SIMBROKER",
            target_comp_id="REBAL",
        )
        port = broker.start()
        reports: list[int] = []
        initiator = FixInitiator(
            host="127.0.0.1",
            port=port,
            store=MemoryStore(),
            sender_comp_id="REBAL",
            target_comp_id="SIMBROKER",
            on_app_message=lambda inbound: reports.append(1),
        )
        try:
            initiator.logon(timeout=10)
            t0 = time.perf_counter()
            for i in range(m):
                initiator.send_new_order(
                    cl_ord_id=f"T-{i}", symbol="BNCB", side="buy", quantity=D(10)
                )
            assert initiator.run_until(lambda: len(reports) >= 2 * m, timeout=600)
            elapsed = time.perf_counter() - t0
            initiator.logout(timeout=5)
        finally:
            initiator.close()
            broker.stop()
        return elapsed

    session = through_broker(None)
    with tempfile.TemporaryDirectory() as tmp:
        persisted = through_broker(Path(tmp) / "s.json")
    return {"messages": 3 * m, "session": session, "persisted": persisted, "baseline": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()

    from orders.fix.broker import SimulatedBroker

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        ctx = seed(args.accounts)
        base = books_baseline(args.accounts, ctx)
        with tempfile.TemporaryDirectory() as tmp:
            broker = SimulatedBroker(
                state_path=Path(tmp) / "b.json",
                price_for={"BNCA": D("50"), "BNCB": D("20")}.get,
                sender_comp_id=settings.FIX_TARGET_COMP_ID,
                target_comp_id=settings.FIX_SENDER_COMP_ID,
            )
            port = broker.start()
            try:
                r = route(ctx, port)
            finally:
                broker.stop()
        fx = fix_throughput(args.messages)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    bookings = 2 * args.accounts
    per_booking_ms = 1000 * r["allocate_book"] / bookings
    ratio_books = r["allocate_book"] / base
    msg_rate = fx["messages"] / fx["session"]
    ratio_fix = fx["session"] / fx["baseline"]
    engine = connection.vendor
    print(f"Routing one basket of {args.accounts} accounts x 2 orders ({engine})")
    print(f"  {'step':<34}{'seconds':>10}")
    for key, label in (
        ("prepare", "prepare (compliance, blocks)"),
        ("fix", "FIX exchange (send, acks, fills)"),
        ("allocate_book", f"allocate and book {bookings} fills"),
        ("total", "total"),
    ):
        print(f"  {label:<34}{r[key]:>10.2f}")
    print(f"  {'per booking':<34}{per_booking_ms:>9.2f} ms")
    print(f"  {'bulk rows baseline':<34}{base:>10.3f}   booking / baseline = {ratio_books:.0f}x")
    print(f"FIX session: {fx['messages']} messages ({args.messages} orders, ack + fill each)")
    print(
        f"  session {fx['session']:.2f} s = {msg_rate:,.0f} msg/s; raw encode+decode "
        f"{fx['baseline']:.3f} s; session / raw = {ratio_fix:.1f}x"
    )
    print(
        f"  with the broker persisting its JSON state per message (as make run does): "
        f"{fx['persisted']:.2f} s = {fx['messages'] / fx['persisted']:,.0f} msg/s"
    )
    print(
        json.dumps(
            {
                "bench": "routing",
                "engine": engine,
                "accounts": args.accounts,
                "route_total_s": round(r["total"], 3),
                "prepare_s": round(r["prepare"], 3),
                "fix_s": round(r["fix"], 3),
                "allocate_book_s": round(r["allocate_book"], 3),
                "per_booking_ms": round(per_booking_ms, 3),
                "books_baseline_s": round(base, 4),
                "booking_vs_bulk_ratio": round(ratio_books, 1),
                "fix_messages": fx["messages"],
                "fix_msgs_per_s": round(msg_rate, 1),
                "fix_session_vs_raw_ratio": round(ratio_fix, 2),
                "fix_msgs_per_s_broker_persisting": round(fx["messages"] / fx["persisted"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
