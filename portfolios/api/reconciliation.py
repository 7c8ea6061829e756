"""Reconciliation and data-quality API.

- ``GET /api/v1/reconciliations/`` and ``GET /api/v1/reconciliations/{id}/`` (with its breaks:
  custodian and book quantities and the difference). A PM sees only the reconciliations that
  broke on their accounts, and only those breaks.
- ``GET /api/v1/reconciliation-breaks/`` (filters ``open``, ``account``, ``reconciliation``),
  ``GET /api/v1/reconciliation-breaks/{id}/`` and ``POST .../{id}/resolve/`` with
  ``{"resolution": "..."}`` (Ops, Compliance, Admin; audited).
- ``GET /api/v1/data-quality/``: the data-quality report over the accounts you may see.

Thin by design: the selectors decide visibility (an invisible object is 404), the service
decides who may resolve. A user with no role is refused (403).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from portfolios.models import Reconciliation, ReconciliationBreak
from portfolios.selectors.data_quality import DEFAULT_LIMIT, data_quality_report
from portfolios.selectors.reconciliation import (
    reconciliation_break_get,
    reconciliation_breaks_open,
    reconciliation_breaks_visible,
    reconciliation_list,
)
from portfolios.services.reconciliation import RESOLUTION_MAX, reconciliation_break_resolve
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES
from rebalance_app.roles import user_roles

if TYPE_CHECKING:
    from rest_framework.request import Request

NO_ROLE = "Your account has no role: ask an administrator for one."
MAX_LIMIT = 500


class HasRole(BasePermission):
    """Any of the four roles; a logged-in user without one is refused."""

    message = NO_ROLE

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.is_superuser or user_roles(user)))


class ReconciliationBreakSerializer(serializers.ModelSerializer):
    account_number = serializers.CharField(source="account.account_number", read_only=True)
    ticker = serializers.SerializerMethodField(help_text="The security's ticker, or CASH.")
    resolved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    is_open = serializers.SerializerMethodField()

    class Meta:
        model = ReconciliationBreak
        fields = [
            "id",
            "reconciliation",
            "account",
            "account_number",
            "security",
            "ticker",
            "custodian_quantity",
            "book_quantity",
            "difference",
            "is_open",
            "resolved_at",
            "resolved_by",
            "resolution",
        ]
        read_only_fields = fields

    def get_ticker(self, obj: ReconciliationBreak) -> str:
        return obj.security.ticker if obj.security_id else "CASH"

    def get_is_open(self, obj: ReconciliationBreak) -> bool:
        return obj.resolved_at is None


class ReconciliationSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    file_name = serializers.CharField(source="import_batch.file_name", read_only=True)
    visible_breaks = serializers.IntegerField(
        read_only=True, help_text="Breaks on the accounts you may see."
    )
    open_breaks = serializers.IntegerField(
        read_only=True, help_text="Of those, the ones not resolved yet."
    )

    class Meta:
        model = Reconciliation
        fields = [
            "id",
            "import_batch",
            "file_name",
            "as_of",
            "created_by",
            "created_at",
            "accounts_compared",
            "positions_compared",
            "break_count",
            "visible_breaks",
            "open_breaks",
        ]
        read_only_fields = fields


class ReconciliationDetailSerializer(ReconciliationSerializer):
    breaks = ReconciliationBreakSerializer(many=True, read_only=True, source="visible_break_list")

    class Meta(ReconciliationSerializer.Meta):
        fields = [*ReconciliationSerializer.Meta.fields, "breaks"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        summary="Reconciliations newest first (a PM: those with breaks on their accounts)"
    ),
    retrieve=extend_schema(
        summary="One reconciliation with its breaks on the accounts visible to you",
        responses=ReconciliationDetailSerializer,
    ),
)
class ReconciliationViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [HasRole]
    queryset = Reconciliation.objects.none()
    serializer_class = ReconciliationSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Reconciliation]:
        qs = reconciliation_list(user=self.request.user)
        if self.action == "retrieve":
            breaks = reconciliation_breaks_visible(user=self.request.user).select_related(
                "account", "security", "resolved_by"
            )
            qs = qs.prefetch_related(
                Prefetch(
                    "breaks",
                    queryset=breaks.order_by("account__account_number", "security__ticker", "pk"),
                    to_attr="visible_break_list",
                )
            )
        return qs

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return ReconciliationDetailSerializer
        return ReconciliationSerializer


class BreakFilterSerializer(serializers.Serializer):
    open = serializers.BooleanField(required=False, allow_null=True, default=None)
    account = serializers.IntegerField(required=False, min_value=1)
    reconciliation = serializers.IntegerField(required=False, min_value=1)


class BreakResolveSerializer(serializers.Serializer):
    resolution = serializers.CharField(
        max_length=RESOLUTION_MAX, help_text="How the difference was resolved."
    )


@extend_schema_view(
    list=extend_schema(
        summary="Reconciliation breaks on the accounts visible to you",
        parameters=[
            OpenApiParameter("open", OpenApiTypes.BOOL, description="Only open (or resolved)."),
            OpenApiParameter("account", OpenApiTypes.INT, description="Account id."),
            OpenApiParameter("reconciliation", OpenApiTypes.INT, description="Reconciliation."),
        ],
    ),
    retrieve=extend_schema(summary="One reconciliation break"),
)
class ReconciliationBreakViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [HasRole]
    queryset = ReconciliationBreak.objects.none()
    serializer_class = ReconciliationBreakSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[ReconciliationBreak]:
        user = self.request.user
        if self.action != "list":
            return reconciliation_breaks_visible(user=user).select_related(
                "account", "security", "resolved_by"
            )
        parsed = BreakFilterSerializer(data=self.request.query_params)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        if data.get("open") is True:
            qs = reconciliation_breaks_open(user=user)
        else:
            qs = reconciliation_breaks_visible(user=user).order_by(
                "account__account_number", "security__ticker", "pk"
            )
            if data.get("open") is False:
                qs = qs.filter(resolved_at__isnull=False)
        if data.get("account"):
            qs = qs.filter(account_id=data["account"])
        if data.get("reconciliation"):
            qs = qs.filter(reconciliation_id=data["reconciliation"])
        return qs.select_related("account", "security", "resolved_by")

    @extend_schema(
        summary="Resolve an open break with a written resolution (Ops, Compliance, Admin)",
        request=BreakResolveSerializer,
        responses=ReconciliationBreakSerializer,
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        parsed = BreakResolveSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        brk = reconciliation_break_get(user=request.user, pk=pk)
        brk = reconciliation_break_resolve(
            brk=brk, actor=request.user, resolution=parsed.validated_data["resolution"]
        )
        return Response(ReconciliationBreakSerializer(brk).data)


class DataQualityCheckSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    count = serializers.IntegerField()
    more = serializers.IntegerField(help_text="Problems left out of ``items``.")
    items = serializers.ListField(
        child=serializers.DictField(), help_text="The first problems (up to ``limit``)."
    )


class DataQualityReportSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    stale_cutoff = serializers.DateField(help_text="Prices dated before this day are stale.")
    stale_days = serializers.IntegerField(help_text="STALE_PRICE_TRADING_DAYS (XNYS sessions).")
    limit = serializers.IntegerField()
    problems = serializers.IntegerField()
    clean = serializers.BooleanField()
    checks = DataQualityCheckSerializer(many=True)


class DataQualityView(APIView):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [HasRole]

    @extend_schema(
        summary="The data-quality report over the accounts visible to you",
        parameters=[
            OpenApiParameter(
                "limit",
                OpenApiTypes.INT,
                description=f"Items per check (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).",
            )
        ],
        responses=DataQualityReportSerializer,
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "")
        limit = min(int(raw), MAX_LIMIT) if raw.isdigit() else DEFAULT_LIMIT
        report = data_quality_report(user=request.user, limit=limit)
        return Response(DataQualityReportSerializer(report).data)
