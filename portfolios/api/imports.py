"""Imports API: submit a file, follow its batch, read the history.

- ``POST /api/v1/imports/`` (multipart: ``file``, ``kind``, ``dry_run``, ``force``). A small
  file is processed at once: 201 with the finished batch. A file of more than
  ``IMPORT_ASYNC_ROWS`` rows goes to a worker: 202 with the queued batch and a ``Location`` to
  poll. A refused file answers 400 ``{"message": ..., "extra": {"errors": [{"line",
  "column", "message"}, ...], "batch": id}}``; the failed batch stays in the history.
- ``GET /api/v1/imports/`` (filters ``kind``, ``status``, ``dry_run``): the history, newest
  first. ``GET /api/v1/imports/{id}/``: status, progress, errors and summary.

Who may: Ops and Admin import every kind but restrictions, Compliance and Admin import
restrictions (``portfolios.services.imports.import_roles``); batches are read by Ops,
Compliance and Admin. A PM (or a user with no role) gets 403 on all of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from portfolios.models import ImportBatch, ImportKind
from portfolios.selectors.reconciliation import import_batch_get, import_batch_list
from portfolios.services.imports import import_submit
from rebalance_app.exceptions import ImportRejected
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES
from rebalance_app.work import WorkStatus

if TYPE_CHECKING:
    from rest_framework.request import Request

BATCH_FIELDS = [
    "id",
    "kind",
    "file_name",
    "sha256",
    "size_bytes",
    "created_by",
    "created_at",
    "dry_run",
    "forced",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "rows_total",
    "rows_processed",
    "rows_accepted",
    "duration_ms",
    "error",
]


class ImportBatchSerializer(serializers.ModelSerializer):
    """One batch in the history (without its errors and summary)."""

    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ImportBatch
        fields = BATCH_FIELDS
        read_only_fields = fields


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line of the file (the header is line 1).")
    column = serializers.CharField(allow_blank=True, help_text="Empty for a whole-row error.")
    message = serializers.CharField()


class ImportBatchDetailSerializer(ImportBatchSerializer):
    """One batch with its progress, every error (line, column, message) and its summary."""

    progress = serializers.SerializerMethodField()
    errors = ImportErrorSerializer(many=True, read_only=True)
    summary = serializers.DictField(read_only=True, help_text="What was written: counts, ids.")

    class Meta(ImportBatchSerializer.Meta):
        fields = [*BATCH_FIELDS, "progress", "task_id", "errors", "summary", "error_detail"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_progress(self, batch: ImportBatch) -> float:
        """Share of the rows written so far, 0 to 1 (1 once the batch has succeeded)."""
        if batch.status == WorkStatus.SUCCEEDED:
            return 1.0
        if not batch.rows_total:
            return 0.0
        return min(batch.rows_processed / batch.rows_total, 1.0)


class ImportSubmitSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV (UTF-8, with or without BOM) or XLSX.")
    # The model's choices (one enum in the schema); the service refuses "demo".
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    dry_run = serializers.BooleanField(default=False, help_text="Validate only; write nothing.")
    force = serializers.BooleanField(
        default=False, help_text="Import even if the same file of this kind was imported before."
    )


ImportRefusedSerializer = inline_serializer(
    "ImportRefused",
    {
        "message": serializers.CharField(),
        "extra": inline_serializer(
            "ImportRefusedExtra",
            {
                "errors": ImportErrorSerializer(many=True),
                "batch": serializers.IntegerField(required=False),
            },
        ),
    },
)


@extend_schema_view(
    list=extend_schema(summary="Import batches, newest first (Ops, Compliance, Admin)"),
    retrieve=extend_schema(summary="An import batch: status, progress, errors and summary"),
    create=extend_schema(
        summary="Import a file (multipart): processed at once, or by a worker when large",
        request={"multipart/form-data": ImportSubmitSerializer},
        responses={
            201: OpenApiResponse(ImportBatchDetailSerializer, description="Imported."),
            202: OpenApiResponse(ImportBatchDetailSerializer, description="Queued."),
            400: OpenApiResponse(ImportRefusedSerializer, description="Refused."),
        },
    ),
)
class ImportBatchViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = ImportBatch.objects.none()  # the model for the schema; rows from the selector
    serializer_class = ImportBatchSerializer
    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["kind", "status", "dry_run"]
    ordering_fields = ["created_at", "id"]
    search_fields: list[str] = []

    def get_queryset(self) -> QuerySet[ImportBatch]:
        if getattr(self, "swagger_fake_view", False):
            return ImportBatch.objects.none()
        return import_batch_list(user=self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return ImportBatchDetailSerializer
        if self.action == "create":
            return ImportSubmitSerializer
        return ImportBatchSerializer

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        batch = import_batch_get(user=request.user, pk=pk)
        return Response(ImportBatchDetailSerializer(batch).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        parsed = ImportSubmitSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        upload = parsed.validated_data["file"]
        batch = import_submit(
            actor=request.user,
            kind=parsed.validated_data["kind"],
            file_name=upload.name,
            data=upload.read(),
            dry_run=parsed.validated_data["dry_run"],
            force=parsed.validated_data["force"],
        )
        if batch.status == WorkStatus.FAILED:
            raise ImportRejected(batch.error, extra={"errors": batch.errors, "batch": batch.pk})
        url = request.build_absolute_uri(reverse("api-import-detail", args=[batch.pk]))
        code = status.HTTP_201_CREATED
        if batch.status in (WorkStatus.QUEUED, WorkStatus.RUNNING):
            code = status.HTTP_202_ACCEPTED
        return Response(
            ImportBatchDetailSerializer(batch).data, status=code, headers={"Location": url}
        )
