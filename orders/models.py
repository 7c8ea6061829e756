"""Order management: trade baskets, orders with lot instructions, block orders with their
allocations, routes and executions (DESIGN 3, 7, 9). Nothing here has a delete path: order
records are kept for the Advisers Act retention period."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portfolios.models import MONEY, PRICE, QTY, Side
from rebalance_app.work import WorkItem


class BasketState(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    COMPLIANCE_HOLD = "compliance_hold", "Compliance hold"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ROUTING = "routing", "Routing"
    ROUTED = "routed", "Routed"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"


class TradeBasket(models.Model):
    """Orders from one or many rebalance runs, moving through the approval workflow."""

    name = models.CharField(max_length=200)
    state = models.CharField(
        max_length=20, choices=BasketState.choices, default=BasketState.DRAFT, db_index=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_hash = models.CharField(max_length=64, blank=True)
    runs = models.ManyToManyField("portfolios.RebalanceRun", blank=True, related_name="baskets")
    editors = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Everyone who created or changed the basket's orders: none of them may approve.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"


class OrderReason(models.TextChoices):
    DRIFT = "drift", "Drift"
    TLH = "tlh", "Tax-loss harvest"
    CASH_RAISE = "cash_raise", "Cash raise"
    CASH_INVEST = "cash_invest", "Cash invest"
    RESTRICTION = "restriction", "Restriction"
    MANUAL = "manual", "Manual"


class OrderStatus(models.TextChoices):
    NEW = "new", "New"
    SENT = "sent", "Sent"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    """One account's order in a basket."""

    basket = models.ForeignKey(TradeBasket, on_delete=models.PROTECT, related_name="orders")
    account = models.ForeignKey("portfolios.Account", on_delete=models.PROTECT, related_name="+")
    security = models.ForeignKey("portfolios.Security", on_delete=models.PROTECT, related_name="+")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QTY)
    order_type = models.CharField(
        max_length=10, choices=OrderType.choices, default=OrderType.MARKET
    )
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    est_price = models.DecimalField(**PRICE)
    est_notional = models.DecimalField(**MONEY)
    reason = models.CharField(max_length=20, choices=OrderReason.choices)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.NEW)
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))
    avg_price = models.DecimalField(**PRICE, null=True, blank=True)
    run = models.ForeignKey(
        "portfolios.RebalanceRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="orders",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["basket", "account", "security"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_pos"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0), name="order_filled_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.security_id} ({self.account_id})"


class OrderLot(models.Model):
    """Which lot a sell order relieves, and how much, with the estimated realized gain."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="lots")
    lot = models.ForeignKey("portfolios.TaxLot", on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(**QTY)
    est_gain = models.DecimalField(**MONEY, default=Decimal("0"))
    long_term = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderlot_quantity_pos")
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} lot {self.lot_id} x {self.quantity}"


class BlockOrder(models.Model):
    """Orders for the same security and side across accounts, aggregated for routing."""

    security = models.ForeignKey("portfolios.Security", on_delete=models.PROTECT, related_name="+")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QTY)
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))
    avg_price = models.DecimalField(**PRICE, null=True, blank=True)
    allocation_statement = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"block {self.pk} {self.side} {self.quantity} {self.security_id}"


class BlockAllocation(models.Model):
    """How much of a block belongs to one account's order."""

    block = models.ForeignKey(BlockOrder, on_delete=models.PROTECT, related_name="allocations")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="allocations")
    quantity = models.DecimalField(**QTY)
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))

    def __str__(self) -> str:
        return f"block {self.block_id} -> order {self.order_id} x {self.quantity}"


class Destination(models.TextChoices):
    FIX = "fix", "FIX 4.4 session"
    TRADE_FILE = "trade_file", "Custodian trade file"


class Route(WorkItem):
    """Sending one block to a destination: a work row claimed by the routing task."""

    block = models.ForeignKey(BlockOrder, on_delete=models.PROTECT, related_name="routes")
    destination = models.CharField(max_length=20, choices=Destination.choices)
    cl_ord_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.destination} {self.cl_ord_id} ({self.status})"


class Execution(models.Model):
    """A fill (or partial fill) reported by the destination."""

    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="executions")
    exec_id = models.CharField(max_length=64)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**PRICE)
    executed_at = models.DateTimeField(default=timezone.now)
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["route", "exec_id"], name="execution_unique")
        ]

    def __str__(self) -> str:
        return f"{self.exec_id}: {self.quantity} @ {self.price}"
