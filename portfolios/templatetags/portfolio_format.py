"""Template filters for portfolio figures: weights as percentages, signed drift."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()

NO_VALUE = "—"


@register.filter
def pct(value: float | Decimal | None, places: int = 2) -> str:
    """A fraction as a percentage: 0.1234 -> "12.34%"; None -> an em dash."""
    if value is None or value == "":
        return NO_VALUE
    return f"{float(value) * 100:.{int(places)}f}%"


@register.filter
def signed_pct(value: float | Decimal | None, places: int = 2) -> str:
    """A difference of fractions with its sign: 0.012 -> "+1.20%", -0.005 -> "-0.50%"."""
    if value is None or value == "":
        return NO_VALUE
    return f"{float(value) * 100:+.{int(places)}f}%"


@register.filter
def sign_class(value: float | Decimal | None) -> str:
    """CSS class for a gain or loss: "pos", "neg" or ""."""
    if value is None or value == "" or value == 0:
        return ""
    return "pos" if value > 0 else "neg"
