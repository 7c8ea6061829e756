"""Serializers of the portfolios API: output shapes for accounts, households and reference
data, and the one input serializer (the account PATCH). They hold no business rules: the
PATCH is validated for shape and range here and applied by ``portfolios.services``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portfolios.models import (
    Account,
    AccountStatus,
    DriftSnapshot,
    Household,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    Price,
    Security,
    TaxLot,
)

UNKNOWN_FIELD = "Unknown field: it cannot be set through this endpoint."
RATE_RANGE = {"min_value": 0, "max_value": 1}


# ---------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------


class SecuritySerializer(serializers.ModelSerializer):
    tlh_substitutes = serializers.SlugRelatedField(slug_field="ticker", many=True, read_only=True)
    latest_price = serializers.DecimalField(
        max_digits=18, decimal_places=6, read_only=True, allow_null=True
    )

    class Meta:
        model = Security
        fields = [
            "id",
            "ticker",
            "name",
            "cusip",
            "isin",
            "asset_class",
            "sector",
            "security_type",
            "esg_score",
            "esg_tags",
            "round_lot",
            "wash_sale_group",
            "tlh_substitutes",
            "is_synthetic",
            "latest_price",
        ]
        read_only_fields = fields


class PriceSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="security.ticker", read_only=True)

    class Meta:
        model = Price
        fields = ["id", "security", "ticker", "as_of", "price", "source", "avg_daily_volume"]
        read_only_fields = fields


class ModelTargetSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="security.ticker", read_only=True)

    class Meta:
        model = ModelTarget
        fields = [
            "security",
            "ticker",
            "weight",
            "abs_band",
            "rel_band",
            "min_weight",
            "max_weight",
        ]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    targets = ModelTargetSerializer(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "is_current",
            "cash_target",
            "note",
            "created_by",
            "created_at",
            "targets",
        ]
        read_only_fields = fields


class TargetInputSerializer(serializers.Serializer):
    ticker = serializers.CharField(max_length=16)
    weight = serializers.DecimalField(max_digits=9, decimal_places=6, min_value=0, max_value=1)
    abs_band = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    rel_band = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    min_weight = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=0, max_value=1, required=False, allow_null=True
    )
    max_weight = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=0, max_value=1, required=False, allow_null=True
    )


class ModelVersionCreateSerializer(serializers.Serializer):
    """A new version of a model: its complete list of targets and its cash target."""

    cash_target = serializers.DecimalField(max_digits=9, decimal_places=6, min_value=0, max_value=1)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    targets = TargetInputSerializer(many=True, allow_empty=False)


class ModelPortfolioSerializer(serializers.ModelSerializer):
    current_version = serializers.SerializerMethodField()

    class Meta:
        model = ModelPortfolio
        fields = ["id", "name", "description", "created_at", "current_version"]
        read_only_fields = fields

    @extend_schema_field(ModelVersionSerializer(allow_null=True))
    def get_current_version(self, obj: ModelPortfolio) -> dict[str, Any] | None:
        # The viewset prefetches the current version into ``current_versions``.
        prefetched = getattr(obj, "current_versions", None)
        if prefetched is None:
            return self._version(obj.current_version)
        return self._version(prefetched[0] if prefetched else None)

    @staticmethod
    def _version(version: ModelVersion | None) -> dict[str, Any] | None:
        return ModelVersionSerializer(version).data if version is not None else None


# ---------------------------------------------------------------------------
# Households and accounts
# ---------------------------------------------------------------------------


class HouseholdSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    accounts = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Household
        fields = ["id", "name", "team", "created_at", "accounts"]
        read_only_fields = fields


class AccountSerializer(serializers.ModelSerializer):
    """An account as listed: its settings and where it belongs, without its positions."""

    household_name = serializers.CharField(source="household.name", read_only=True)
    team = serializers.CharField(source="household.team.name", read_only=True, allow_null=True)
    model_name = serializers.CharField(source="model.name", read_only=True, allow_null=True)

    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "account_number",
            "custodian",
            "household",
            "household_name",
            "team",
            "registration_type",
            "taxable",
            "model",
            "model_name",
            "status",
            "cash_balance",
            "cash_reserve",
            "st_tax_rate",
            "lt_tax_rate",
            "auto_propose",
            "allow_fractional",
            "min_trade_amount",
            "tlh_enabled",
            "gains_budget",
            "created_at",
        ]
        read_only_fields = fields


class HoldingSerializer(serializers.Serializer):
    """One position: lots summed per security, valued at the latest price, with its target."""

    security_id = serializers.IntegerField()
    ticker = serializers.CharField()
    name = serializers.CharField()
    sector = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    cost = serializers.DecimalField(max_digits=20, decimal_places=2)
    price = serializers.DecimalField(max_digits=18, decimal_places=6, allow_null=True)
    price_date = serializers.DateField(allow_null=True)
    market_value = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    weight = serializers.FloatField(allow_null=True)
    target = serializers.FloatField(allow_null=True)
    unrealized = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class AccountHoldingsSerializer(serializers.Serializer):
    holdings = HoldingSerializer(many=True)
    cash = serializers.DecimalField(max_digits=18, decimal_places=2)
    total_value = serializers.DecimalField(max_digits=20, decimal_places=2)
    cash_weight = serializers.FloatField()
    cash_target = serializers.FloatField(allow_null=True)
    missing_prices = serializers.ListField(child=serializers.CharField())


class TaxLotSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="security.ticker", read_only=True)

    class Meta:
        model = TaxLot
        fields = [
            "id",
            "security",
            "ticker",
            "quantity",
            "cost_basis",
            "acquired_on",
            "purchased_on",
            "wash_sale_adjustment",
        ]
        read_only_fields = fields


class DriftSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftSnapshot
        fields = [
            "id",
            "scanned_at",
            "model_version",
            "total_value",
            "total_drift",
            "max_drift",
            "cash_drift",
            "breach_count",
            "not_in_model_count",
            "scannable",
            "unscannable_reason",
        ]
        read_only_fields = fields


class AccountDetailSerializer(AccountSerializer):
    """An account with its positions, lots and latest drift snapshot.

    The view passes what the selectors returned in the context (``holdings``, ``lots``,
    ``latest_drift``), so the serializer runs no query of its own.
    """

    holdings = serializers.SerializerMethodField()
    lots = serializers.SerializerMethodField()
    latest_drift = serializers.SerializerMethodField()

    class Meta(AccountSerializer.Meta):
        fields = [*AccountSerializer.Meta.fields, "holdings", "lots", "latest_drift"]
        read_only_fields = fields

    @extend_schema_field(AccountHoldingsSerializer)
    def get_holdings(self, obj: Account) -> dict[str, Any]:
        return AccountHoldingsSerializer(self.context["holdings"]).data

    @extend_schema_field(TaxLotSerializer(many=True))
    def get_lots(self, obj: Account) -> list[dict[str, Any]]:
        return TaxLotSerializer(self.context["lots"], many=True).data

    @extend_schema_field(DriftSnapshotSerializer(allow_null=True))
    def get_latest_drift(self, obj: Account) -> dict[str, Any] | None:
        snapshot = self.context.get("latest_drift")
        return DriftSnapshotSerializer(snapshot).data if snapshot is not None else None


class AccountUpdateSerializer(serializers.Serializer):
    """The account settings a PATCH may change (``portfolios.services.ACCOUNT_EDITABLE_FIELDS``)
    plus an optional ``reason`` recorded in the audit trail. Unknown fields are refused rather
    than silently ignored, so a typo never looks like a successful change."""

    name = serializers.CharField(max_length=200)
    model = serializers.PrimaryKeyRelatedField(
        queryset=ModelPortfolio.objects.all(), allow_null=True
    )
    cash_reserve = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=0)
    st_tax_rate = serializers.DecimalField(max_digits=6, decimal_places=4, **RATE_RANGE)
    lt_tax_rate = serializers.DecimalField(max_digits=6, decimal_places=4, **RATE_RANGE)
    status = serializers.ChoiceField(choices=AccountStatus.choices)
    auto_propose = serializers.BooleanField()
    allow_fractional = serializers.BooleanField()
    min_trade_amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=0)
    tlh_enabled = serializers.BooleanField()
    gains_budget = serializers.DecimalField(
        max_digits=18, decimal_places=2, min_value=0, allow_null=True
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, write_only=True
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: [UNKNOWN_FIELD] for name in unknown})
        return attrs
