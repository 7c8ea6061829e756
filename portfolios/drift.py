"""The drift engine: weights, drift and band breaches of every position of every account at
once, as one vectorized pass (numpy only; no Django, no per-account Python loop).

Notation (DESIGN 4). For account ``a`` with rows ``j`` (its holdings, its model's securities
and one cash row):

- value ``v_j = q_j * p_j`` (cash: ``q`` is the cash amount, ``p = 1``; a row with a NaN price
  counts 0, and makes the account unscannable when it is held, ``q_j > 0``)
- account value ``V_a = sum_j v_j``
- weight ``w_j = v_j / V_a`` and drift ``d_j = w_j - t_j`` where ``t_j`` is the target weight
  (0 for a held security that is not in the model)
- a row breaches when ``|d_j| - EPS > abs_band_j`` or, for ``t_j > 0``,
  ``|d_j| - EPS > t_j * rel_band_j`` (a NaN band is no band; ``EPS`` absorbs float noise, so a
  drift exactly on a band's edge is not a breach). Cash rows breach like any other row.
- account metrics: total drift ``0.5 * sum_j |d_j|`` over all rows, cash included (in [0, 1]
  when weights are non-negative and targets sum to 1), max position drift ``max |d_j|`` over
  non-cash rows (0 when there are none), cash drift ``d_cash``, breach count, held-not-in-model
  count (non-cash rows with ``q_j > 0`` not in the model) and model-not-held count (non-cash
  model rows with ``q_j <= 0``).

An account is *not scannable* when a held security's price is missing (``MISSING_PRICE``, first)
or stale (``STALE_PRICE``), or when its value ``V_a`` is not a positive finite number
(``NO_VALUE``, which includes an account with no rows at all); it is never scanned with a wrong
value. Its weights and drifts are NaN, its breach flags False, its metrics NaN and its counts
0; ``total_value`` still reports the value of its priced rows.

Rows must be grouped by account in ascending account index (every account ``0..A-1`` normally
has at least its cash row); the service's bulk query orders them so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Breaches compare floats computed from Decimals: ignore differences below this.
EPS = 1e-12
# Rows per block of the per-row pass: small enough for a block's temporaries to stay in cache.
BLOCK_ROWS = 65_536

SHAPE_MESSAGE = "{name} has shape {shape}, expected ({n},)"
ACCOUNT_SHAPE_MESSAGE = "account has shape {shape}, expected one dimension"
DTYPE_MESSAGE = "{name} has dtype {dtype}, expected {expected}"
ORDER_MESSAGE = "rows must be grouped by account in ascending order"
RANGE_MESSAGE = "account indices must lie in 0..{last} (n_accounts={n_accounts}), found {found}"


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
        account = self.account
        if account.ndim != 1:
            raise ValueError(ACCOUNT_SHAPE_MESSAGE.format(shape=account.shape))
        n = account.shape[0]
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
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(SHAPE_MESSAGE.format(name=name, shape=shape, n=n))
        if account.dtype.kind not in "iu":
            raise ValueError(
                DTYPE_MESSAGE.format(name="account", dtype=account.dtype, expected="integer")
            )
        # ~ on an integer array is a bitwise not, so the flags must really be bool
        for name in ("stale", "in_model", "is_cash"):
            dtype = getattr(self, name).dtype
            if dtype != np.bool_:
                raise ValueError(DTYPE_MESSAGE.format(name=name, dtype=dtype, expected="bool"))
        if n == 0:
            return
        if np.any(account[1:] < account[:-1]):
            raise ValueError(ORDER_MESSAGE)
        first, last = int(account[0]), int(account[-1])
        if first < 0 or last >= self.n_accounts:
            raise ValueError(
                RANGE_MESSAGE.format(
                    last=self.n_accounts - 1,
                    n_accounts=self.n_accounts,
                    found=first if first < 0 else last,
                )
            )


@dataclass(frozen=True)
class DriftResult:
    """Per-row ``weight``, ``drift``, ``breached`` (n,) and per-account metrics (n_accounts,).

    ``reason`` (n_accounts,) is an ``Unscannable`` code per account. Rows of unscannable
    accounts have NaN weight and drift and are never breached; their metrics are NaN and their
    counts 0, while ``total_value`` is the value of their priced rows (see the module).
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


def _segment_rows(starts: IntArray, counts: IntArray) -> IntArray:
    """The row indices of the segments that begin at ``starts`` with ``counts`` rows, in order."""
    total = int(counts.sum())
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return offsets + np.arange(total, dtype=offsets.dtype)


