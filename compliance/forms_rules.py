"""Forms of the restricted-list and rule pages. They parse the input (choices, dates, the
parameters' JSON text); what is allowed is the services' call, so the page shows their
message."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from compliance.models import RestrictionKind, RestrictionScope, RuleScope, Severity
from portfolios.models import Account, Household, ModelPortfolio, Security

MSG_PARAMETERS_JSON = 'Parameters must be JSON, e.g. {{"max_security_weight": 0.2}}: {error}.'


def _rule_types() -> list[tuple[str, str]]:
    from compliance.rules import RULES

    return [(name, name.replace("_", " ")) for name in sorted(RULES)]


class RestrictionForm(forms.Form):
    scope = forms.ChoiceField(choices=RestrictionScope.choices)
    household = forms.ModelChoiceField(
        queryset=Household.objects.order_by("name"), required=False, empty_label="—"
    )
    account = forms.ModelChoiceField(
        queryset=Account.objects.order_by("account_number"), required=False, empty_label="—"
    )
    security = forms.ModelChoiceField(
        queryset=Security.objects.order_by("ticker"),
        required=False,
        empty_label="—",
    )
    sector = forms.CharField(required=False, max_length=60)
    esg_tag = forms.CharField(required=False, max_length=60, label="ESG tag")
    kind = forms.ChoiceField(choices=RestrictionKind.choices)
    reason = forms.CharField(required=False, max_length=300, widget=forms.Textarea({"rows": 2}))
    effective_from = forms.DateField(
        required=False, label="Effective from", widget=forms.DateInput(attrs={"type": "date"})
    )
    effective_to = forms.DateField(
        required=False, label="Effective to", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["security"].label_from_instance = lambda s: f"{s.ticker} · {s.name}"
        self.fields["account"].label_from_instance = lambda a: f"{a.account_number} · {a.name}"

    @staticmethod
    def initial_from(restriction: Any) -> dict[str, Any]:
        return {
            "scope": restriction.scope,
            "household": restriction.household_id,
            "account": restriction.account_id,
            "security": restriction.security_id,
            "sector": restriction.sector,
            "esg_tag": restriction.esg_tag,
            "kind": restriction.kind,
            "reason": restriction.reason,
            "effective_from": restriction.effective_from,
            "effective_to": restriction.effective_to,
        }


class RuleForm(forms.Form):
    rule_type = forms.ChoiceField(label="Rule type")
    name = forms.CharField(max_length=120)
    parameters = forms.CharField(
        required=False,
        widget=forms.Textarea({"rows": 4, "spellcheck": "false"}),
        help_text="A JSON object; parameters left out take their defaults.",
    )
    severity = forms.ChoiceField(choices=Severity.choices)
    scope = forms.ChoiceField(choices=RuleScope.choices)
    model = forms.ModelChoiceField(
        queryset=ModelPortfolio.objects.order_by("name"), required=False, empty_label="—"
    )
    account = forms.ModelChoiceField(
        queryset=Account.objects.order_by("account_number"), required=False, empty_label="—"
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rule_type"].choices = _rule_types()
        self.fields["account"].label_from_instance = lambda a: f"{a.account_number} · {a.name}"

    def clean_parameters(self) -> Any:
        text = (self.cleaned_data.get("parameters") or "").strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(MSG_PARAMETERS_JSON.format(error=exc.msg)) from None

    @staticmethod
    def initial_from(rule: Any) -> dict[str, Any]:
        return {
            "rule_type": rule.rule_type,
            "name": rule.name,
            "parameters": json.dumps(rule.parameters, indent=2, sort_keys=True),
            "severity": rule.severity,
            "scope": rule.scope,
            "model": rule.model_id,
            "account": rule.account_id,
            "enabled": rule.enabled,
        }
