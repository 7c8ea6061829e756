"""Viewsets of the compliance API: the audit trail, readable by Compliance and Admin only
(everyone else gets 403), with the same filters as the audit page, and its verification."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from compliance.api.serializers import AuditEventSerializer, AuditVerifySerializer
from compliance.filters import AuditEventFilter
from compliance.models import AuditEvent
from compliance.selectors import audit_event_list

# The page and the API record a verification the same way: one function, ``audit.verify``.
from compliance.services.audit import audit_chain_verify_record
from rebalance_app.permissions import API_AUTHENTICATION_CLASSES

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request


@extend_schema_view(
    list=extend_schema(summary="Audit events, newest first (Compliance and Admin only)"),
    retrieve=extend_schema(summary="One audit event (Compliance and Admin only)"),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = API_AUTHENTICATION_CLASSES
    serializer_class = AuditEventSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilter
    queryset = AuditEvent.objects.none()

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no real user
            return AuditEvent.objects.none()
        return audit_event_list(user=self.request.user)

    @extend_schema(
        summary="Recompute the hash chain and compare it with the external checkpoints",
        description=(
            "Each verification is itself recorded in the trail (action `audit.verify`), "
            "after the check, so it is never part of what it reports on."
        ),
        responses=AuditVerifySerializer,
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def verify(self, request: Request) -> Response:
        audit_event_list(user=request.user)  # the permission check (403 for other roles)
        result = audit_chain_verify_record(actor=request.user)
        payload = {
            "ok": result.ok,
            "checked": result.checked,
            "head_seq": result.head_seq,
            "head_hash": result.head_hash,
            "broken_id": result.broken_id,
            "broken_seq": result.broken_seq,
            "problem": result.problem,
            "message": result.message,
        }
        return Response(AuditVerifySerializer(payload).data)
