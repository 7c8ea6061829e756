"""Viewsets of the orders API (DESIGN 10): baskets with their workflow actions, orders,
compliance results with overrides, compliance rules and restrictions.

Thin by design: parse, call one selector or service, serialize. Baskets, orders and results
come only from the visibility selectors, so another team's basket answers 404 like an unknown
id; a wrong role answers 403 and a wrong state 409 with the current state in ``extra``. Every
POST honours the ``Idempotency-Key`` header (``rebalance_app.idempotency``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from compliance.models import ComplianceResult, ComplianceRule, Restriction
from compliance.selectors_rules import compliance_rule_list, restriction_list
from orders.api.routing import RouteRequestSerializer, RoutingJobSerializer, route_basket
from orders.api.serializers import (
    ApproveSerializer,
    BasketCreateSerializer,
    BasketDetailSerializer,
    BasketSerializer,
    CommentSerializer,
    ComplianceResultSerializer,
    ComplianceRuleSerializer,
    OrderAddSerializer,
    OrderSerializer,
    OrderUpdateSerializer,
    OverrideCreateSerializer,
    RejectSerializer,
    RestrictionSerializer,
)
from orders.models import Order, TradeBasket
from orders.selectors import basket_get, basket_history, basket_list, baskets_visible_to
from orders.services import (
    basket_approve,
    basket_cancel,
    basket_create_from_runs,
    basket_order_add,
    basket_order_remove,
    basket_order_update,
    basket_reject,
    basket_submit,
)
from rebalance_app.exceptions import NotFound
from rebalance_app.idempotency import idempotent
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES, ModelViewPermission

if TYPE_CHECKING:
    from rest_framework.request import Request

RESULT_NOT_FOUND = "Compliance result {id} not found."
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description="A unique key per request: a retry with the same key and body replays the "
    "first response; the same key with another body answers 422; a retry while the first is "
    "in flight answers 409.",
)
BASKET_FILTERS = [
    OpenApiParameter("state", OpenApiTypes.STR, description="draft, pending_approval, ..."),
    OpenApiParameter("team", OpenApiTypes.STR, description="A PM team's name."),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="Created on or after."),
    OpenApiParameter("date_to", OpenApiTypes.DATE, description="Created on or before."),
]


def basket_detail(basket: TradeBasket) -> dict[str, Any]:
    """The basket with its orders (and lots), every compliance result and its history."""
    basket.order_count = basket.orders.count()  # type: ignore[attr-defined]
    data = dict(BasketSerializer(basket).data)
    orders = basket.orders.select_related("account", "security").prefetch_related("lots")
    results = (
        ComplianceResult.objects.filter(basket=basket)
        .select_related("rule", "override", "override__overridden_by")
        .order_by("check_run", "pk")
    )
    data["orders"] = OrderSerializer(
        orders.order_by("account_id", "security_id", "pk"), many=True
    ).data
    data["compliance_results"] = ComplianceResultSerializer(results, many=True).data
    from orders.api.serializers import HistoryEventSerializer

    data["history"] = HistoryEventSerializer(basket_history(basket=basket), many=True).data
    return data


def _action_schema(summary: str, request: Any, status_code: int = 200) -> Any:
    return extend_schema(
        summary=summary,
        request=request,
        responses={status_code: BasketDetailSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )


@extend_schema_view(
    list=extend_schema(summary="Baskets visible to you", parameters=BASKET_FILTERS),
    retrieve=extend_schema(
        summary="One basket with orders, lots, compliance results and history",
        responses=BasketDetailSerializer,
    ),
)
class BasketViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = TradeBasket.objects.none()
    serializer_class = BasketSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[TradeBasket]:
        if getattr(self, "swagger_fake_view", False):
            return TradeBasket.objects.none()
        filters = {
            k: self.request.query_params.get(k) for k in ("state", "team", "date_from", "date_to")
        }
        return basket_list(user=self.request.user, filters=filters).prefetch_related("runs")

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(basket_detail(basket_get(user=request.user, pk=pk)))

    @_action_schema(
        "Make a draft basket from succeeded rebalance runs", BasketCreateSerializer, 201
    )
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        parsed = BasketCreateSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_create_from_runs(
            actor=request.user,
            run_ids=parsed.validated_data["runs"],
            name=parsed.validated_data["name"],
        )
        return Response(basket_detail(basket), status=status.HTTP_201_CREATED)

    @_action_schema(
        "Submit a draft: runs pre-trade compliance (hold or pending approval)", CommentSerializer
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def submit(self, request: Request, pk: str | None = None) -> Response:
        parsed = CommentSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_submit(
            actor=request.user, basket_id=pk, comment=parsed.validated_data["comment"]
        )
        return Response(basket_detail(basket))

    @_action_schema(
        "Approve (Ops; never the basket's creator, editor or submitter)", ApproveSerializer
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def approve(self, request: Request, pk: str | None = None) -> Response:
        parsed = ApproveSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_approve(
            actor=request.user,
            basket_id=pk,
            comment=parsed.validated_data["comment"],
            acknowledge_warnings=parsed.validated_data["acknowledge_warnings"],
        )
        return Response(basket_detail(basket))

    @_action_schema("Reject with a comment (Ops)", RejectSerializer)
    @action(detail=True, methods=["post"])
    @idempotent
    def reject(self, request: Request, pk: str | None = None) -> Response:
        parsed = RejectSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_reject(
            actor=request.user, basket_id=pk, comment=parsed.validated_data["comment"]
        )
        return Response(basket_detail(basket))

    @_action_schema("Cancel (the basket's PM team; any state before routed)", CommentSerializer)
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        parsed = CommentSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        basket = basket_cancel(
            actor=request.user, basket_id=pk, comment=parsed.validated_data["comment"]
        )
        return Response(basket_detail(basket))

    @extend_schema(
        summary="Route an approved basket (Ops): enqueues a routing job",
        request=RouteRequestSerializer,
        responses={202: RoutingJobSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def route(self, request: Request, pk: str | None = None) -> Response:
        return route_basket(request, pk)

    @extend_schema(
        operation_id="baskets_orders_create",
        summary="Add a manual order to a draft basket",
        request=OrderAddSerializer,
        responses={201: OrderSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @action(detail=True, methods=["post"], url_path="orders")
    @idempotent
    def add_order(self, request: Request, pk: str | None = None) -> Response:
        parsed = OrderAddSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        order = basket_order_add(
            actor=request.user,
            basket_id=pk,
            account_id=data["account"],
            security_id=data["security"],
            side=data["side"],
            quantity=data["quantity"],
            order_type=data["order_type"],
            limit_price=data["limit_price"],
        )
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="baskets_orders_partial_update",
        summary="Change an order of a draft basket (quantity, order type, limit price)",
        request=OrderUpdateSerializer,
        responses={200: OrderSerializer},
    )
    @action(detail=True, methods=["patch"], url_path=r"orders/(?P<order_id>[0-9]+)")
    def update_order(
        self, request: Request, pk: str | None = None, order_id: str | None = None
    ) -> Response:
        parsed = OrderUpdateSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        order = basket_order_update(
            actor=request.user, basket_id=pk, order_id=order_id, **parsed.validated_data
        )
        return Response(OrderSerializer(order).data)

    @extend_schema(
        operation_id="baskets_orders_destroy",
        summary="Remove an order from a draft basket",
        request=None,
        responses={204: None},
    )
    @update_order.mapping.delete
    def remove_order(
        self, request: Request, pk: str | None = None, order_id: str | None = None
    ) -> Response:
        basket_order_remove(actor=request.user, basket_id=pk, order_id=order_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="Orders of the baskets visible to you",
        parameters=[
            OpenApiParameter("basket", OpenApiTypes.INT),
            OpenApiParameter("account", OpenApiTypes.INT),
            OpenApiParameter("status", OpenApiTypes.STR),
        ],
    ),
    retrieve=extend_schema(summary="One order with its lot instructions"),
)
class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = Order.objects.none()
    serializer_class = OrderSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        qs = Order.objects.filter(basket__in=baskets_visible_to(self.request.user).values("pk"))
        params = self.request.query_params
        for key in ("basket", "account"):
            if params.get(key, "").isdigit():
                qs = qs.filter(**{f"{key}_id": int(params[key])})
        if params.get("status"):
            qs = qs.filter(status=params["status"])
        return (
            qs.select_related("account", "security")
            .prefetch_related("lots")
            .order_by("-basket_id", "account_id", "security_id", "pk")
        )


@extend_schema_view(
    list=extend_schema(
        summary="Compliance results of the baskets visible to you",
        parameters=[
            OpenApiParameter("basket", OpenApiTypes.INT),
            OpenApiParameter("check_run", OpenApiTypes.INT),
            OpenApiParameter("passed", OpenApiTypes.BOOL),
            OpenApiParameter("severity", OpenApiTypes.STR, description="hard or warning"),
        ],
    ),
    retrieve=extend_schema(summary="One compliance result with its override"),
)
class ComplianceResultViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = ComplianceResult.objects.none()
    serializer_class = ComplianceResultSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[ComplianceResult]:
        if getattr(self, "swagger_fake_view", False):
            return ComplianceResult.objects.none()
        qs = ComplianceResult.objects.filter(
            basket__in=baskets_visible_to(self.request.user).values("pk")
        )
        params = self.request.query_params
        for key in ("basket", "check_run"):
            if params.get(key, "").isdigit():
                qs = qs.filter(**{key: int(params[key])})
        if params.get("passed") in ("true", "false"):
            qs = qs.filter(passed=params["passed"] == "true")
        if params.get("severity"):
            qs = qs.filter(severity=params["severity"])
        return qs.select_related("rule", "override", "override__overridden_by").order_by(
            "-basket_id", "check_run", "pk"
        )

    @extend_schema(
        summary="Override a failed hard result with a written justification (Compliance)",
        request=OverrideCreateSerializer,
        responses={201: ComplianceResultSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def override(self, request: Request, pk: str | None = None) -> Response:
        from compliance.services.checks import compliance_override_create

        if not self.get_queryset().filter(pk=pk if str(pk).isdigit() else None).exists():
            raise NotFound(RESULT_NOT_FOUND.format(id=pk))
        parsed = OverrideCreateSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        compliance_override_create(
            actor=request.user,
            result_id=int(pk),  # type: ignore[arg-type]
            justification=parsed.validated_data["justification"],
        )
        result = self.get_queryset().get(pk=int(pk))  # type: ignore[arg-type]
        return Response(ComplianceResultSerializer(result).data, status=status.HTTP_201_CREATED)


class ComplianceWritePermission(ModelViewPermission):
    """Reading needs ``view_<model>`` (every role); writing ``add_``/``change_<model>``
    (Compliance and Admin)."""

    message = "Only Compliance may change compliance rules and restrictions."

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in ("POST", "PUT", "PATCH"):
            opts = view.get_queryset().model._meta
            verb = "add" if request.method == "POST" else "change"
            return bool(
                request.user
                and request.user.is_authenticated
                and request.user.has_perm(f"{opts.app_label}.{verb}_{opts.model_name}")
            )
        return super().has_permission(request, view)


@extend_schema_view(
    list=extend_schema(summary="Configured compliance rules"),
    retrieve=extend_schema(summary="One compliance rule"),
    create=extend_schema(summary="Add a rule (Compliance; parameters validated; audited)"),
    partial_update=extend_schema(
        summary="Change a rule's name, parameters, severity, scope or enabled flag (Compliance; "
        "audited)"
    ),
)
class ComplianceRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ComplianceWritePermission]
    serializer_class = ComplianceRuleSerializer
    filter_backends: list[Any] = []
    queryset = ComplianceRule.objects.none()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[ComplianceRule]:
        if getattr(self, "swagger_fake_view", False):
            return ComplianceRule.objects.none()
        return compliance_rule_list(user=self.request.user)

    @extend_schema(parameters=[IDEMPOTENCY_HEADER])
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from compliance.services.checks import compliance_rule_create

        parsed = ComplianceRuleSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        rule = compliance_rule_create(actor=request.user, **parsed.validated_data)
        return Response(ComplianceRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from compliance.services.checks import compliance_rule_update

        instance = self.get_object()
        parsed = ComplianceRuleSerializer(instance, data=request.data, partial=True)
        parsed.is_valid(raise_exception=True)
        rule = compliance_rule_update(
            actor=request.user, rule_id=instance.pk, data=dict(parsed.validated_data)
        )
        return Response(ComplianceRuleSerializer(rule).data)


@extend_schema_view(
    list=extend_schema(summary="Restrictions visible to you (firm-wide and your households')"),
    retrieve=extend_schema(summary="One restriction"),
    create=extend_schema(summary="Add a restriction (Compliance; audited)"),
    partial_update=extend_schema(summary="Change a restriction (Compliance; audited)"),
)
class RestrictionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ComplianceWritePermission]
    serializer_class = RestrictionSerializer
    filter_backends: list[Any] = []
    queryset = Restriction.objects.none()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Restriction]:
        if getattr(self, "swagger_fake_view", False):
            return Restriction.objects.none()
        return restriction_list(user=self.request.user)

    @extend_schema(parameters=[IDEMPOTENCY_HEADER])
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from compliance.services.restrictions import restriction_create

        parsed = RestrictionSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        restriction = restriction_create(actor=request.user, **parsed.validated_data)
        return Response(RestrictionSerializer(restriction).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from compliance.services.restrictions import restriction_update

        instance = self.get_object()
        parsed = RestrictionSerializer(instance, data=request.data, partial=True)
        parsed.is_valid(raise_exception=True)
        restriction = restriction_update(
            actor=request.user, restriction_id=instance.pk, **parsed.validated_data
        )
        return Response(RestrictionSerializer(restriction).data)
