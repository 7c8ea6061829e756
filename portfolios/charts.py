"""Plotly figure specs for the portfolio pages, built in Python and drawn by static/js/app.js.

Each function returns a plain JSON-safe dict ``{"data": [...], "layout": {...}, "config": {...}}``
that a template embeds with ``json_script`` next to a ``<div class="chart" data-plotly=...>``
(the CSP forbids inline scripts, so the page carries data, never code).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from portfolios.selectors import AccountHoldings

CURRENT_COLOR = "#1f5fbf"
TARGET_COLOR = "#9aa5b5"
BAND_COLOR = "#b54708"
TOTAL_DRIFT_COLOR = "#1f5fbf"
MAX_DRIFT_COLOR = "#b42318"
CASH_LABEL = "Cash"
NO_BAND = "no band"


def _spec(fig: go.Figure) -> dict[str, Any]:
    spec = json.loads(pio.to_json(fig, validate=True))
    spec["config"] = {"displayModeBar": False, "responsive": True}
    return spec


def _layout_defaults() -> dict[str, Any]:
    return {
        "legend": {"orientation": "h", "y": -0.15},
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "template": "none",
    }


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 4)


def holdings_vs_target_figure(
    *, holdings: AccountHoldings, bands: Mapping[str, float | None] | None = None
) -> dict[str, Any]:
    """Grouped bars of current weight and target weight (in %) per security, plus cash.

    Securities without a price have no current weight (the bar is left out); securities of the
    model that are not held show a current weight of 0. ``bands`` (ticker or "Cash" -> the
    tolerance band's half-width as a fraction, from the latest drift snapshot) draws the band
    as error bars around each target: a current weight outside them breaches.
    """
    labels = [h.ticker for h in holdings.holdings] + [CASH_LABEL]
    current = [
        round(h.weight * 100, 4) if h.weight is not None else None for h in holdings.holdings
    ] + [round(holdings.cash_weight * 100, 4)]
    target = [round((h.target or 0.0) * 100, 4) for h in holdings.holdings] + [
        round((holdings.cash_target or 0.0) * 100, 4)
    ]
    hover = "%{x}: %{y:.2f}%<extra>%{fullData.name}</extra>"
    target_bar: dict[str, Any] = {
        "name": "Target weight",
        "x": labels,
        "y": target,
        "marker": {"color": TARGET_COLOR},
        "hovertemplate": hover,
    }
    if bands and any(b is not None for b in bands.values()):
        half = [_pct(bands.get(label)) for label in labels]
        target_bar["error_y"] = {
            "type": "data",
            "array": half,
            "visible": True,
            "color": BAND_COLOR,
            "thickness": 1.5,
            "width": 6,
        }
        target_bar["customdata"] = [f"± {h:.2f}%" if h is not None else NO_BAND for h in half]
        target_bar["hovertemplate"] = (
            "%{x}: %{y:.2f}% (band %{customdata})<extra>%{fullData.name}</extra>"
        )
    fig = go.Figure(
        data=[
            go.Bar(
                name="Current weight",
                x=labels,
                y=current,
                marker={"color": CURRENT_COLOR},
                hovertemplate=hover,
            ),
            go.Bar(**target_bar),
        ]
    )
    fig.update_layout(
        barmode="group",
        yaxis={"title": {"text": "Weight"}, "ticksuffix": "%", "rangemode": "tozero"},
        xaxis={"type": "category"},
        **_layout_defaults(),
    )
    return _spec(fig)


def drift_histogram_figure(*, buckets: Sequence[tuple[int, int]], width: float) -> dict[str, Any]:
    """Bars of how many accounts fall in each total-drift bucket ``[k * width, (k+1) * width)``.

    ``buckets`` are ``(k, accounts)`` pairs counted by the database (only non-empty buckets);
    the bars are drawn edge to edge as a histogram, the x axis in percent of account value.
    """
    lefts = [k * width * 100 for k, _ in buckets]
    counts = [n for _, n in buckets]
    labels = [f"{left:.2f}–{left + width * 100:.2f}%" for left in lefts]
    fig = go.Figure(
        data=[
            go.Bar(
                name="Accounts",
                x=[round(left + width * 50, 6) for left in lefts],
                y=counts,
                width=round(width * 100, 6),
                customdata=labels,
                marker={"color": CURRENT_COLOR, "line": {"color": "#ffffff", "width": 1}},
                hovertemplate="Total drift %{customdata}: %{y} accounts<extra></extra>",
            )
        ]
    )
    fig.update_layout(
        bargap=0,
        showlegend=False,
        xaxis={"title": {"text": "Total drift"}, "ticksuffix": "%", "rangemode": "tozero"},
        # whole accounts: integer ticks, about five of them
        yaxis={
            "title": {"text": "Accounts"},
            "rangemode": "tozero",
            "dtick": max(1, math.ceil(max(counts, default=0) / 5)),
        },
        **_layout_defaults(),
    )
    return _spec(fig)


def drift_history_figure(*, history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Lines of total drift and max position drift (in %) per scan, oldest first.

    ``history`` rows carry ``scanned_at`` (a datetime in the time zone to show: plotly.js
    draws wall-clock times and ignores offsets), ``total_drift`` and ``max_drift`` (fractions).
    """
    times = [row["scanned_at"].strftime("%Y-%m-%d %H:%M:%S") for row in history]
    hover = "%{x|%Y-%m-%d %H:%M}: %{y:.2f}%<extra>%{fullData.name}</extra>"
    fig = go.Figure(
        data=[
            go.Scatter(
                name="Total drift",
                x=times,
                y=[_pct(row["total_drift"]) for row in history],
                mode="lines+markers",
                line={"color": TOTAL_DRIFT_COLOR},
                hovertemplate=hover,
            ),
            go.Scatter(
                name="Max position drift",
                x=times,
                y=[_pct(row["max_drift"]) for row in history],
                mode="lines+markers",
                line={"color": MAX_DRIFT_COLOR, "dash": "dot"},
                hovertemplate=hover,
            ),
        ]
    )
    fig.update_layout(
        xaxis={"type": "date", "title": {"text": "Scan time"}},
        yaxis={"title": {"text": "Drift"}, "ticksuffix": "%", "rangemode": "tozero"},
        **_layout_defaults(),
    )
    return _spec(fig)


BEFORE_COLOR = "#9bb8e3"
AFTER_COLOR = "#1f5fbf"
TARGET_MARKER_COLOR = "#1d2430"


def rebalance_weights_figure(
    *,
    tickers: Sequence[str],
    before: Sequence[float],
    after: Sequence[float],
    target: Sequence[float],
    cash_before: float | None,
    cash_after: float | None,
    cash_target: float | None,
) -> dict[str, Any]:
    """A proposal's weights (in %) before and after its trades as grouped bars per security,
    plus cash, with each target drawn as a marker over its pair of bars.

    ``before``, ``after`` and ``target`` are fractions in the order of ``tickers`` (a run's
    ``security_ids``); securities at zero in all three (a substitute not bought) are left out.
    """
    rows = [
        (t, b, a, w)
        for t, b, a, w in zip(tickers, before, after, target, strict=True)
        if abs(b) > 1e-9 or abs(a) > 1e-9 or abs(w) > 1e-9
    ]
    rows.append((CASH_LABEL, cash_before or 0.0, cash_after or 0.0, cash_target or 0.0))
    labels = [r[0] for r in rows]
    hover = "%{x}: %{y:.2f}%<extra>%{fullData.name}</extra>"
    fig = go.Figure(
        data=[
            go.Bar(
                name="Before",
                x=labels,
                y=[_pct(r[1]) for r in rows],
                marker={"color": BEFORE_COLOR},
                hovertemplate=hover,
            ),
            go.Bar(
                name="After",
                x=labels,
                y=[_pct(r[2]) for r in rows],
                marker={"color": AFTER_COLOR},
                hovertemplate=hover,
            ),
            go.Scatter(
                name="Target",
                x=labels,
                y=[_pct(r[3]) for r in rows],
                mode="markers",
                marker={
                    "symbol": "line-ew-open",
                    "size": 28,
                    "color": TARGET_MARKER_COLOR,
                    "line": {"width": 3, "color": TARGET_MARKER_COLOR},
                },
                hovertemplate=hover,
            ),
        ]
    )
    fig.update_layout(
        barmode="group",
        yaxis={"title": {"text": "Weight"}, "ticksuffix": "%", "rangemode": "tozero"},
        xaxis={"type": "category"},
        **_layout_defaults(),
    )
    return _spec(fig)
