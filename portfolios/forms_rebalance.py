"""Forms of the rebalance pages: the propose form (mode and its parameters), a trade edit, the
runs-list filters and the "every breached account of a model" batch form.

Forms only parse and type the input. What a request may do (a mode the account cannot use, a
cash raise larger than the account, a stale price) is decided by the service, whose message
the page shows on the form. Percentages are entered as percent and passed on as fractions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from portfolios.models import Account, RebalanceMode, RunStatus

# One line per mode, shown under the mode select.
MODE_DESCRIPTIONS: dict[str, str] = {
    RebalanceMode.FULL: "Trade every position back toward its target weight, weighing tax and "
    "trading costs against tracking error.",
    RebalanceMode.TOLERANCE: "Trade only the positions outside their tolerance bands, back to "
    "target or to the band edge.",
    RebalanceMode.CASH_RAISE: "Raise the cash amount you enter (on top of the cash reserve) "
    "with the least disruption to the portfolio.",
    RebalanceMode.CASH_INVEST: "Invest the cash above the reserve; nothing is sold.",
    RebalanceMode.TLH: "Sell lots at a loss beyond the threshold and buy their substitutes to "
    "keep the exposure.",
}
TLH_NOT_TAXABLE = "Not offered: account {account} is {registration}, and tax-loss harvesting "
TLH_NOT_TAXABLE += "applies to taxable accounts only."
TLH_OFF = "Not offered: tax-loss harvesting is turned off in this account's preferences."
BATCH_MODES = [(v, label) for v, label in RebalanceMode.choices if v != RebalanceMode.CASH_RAISE]
TOLERANCE_CHOICES = [("target", "Back to target"), ("edge", "Back to the band edge")]
PERCENT = {"max_digits": 7, "decimal_places": 4, "min_value": Decimal("0")}


def tlh_unavailable_reason(account: Account) -> str:
    """Why the account cannot harvest losses ("" when it can)."""
    if not account.taxable:
        return TLH_NOT_TAXABLE.format(
            account=account.account_number,
            registration=account.get_registration_type_display(),
        )
    if not account.tlh_enabled:
        return TLH_OFF
    return ""


def _fraction(percent: Decimal | None) -> float | None:
    return None if percent is None else float(percent) / 100


class RebalanceProposeForm(forms.Form):
    mode = forms.ChoiceField(label="Mode", choices=RebalanceMode.choices)
    cash_amount = forms.DecimalField(
        label="Cash to raise ($)",
        required=False,
        max_digits=18,
        decimal_places=2,
        min_value=Decimal("0"),
        help_text="Cash raise only: the amount to free up, on top of the cash reserve.",
    )
    tolerance_to_target = forms.ChoiceField(
        label="Trade breached positions",
        choices=TOLERANCE_CHOICES,
        initial="target",
        required=False,
        help_text="Tolerance-band mode only.",
    )
    tlh_loss_threshold = forms.DecimalField(
        label="Harvest lots losing at least (%)",
        required=False,
        max_value=Decimal("99.99"),
        help_text="Tax-loss harvest only: the loss as a percentage of the lot's cost. "
        "Empty: the firm default.",
        **PERCENT,
    )
    turnover_limit = forms.DecimalField(
        label="Turnover limit (% of account value)",
        required=False,
        max_value=Decimal("200"),
        help_text="Empty: no limit.",
        **PERCENT,
    )
    esg_sell_out = forms.BooleanField(
        label="Sell out of securities excluded by an ESG screen",
        required=False,
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.tlh_reason = tlh_unavailable_reason(account)
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs["aria-describedby"] = f"id_{name}-help"
        self.mode_descriptions = [
            (value, label, MODE_DESCRIPTIONS[value]) for value, label in RebalanceMode.choices
        ]

    def parameters(self) -> dict[str, Any]:
        """The service's parameters for the chosen mode (those of other modes are left out,
        so a value typed for another mode is not refused as unknown)."""
        data = self.cleaned_data
        mode = data["mode"]
        params: dict[str, Any] = {}
        if mode == RebalanceMode.CASH_RAISE:
            amount = data.get("cash_amount")
            params["cash_amount"] = None if amount is None else float(amount)
        if mode == RebalanceMode.TOLERANCE:
            params["tolerance_to_target"] = data.get("tolerance_to_target", "target") != "edge"
        if mode == RebalanceMode.TLH:
            params["tlh_loss_threshold"] = _fraction(data.get("tlh_loss_threshold"))
        params["turnover_limit"] = _fraction(data.get("turnover_limit"))
        if data.get("esg_sell_out"):
            params["esg_sell_out"] = True
        return {k: v for k, v in params.items() if v is not None}


class TradeEditForm(forms.Form):
    security = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    quantity = forms.DecimalField(
        label="Quantity", min_value=Decimal("0"), max_digits=20, decimal_places=6
    )
    note = forms.CharField(label="Note", required=False, max_length=300)


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *RunStatus.choices]
    )
    mode = forms.ChoiceField(
        label="Mode", required=False, choices=[("", "Any mode"), *RebalanceMode.choices]
    )
    batch = forms.IntegerField(label="Batch", required=False, min_value=1)
    account = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def filters(self) -> dict[str, Any]:
        """The valid filters (an invalid value is dropped, never passed to the query)."""
        self.is_valid()
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


class BatchProposeForm(forms.Form):
    model = forms.TypedChoiceField(label="Model", coerce=int, choices=())
    # a cash raise needs an amount per account: not offered for a batch
    mode = forms.ChoiceField(label="Mode", choices=BATCH_MODES)

    def __init__(self, *args: Any, models: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = models
