"""The whole loop on PostgreSQL with a real Celery worker on Redis and the simulated FIX
broker on 127.0.0.1: Ops routes an approved basket, the routing task re-runs compliance with
the real engine, sends the blocks over FIX, the broker fills them (partially first), the
fills are allocated and booked into lots, cash and transactions, the basket ends filled, a
drift scan of each account follows, and the audit chain still verifies."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from compliance.models import AuditEvent
from compliance.selectors import audit_chain_verify
from orders.models import BasketState, Execution, FixMessage, Route, RoutingJob, TradeBasket
from orders.services_routing import routing_request
from orders.tasks import route_job
from portfolios.models import DriftScan, TaxLot, Transaction
from tests.e2e.test_basket_approval import _role_permissions  # noqa: F401 - autouse
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

D = Decimal


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.postgres
@pytest.mark.celery_worker
def test_ops_routes_a_basket_over_fix_and_the_fills_reach_the_books(
    live_worker,  # noqa: F811
    sim_broker,
    routable,
    ops,
    account_a,
    account_a2,
    xyz,
    security,
):
    sim_broker.prices.update({"XYZ": D("101.25"), "AAPL": D("150")})
    sim_broker.broker.partial_fill = 0.5
    cash_a2 = account_a2.cash_balance

    job = routing_request(actor=ops, basket_ids=[routable.pk])
    assert _wait(lambda: TradeBasket.objects.get(pk=routable.pk).state == BasketState.FILLED), (
        RoutingJob.objects.filter(pk=job.pk).values("status", "error").first(),
        list(Route.objects.values("cl_ord_id", "state", "text")),
    )
    # a second delivery of the task (a lost ack) sends nothing again
    assert route_job.delay(job.pk).get(timeout=30) == {"job": job.pk, "claimed": False}

    assert RoutingJob.objects.get(pk=job.pk).status == "succeeded"
    assert FixMessage.objects.filter(direction="out", msg_type="D").count() == 2
    # partial fills first (half, then the rest), each a 35=8 in and an Execution
    assert Execution.objects.count() == 4
    assert FixMessage.objects.filter(direction="in", msg_type="8").count() >= 6
    lot = TaxLot.objects.get(account=account_a2, security=xyz)
    assert (lot.quantity, lot.cost_basis) == (D("300"), D("101.25"))
    account_a2.refresh_from_db()
    assert account_a2.cash_balance == cash_a2 - D("30375")
    sell = Transaction.objects.get(account=account_a, security=security, side="sell")
    assert (sell.quantity, sell.price) == (D("4"), D("150"))
    assert sell.realized_lt == D("280.00")  # (150 - 80) * 4, held since 2024
    # each booked account gets an event drift scan
    assert _wait(lambda: DriftScan.objects.filter(trigger="event").exists(), timeout=30)
    assert AuditEvent.objects.filter(action="fill.booked").count() == 3
    assert audit_chain_verify().ok
