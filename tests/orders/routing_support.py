"""Stand-ins and fixtures for the routing tests, imported by tests/orders/conftest.py: a
compliance engine that stores planned results, a scripted FIX session, and a firm with an
approved basket of three orders in two accounts of team A."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from compliance.models import ComplianceResult, ComplianceRule
from orders.models import (
    BasketState,
    FixMessage,
    FixSession,
    Order,
    OrderLot,
    OrderReason,
    TradeBasket,
)
from orders.services import basket_orders_hash
from tests import factories

D = Decimal


# ---------------------------------------------------------------------------
# Stand-ins: the compliance engine and the FIX session
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    check_run: int
    hard_failures: int = 0
    warnings: int = 0
    results: list[Any] = field(default_factory=list)


@dataclass
class RouteChecks:
    """Stores one result per planned (rule_type, passed, order_index) as the engine would."""

    plan: list[tuple[str, bool, int | None]] = field(default_factory=list)
    calls: int = 0

    def __call__(self, *, basket: TradeBasket, actor: Any, stage: str = "submit") -> Outcome:
        from django.db.models import Max

        self.calls += 1
        run = (
            ComplianceResult.objects.filter(basket=basket).aggregate(m=Max("check_run"))["m"] or 0
        ) + 1
        orders = list(basket.orders.order_by("pk"))
        for rule_type, passed, idx in self.plan:
            rule, _ = ComplianceRule.objects.get_or_create(
                rule_type=rule_type, defaults={"name": rule_type, "severity": "hard"}
            )
            ComplianceResult.objects.create(
                rule=rule,
                basket=basket,
                check_run=run,
                passed=passed,
                severity="hard",
                order=orders[idx] if idx is not None else None,
                message=f"{rule_type} {'passed' if passed else 'failed'}",
                details={"stage": stage},
            )
        return Outcome(check_run=run)


@pytest.fixture
def route_checks(monkeypatch) -> RouteChecks:
    fake = RouteChecks()
    monkeypatch.setattr("compliance.services.checks.basket_compliance_check", fake)
    return fake


@dataclass
class Inbound:
    msg_type: str
    fields: dict[str, str]
    seq_num: int = 0
    poss_dup: bool = False
    raw: bytes = b""
    message_id: int | None = None


class FakeBroker:
    """A scripted FIX session: records what is sent (storing each 35=D like the real store
    does, before 'writing' it) and, in run_until, answers each new order with the reports
    ``respond(cl_ord_id, qty, symbol)`` returns."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.respond = self.fill_all
        self.queue: list[Inbound] = []
        self.logons = 0
        self.fail_logon: Exception | None = None
        self.crash_after_store = False
        self.drop_on_send: int | None = None

    # reports
    @staticmethod
    def report(
        cl_ord_id: str,
        exec_id: str,
        exec_type: str,
        ord_status: str,
        last_qty: str = "0",
        last_px: str = "0",
        text: str = "",
        orig: str = "",
    ) -> Inbound:
        fields = {
            "35": "8",
            "37": "BRK-" + cl_ord_id,
            "11": cl_ord_id,
            "17": exec_id,
            "150": exec_type,
            "39": ord_status,
            "55": "X",
            "54": "1",
            "38": "0",
            "32": last_qty,
            "31": last_px,
            "14": "0",
            "6": "0",
            "151": "0",
        }
        if text:
            fields["58"] = text
        if orig:
            fields["41"] = orig
        return Inbound("8", fields)

    def fill_all(self, cl_ord_id: str, qty: D, symbol: str) -> list[Inbound]:
        return [
            self.report(cl_ord_id, f"{cl_ord_id}-A", "0", "0"),
            self.report(cl_ord_id, f"{cl_ord_id}-F1", "F", "2", str(qty), "101.5"),
        ]

    # the FixInitiator interface used by orders.services_routing
    def logon(self, timeout: float = 10) -> None:
        if self.fail_logon:
            raise self.fail_logon
        self.logons += 1

    def send_new_order(
        self,
        *,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: D,
        ord_type: str,
        price: D | None,
        route_id: int | None = None,
        account: str = "",
    ) -> int:
        session, _ = FixSession.objects.get_or_create(
            name="broker", defaults={"sender_comp_id": "REBAL", "target_comp_id": "SIMBROKER"}
        )
        seq = len(self.sent) + 1 + FixMessage.objects.filter(direction="out").count()
        FixMessage.objects.create(
            session=session,
            direction="out",
            seq_num=seq,
            msg_type="D",
            cl_ord_id=cl_ord_id,
            route_id=route_id,
            raw="35=D",
        )
        if self.crash_after_store:
            raise RuntimeError("worker killed between store and socket write")
        if self.drop_on_send is not None and len(self.sent) + 1 >= self.drop_on_send:
            raise ConnectionResetError(104, "Connection reset by peer")
        self.sent.append(
            {
                "cl_ord_id": cl_ord_id,
                "symbol": symbol,
                "side": side,
                "quantity": quantity,
                "ord_type": ord_type,
                "price": price,
            }
        )
        self.queue.extend(self.respond(cl_ord_id, quantity, symbol))
        return seq

    def send_cancel(
        self,
        *,
        cl_ord_id: str,
        orig_cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: D,
        route_id: int | None = None,
    ) -> int:
        self.cancels.append({"cl_ord_id": cl_ord_id, "orig": orig_cl_ord_id})
        self.queue.append(self.report(cl_ord_id, f"{cl_ord_id}-C", "4", "4", orig=orig_cl_ord_id))
        return 1

    def run_until(self, predicate: Any, timeout: float) -> bool:
        from orders.services_routing import execution_message_apply

        while self.queue and not predicate():
            execution_message_apply(self.queue.pop(0))
        return bool(predicate())

    def logout(self, timeout: float = 5) -> None:
        pass

    def close(self) -> None:
        pass


