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


class Destination(models.TextChoices):
    FIX = "fix", "FIX 4.4 session"
    TRADE_FILE = "trade_file", "Custodian trade file"


class RoutingJob(WorkItem):
    """One request to route approved baskets: the work row the routing task claims.

    The task re-runs compliance, writes the block orders and their allocation statements,
    then sends each block's route. A retried or second task finds the blocks and routes
    already written and sends only what was never sent.
    """

    baskets = models.ManyToManyField(TradeBasket, related_name="routing_jobs")
    destination = models.CharField(max_length=20, choices=Destination.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"routing job {self.pk} ({self.destination}, {self.status})"


class BlockOrder(models.Model):
    """Orders for the same security and side across accounts, aggregated for routing.

    ``allocation_statement`` is written (and audited) before the block is sent: which orders
    get how much, and the rule for fills short of the whole block. ``allocated_at`` is set
    once the block's fills have been allocated to its orders and booked.
    """

    job = models.ForeignKey(
        RoutingJob, null=True, blank=True, on_delete=models.PROTECT, related_name="blocks"
    )
    security = models.ForeignKey("portfolios.Security", on_delete=models.PROTECT, related_name="+")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QTY)
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))
    avg_price = models.DecimalField(**PRICE, null=True, blank=True)
    allocation_statement = models.JSONField(default=dict, blank=True)
    allocated_at = models.DateTimeField(null=True, blank=True)
    allocation_error = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why booking the block's fills failed (they stay recorded); Ops retries.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "security", "side"]
        constraints = [
            models.UniqueConstraint(fields=["job", "security", "side"], name="block_unique_per_job")
        ]

    def __str__(self) -> str:
        return f"block {self.pk} {self.side} {self.quantity} {self.security_id}"


class BlockAllocation(models.Model):
    """How much of a block belongs to one account's order, and what it got when filled."""

    block = models.ForeignKey(BlockOrder, on_delete=models.PROTECT, related_name="allocations")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="allocations")
    quantity = models.DecimalField(**QTY)
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))
    price = models.DecimalField(**PRICE, null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["block", "order"], name="allocation_unique")]

    def __str__(self) -> str:
        return f"block {self.block_id} -> order {self.order_id} x {self.quantity}"


class RouteState(models.TextChoices):
    """A route's order state at the destination (FIX OrdStatus, plus our own before it)."""

    PENDING = "pending", "Pending (not sent)"
    SENT = "sent", "Sent"
    NEW = "new", "Acknowledged"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"


ROUTE_OPEN_STATES = (
    RouteState.SENT,
    RouteState.NEW,
    RouteState.PARTIALLY_FILLED,
    RouteState.CANCEL_REQUESTED,
)
ROUTE_DONE_STATES = (RouteState.FILLED, RouteState.CANCELLED, RouteState.REJECTED)
# Open at the broker and not already being cancelled: Ops may ask to cancel the rest.
ROUTE_CANCELLABLE_STATES = (RouteState.SENT, RouteState.NEW, RouteState.PARTIALLY_FILLED)


class Route(models.Model):
    """One block sent to one destination under one ClOrdID, with the destination's view of
    it (cumulative quantity, average price, leaves)."""

    block = models.ForeignKey(BlockOrder, on_delete=models.PROTECT, related_name="routes")
    destination = models.CharField(max_length=20, choices=Destination.choices)
    cl_ord_id = models.CharField(max_length=64, unique=True)
    state = models.CharField(
        max_length=20, choices=RouteState.choices, default=RouteState.PENDING, db_index=True
    )
    order_id = models.CharField(max_length=64, blank=True, help_text="The broker's OrderID.")
    cum_qty = models.DecimalField(**QTY, default=Decimal("0"))
    avg_px = models.DecimalField(**PRICE, null=True, blank=True)
    text = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["block", "created_at"]

    def __str__(self) -> str:
        return f"{self.destination} {self.cl_ord_id} ({self.state})"


class Execution(models.Model):
    """A fill (or partial fill) reported by the destination, unique per route and ExecID."""

    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="executions")
    exec_id = models.CharField(max_length=64)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**PRICE)
    executed_at = models.DateTimeField(default=timezone.now)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-executed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["route", "exec_id"], name="execution_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="execution_quantity_pos"),
            models.CheckConstraint(condition=Q(price__gt=0), name="execution_price_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.exec_id}: {self.quantity} @ {self.price}"


class TradeFile(models.Model):
    """A custodian trade file written for a routing job: its bytes, SHA-256 and whether Ops
    has marked it sent."""

    job = models.OneToOneField(RoutingJob, on_delete=models.PROTECT, related_name="trade_file")
    filename = models.CharField(max_length=200)
    content = models.TextField()
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self) -> str:
        return self.filename


class FixSession(models.Model):
    """The persistent state of one FIX 4.4 session: sequence numbers survive restarts, and a
    lease makes sure only one process holds the connection at a time."""

    name = models.CharField(max_length=60, unique=True)
    sender_comp_id = models.CharField(max_length=60)
    target_comp_id = models.CharField(max_length=60)
    next_out_seq = models.PositiveIntegerField(default=1)
    next_in_seq = models.PositiveIntegerField(default=1)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    logged_on = models.BooleanField(default=False)
    last_logon_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} {self.sender_comp_id}->{self.target_comp_id}"


class MessageDirection(models.TextChoices):
    OUT = "out", "Sent"
    IN = "in", "Received"


class FixMessage(models.Model):
    """Every FIX message sent or received, as sent (SOH-delimited), with its parsed fields.

    An outbound message is stored, with its sequence number, before it is written to the
    socket, so a resend request (or a crash between store and write) can replay it with
    PossDupFlag=Y. Append-only, like the audit trail.
    """

    session = models.ForeignKey(FixSession, on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=MessageDirection.choices)
    seq_num = models.PositiveIntegerField()
    msg_type = models.CharField(max_length=4)
    cl_ord_id = models.CharField(max_length=64, blank=True, db_index=True)
    route = models.ForeignKey(
        Route, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    poss_dup = models.BooleanField(default=False)
    raw = models.TextField()
    fields = models.JSONField(default=dict, blank=True)
    text = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["session", "direction", "seq_num"], name="fixmsg_seq_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "seq_num"],
                condition=Q(direction="out", poss_dup=False),
                name="fixmsg_out_seq_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.seq_num} 35={self.msg_type}"

    @property
    def raw_display(self) -> str:
        """The message as FIX logs usually show it: SOH as ``|``."""
        return self.raw.replace("\x01", "|")