def drift_compute(inputs: DriftInputs) -> DriftResult:
    """Weights, drift, breaches and account metrics for every row and account (see module).

    How it stays fast (about 2x a bare weights-and-total-drift pass): each account is a
    contiguous segment of rows, so per-account sums and maxima are ``reduceat`` calls; the few
    rows that need care (NaN prices, stale flags, cash rows) are handled by index; an
    unscannable account's rows get a NaN denominator, so its weights, drift and metrics come
    out NaN and its breach comparisons False with no per-row masking; and the per-row work
    after the account totals runs over blocks of whole accounts (about ``BLOCK_ROWS`` rows) so
    its temporaries stay in cache. The block loop is over rows, not accounts: 5 million rows
    are about 80 blocks.
    """
    acc = inputs.account
    n = acc.shape[0]
    n_acc = inputs.n_accounts
    quantity, price, target = inputs.quantity, inputs.price, inputs.target

    # segments: the first row of each account present, and its number of rows
    starts = np.flatnonzero(acc[1:] != acc[:-1])
    starts += 1
    starts = np.concatenate((np.zeros(min(n, 1), dtype=starts.dtype), starts))
    counts = np.diff(starts, append=n)
    seg_account = acc[starts]
    n_seg = starts.shape[0]

    value = np.multiply(quantity, price, dtype=np.float64)
    seg_total = np.add.reduceat(value, starts) if n else np.zeros(0)
    # a NaN price makes its account's total NaN: only those accounts' rows are looked at
    nan_seg = np.flatnonzero(np.isnan(seg_total))
    nan_rows = np.zeros(0, dtype=np.intp)
    if nan_seg.shape[0]:
        rows = _segment_rows(starts[nan_seg], counts[nan_seg])
        nan_rows = rows[np.isnan(price[rows])]
        value[nan_rows] = 0.0
        local_starts = np.cumsum(counts[nan_seg]) - counts[nan_seg]
        seg_total[nan_seg] = np.add.reduceat(value[rows], local_starts)

    # a held row whose price is missing or stale makes its account unscannable
    missing_rows = nan_rows[quantity[nan_rows] > 0]
    stale_rows = np.flatnonzero(inputs.stale)
    stale_rows = stale_rows[(quantity[stale_rows] > 0) & ~np.isnan(price[stale_rows])]
    total_value = np.zeros(n_acc)
    total_value[seg_account] = seg_total
    reason = np.zeros(n_acc, dtype=np.int8)
    reason[~(np.isfinite(total_value) & (total_value > 0))] = Unscannable.NO_VALUE
    reason[acc[stale_rows]] = Unscannable.STALE_PRICE
    reason[acc[missing_rows]] = Unscannable.MISSING_PRICE
    ok = reason == Unscannable.OK
    denominator = np.where(ok[seg_account], seg_total, np.nan)

    weight = value
    drift = np.empty(n)
    breached = np.empty(n, dtype=np.bool_)
    seg_total_drift = np.empty(n_seg)
    seg_max_drift = np.empty(n_seg)
    seg_breaches = np.empty(n_seg, dtype=np.int32)
    seg_not_in_model = np.empty(n_seg, dtype=np.int32)
    seg_model_not_held = np.empty(n_seg, dtype=np.int32)
    # block edges, in segments: whole accounts of about BLOCK_ROWS rows each
    edges = np.searchsorted(starts, np.arange(0, n, BLOCK_ROWS))
    edges = np.unique(np.append(edges, n_seg))
    for k0, k1 in itertools.pairwise(edges.tolist()):
        r0 = starts[k0]
        r1 = starts[k1] if k1 < n_seg else n
        rows = slice(r0, r1)
        local = starts[k0:k1] - r0
        t = target[rows]
        is_cash = inputs.is_cash[rows]
        in_model = inputs.in_model[rows]

        scratch = np.repeat(denominator[k0:k1], counts[k0:k1])
        w = np.divide(weight[rows], scratch, out=weight[rows])
        d = np.subtract(w, t, out=drift[rows])
        abs_d = np.abs(d, out=scratch)
        seg_total_drift[k0:k1] = np.add.reduceat(abs_d, local)
        # |d| - EPS; comparisons with a NaN band (no band) or NaN drift (unscannable) are False
        margin = abs_d - EPS
        np.copyto(abs_d, 0.0, where=is_cash)
        seg_max_drift[k0:k1] = np.maximum.reduceat(abs_d, local)
        b = np.greater(margin, inputs.abs_band[rows], out=breached[rows])
        rel_limit = np.multiply(t, inputs.rel_band[rows], out=abs_d)
        over_rel = np.greater(margin, rel_limit)
        over_rel &= t > 0
        b |= over_rel
        seg_breaches[k0:k1] = np.add.reduceat(b, local, dtype=np.int32)

        # on bools, x > y is x & ~y
        held = quantity[rows] > 0
        flag = np.greater(held, in_model, out=over_rel)
        seg_not_in_model[k0:k1] = np.add.reduceat(flag > is_cash, local, dtype=np.int32)
        flag = np.greater(in_model, held, out=over_rel)
        seg_model_not_held[k0:k1] = np.add.reduceat(flag > is_cash, local, dtype=np.int32)

    def per_account(seg_values: npt.NDArray[Any], fill: float) -> npt.NDArray[Any]:
        out = np.full(n_acc, fill, dtype=seg_values.dtype)
        out[seg_account] = seg_values
        out[~ok] = fill
        return out

    seg_total_drift *= 0.5
    cash_rows = np.flatnonzero(inputs.is_cash)
    # bincount of nothing is an int array: make it float for the NaNs
    cash_drift = np.bincount(acc[cash_rows], weights=drift[cash_rows], minlength=n_acc)
    cash_drift = cash_drift.astype(np.float64, copy=False)
    cash_drift[~ok] = np.nan
    return DriftResult(
        weight=weight,
        drift=drift,
        breached=breached,
        total_value=total_value,
        total_drift=per_account(seg_total_drift, np.nan),
        max_drift=per_account(seg_max_drift, np.nan),
        cash_drift=cash_drift,
        breach_count=per_account(seg_breaches, 0).astype(np.int64),
        not_in_model_count=per_account(seg_not_in_model, 0).astype(np.int64),
        model_not_held_count=per_account(seg_model_not_held, 0).astype(np.int64),
        reason=reason,
    )
