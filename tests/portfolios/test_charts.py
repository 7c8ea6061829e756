"""Plotly figure specs: the holdings-vs-target chart is JSON-safe data with the right bars."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from portfolios.charts import holdings_vs_target_figure
from portfolios.selectors import AccountHoldings, Holding


def _holding(ticker: str, weight: float | None, target: float | None) -> Holding:
    price = Decimal("10") if weight is not None else None
    return Holding(
        security_id=hash(ticker) % 1000,
        ticker=ticker,
        name=ticker,
        sector="",
        quantity=Decimal("1"),
        cost=Decimal("1"),
        price=price,
        price_date=date(2026, 11, 24) if price else None,
        market_value=price,
        weight=weight,
        target=target,
        unrealized=None,
    )


def test_holdings_vs_target_figure_groups_current_and_target_bars_with_cash():
    holdings = AccountHoldings(
        holdings=[
            _holding("AAA", 0.55, 0.5),
            _holding("BBB", None, None),
            _holding("CCC", 0.0, 0.3),
        ],
        cash=Decimal("450"),
        total_value=Decimal("1000"),
        cash_weight=0.45,
        cash_target=0.2,
        missing_prices=["BBB"],
    )
    spec = holdings_vs_target_figure(holdings=holdings)
    assert json.loads(json.dumps(spec)) == spec
    current, target = spec["data"]
    assert spec["layout"]["barmode"] == "group"
    assert current["type"] == "bar"
    assert current["x"] == ["AAA", "BBB", "CCC", "Cash"]
    assert current["y"] == [55.0, None, 0.0, 45.0]
    assert target["y"] == [50.0, 0.0, 30.0, 20.0]
