"""Rebalance API: propose (one account or many), follow, review, edit, replay, make a basket.

- ``POST /api/v1/rebalance-runs/`` with ``{"account": id, "mode": ..., "parameters": {...}}``
  enqueues one run (202, with where to follow it); with ``{"accounts": [ids], ...}`` or
  ``{"model": id, "breached_only": true, ...}`` it enqueues a batch, one Celery task per
  account (202, with the batch's progress URL).
- ``GET /api/v1/rebalance-runs/`` (filters ``account``, ``batch``, ``status``, ``mode``,
  ``trigger``) and ``GET /api/v1/rebalance-runs/{id}/`` (trades with reasons and lots,
  metrics before and after, objective terms, diagnostics, the input hash).
- ``POST /api/v1/rebalance-runs/{id}/edit-trade/`` ``{"security": id, "quantity": q}`` (0
  removes it); ``POST .../replay/`` re-solves the stored inputs; ``POST .../basket/`` makes
  a draft basket from the run (``POST /api/v1/rebalance-runs/basket/`` with ``{"runs": [...]}``
  for several).
- ``GET /api/v1/rebalance-batches/{id}/`` progress counts and skipped accounts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from orders.services import basket_create_from_runs
from portfolios.models import RebalanceBatch, RebalanceMode, RebalanceRun
from portfolios.selectors.rebalance import (
    rebalance_batch_get,
    rebalance_batch_progress,
    rebalance_batches_visible_to,
    rebalance_run_get,
    rebalance_run_list,
)
from portfolios.services.rebalance import (
    rebalance_batch_request,
    rebalance_run_replay,
    rebalance_run_request,
    rebalance_run_trade_edit,
)
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES

if TYPE_CHECKING:
    from rest_framework.request import Request

MAX_ACCOUNTS_PER_REQUEST = 20_000


class RebalanceRunListSerializer(serializers.ModelSerializer):
    account_number = serializers.CharField(source="account.account_number", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = RebalanceRun
        fields = [
            "id",
            "account",
            "account_number",
            "batch",
            "mode",
            "status",
            "trigger",
            "created_by",
            "created_at",
            "finished_at",
            "solver",
            "solve_ms",
            "input_hash",
            "replay_of",
            "error",
        ]
        read_only_fields = fields


class RebalanceRunSerializer(RebalanceRunListSerializer):
    trades = serializers.JSONField(read_only=True, help_text="Proposed trades (after edits).")
    metrics = serializers.SerializerMethodField()

    class Meta(RebalanceRunListSerializer.Meta):
        fields = [
            *RebalanceRunListSerializer.Meta.fields,
            "parameters",
            "model_version",
            "risk_model",
            "objective_before",
            "objective_after",
            "trades",
            "edits",
            "metrics",
            "diagnostics",
            "timings_ms",
            "error_detail",
        ]
        read_only_fields = fields

    def get_metrics(self, run: RebalanceRun) -> dict[str, Any]:
        return dict(run.diagnostics.get("metrics", {}))


class RebalanceRequestSerializer(serializers.Serializer):
    account = serializers.IntegerField(required=False, help_text="One account.")
    accounts = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        allow_empty=False,
        max_length=MAX_ACCOUNTS_PER_REQUEST,
        help_text="Several accounts: one run each, fanned out.",
    )
    model = serializers.IntegerField(
        required=False, help_text="Every account of this model portfolio (see breached_only)."
    )
    breached_only = serializers.BooleanField(default=True)
    mode = serializers.ChoiceField(choices=RebalanceMode.choices)
    parameters = serializers.DictField(
        required=False,
        default=dict,
        help_text="cash_amount (cash_raise), tolerance_to_target (tolerance), "
        "tlh_loss_threshold (tlh), turnover_limit, tracking_weight, drift_weight, "
        "esg_sell_out, sector_max.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        chosen = [k for k in ("account", "accounts", "model") if attrs.get(k) is not None]
        if len(chosen) != 1:
            raise serializers.ValidationError("Give exactly one of account, accounts or model.")
        return attrs


class RunAcceptedSerializer(serializers.Serializer):
    run = serializers.IntegerField(required=False)
    batch = serializers.IntegerField(required=False)
    runs_total = serializers.IntegerField(required=False)
    skipped = serializers.ListField(child=serializers.DictField(), required=False)
    status_url = serializers.CharField()


class TradeEditSerializer(serializers.Serializer):
    security = serializers.IntegerField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6, min_value=0)
    note = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")


class BasketRequestSerializer(serializers.Serializer):
    runs = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class BasketCreatedSerializer(serializers.Serializer):
    basket = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.CharField()
    orders = serializers.IntegerField()


def _basket_body(basket: Any) -> dict[str, Any]:
    return {
        "basket": basket.pk,
        "name": basket.name,
        "state": basket.state,
        "orders": basket.orders.count(),
    }


RUN_FILTERS = [
    OpenApiParameter("account", OpenApiTypes.INT, description="Account id."),
    OpenApiParameter("batch", OpenApiTypes.INT, description="Batch id."),
    OpenApiParameter("status", OpenApiTypes.STR, description="queued, running, succeeded, ..."),
    OpenApiParameter("mode", OpenApiTypes.STR, description="full, tolerance, ..."),
    OpenApiParameter("trigger", OpenApiTypes.STR, description="manual, auto or replay."),
]


@extend_schema_view(
    list=extend_schema(
        summary="Rebalance runs of the accounts visible to you", parameters=RUN_FILTERS
    ),
    retrieve=extend_schema(
        summary="One run: trades with reasons and lots, metrics and objective terms before and "
        "after, diagnostics, the input hash"
    ),
    create=extend_schema(
        summary="Propose a rebalance of one account, a list, or every breached account of a model",
        request=RebalanceRequestSerializer,
        responses={202: RunAcceptedSerializer},
    ),
)
class RebalanceRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = RebalanceRun.objects.none()
    serializer_class = RebalanceRunListSerializer

    def get_queryset(self) -> QuerySet[RebalanceRun]:
        filters = {
            k: self.request.query_params.get(k)
            for k in ("account", "batch", "status", "mode", "trigger")
        }
        return rebalance_run_list(user=self.request.user, filters=filters)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(RebalanceRunSerializer(rebalance_run_get(user=request.user, pk=pk)).data)

    def _run_accepted(self, request: Request, run: RebalanceRun) -> Response:
        url = request.build_absolute_uri(reverse("api-rebalance-run-detail", args=[run.pk]))
        return Response(
            {"run": run.pk, "status_url": url},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": url},
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        parsed = RebalanceRequestSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        if data.get("account") is not None:
            run = rebalance_run_request(
                actor=request.user,
                account_id=data["account"],
                mode=data["mode"],
                parameters=data.get("parameters"),
            )
            return self._run_accepted(request, run)
        batch = rebalance_batch_request(
            actor=request.user,
            mode=data["mode"],
            parameters=data.get("parameters"),
            account_ids=data.get("accounts"),
            model_id=data.get("model"),
            breached_only=data["breached_only"],
        )
        url = request.build_absolute_uri(reverse("api-rebalance-batch-detail", args=[batch.pk]))
        body = {
            "batch": batch.pk,
            "runs_total": batch.runs_total,
            "skipped": batch.skipped,
            "status_url": url,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})

    @extend_schema(
        summary="Change one trade's quantity (0 removes it); metrics are recomputed",
        request=TradeEditSerializer,
        responses=RebalanceRunSerializer,
    )
    @action(detail=True, methods=["post"], url_path="edit-trade")
    def edit_trade(self, request: Request, pk: str | None = None) -> Response:
        parsed = TradeEditSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        run = rebalance_run_trade_edit(
            actor=request.user,
            run_id=pk,
            security_id=parsed.validated_data["security"],
            quantity=parsed.validated_data["quantity"],
            note=parsed.validated_data["note"],
        )
        return Response(RebalanceRunSerializer(run).data)

    @extend_schema(
        summary="Re-run the stored inputs of this run; the new run says whether its trades match",
        request=None,
        responses={202: RunAcceptedSerializer},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        return self._run_accepted(request, rebalance_run_replay(actor=request.user, run_id=pk))

    @extend_schema(
        operation_id="rebalance_runs_basket_create",
        summary="Make a draft trade basket from this run's trades",
        request=None,
        responses={201: BasketCreatedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="basket")
    def basket(self, request: Request, pk: str | None = None) -> Response:
        basket = basket_create_from_runs(actor=request.user, run_ids=[pk])
        return Response(_basket_body(basket), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="rebalance_runs_basket_many_create",
        summary="Make one draft trade basket from several runs",
        request=BasketRequestSerializer,
        responses={201: BasketCreatedSerializer},
    )
    @action(detail=False, methods=["post"], url_path="basket")
    def basket_many(self, request: Request) -> Response:
        parsed = BasketRequestSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_create_from_runs(
            actor=request.user,
            run_ids=parsed.validated_data["runs"],
            name=parsed.validated_data["name"],
        )
        return Response(_basket_body(basket), status=status.HTTP_201_CREATED)


class RebalanceBatchSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    progress = serializers.SerializerMethodField()

    class Meta:
        model = RebalanceBatch
        fields = [
            "id",
            "mode",
            "parameters",
            "selection",
            "runs_total",
            "skipped",
            "created_by",
            "created_at",
            "finished_at",
            "progress",
        ]
        read_only_fields = fields

    def get_progress(self, batch: RebalanceBatch) -> dict[str, Any]:
        return rebalance_batch_progress(batch=batch)


@extend_schema_view(
    list=extend_schema(summary="Rebalance batches you may see"),
    retrieve=extend_schema(summary="A batch's progress (runs by status) and skipped accounts"),
)
class RebalanceBatchViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = RebalanceBatch.objects.none()
    serializer_class = RebalanceBatchSerializer

    def get_queryset(self) -> QuerySet[RebalanceBatch]:
        return rebalance_batches_visible_to(self.request.user).select_related("created_by")

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(
            RebalanceBatchSerializer(rebalance_batch_get(user=request.user, pk=pk)).data
        )
