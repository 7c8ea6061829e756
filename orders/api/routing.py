"""The routing and execution API (DESIGN 9, 10): routing jobs (route several approved baskets,
resume, the custodian trade file and its confirmations), routes (cancel at the broker),
executions and the FIX message log.

Thin: parse, call one selector or service, serialize. Jobs and routes come from the
visibility selectors (another team's answers 404); the firm-wide executions and FIX log are
for Operations, Compliance and Admin (403 for others). POSTs honour ``Idempotency-Key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from orders.models import (
    BlockAllocation,
    BlockOrder,
    Destination,
    Execution,
    FixMessage,
    Route,
    RoutingJob,
    TradeFile,
)
from orders.selectors_routing import (
    execution_list,
    fix_message_list,
    routes_visible_to,
    routing_job_get,
    routing_jobs_visible_to,
)
from orders.services_routing import (
    block_allocate_retry,
    route_cancel_request,
    routing_request,
    routing_resume,
    trade_confirmations_import,
    trade_file_mark_sent,
)
from orders.views_routing import trade_file_response
from rebalance_app.exceptions import NotFound, ValidationFailed
from rebalance_app.idempotency import idempotent
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES

if TYPE_CHECKING:
    from rest_framework.request import Request

MSG_NO_FILE = "Upload the confirmation CSV as the multipart field 'file'."
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description="A unique key per request: a retry with the same key replays the first answer.",
)


class ExecutionSerializer(serializers.ModelSerializer):
    cl_ord_id = serializers.CharField(source="route.cl_ord_id", read_only=True)
    ticker = serializers.CharField(source="route.block.security.ticker", read_only=True)
    side = serializers.CharField(source="route.block.side", read_only=True)
    block = serializers.IntegerField(source="route.block_id", read_only=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "route",
            "block",
            "cl_ord_id",
            "ticker",
            "side",
            "exec_id",
            "quantity",
            "price",
            "executed_at",
        ]
        read_only_fields = fields


class RouteSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="block.security.ticker", read_only=True)
    side = serializers.CharField(source="block.side", read_only=True)
    quantity = serializers.DecimalField(
        source="block.quantity", max_digits=20, decimal_places=6, read_only=True
    )

    class Meta:
        model = Route
        fields = [
            "id",
            "block",
            "destination",
            "cl_ord_id",
            "ticker",
            "side",
            "quantity",
            "state",
            "order_id",
            "cum_qty",
            "avg_px",
            "text",
            "sent_at",
            "sent_by",
            "updated_at",
        ]
        read_only_fields = fields


class AllocationSerializer(serializers.ModelSerializer):
    account = serializers.IntegerField(source="order.account_id", read_only=True)
    account_number = serializers.CharField(source="order.account.account_number", read_only=True)
    basket = serializers.IntegerField(source="order.basket_id", read_only=True)

    class Meta:
        model = BlockAllocation
        fields = [
            "order",
            "basket",
            "account",
            "account_number",
            "quantity",
            "filled_quantity",
            "price",
        ]
        read_only_fields = fields


class BlockSerializer(serializers.ModelSerializer):
    ticker = serializers.CharField(source="security.ticker", read_only=True)
    routes = RouteSerializer(many=True, read_only=True)
    allocations = AllocationSerializer(many=True, read_only=True)

    class Meta:
        model = BlockOrder
        fields = [
            "id",
            "ticker",
            "side",
            "quantity",
            "filled_quantity",
            "avg_price",
            "allocation_statement",
            "allocated_at",
            "allocation_error",
            "routes",
            "allocations",
        ]
        read_only_fields = fields


class TradeFileSerializer(serializers.ModelSerializer):
    sent_by = serializers.CharField(source="sent_by.username", default=None, read_only=True)

    class Meta:
        model = TradeFile
        fields = ["id", "filename", "sha256", "rows", "created_at", "sent_at", "sent_by"]
        read_only_fields = fields


class RoutingJobSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    baskets = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = RoutingJob
        fields = [
            "id",
            "baskets",
            "destination",
            "status",
            "requested_by",
            "attempts",
            "error",
            "result",
            "queued_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RoutingJobDetailSerializer(RoutingJobSerializer):
    blocks = serializers.SerializerMethodField()
    trade_file = serializers.SerializerMethodField()

    class Meta(RoutingJobSerializer.Meta):
        fields = [*RoutingJobSerializer.Meta.fields, "blocks", "trade_file"]
        read_only_fields = fields

    def get_blocks(self, job: RoutingJob) -> list[dict[str, Any]]:
        blocks = (
            job.blocks.select_related("security")
            .prefetch_related("routes", "allocations__order__account")
            .order_by("security__ticker", "side")
        )
        return list(BlockSerializer(blocks, many=True).data)

    def get_trade_file(self, job: RoutingJob) -> dict[str, Any] | None:
        tf = TradeFile.objects.filter(job=job).select_related("sent_by").first()
        return dict(TradeFileSerializer(tf).data) if tf else None


class RouteRequestSerializer(serializers.Serializer):
    destination = serializers.ChoiceField(choices=Destination.choices, default=Destination.FIX)


class RoutingJobCreateSerializer(RouteRequestSerializer):
    baskets = serializers.ListField(child=serializers.IntegerField(), min_length=1)


class FixMessageSerializer(serializers.ModelSerializer):
    session = serializers.CharField(source="session.name", read_only=True)

    class Meta:
        model = FixMessage
        fields = [
            "id",
            "session",
            "direction",
            "seq_num",
            "msg_type",
            "cl_ord_id",
            "route",
            "poss_dup",
            "raw",
            "fields",
            "text",
            "created_at",
        ]
        read_only_fields = fields


def route_basket(request: Request, pk: str | None) -> Response:
    """The body of ``POST /api/v1/baskets/{id}/route/`` (kept here with the rest of routing)."""
    parsed = RouteRequestSerializer(data=request.data)
    parsed.is_valid(raise_exception=True)
    job = routing_request(
        actor=request.user, basket_ids=[pk], destination=parsed.validated_data["destination"]
    )
    return Response(RoutingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Routing jobs of the baskets visible to you"),
    retrieve=extend_schema(
        summary="One routing job with its blocks, allocation statements, routes and trade file",
        responses=RoutingJobDetailSerializer,
    ),
)
class RoutingJobViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = RoutingJob.objects.none()
    serializer_class = RoutingJobSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[RoutingJob]:
        if getattr(self, "swagger_fake_view", False):
            return RoutingJob.objects.none()
        return (
            routing_jobs_visible_to(self.request.user)
            .select_related("requested_by")
            .prefetch_related("baskets")
            .order_by("-pk")
        )

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        job = routing_job_get(user=request.user, pk=pk)
        return Response(RoutingJobDetailSerializer(job).data)

    @extend_schema(
        summary="Route several approved baskets together (Ops): blocks span the baskets",
        request=RoutingJobCreateSerializer,
        responses={202: RoutingJobSerializer},
        parameters=[IDEMPOTENCY],
    )
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        parsed = RoutingJobCreateSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        job = routing_request(
            actor=request.user,
            basket_ids=parsed.validated_data["baskets"],
            destination=parsed.validated_data["destination"],
        )
        return Response(RoutingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Resume a failed routing job (Ops)",
        request=None,
        responses={202: RoutingJobSerializer},
        parameters=[IDEMPOTENCY],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def resume(self, request: Request, pk: str | None = None) -> Response:
        job = routing_resume(actor=request.user, job_id=pk)
        return Response(RoutingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Book a done block whose booking failed, once the account is put right (Ops)",
        request=None,
        responses=BlockSerializer,
        parameters=[IDEMPOTENCY],
    )
    @action(detail=True, methods=["post"], url_path=r"blocks/(?P<block_id>[0-9]+)/allocate")
    @idempotent
    def allocate_block(
        self, request: Request, pk: str | None = None, block_id: str | None = None
    ) -> Response:
        job = routing_job_get(user=request.user, pk=pk)
        if not job.blocks.filter(pk=block_id).exists():
            raise NotFound(f"Block {block_id} not found in routing job {job.pk}.")
        block = block_allocate_retry(actor=request.user, block_id=block_id)
        return Response(BlockSerializer(block).data)

    @extend_schema(
        summary="Download the job's custodian trade file (CSV)",
        responses={(200, "text/csv"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"], url_path="trade-file")
    def trade_file(self, request: Request, pk: str | None = None) -> HttpResponse:
        job = routing_job_get(user=request.user, pk=pk)
        tf = TradeFile.objects.filter(job=job).first()
        if tf is None:
            raise NotFound(f"Routing job {job.pk} has no trade file.")
        return trade_file_response(tf)

    @extend_schema(
        summary="Mark the trade file as sent to the custodian (Ops)",
        request=None,
        responses=TradeFileSerializer,
        parameters=[IDEMPOTENCY],
    )
    @action(detail=True, methods=["post"], url_path="trade-file/sent")
    @idempotent
    def trade_file_sent(self, request: Request, pk: str | None = None) -> Response:
        tf = trade_file_mark_sent(actor=request.user, job_id=pk)
        return Response(TradeFileSerializer(tf).data)

    @extend_schema(
        summary="Load the custodian's execution confirmations (CSV, all-or-nothing; Ops)",
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="confirmations",
        parser_classes=[MultiPartParser, FormParser, JSONParser],
    )
    def confirmations(self, request: Request, pk: str | None = None) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationFailed(MSG_NO_FILE)
        result = trade_confirmations_import(actor=request.user, job_id=pk, content=upload.read())
        return Response(result)


@extend_schema_view(
    list=extend_schema(
        summary="Routes (one block at one destination under one ClOrdID) visible to you",
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR),
            OpenApiParameter("job", OpenApiTypes.INT),
        ],
    ),
    retrieve=extend_schema(summary="One route"),
)
class RouteViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = Route.objects.none()
    serializer_class = RouteSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Route]:
        if getattr(self, "swagger_fake_view", False):
            return Route.objects.none()
        qs = routes_visible_to(self.request.user).select_related("block__security")
        params = self.request.query_params
        if params.get("state"):
            qs = qs.filter(state=params["state"])
        if params.get("job", "").isdigit():
            qs = qs.filter(block__job_id=int(params["job"]))
        return qs.order_by("-pk")

    @extend_schema(
        summary="Ask the broker to cancel the rest of an open FIX order (Ops)",
        request=None,
        responses={202: RouteSerializer},
        parameters=[IDEMPOTENCY],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        route = route_cancel_request(actor=request.user, route_id=pk)
        return Response(RouteSerializer(route).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(
        summary="Every fill, newest first (Ops, Compliance, Admin)",
        parameters=[
            OpenApiParameter("ticker", OpenApiTypes.STR),
            OpenApiParameter("cl_ord_id", OpenApiTypes.STR),
            OpenApiParameter("basket", OpenApiTypes.INT),
            OpenApiParameter("date_from", OpenApiTypes.DATE),
            OpenApiParameter("date_to", OpenApiTypes.DATE),
        ],
    ),
    retrieve=extend_schema(summary="One fill"),
)
class ExecutionViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = Execution.objects.none()
    serializer_class = ExecutionSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Execution]:
        if getattr(self, "swagger_fake_view", False):
            return Execution.objects.none()
        keys = ("ticker", "cl_ord_id", "basket", "date_from", "date_to")
        filters = {k: self.request.query_params.get(k) for k in keys}
        return execution_list(user=self.request.user, filters=filters)


@extend_schema_view(
    list=extend_schema(
        summary="The FIX message log, newest first (Ops, Compliance, Admin)",
        parameters=[
            OpenApiParameter("direction", OpenApiTypes.STR, description="in or out"),
            OpenApiParameter("msg_type", OpenApiTypes.STR, description="D, 8, F, 9, A, ..."),
            OpenApiParameter("cl_ord_id", OpenApiTypes.STR),
            OpenApiParameter("route", OpenApiTypes.INT),
        ],
    ),
    retrieve=extend_schema(summary="One FIX message as sent or received"),
)
class FixMessageViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = FixMessage.objects.none()
    serializer_class = FixMessageSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[FixMessage]:
        if getattr(self, "swagger_fake_view", False):
            return FixMessage.objects.none()
        keys = ("direction", "msg_type", "cl_ord_id", "route")
        filters = {k: self.request.query_params.get(k) for k in keys}
        return fix_message_list(user=self.request.user, filters=filters)
