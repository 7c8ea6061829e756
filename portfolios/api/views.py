"""Viewsets of the portfolios API: accounts (read, and a PATCH of settings), households and
the reference data (securities, prices, model portfolios).

Thin by design: parse, call a selector or service, serialize. Accounts and households come
only from the visibility selectors, so an object of another team answers 404 exactly like an
unknown id. Reference data is readable by every role (``view_<model>`` model permissions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Prefetch, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.response import Response

from portfolios.api.serializers import (
    AccountDetailSerializer,
    AccountSerializer,
    AccountUpdateSerializer,
    HouseholdSerializer,
    ModelPortfolioSerializer,
    ModelVersionCreateSerializer,
    ModelVersionSerializer,
    PriceSerializer,
    SecuritySerializer,
)
from portfolios.filters import AccountFilter, HouseholdFilter, PriceFilter, SecurityFilter
from portfolios.models import (
    Account,
    Household,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    Price,
    Security,
)
from portfolios.selectors import (
    account_get,
    account_holdings,
    account_latest_drift,
    account_list,
    account_lots,
    households_visible_to,
    latest_price_subquery,
)
from portfolios.services import account_update, model_version_create_from_tickers
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES, ModelViewPermission

if TYPE_CHECKING:
    from rest_framework.request import Request

MODEL_EDIT_FORBIDDEN = "Your role may not edit model portfolios."


class ModelVersionPermission(ModelViewPermission):
    """Reading versions needs the model's view permission; creating one ``add_modelversion``."""

    message = MODEL_EDIT_FORBIDDEN

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method == "POST":
            return bool(
                request.user
                and request.user.is_authenticated
                and request.user.has_perm("portfolios.add_modelversion")
            )
        return super().has_permission(request, view)


def _targets_prefetch() -> Prefetch:
    return Prefetch("targets", queryset=ModelTarget.objects.select_related("security"))


@extend_schema_view(
    list=extend_schema(summary="Accounts visible to you, filtered and paginated"),
    retrieve=extend_schema(
        summary="One account with holdings, tax lots and its latest drift snapshot",
        responses=AccountDetailSerializer,
    ),
)
class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = Account.objects.none()  # the model for the schema; rows come from the selector
    serializer_class = AccountSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = AccountFilter
    ordering_fields = ["name", "account_number", "household__name", "cash_balance", "status"]
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Account]:
        return account_list(user=self.request.user)

    def _detail(self, account: Account) -> dict[str, Any]:
        context = {
            **self.get_serializer_context(),
            "holdings": account_holdings(account=account),
            "lots": account_lots(account=account),
            "latest_drift": account_latest_drift(account=account),
        }
        return AccountDetailSerializer(account, context=context).data

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self._detail(account_get(user=request.user, pk=pk)))

    @extend_schema(
        summary="Change an account's settings (audited with before and after values)",
        request=AccountUpdateSerializer,
        responses=AccountDetailSerializer,
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        account = account_get(user=request.user, pk=pk)
        serializer = AccountUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        reason = data.pop("reason", "")
        account_update(account=account, actor=request.user, data=data, reason=reason)
        return Response(self._detail(account_get(user=request.user, pk=account.pk)))


@extend_schema_view(
    list=extend_schema(summary="Households visible to you"),
    retrieve=extend_schema(summary="One household with the ids of its accounts"),
)
class HouseholdViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    queryset = Household.objects.none()
    serializer_class = HouseholdSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = HouseholdFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet[Household]:
        return (
            households_visible_to(self.request.user)
            .select_related("team")
            .prefetch_related(
                Prefetch("accounts", queryset=Account.objects.only("pk", "household_id"))
            )
            .order_by("name", "pk")
        )


@extend_schema_view(
    list=extend_schema(summary="Securities with their latest price"),
    retrieve=extend_schema(summary="One security"),
)
class SecurityViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ModelViewPermission]
    serializer_class = SecuritySerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = SecurityFilter
    ordering_fields = ["ticker", "name", "sector", "asset_class"]
    queryset = (
        Security.objects.prefetch_related("tlh_substitutes")
        .annotate(latest_price=latest_price_subquery())
        .order_by("ticker")
    )


@extend_schema_view(
    list=extend_schema(summary="Daily prices, by ticker and date range"),
    retrieve=extend_schema(summary="One price"),
)
class PriceViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ModelViewPermission]
    serializer_class = PriceSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = PriceFilter
    ordering_fields = ["as_of", "price"]
    queryset = Price.objects.select_related("security").order_by("security__ticker", "-as_of")


@extend_schema_view(
    list=extend_schema(summary="Model portfolios with their current version and targets"),
    retrieve=extend_schema(summary="One model portfolio with its current version and targets"),
)
class ModelPortfolioViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    permission_classes = [ModelViewPermission]
    serializer_class = ModelPortfolioSerializer
    filter_backends = [SearchFilter, OrderingFilter]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    queryset = ModelPortfolio.objects.prefetch_related(
        Prefetch(
            "versions",
            queryset=ModelVersion.objects.filter(is_current=True)
            .select_related("created_by")
            .prefetch_related(_targets_prefetch()),
            to_attr="current_versions",
        )
    ).order_by("name")

    @extend_schema(
        methods=["GET"],
        summary="Every version of the model, newest first, with its targets",
        responses=ModelVersionSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Create a new current version of the model (the old one stays readable)",
        request=ModelVersionCreateSerializer,
        responses={201: ModelVersionSerializer},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        filter_backends=[],
        pagination_class=None,
        permission_classes=[ModelVersionPermission],
    )
    def versions(self, request: Request, pk: str | None = None) -> Response:
        model = self.get_object()
        if request.method == "POST":
            return self._create_version(request, model)
        versions = (
            ModelVersion.objects.filter(model=model)
            .select_related("created_by")
            .prefetch_related(_targets_prefetch())
            .order_by("-version")
        )
        return Response(ModelVersionSerializer(versions, many=True).data)

    def _create_version(self, request: Request, model: ModelPortfolio) -> Response:
        serializer = ModelVersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = model_version_create_from_tickers(
            model=model,
            targets=data["targets"],
            cash_target=data["cash_target"],
            actor=request.user,
            note=data["note"],
        )
        return Response(ModelVersionSerializer(version).data, status=201)
