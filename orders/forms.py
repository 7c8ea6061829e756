"""Forms of the basket pages: the list's filters and the workflow actions' inputs. They only
parse; every rule (a required comment, a justification's length, who may act) is the
service's, so the page shows the service's own message."""

from __future__ import annotations

from typing import Any

from django import forms

from orders.models import BasketState

COMMENT_MAX = 2000


class BasketFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, label="State")
    team = forms.ChoiceField(required=False, label="Team")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, teams: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("", "Any state"), *BasketState.choices]
        self.fields["team"].choices = [("", "Any team"), *((t, t) for t in teams)]

    def filters(self) -> dict[str, Any]:
        """The valid, non-empty filters (an invalid value is ignored, not an error page)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {k: v for k, v in data.items() if v not in (None, "")}


class CommentForm(forms.Form):
    """Submit, cancel and reject: an optional comment (reject's is required by the service)."""

    comment = forms.CharField(required=False, max_length=COMMENT_MAX, strip=True)


class ApproveForm(CommentForm):
    """Approve: a comment and one acknowledgement checkbox per failed warning (result ids)."""

    acknowledge = forms.TypedMultipleChoiceField(required=False, coerce=int)

    def __init__(self, *args: Any, warning_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warning_ids = warning_ids
        self.fields["acknowledge"].choices = [(pk, str(pk)) for pk in warning_ids]

    def all_acknowledged(self) -> bool:
        """Every failed warning of the latest check is ticked (vacuously true with none)."""
        ticked = set(self.cleaned_data.get("acknowledge") or [])
        return set(self.warning_ids) <= ticked


class OverrideForm(forms.Form):
    justification = forms.CharField(required=False, max_length=COMMENT_MAX, strip=True)
