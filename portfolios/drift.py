"""The drift engine: weights, drift and band breaches of every position of every account at
once, as one vectorized pass (numpy only; no Django, no per-account Python loop).

Notation (DESIGN 4). For account ``a`` with rows ``j`` (its holdings, its model's securities
and one cash row):

- value ``v_j = q_j * p_j`` (cash: ``q`` is the cash amount, ``p = 1``)
- account value ``V_a = sum_j v_j``
- weight ``w_j = v_j / V_a`` and drift ``d_j = w_j - t_j`` where ``t_j`` is the target weight
  (0 for a held security that is not in the model)
- a row breaches when ``|d_j| > abs_band_j`` or, for ``t_j > 0``, ``|d_j| / t_j > rel_band_j``
  (a NaN band is no band)
- account metrics: total drift ``0.5 * sum_j |d_j|`` (in [0, 1] when weights are
  non-negative), max position drift ``max |d_j|`` over non-cash rows, cash drift ``d_cash``,
  breach count, held-not-in-model count and model-not-held count.

An account with a held security whose price is missing or stale, or whose value is not
positive, is *not scannable*: its metrics are NaN and ``reason`` says why; it is never scanned
with a wrong value.

Rows must be grouped by account in ascending account index (every account ``0..A-1`` has at
least its cash row); the service's bulk query orders them so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Breaches compare floats computed from Decimals: ignore differences below this.
EPS = 1e-12


class Unscannable(IntEnum):
    """Why an account could not be scanned (0 means it was)."""

    OK = 0
    MISSING_PRICE = 1
    STALE_PRICE = 2
    NO_VALUE = 3


@dataclass(frozen=True)
class DriftInputs:
    """Flat arrays over all rows of all accounts, ``n`` rows and ``n_accounts`` accounts.

    ``account``: int (n,) account index, grouped ascending; ``quantity``: float (n,) shares (cash
    row: the cash amount); ``price``: float (n,) latest price, NaN when missing (cash row: 1);
    ``stale``: bool (n,) the price is older than allowed; ``target``: float (n,) target weight;
    ``abs_band`` / ``rel_band``: float (n,) NaN for none; ``in_model``: bool (n,) the row's
    security is in the account's model; ``is_cash``: bool (n,) the cash row.
    """

    account: IntArray
    quantity: FloatArray
    price: FloatArray
    stale: BoolArray
    target: FloatArray
    abs_band: FloatArray
    rel_band: FloatArray
    in_model: BoolArray
    is_cash: BoolArray
    n_accounts: int

    def __post_init__(self) -> None:
        n = self.account.shape[0]
        for name in (
            "quantity",
            "price",
            "stale",
            "target",
            "abs_band",
            "rel_band",
            "in_model",
            "is_cash",
        ):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n},)")
        if n and np.any(np.diff(self.account) < 0):
            raise ValueError("rows must be grouped by account in ascending order")


@dataclass(frozen=True)
class DriftResult:
    """Per-row ``weight``, ``drift``, ``breached`` (n,) and per-account metrics (n_accounts,).

    Metrics of unscannable accounts are NaN (counts 0) and ``reason`` is non-zero.
    """

    weight: FloatArray
    drift: FloatArray
    breached: BoolArray
    total_value: FloatArray
    total_drift: FloatArray
    max_drift: FloatArray
    cash_drift: FloatArray
    breach_count: IntArray
    not_in_model_count: IntArray
    model_not_held_count: IntArray
    reason: npt.NDArray[np.int8]

    @property
    def scannable(self) -> BoolArray:
        return self.reason == Unscannable.OK

    @property
    def account_breached(self) -> BoolArray:
        return self.scannable & (self.breach_count > 0)


def drift_compute(inputs: DriftInputs) -> DriftResult:
    """Weights, drift, breaches and account metrics for every row and account (see module)."""
    acc = inputs.account
    n_acc = inputs.n_accounts
    held = inputs.quantity > 0
    missing = held & np.isnan(inputs.price)
    stale = held & ~missing & inputs.stale

    value = inputs.quantity * np.where(np.isnan(inputs.price), 0.0, inputs.price)
    total_value = np.bincount(acc, weights=value, minlength=n_acc)

    reason = np.zeros(n_acc, dtype=np.int8)
    reason[total_value <= 0] = Unscannable.NO_VALUE
    reason[np.bincount(acc, weights=stale, minlength=n_acc) > 0] = Unscannable.STALE_PRICE
    reason[np.bincount(acc, weights=missing, minlength=n_acc) > 0] = Unscannable.MISSING_PRICE
    ok = reason == Unscannable.OK

    safe_total = np.where(ok, total_value, 1.0)
    weight = value / safe_total[acc]
    drift = weight - inputs.target
    abs_drift = np.abs(drift)
    # where() keeps the comparisons NaN-free: a NaN band is no band
    over_abs = abs_drift > np.where(np.isnan(inputs.abs_band), np.inf, inputs.abs_band) + EPS
    has_target = inputs.target > 0
    rel = np.divide(abs_drift, inputs.target, out=np.zeros_like(abs_drift), where=has_target)
    over_rel = has_target & (
        rel > np.where(np.isnan(inputs.rel_band), np.inf, inputs.rel_band) + EPS
    )
    row_ok = ok[acc]
    breached = (over_abs | over_rel) & row_ok

    total_drift = 0.5 * np.bincount(acc, weights=abs_drift, minlength=n_acc)
    cash_drift = np.bincount(acc, weights=np.where(inputs.is_cash, drift, 0.0), minlength=n_acc)
    max_drift = np.zeros(n_acc)
    if acc.shape[0]:
        starts = np.searchsorted(acc, np.arange(n_acc))
        present = np.bincount(acc, minlength=n_acc) > 0
        position_drift = np.where(inputs.is_cash, 0.0, abs_drift)
        max_drift[present] = np.maximum.reduceat(position_drift, starts[present])

    def count(mask: BoolArray) -> IntArray:
        return np.bincount(acc, weights=mask, minlength=n_acc).astype(np.int64)

    not_cash = ~inputs.is_cash
    breach_count = count(breached)
    not_in_model = count(held & ~inputs.in_model & not_cash)
    model_not_held = count(inputs.in_model & ~held & not_cash)

    nan = np.full(n_acc, np.nan)
    zero = np.zeros(n_acc, dtype=np.int64)
    return DriftResult(
        weight=np.where(row_ok, weight, np.nan),
        drift=np.where(row_ok, drift, np.nan),
        breached=breached,
        total_value=total_value,
        total_drift=np.where(ok, total_drift, nan),
        max_drift=np.where(ok, max_drift, nan),
        cash_drift=np.where(ok, cash_drift, nan),
        breach_count=np.where(ok, breach_count, zero),
        not_in_model_count=np.where(ok, not_in_model, zero),
        model_not_held_count=np.where(ok, model_not_held, zero),
        reason=reason,
    )
