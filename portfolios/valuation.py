"""Valuation reads for pages: market values of many accounts at once, and the per-row figures
of an account's holdings and tax lots (drift, unrealized gain, holding period).

``account_market_values`` answers in two queries whatever the number of accounts (the lot
quantities summed per account and security, then the latest price of those securities), so a
list page never values its rows one by one. Callers pass ids they already obtained through a
visibility selector; this module does not decide who may see what.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Sum

from portfolios.models import TaxLot
from portfolios.selectors import AccountHoldings, Holding, latest_prices

CENT = Decimal("0.01")
LONG_TERM = "Long-term"
SHORT_TERM = "Short-term"


@dataclass(frozen=True)
class AccountValue:
    """Securities valued at their latest price; ``unpriced`` lists held tickers without one."""

    market_value: Decimal
    unpriced: int


def account_market_values(*, account_ids: Iterable[int]) -> dict[int, AccountValue]:
    """Market value of the securities held by each account (cash excluded), in two queries.

    Securities without any price count as zero and are counted in ``unpriced``. Every id
    passed in is in the answer (an account with no lots is worth zero).
    """
    ids = list(account_ids)
    if not ids:
        return {}
    positions = list(
        TaxLot.objects.filter(account_id__in=ids, quantity__gt=0)
        .values("account_id", "security_id")
        .annotate(qty=Sum("quantity"))
        .values_list("account_id", "security_id", "qty")
    )
    prices = latest_prices(security_ids=sorted({s for _, s, _ in positions})) if positions else {}
    totals = {pk: Decimal("0") for pk in ids}
    unpriced = dict.fromkeys(ids, 0)
    for account_id, security_id, qty in positions:
        price = prices.get(security_id)
        if price is None:
            unpriced[account_id] += 1
        else:
            totals[account_id] += qty * price[0]
    return {pk: AccountValue(totals[pk].quantize(CENT), unpriced[pk]) for pk in ids}


@dataclass(frozen=True)
class HoldingRow:
    """One line of the holdings table: a position (or cash) with its drift from target."""

    holding: Holding | None
    label: str
    name: str
    weight: float | None
    target: float | None
    drift: float | None


def holding_rows(*, holdings: AccountHoldings) -> list[HoldingRow]:
    """The holdings with ``drift = weight - target`` (target 0 where the model has none),
    followed by a cash row. Unpriced positions have no weight and so no drift."""
    rows = []
    for h in holdings.holdings:
        target = h.target if h.target is not None else 0.0
        drift = h.weight - target if h.weight is not None else None
        rows.append(HoldingRow(h, h.ticker, h.name, h.weight, h.target, drift))
    cash_target = holdings.cash_target
    cash_drift = holdings.cash_weight - cash_target if cash_target is not None else None
    rows.append(HoldingRow(None, "Cash", "Cash", holdings.cash_weight, cash_target, cash_drift))
    return rows


def holdings_unrealized(*, holdings: AccountHoldings) -> Decimal:
    """Unrealized gain (loss negative) over the priced positions."""
    return sum((h.unrealized for h in holdings.holdings if h.unrealized is not None), Decimal("0"))


@dataclass(frozen=True)
class LotRow:
    """One tax lot valued at the latest price of its security."""

    lot: TaxLot
    price: Decimal | None
    market_value: Decimal | None
    cost: Decimal
    unrealized: Decimal | None
    holding_period: str


def lot_holding_period(*, acquired_on: date, today: date) -> str:
    """Long-term when held more than one year (IRS Publication 550: sold after the first
    anniversary), the one rule of ``portfolios.tax``."""
    from portfolios.tax import is_long_term

    return LONG_TERM if is_long_term(acquired_on=acquired_on, trade_date=today) else SHORT_TERM


def lot_rows(*, lots: Iterable[TaxLot], holdings: AccountHoldings, today: date) -> list[LotRow]:
    """Lots with value and unrealized gain, using the prices already read for ``holdings``."""
    prices = {h.security_id: h.price for h in holdings.holdings}
    rows = []
    for lot in lots:
        price = prices.get(lot.security_id)
        cost = (lot.quantity * lot.cost_basis).quantize(CENT)
        value = (lot.quantity * price).quantize(CENT) if price is not None else None
        rows.append(
            LotRow(
                lot=lot,
                price=price,
                market_value=value,
                cost=cost,
                unrealized=value - cost if value is not None else None,
                holding_period=lot_holding_period(acquired_on=lot.acquired_on, today=today),
            )
        )
    return rows
