"""Admin of the compliance app: restrictions and rules (audited edits; ended or disabled,
never deleted, so the history of what was restricted stays on record), and read-only
results, overrides and audit events. The audit trail cannot be added to, changed or deleted
from the admin: only ``audit_record`` appends to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule, Override, Restriction
from rebalance_app.admin import ReadOnlyModelAdmin, RetainedModelAdmin

if TYPE_CHECKING:
    from django.forms import ModelForm
    from django.http import HttpRequest


@admin.register(Restriction)
class RestrictionAdmin(RetainedModelAdmin):
    """End a restriction with ``effective_to`` instead of deleting it."""

    list_display = [
        "id",
        "kind",
        "scope",
        "security",
        "sector",
        "esg_tag",
        "household",
        "account",
        "effective_from",
        "effective_to",
        "created_by",
    ]
    list_filter = ["kind", "scope"]
    search_fields = ["reason", "security__ticker", "sector", "esg_tag"]
    raw_id_fields = ["household", "account", "security", "created_by"]
    list_select_related = ["security", "household", "account", "created_by"]

    def save_model(
        self, request: HttpRequest, obj: Restriction, form: ModelForm, change: bool
    ) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class ComplianceRuleForm(forms.ModelForm):
    """Checks the rule type and its parameters as the API and the rules page do."""

    class Meta:
        model = ComplianceRule
        fields = [
            "rule_type",
            "name",
            "parameters",
            "severity",
            "scope",
            "model",
            "account",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        from compliance.rules import RULES, RuleParameterError, rule_parameters_validate

        data = super().clean()
        rule_type = data.get("rule_type")
        if rule_type not in RULES:
            self.add_error(
                "rule_type", f"Unknown rule type '{rule_type}': choose one of {', '.join(RULES)}."
            )
            return data
        try:
            data["parameters"] = rule_parameters_validate(rule_type, data.get("parameters") or {})
        except RuleParameterError as exc:
            self.add_error("parameters", exc.message)
        return data


@admin.register(ComplianceRule)
class ComplianceRuleAdmin(RetainedModelAdmin):
    """Switch a rule off with ``enabled`` instead of deleting it (its results refer to it)."""

    form = ComplianceRuleForm

    list_display = ["name", "rule_type", "severity", "scope", "model", "account", "enabled"]
    list_filter = ["rule_type", "severity", "scope", "enabled"]
    search_fields = ["name", "rule_type"]
    raw_id_fields = ["model", "account"]
    list_select_related = ["model", "account"]


@admin.register(ComplianceResult)
class ComplianceResultAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "basket",
        "order",
        "rule",
        "check_run",
        "passed",
        "severity",
        "message",
        "checked_at",
    ]
    list_filter = ["passed", "severity"]
    search_fields = ["message", "rule__name", "basket__name"]
    date_hierarchy = "checked_at"
    list_select_related = ["basket", "order", "rule"]
    show_full_result_count = False


@admin.register(Override)
class OverrideAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "result", "overridden_by", "created_at"]
    search_fields = ["justification", "overridden_by__username"]
    date_hierarchy = "created_at"
    list_select_related = ["result", "overridden_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    list_display = [
        "seq",
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "ip",
        "request_id",
    ]
    search_fields = ["=action", "=object_type", "=object_id", "actor_label", "=request_id"]
    date_hierarchy = "created_at"
    ordering = ["-seq"]
    show_full_result_count = False
