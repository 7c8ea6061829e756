"""Risk model API (read only): the versions of the factor risk model ``Sigma = B F B' + D``.

- ``GET /api/v1/risk-models/``: every version, newest first, without the arrays;
- ``GET /api/v1/risk-models/{id}/`` and ``GET /api/v1/risk-models/current/``: one version with
  its arrays, raw (``security_ids``, ``exposures``, ``specific_var``, ``factor_cov``) and keyed
  by ticker for reading (``by_ticker``).

Risk models are firm reference data: any role may read them (``view_riskmodel``); a logged-in
user without a role is refused (403). Builds happen in ``portfolios.services.risk`` (after
price imports, daily, ``manage.py risk_model``), never through the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from portfolios.models import RiskModel
from portfolios.selectors.risk import (
    RISK_MODEL_NOT_FOUND,
    risk_model_current,
    risk_model_get,
    risk_model_list,
    risk_model_tickers,
)
from rebalance_app.exceptions import NotFound
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES, ModelViewPermission

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

NO_CURRENT_MODEL = "No risk model has been built yet: import prices or run manage.py risk_model."
# Heavy arrays left out of the list.
LIST_DEFERRED = ("exposures", "factor_cov", "specific_var", "diagnostics")


class RiskModelSummarySerializer(serializers.ModelSerializer):
    securities = serializers.SerializerMethodField(help_text="Securities (rows) in the model.")
    fallback_count = serializers.SerializerMethodField(
        help_text="Rows that are fallbacks (too little history)."
    )

    class Meta:
        model = RiskModel
        fields = [
            "id",
            "version",
            "as_of",
            "is_current",
            "method",
            "window",
            "min_observations",
            "factors",
            "securities",
            "fallback_count",
            "created_at",
        ]
        read_only_fields = fields

    def get_securities(self, obj: RiskModel) -> int:
        return len(obj.security_ids)

    def get_fallback_count(self, obj: RiskModel) -> int:
        return len(obj.fallbacks or {})


class RiskModelDetailSerializer(RiskModelSummarySerializer):
    """One version with its arrays. ``by_ticker`` repeats each row for reading: exposures by
    factor, specific variance, and the fallback reason (null for a regressed row)."""

    by_ticker = serializers.SerializerMethodField()

    class Meta(RiskModelSummarySerializer.Meta):
        fields = [
            *RiskModelSummarySerializer.Meta.fields,
            "factor_cov",
            "security_ids",
            "exposures",
            "specific_var",
            "fallbacks",
            "diagnostics",
            "by_ticker",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_by_ticker(self, obj: RiskModel) -> dict[str, Any]:
        tickers: dict[int, str] = self.context.get("tickers") or risk_model_tickers(model=obj)
        fallbacks = obj.fallbacks or {}
        rows: dict[str, Any] = {}
        for sid, exposures, specific in zip(
            obj.security_ids, obj.exposures, obj.specific_var, strict=True
        ):
            rows[tickers.get(int(sid), str(sid))] = {
                "security": int(sid),
                "exposures": dict(zip(obj.factors, exposures, strict=True)),
                "specific_var": specific,
                "fallback": fallbacks.get(str(sid)),
            }
        return rows


@extend_schema_view(
    list=extend_schema(summary="Risk model versions, newest first (without the arrays)"),
    retrieve=extend_schema(summary="One risk model version with its arrays"),
)
class RiskModelViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ModelViewPermission]
    queryset = RiskModel.objects.none()  # the model for the schema; rows from the selector
    serializer_class = RiskModelSummarySerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[RiskModel]:
        qs: QuerySet[RiskModel] = risk_model_list()  # type: ignore[assignment]
        if self.action == "list":
            qs = qs.defer(*LIST_DEFERRED)
        return qs

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "list":
            return RiskModelSummarySerializer
        return RiskModelDetailSerializer

    def _detail(self, model: RiskModel) -> Response:
        context = {**self.get_serializer_context(), "tickers": risk_model_tickers(model=model)}
        return Response(RiskModelDetailSerializer(model, context=context).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        if not (pk or "").isdigit():
            raise NotFound(RISK_MODEL_NOT_FOUND.format(id=pk))
        return self._detail(risk_model_get(pk=int(pk or 0)))

    @extend_schema(summary="The current risk model (the one the optimizer uses)")
    @action(detail=False, methods=["get"], pagination_class=None)
    def current(self, request: Request) -> Response:
        model = risk_model_current()
        if model is None:
            raise NotFound(NO_CURRENT_MODEL)
        return self._detail(model)
