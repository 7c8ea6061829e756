"""Filter sets for portfolio lists, shared by the pages and the API (django-filter).

Filters by related object take ids (``household``, ``model``), not model choices: a choice
field would validate against every household and so tell a user that an invisible one exists.
Visibility itself is never a filter's job: the querysets come from the visibility selectors.
"""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from portfolios.models import (
    Account,
    AccountStatus,
    AssetClass,
    Household,
    Price,
    RegistrationType,
    Security,
    SecurityType,
)


class AccountFilter(django_filters.FilterSet):
    household = django_filters.NumberFilter(field_name="household_id", label="Household id")
    model = django_filters.NumberFilter(field_name="model_id", label="Model portfolio id")
    status = django_filters.ChoiceFilter(choices=AccountStatus.choices, label="Status")
    registration_type = django_filters.ChoiceFilter(
        choices=RegistrationType.choices, label="Registration type"
    )
    taxable = django_filters.BooleanFilter(label="Taxable")
    team = django_filters.CharFilter(
        field_name="household__team__name", lookup_expr="exact", label="PM team"
    )
    search = django_filters.CharFilter(
        method="filter_search", label="Account name, account number or household name contains"
    )

    class Meta:
        model = Account
        fields = ["household", "model", "status", "registration_type", "taxable", "team", "search"]

    def filter_search(
        self, queryset: QuerySet[Account], name: str, value: str
    ) -> QuerySet[Account]:
        if not value:
            return queryset
        return queryset.filter(
            Q(name__icontains=value)
            | Q(account_number__icontains=value)
            | Q(household__name__icontains=value)
        )


class HouseholdFilter(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__name", lookup_expr="exact", label="PM team")
    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", label="Household name contains"
    )

    class Meta:
        model = Household
        fields = ["team", "search"]


class SecurityFilter(django_filters.FilterSet):
    ticker = django_filters.CharFilter(field_name="ticker", lookup_expr="iexact", label="Ticker")
    asset_class = django_filters.ChoiceFilter(choices=AssetClass.choices, label="Asset class")
    security_type = django_filters.ChoiceFilter(choices=SecurityType.choices, label="Type")
    sector = django_filters.CharFilter(field_name="sector", lookup_expr="iexact", label="Sector")
    search = django_filters.CharFilter(method="filter_search", label="Ticker or name contains")

    class Meta:
        model = Security
        fields = ["ticker", "asset_class", "security_type", "sector", "search"]

    def filter_search(
        self, queryset: QuerySet[Security], name: str, value: str
    ) -> QuerySet[Security]:
        if not value:
            return queryset
        return queryset.filter(Q(ticker__icontains=value) | Q(name__icontains=value))


class PriceFilter(django_filters.FilterSet):
    ticker = django_filters.CharFilter(
        field_name="security__ticker", lookup_expr="iexact", label="Ticker"
    )
    security = django_filters.NumberFilter(field_name="security_id", label="Security id")
    date_from = django_filters.DateFilter(field_name="as_of", lookup_expr="gte", label="From")
    date_to = django_filters.DateFilter(field_name="as_of", lookup_expr="lte", label="To")

    class Meta:
        model = Price
        fields = ["ticker", "security", "date_from", "date_to"]
