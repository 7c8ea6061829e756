"""Plotly figure specs for the portfolio pages, built in Python and drawn by static/js/app.js.

Each function returns a plain JSON-safe dict ``{"data": [...], "layout": {...}, "config": {...}}``
that a template embeds with ``json_script`` next to a ``<div class="chart" data-plotly=...>``
(the CSP forbids inline scripts, so the page carries data, never code).
"""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from portfolios.selectors import AccountHoldings

CURRENT_COLOR = "#1f5fbf"
TARGET_COLOR = "#9aa5b5"


def _spec(fig: go.Figure) -> dict[str, Any]:
    spec = json.loads(pio.to_json(fig, validate=True))
    spec["config"] = {"displayModeBar": False, "responsive": True}
    return spec


def holdings_vs_target_figure(*, holdings: AccountHoldings) -> dict[str, Any]:
    """Grouped bars of current weight and target weight (in %) per security, plus cash.

    Securities without a price have no current weight (the bar is left out); securities of the
    model that are not held show a current weight of 0.
    """
    labels = [h.ticker for h in holdings.holdings] + ["Cash"]
    current = [
        round(h.weight * 100, 4) if h.weight is not None else None for h in holdings.holdings
    ] + [round(holdings.cash_weight * 100, 4)]
    target = [round((h.target or 0.0) * 100, 4) for h in holdings.holdings] + [
        round((holdings.cash_target or 0.0) * 100, 4)
    ]
    hover = "%{x}: %{y:.2f}%<extra>%{fullData.name}</extra>"
    fig = go.Figure(
        data=[
            go.Bar(
                name="Current weight",
                x=labels,
                y=current,
                marker={"color": CURRENT_COLOR},
                hovertemplate=hover,
            ),
            go.Bar(
                name="Target weight",
                x=labels,
                y=target,
                marker={"color": TARGET_COLOR},
                hovertemplate=hover,
            ),
        ]
    )
    fig.update_layout(
        barmode="group",
        yaxis={"title": {"text": "Weight"}, "ticksuffix": "%", "rangemode": "tozero"},
        xaxis={"type": "category"},
        legend={"orientation": "h", "y": -0.15},
        margin={"l": 56, "r": 16, "t": 16, "b": 40},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        template="none",
    )
    return _spec(fig)
