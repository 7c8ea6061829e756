"""Drift API: snapshots of the accounts you may see, and drift scans (request one, follow it).

- ``GET /api/v1/drift-snapshots/`` (filters ``account``, ``date_from``, ``date_to``,
  ``breached``, ``is_latest``) and ``GET /api/v1/drift-snapshots/{id}/`` (with its
  per-security rows when they are kept: the latest scan and breached snapshots).
- ``POST /api/v1/drift-scans/`` with ``{"account_ids": [...]}`` (accounts you may see) or
  ``{}`` (the whole firm: Ops, Compliance and Admin only) answers 202 with the scan id, its
  task id and where to follow it; ``GET /api/v1/drift-scans/{id}/`` reports status, progress
  counters and why accounts could not be scanned.

Thin by design: the selectors decide visibility (an invisible snapshot or scan is 404) and
``portfolios.services.drift`` decides who may scan what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from portfolios.models import DriftPosition, DriftScan, DriftSnapshot, ScanTrigger
from portfolios.selectors.drift import drift_scan_get, drift_snapshot_list
from portfolios.services.drift import drift_scan_request
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES

if TYPE_CHECKING:
    from rest_framework.request import Request

MAX_ACCOUNTS_PER_REQUEST = 10_000


class DriftPositionSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="security.ticker", read_only=True, allow_null=True)

    class Meta:
        model = DriftPosition
        fields = [
            "security",
            "ticker",
            "weight",
            "target",
            "drift",
            "abs_band",
            "rel_band",
            "breached",
            "in_model",
        ]
        read_only_fields = fields


class DriftSnapshotRecordSerializer(serializers.ModelSerializer):
    """One account's drift metrics from one scan (null metrics when it was not scannable)."""

    account_number = serializers.CharField(source="account.account_number", read_only=True)

    class Meta:
        model = DriftSnapshot
        fields = [
            "id",
            "account",
            "account_number",
            "scan",
            "scanned_at",
            "is_latest",
            "model_version",
            "total_value",
            "total_drift",
            "max_drift",
            "cash_drift",
            "breach_count",
            "breached",
            "not_in_model_count",
            "model_not_held_count",
            "scannable",
            "unscannable_reason",
        ]
        read_only_fields = fields


class DriftSnapshotDetailSerializer(DriftSnapshotRecordSerializer):
    positions = DriftPositionSerializer(many=True, read_only=True)

    class Meta(DriftSnapshotRecordSerializer.Meta):
        fields = [*DriftSnapshotRecordSerializer.Meta.fields, "positions"]
        read_only_fields = fields


class DriftSnapshotFilterSerializer(serializers.Serializer):
    account = serializers.IntegerField(required=False, min_value=1)
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    breached = serializers.BooleanField(required=False, allow_null=True, default=None)
    is_latest = serializers.BooleanField(required=False, allow_null=True, default=None)


SNAPSHOT_FILTERS = [
    OpenApiParameter("account", OpenApiTypes.INT, description="Account id."),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="Scanned on or after."),
    OpenApiParameter("date_to", OpenApiTypes.DATE, description="Scanned on or before."),
    OpenApiParameter("breached", OpenApiTypes.BOOL, description="Outside its bands."),
    OpenApiParameter("is_latest", OpenApiTypes.BOOL, description="The account's latest."),
]


@extend_schema_view(
    list=extend_schema(
        summary="Drift snapshots of the accounts visible to you, newest first",
        parameters=SNAPSHOT_FILTERS,
    ),
    retrieve=extend_schema(
        summary="One drift snapshot with its per-security rows (kept for the latest scan and "
        "for breached snapshots)",
        responses=DriftSnapshotDetailSerializer,
    ),
)
class DriftSnapshotViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = DriftSnapshot.objects.none()  # the model for the schema; rows from the selector
    serializer_class = DriftSnapshotRecordSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[DriftSnapshot]:
        filters: dict[str, Any] = {}
        if self.action == "list":
            parsed = DriftSnapshotFilterSerializer(data=self.request.query_params)
            parsed.is_valid(raise_exception=True)
            filters = {k: v for k, v in parsed.validated_data.items() if v is not None}
        qs = drift_snapshot_list(user=self.request.user, filters=filters)
        if self.action == "retrieve":
            qs = qs.prefetch_related(
                Prefetch("positions", queryset=DriftPosition.objects.select_related("security"))
            )
        return qs

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return DriftSnapshotDetailSerializer
        return DriftSnapshotRecordSerializer


class DriftScanRequestSerializer(serializers.Serializer):
    account_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=MAX_ACCOUNTS_PER_REQUEST,
        help_text="Accounts to scan; leave out to scan the whole firm (Ops, Compliance, Admin).",
    )


class DriftScanAcceptedSerializer(serializers.Serializer):
    scan = serializers.IntegerField()
    task_id = serializers.CharField(allow_blank=True)
    status_url = serializers.CharField()


class DriftScanSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    unscannable = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Account id -> reason."
    )

    class Meta:
        model = DriftScan
        fields = [
            "id",
            "trigger",
            "status",
            "account_ids",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "task_id",
            "chunks_total",
            "chunks_done",
            "accounts_total",
            "accounts_scanned",
            "accounts_breached",
            "accounts_unscannable",
            "alerts_raised",
            "alerts_cleared",
            "unscannable",
            "error",
        ]
        read_only_fields = fields


@extend_schema_view(
    create=extend_schema(
        summary="Request a drift scan of some accounts, or of the whole firm",
        request=DriftScanRequestSerializer,
        responses={202: DriftScanAcceptedSerializer},
    ),
    retrieve=extend_schema(summary="A drift scan's status, progress and unscannable accounts"),
)
class DriftScanViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = DriftScan.objects.none()
    serializer_class = DriftScanSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        parsed = DriftScanRequestSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        scan = drift_scan_request(
            actor=request.user,
            account_ids=parsed.validated_data.get("account_ids"),
            trigger=ScanTrigger.MANUAL,
        )
        url = request.build_absolute_uri(reverse("api-drift-scan-detail", args=[scan.pk]))
        body = {"scan": scan.pk, "task_id": scan.task_id, "status_url": url}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(DriftScanSerializer(drift_scan_get(user=request.user, pk=pk)).data)