class FakeStore:
    busy = False  # another process holds the session

    def acquire(self, owner: str, seconds: float) -> bool:
        return not self.busy

    def release(self, owner: str) -> None:
        pass


@pytest.fixture
def broker(monkeypatch, settings) -> FakeBroker:
    settings.FIX_ROUTE_WAIT_SECONDS = 1
    fake = FakeBroker()
    fake.store = FakeStore()
    monkeypatch.setattr("orders.services_routing._initiator", lambda: (fake, fake.store))
    return fake


# ---------------------------------------------------------------------------
# A firm with two accounts of team A and approved baskets
# ---------------------------------------------------------------------------


@pytest.fixture
def xyz(db):
    sec = factories.SecurityFactory(ticker="XYZ", name="XYZ Corp")
    factories.PriceFactory(security=sec, price=D("100"))
    return sec


@pytest.fixture
def account_a2(household_a):
    return factories.AccountFactory(
        household=household_a, name="Alpha Trust", cash_balance=D("50000")
    )


def approved_basket(*, creator, approver, lines) -> TradeBasket:
    """An approved basket of ``lines`` = [(account, security, side, qty, [(lot, qty)])]."""
    basket = TradeBasket.objects.create(
        name="To route", created_by=creator, state=BasketState.APPROVED, approved_by=approver
    )
    for account, security, side, qty, lots in lines:
        order = Order.objects.create(
            basket=basket,
            account=account,
            security=security,
            side=side,
            quantity=D(qty),
            est_price=D("100"),
            est_notional=D(qty) * 100,
            reason=OrderReason.DRIFT,
        )
        for lot, q in lots:
            OrderLot.objects.create(order=order, lot=lot, quantity=D(q))
    basket.approved_hash = basket_orders_hash(basket=basket)
    basket.save()
    return basket


@pytest.fixture
def routable(pm, ops, account_a, account_a2, xyz, security):
    account_a.cash_balance = D("50000")
    account_a.save()
    lot = account_a.lots.get(security=security)  # 10 AAPL @ 80 since 2024-01-02
    return approved_basket(
        creator=pm,
        approver=ops,
        lines=[
            (account_a, xyz, "buy", "100", []),
            (account_a2, xyz, "buy", "300", []),
            (account_a, security, "sell", "4", [(lot, "4")]),
        ],
    )


@pytest.fixture
def sim_broker(tmp_path, settings):
    """The simulated FIX broker in a thread on a free port, the app's session pointed at it.

    ``sim_broker.prices`` is what it fills at (by ticker); set options on
    ``sim_broker.broker`` before the first order. Stopped at the end of the test."""
    from orders.fix.broker import SimulatedBroker

    class Handle:
        prices: dict[str, D] = {}

    handle = Handle()
    handle.prices = {}
    broker = SimulatedBroker(
        state_path=tmp_path / "broker-state.json",
        price_for=lambda symbol: handle.prices.get(symbol),
        sender_comp_id=settings.FIX_TARGET_COMP_ID,
        target_comp_id=settings.FIX_SENDER_COMP_ID,
        fill_delay=0.05,
    )
    handle.broker = broker
    settings.FIX_HOST = "127.0.0.1"
    settings.FIX_PORT = broker.start()
    settings.FIX_ROUTE_WAIT_SECONDS = 10
    settings.FIX_HEARTBEAT_SECONDS = 5
    try:
        yield handle
    finally:
        broker.stop()
