"""Serializers of the compliance API: audit events (read-only) and the chain verification."""

from __future__ import annotations

from rest_framework import serializers

from compliance.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "seq",
            "created_at",
            "actor",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
            "request_id",
            "ip",
            "reason",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditVerifySerializer(serializers.Serializer):
    """``compliance.audit_chain.VerifyResult``: whether the chain and its checkpoints agree,
    and where the first broken link is when they do not."""

    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events recomputed.")
    head_seq = serializers.IntegerField(help_text="Sequence number of the last verified event.")
    head_hash = serializers.CharField()
    broken_id = serializers.IntegerField(allow_null=True)
    broken_seq = serializers.IntegerField(allow_null=True)
    problem = serializers.CharField(allow_blank=True)
    message = serializers.CharField()
