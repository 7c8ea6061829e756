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
    Order,
    OrderLot,
    Route,
    TradeBasket,
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
        "status",
        "attempts",
        "queued_at",
        "error",
    ]
    list_filter = ["destination", "status"]
    search_fields = ["=cl_ord_id"]
    list_select_related = ["block"]


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "route", "exec_id", "quantity", "price", "executed_at"]
    search_fields = ["=exec_id", "=route__cl_ord_id"]
    date_hierarchy = "executed_at"
    list_select_related = ["route"]
