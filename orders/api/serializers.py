"""Serializers of the orders API: baskets (list and detail with orders, lots, compliance
results and history), orders, compliance results, rules and restrictions, and the inputs of
the workflow actions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule, Restriction
from orders.models import Order, OrderLot, TradeBasket


class OrderLotSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderLot
        fields = ["id", "lot", "quantity", "est_gain", "long_term"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    account_number = serializers.CharField(source="account.account_number", read_only=True)
    ticker = serializers.CharField(source="security.ticker", read_only=True)
    lots = OrderLotSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "basket",
            "account",
            "account_number",
            "security",
            "ticker",
            "side",
            "quantity",
            "order_type",
            "limit_price",
            "est_price",
            "est_notional",
            "reason",
            "status",
            "filled_quantity",
            "avg_price",
            "run",
            "lots",
            "created_at",
        ]
        read_only_fields = fields


class OverrideSerializer(serializers.Serializer):
    overridden_by = serializers.CharField(source="overridden_by.username")
    justification = serializers.CharField()
    created_at = serializers.DateTimeField()


class ComplianceResultSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    rule_type = serializers.CharField(source="rule.rule_type", read_only=True)
    override = serializers.SerializerMethodField()

    class Meta:
        model = ComplianceResult
        fields = [
            "id",
            "rule",
            "rule_name",
            "rule_type",
            "basket",
            "order",
            "check_run",
            "passed",
            "severity",
            "message",
            "details",
            "checked_at",
            "override",
        ]
        read_only_fields = fields

    @extend_schema_field(OverrideSerializer(allow_null=True))
    def get_override(self, result: ComplianceResult) -> dict[str, Any] | None:
        override = getattr(result, "override", None)
        return OverrideSerializer(override).data if override is not None else None


class HistoryEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
            "reason",
        ]
        read_only_fields = fields


class BasketSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    submitted_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    approved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    order_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = TradeBasket
        fields = [
            "id",
            "name",
            "state",
            "created_by",
            "created_at",
            "submitted_by",
            "submitted_at",
            "approved_by",
            "approved_at",
            "approved_hash",
            "runs",
            "order_count",
            "updated_at",
        ]
        read_only_fields = fields


class BasketDetailSerializer(BasketSerializer):
    orders = OrderSerializer(many=True, read_only=True)
    compliance_results = ComplianceResultSerializer(many=True, read_only=True)
    history = HistoryEventSerializer(many=True, read_only=True)

    class Meta(BasketSerializer.Meta):
        fields = [*BasketSerializer.Meta.fields, "orders", "compliance_results", "history"]
        read_only_fields = fields


class BasketCreateSerializer(serializers.Serializer):
    runs = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class RejectSerializer(serializers.Serializer):
    comment = serializers.CharField(
        allow_blank=True, max_length=2000, help_text="Why the basket is rejected (required)."
    )


class ApproveSerializer(CommentSerializer):
    acknowledge_warnings = serializers.BooleanField(
        default=False, help_text="The approver has read the failed warnings of the latest check."
    )


class OrderAddSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    security = serializers.IntegerField()
    side = serializers.CharField()
    quantity = serializers.CharField(help_text="Shares, a positive decimal.")
    order_type = serializers.CharField(required=False, default="market")
    limit_price = serializers.CharField(required=False, allow_null=True, default=None)


class OrderUpdateSerializer(serializers.Serializer):
    quantity = serializers.CharField(required=False, help_text="Shares, a positive decimal.")
    order_type = serializers.CharField(required=False)
    limit_price = serializers.CharField(required=False, allow_null=True)


class OverrideCreateSerializer(serializers.Serializer):
    justification = serializers.CharField(allow_blank=True, max_length=4000)


class ComplianceRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ComplianceRule
        fields = [
            "id",
            "rule_type",
            "name",
            "parameters",
            "severity",
            "scope",
            "model",
            "account",
            "enabled",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"rule_type": {"help_text": "Fixed once the rule exists."}}


class RestrictionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Restriction
        fields = [
            "id",
            "scope",
            "household",
            "account",
            "security",
            "sector",
            "esg_tag",
            "kind",
            "reason",
            "effective_from",
            "effective_to",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "created_by", "created_at"]
