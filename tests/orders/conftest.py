"""Fixtures of the orders tests: baskets built by hand in any state, succeeded rebalance runs
to make baskets from, and a controllable stand-in for the compliance engine.

``checks`` replaces the engine call of ``basket_submit`` (``orders.services._compliance_check``)
with one that stores a ComplianceResult per planned outcome, numbered like the engine numbers
its runs, and counts its calls; ``checks.plan = [("hard", False), ("warning", False)]`` makes
the next check fail one hard rule and one warning. Tests that need the real engine use
``compliance.services.checks`` directly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Max

from compliance.models import ComplianceResult, ComplianceRule
from orders.models import BasketState, Order, OrderLot, OrderReason, TradeBasket
from portfolios.models import RebalanceMode, RebalanceRun, RunStatus
from tests import factories
from tests.orders.routing_support import (  # noqa: F401 - fixtures of the routing tests
    FakeBroker,
    Inbound,
    account_a2,
    approved_basket,
    broker,
    routable,
    route_checks,
    sim_broker,
    xyz,
)


@dataclass(frozen=True)
class FakeOutcome:
    check_run: int
    hard_failures: int
    warnings: int
    results: list[ComplianceResult]


@dataclass
class FakeChecks:
    plan: list[tuple[str, bool]] = field(default_factory=list)
    calls: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *, basket: TradeBasket, actor: Any) -> FakeOutcome:
        import time

        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        last = ComplianceResult.objects.filter(basket=basket).aggregate(m=Max("check_run"))["m"]
        run = (last or 0) + 1
        results = []
        for i, (severity, passed) in enumerate(self.plan):
            rule, _ = ComplianceRule.objects.get_or_create(
                rule_type=f"test_{severity}_{i}",
                defaults={"name": f"Test {severity} rule {i}", "severity": severity},
            )
            results.append(
                ComplianceResult.objects.create(
                    rule=rule,
                    basket=basket,
                    check_run=run,
                    passed=passed,
                    severity=severity,
                    message=f"{rule.name} {'passed' if passed else 'failed'}",
                )
            )
        hard = sum(1 for r in results if not r.passed and r.severity == "hard")
        warn = sum(1 for r in results if not r.passed and r.severity == "warning")
        return FakeOutcome(check_run=run, hard_failures=hard, warnings=warn, results=results)


@pytest.fixture
def checks(monkeypatch) -> FakeChecks:
    fake = FakeChecks()
    monkeypatch.setattr("orders.services._compliance_check", fake)
    return fake


@pytest.fixture
def msft(db):
    sec = factories.SecurityFactory(ticker="MSFT", name="Microsoft")
    factories.PriceFactory(security=sec, price=Decimal("400"))
    return sec


def make_basket(
    *,
    creator: Any,
    account: Any,
    security: Any,
    state: str = BasketState.DRAFT,
    sell_lot: Any = None,
    **extra: Any,
) -> TradeBasket:
    """A basket with one buy of 5 ``security`` (and a sell of 2 from ``sell_lot`` if given)."""
    basket = TradeBasket.objects.create(
        name="Test basket", created_by=creator, state=state, **extra
    )
    Order.objects.create(
        basket=basket,
        account=account,
        security=security,
        side="buy",
        quantity=Decimal("5"),
        est_price=Decimal("150"),
        est_notional=Decimal("750"),
        reason=OrderReason.DRIFT,
    )
    if sell_lot is not None:
        sell = Order.objects.create(
            basket=basket,
            account=account,
            security=sell_lot.security,
            side="sell",
            quantity=Decimal("2"),
            est_price=Decimal("150"),
            est_notional=Decimal("300"),
            reason=OrderReason.DRIFT,
        )
        OrderLot.objects.create(
            order=sell, lot=sell_lot, quantity=Decimal("2"), est_gain=Decimal("140")
        )
    return basket


@pytest.fixture
def draft(pm, account_a, security):
    """A draft basket of team A, created by ``pm``."""
    return make_basket(creator=pm, account=account_a, security=security)


def make_run(*, account: Any, security: Any, creator: Any) -> RebalanceRun:
    """A succeeded run proposing one buy of 3 ``security`` (as the optimizer stores it)."""
    return RebalanceRun.objects.create(
        account=account,
        mode=RebalanceMode.FULL,
        status=RunStatus.SUCCEEDED,
        created_by=creator,
        trades=[
            {
                "security": security.pk,
                "ticker": security.ticker,
                "side": "buy",
                "quantity": 3.0,
                "price": 150.0,
                "notional": 450.0,
                "reason": "drift",
                "lots": [],
            }
        ],
    )
