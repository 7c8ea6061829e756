"""Admin of the orders app: every model is read-only here.

Baskets and orders move only through the workflow services (atomic, locked, permission- and
four-eyes-checked, audited: DESIGN 7), routes and executions only through routing and fills.
An admin edit would go around all of that, and order records have no delete path (Rule 204-2).
"""

from __future__ import annotations

from django.contrib import admin

from orders.models import (
    BlockAllocation,
    BlockOrder,
    Execution,
    FixMessage,
    FixSession,
    Order,
    OrderLot,
    Route,
    RoutingJob,
    TradeBasket,
    TradeFile,
)
from rebalance_app.admin import ReadOnlyInline, ReadOnlyModelAdmin


class OrderInline(ReadOnlyInline):
    model = Order
    fields = ["account", "security", "side", "quantity", "order_type", "est_notional", "status"]
    readonly_fields = fields


@admin.register(TradeBasket)
class TradeBasketAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "name",
        "state",
        "created_by",
        "submitted_by",
        "approved_by",
        "created_at",
    ]
    list_filter = ["state"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by", "submitted_by", "approved_by"]
    inlines = [OrderInline]


class OrderLotInline(ReadOnlyInline):
    model = OrderLot
    fields = ["lot", "quantity", "est_gain", "long_term"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Order)
class OrderAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "basket",
        "account",
        "security",
        "side",
        "quantity",
        "order_type",
        "est_notional",
        "reason",
        "status",
        "filled_quantity",
    ]
    list_filter = ["side", "status", "reason", "order_type"]
    search_fields = ["account__account_number", "security__ticker", "basket__name"]
    list_select_related = ["basket", "account", "security"]
    inlines = [OrderLotInline]
    show_full_result_count = False


@admin.register(OrderLot)
class OrderLotAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "order", "lot", "quantity", "est_gain", "long_term"]
    list_filter = ["long_term"]
    search_fields = ["order__account__account_number"]
    list_select_related = ["order", "lot"]


class BlockAllocationInline(ReadOnlyInline):
    model = BlockAllocation
    fields = ["order", "quantity", "filled_quantity"]
    readonly_fields = fields
    show_change_link = False


@admin.register(BlockOrder)
class BlockOrderAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "security",
        "side",
        "quantity",
        "filled_quantity",
        "avg_price",
        "created_at",
    ]
    list_filter = ["side"]
    search_fields = ["security__ticker"]
    list_select_related = ["security"]
    inlines = [BlockAllocationInline]


@admin.register(BlockAllocation)
class BlockAllocationAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "block", "order", "quantity", "filled_quantity"]
    list_select_related = ["block", "order"]


@admin.register(Route)
class RouteAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "block",
        "destination",
        "cl_ord_id",
        "state",
        "cum_qty",
        "avg_px",
        "sent_at",
    ]
    list_filter = ["destination", "state"]
    search_fields = ["=cl_ord_id"]
    list_select_related = ["block"]


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "route", "exec_id", "quantity", "price", "executed_at"]
    search_fields = ["=exec_id", "=route__cl_ord_id"]
    date_hierarchy = "executed_at"
    list_select_related = ["route"]


@admin.register(RoutingJob)
class RoutingJobAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "destination", "status", "requested_by", "attempts", "queued_at", "error"]
    list_filter = ["destination", "status"]
    list_select_related = ["requested_by"]


@admin.register(TradeFile)
class TradeFileAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "filename", "rows", "sha256", "created_at", "sent_at", "sent_by"]
    list_select_related = ["sent_by"]


@admin.register(FixSession)
class FixSessionAdmin(ReadOnlyModelAdmin):
    list_display = [
        "name",
        "sender_comp_id",
        "target_comp_id",
        "next_out_seq",
        "next_in_seq",
        "logged_on",
        "lease_owner",
        "last_error",
    ]


@admin.register(FixMessage)
class FixMessageAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "direction", "seq_num", "msg_type", "cl_ord_id", "poss_dup", "created_at"]
    list_filter = ["direction", "msg_type", "poss_dup"]
    search_fields = ["=cl_ord_id"]
    date_hierarchy = "created_at"
