"""Filter sets shared by the audit pages and the API."""

from __future__ import annotations

import django_filters

from compliance.models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        field_name="actor_label", lookup_expr="icontains", label="Actor"
    )
    action = django_filters.CharFilter(
        field_name="action", lookup_expr="istartswith", label="Action"
    )
    object_type = django_filters.CharFilter(
        field_name="object_type", lookup_expr="iexact", label="Object type"
    )
    object_id = django_filters.CharFilter(
        field_name="object_id", lookup_expr="exact", label="Object id"
    )
    date_from = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="From"
    )
    date_to = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="To"
    )

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "object_type", "object_id", "date_from", "date_to"]
