"""The pure drift engine: hand-worked accounts, properties over random firms, input checks.

No database: every case builds ``DriftInputs`` directly. The numbers in the comments are worked
by hand (V is the account value, w a weight, t a target, d = w - t the drift).
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolios.drift import (
    ACCOUNT_SHAPE_MESSAGE,
    DTYPE_MESSAGE,
    EPS,
    ORDER_MESSAGE,
    RANGE_MESSAGE,
    SHAPE_MESSAGE,
    DriftInputs,
    DriftResult,
    Unscannable,
    drift_compute,
)

NAN = math.nan
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    """One row of one account, as a test writes it."""

    quantity: float
    price: float = 1.0
    target: float = 0.0
    abs_band: float = NAN
    rel_band: float = NAN
    in_model: bool = True
    stale: bool = False
    is_cash: bool = False


def cash(amount: float, target: float = 0.0, abs_band: float = NAN) -> Row:
    return Row(quantity=amount, price=1.0, target=target, abs_band=abs_band, is_cash=True)


def inputs_of(*accounts: list[Row], n_accounts: int | None = None) -> DriftInputs:
    """Flat engine inputs for the accounts given, account ``i`` being ``accounts[i]``."""
    rows = [(i, row) for i, account_rows in enumerate(accounts) for row in account_rows]

    def column(name: str, dtype: type) -> np.ndarray:
        return np.array([getattr(row, name) for _, row in rows], dtype=dtype)

    return DriftInputs(
        account=np.array([i for i, _ in rows], dtype=np.int64),
        quantity=column("quantity", np.float64),
        price=column("price", np.float64),
        stale=column("stale", np.bool_),
        target=column("target", np.float64),
        abs_band=column("abs_band", np.float64),
        rel_band=column("rel_band", np.float64),
        in_model=column("in_model", np.bool_),
        is_cash=column("is_cash", np.bool_),
        n_accounts=len(accounts) if n_accounts is None else n_accounts,
    )


# --- hand-worked accounts ----------------------------------------------------------------


def test_drift_compute_treats_cash_as_a_position():
    # AAA 10 x 50 = 500, BBB 20 x 10 = 200, cash 300: V = 1000
    # w = 0.5, 0.2, 0.3; t = 0.6, 0.3, 0.1; d = -0.1, -0.1, +0.2
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=10, price=50, target=0.6),
                Row(quantity=20, price=10, target=0.3),
                cash(300, target=0.1),
            ]
        )
    )
    np.testing.assert_allclose(result.weight, [0.5, 0.2, 0.3])
    np.testing.assert_allclose(result.drift, [-0.1, -0.1, 0.2])
    assert result.total_value[0] == 1000
    # total drift 0.5 * (0.1 + 0.1 + 0.2) = 0.2; max over positions (cash excluded) 0.1
    assert result.total_drift[0] == pytest.approx(0.2)
    assert result.max_drift[0] == pytest.approx(0.1)
    assert result.cash_drift[0] == pytest.approx(0.2)
    assert result.breached.tolist() == [False, False, False]
    assert result.breach_count.tolist() == [0]
    assert result.reason.tolist() == [Unscannable.OK]


def test_drift_compute_flags_a_cash_row_outside_its_band():
    # same account with a 15% absolute band on cash: |d_cash| = 0.2 > 0.15
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=10, price=50, target=0.6),
                Row(quantity=20, price=10, target=0.3),
                cash(300, target=0.1, abs_band=0.15),
            ]
        )
    )
    assert result.breached.tolist() == [False, False, True]
    assert result.breach_count.tolist() == [1]
    assert result.account_breached.tolist() == [True]


def test_drift_compute_breaches_the_relative_band_only():
    # X 56 x 10 = 560, cash 440: V = 1000; X: w = 0.56, t = 0.5, d = 0.06
    # absolute band 0.10: 0.06 < 0.10, no; relative band 10%: 0.06 / 0.5 = 12% > 10%, breach
    # cash: w = 0.44, t = 0.5, d = -0.06, no band
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=56, price=10, target=0.5, abs_band=0.10, rel_band=0.10),
                cash(440, target=0.5),
            ]
        )
    )
    np.testing.assert_allclose(result.drift, [0.06, -0.06])
    assert result.breached.tolist() == [True, False]
    assert result.breach_count.tolist() == [1]


def test_drift_compute_breaches_the_absolute_band_only():
    # Y 8 x 10 = 80, Z 46 x 10 = 460, cash 460: V = 1000
    # Y: w = 0.08, t = 0.05, d = 0.03 > abs band 0.02, breach; 0.03 / 0.05 = 60% < rel 100%
    # Z: w = 0.46, t = 0.5, d = -0.04; abs band 0.05 and rel band 10% (0.08): no breach
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=8, price=10, target=0.05, abs_band=0.02, rel_band=1.0),
                Row(quantity=46, price=10, target=0.5, abs_band=0.05, rel_band=0.10),
                cash(460, target=0.45),
            ]
        )
    )
    np.testing.assert_allclose(result.drift, [0.03, -0.04, 0.01])
    assert result.breached.tolist() == [True, False, False]
    # total drift 0.5 * (0.03 + 0.04 + 0.01) = 0.04; max drift 0.04
    assert result.total_drift[0] == pytest.approx(0.04)
    assert result.max_drift[0] == pytest.approx(0.04)


def test_drift_compute_counts_and_bands_a_held_security_outside_the_model():
    # AAA 60 x 10 = 600 (t 0.8), OUT 5 x 20 = 100 (not in model: t 0), cash 300 (t 0.2)
    # V = 1000; w = 0.6, 0.1, 0.3; d = -0.2, +0.1, +0.1
    # OUT: |d| = 0.1 > abs band 0.05, breach; its relative band is ignored (t = 0)
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=60, price=10, target=0.8),
                Row(quantity=5, price=20, abs_band=0.05, rel_band=0.5, in_model=False),
                cash(300, target=0.2),
            ]
        )
    )
    np.testing.assert_allclose(result.weight, [0.6, 0.1, 0.3])
    np.testing.assert_allclose(result.drift, [-0.2, 0.1, 0.1])
    assert result.breached.tolist() == [False, True, False]
    assert result.not_in_model_count.tolist() == [1]
    assert result.model_not_held_count.tolist() == [0]
    # total drift 0.5 * (0.2 + 0.1 + 0.1) = 0.2; max drift 0.2
    assert result.total_drift[0] == pytest.approx(0.2)
    assert result.max_drift[0] == pytest.approx(0.2)


def test_drift_compute_gives_a_model_security_not_held_its_whole_target_as_drift():
    # AAA 75 x 10 = 750 (t 0.7), MMM not held (t 0.25), cash 250 (t 0.05): V = 1000
    # w = 0.75, 0, 0.25; d = +0.05, -0.25, +0.2
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=75, price=10, target=0.7),
                Row(quantity=0, price=25, target=0.25),
                cash(250, target=0.05),
            ]
        )
    )
    np.testing.assert_allclose(result.weight, [0.75, 0.0, 0.25])
    np.testing.assert_allclose(result.drift, [0.05, -0.25, 0.2])
    assert result.model_not_held_count.tolist() == [1]
    assert result.not_in_model_count.tolist() == [0]
    # total drift 0.5 * (0.05 + 0.25 + 0.2) = 0.25; max drift 0.25
    assert result.total_drift[0] == pytest.approx(0.25)
    assert result.max_drift[0] == pytest.approx(0.25)


def test_drift_compute_ignores_the_missing_price_of_a_security_not_held():
    # MMM is in the model but not held and has no price: nothing to value, still scannable
    # AAA 90 x 10 = 900 (t 0.8), MMM (t 0.1), cash 100 (t 0.1): d = 0.1, -0.1, 0
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=90, price=10, target=0.8),
                Row(quantity=0, price=NAN, target=0.1),
                cash(100, target=0.1),
            ]
        )
    )
    assert result.reason.tolist() == [Unscannable.OK]
    np.testing.assert_allclose(result.drift, [0.1, -0.1, 0.0], atol=1e-15)
    assert result.total_value[0] == 1000


def test_drift_compute_never_applies_a_relative_band_to_a_zero_target():
    # OLD is in the model at 0% (being phased out): 4 x 10 = 40; AAA 56 x 10 = 560 (t 0.6);
    # cash 400 (t 0.4): V = 1000; OLD w = 0.04, d = 0.04, a relative band of 25% cannot
    # apply (0.04 / 0 has no meaning), its absolute band 0.05 is not reached; in the model,
    # so not counted as held-not-in-model
    result = drift_compute(
        inputs_of(
            [
                Row(quantity=4, price=10, target=0.0, abs_band=0.05, rel_band=0.25),
                Row(quantity=56, price=10, target=0.6),
                cash(400, target=0.4),
            ]
        )
    )
    np.testing.assert_allclose(result.drift, [0.04, -0.04, 0.0], atol=1e-15)
    assert result.breached.tolist() == [False, False, False]
    assert result.not_in_model_count.tolist() == [0]
    assert result.model_not_held_count.tolist() == [0]


def test_drift_compute_gives_cash_the_whole_weight_of_an_account_without_positions():
    # account 0: cash 5000 only, model AAA 90% not held, cash 10%
    #   w_cash = 1, d_cash = +0.9; AAA w = 0, d = -0.9; total 0.9, max 0.9
    # account 1: cash 2000 and no model rows at all: w_cash = 1 = t, no drift
    result = drift_compute(
        inputs_of(
            [cash(5000, target=0.1), Row(quantity=0, price=10, target=0.9)],
            [cash(2000, target=1.0)],
        )
    )
    np.testing.assert_allclose(result.weight, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(result.drift, [0.9, -0.9, 0.0])
    np.testing.assert_allclose(result.total_drift, [0.9, 0.0])
    np.testing.assert_allclose(result.max_drift, [0.9, 0.0])
    np.testing.assert_allclose(result.cash_drift, [0.9, 0.0])
    assert result.model_not_held_count.tolist() == [1, 0]
    assert result.reason.tolist() == [Unscannable.OK, Unscannable.OK]


def test_drift_compute_reports_an_account_without_value_as_not_scannable():
    # account 0: cash 0 and the model security not held: V = 0, no weight can be computed
    # account 1: no rows at all (n_accounts = 3); account 2 is fine
    # account 2: AAA 1 x 100 = 100 (t 0.5), cash 100 (t 0.5): no drift
    result = drift_compute(
        inputs_of(
            [cash(0, target=0.1), Row(quantity=0, price=10, target=0.9, abs_band=0.01)],
            [],
            [Row(quantity=1, price=100, target=0.5), cash(100, target=0.5)],
        )
    )
    assert result.reason.tolist() == [Unscannable.NO_VALUE, Unscannable.NO_VALUE, Unscannable.OK]
    assert result.scannable.tolist() == [False, False, True]
    assert np.isnan(result.weight[:2]).all()
    assert np.isnan(result.drift[:2]).all()
    assert result.breached.tolist() == [False, False, False, False]
    assert result.total_value.tolist() == [0.0, 0.0, 200.0]
    for metric in (result.total_drift, result.max_drift, result.cash_drift):
        assert np.isnan(metric[:2]).all()
        assert metric[2] == 0.0
    assert result.breach_count.tolist() == [0, 0, 0]
    assert result.model_not_held_count.tolist() == [0, 0, 0]
    assert result.account_breached.tolist() == [False, False, False]


def test_drift_compute_does_not_scan_an_account_whose_value_is_not_a_number():
    # a NaN quantity (a corrupt lot) or an infinite price makes V meaningless: NO_VALUE, not
    # NaN weights reported as a scan; account 2 in the same call is scanned
    result = drift_compute(
        inputs_of(
            [Row(quantity=NAN, price=10, target=0.5), cash(100, 0.5)],
            [Row(quantity=1, price=math.inf, target=0.5), cash(100, 0.5)],
            [Row(quantity=1, price=100, target=0.5), cash(100, 0.5)],
        )
    )
    assert result.reason.tolist() == [Unscannable.NO_VALUE, Unscannable.NO_VALUE, Unscannable.OK]
    assert np.isnan(result.weight[:4]).all()
    assert result.total_drift[2] == 0.0


def test_drift_compute_never_scans_an_account_with_a_stale_or_missing_price():
    # account 0: AAA has a price but it is stale -> STALE_PRICE
    # account 1: BBB is held without a price -> MISSING_PRICE (both AAA would breach if scanned)
    # account 2, in the same call: AAA 30 x 10 = 300 (t 0.5, abs band 0.1), cash 700 (t 0.5)
    #   w = 0.3, 0.7; d = -0.2, +0.2; AAA breaches; total 0.2
    # account 3: held BBB both stale and priceless: missing wins
    result = drift_compute(
        inputs_of(
            [Row(quantity=30, price=10, target=0.5, abs_band=0.1, stale=True), cash(700, 0.5)],
            [
                Row(quantity=30, price=10, target=0.4, abs_band=0.1),
                Row(quantity=5, price=NAN, target=0.1),
                cash(700, 0.5),
            ],
            [Row(quantity=30, price=10, target=0.5, abs_band=0.1), cash(700, 0.5)],
            [Row(quantity=5, price=NAN, target=0.5, stale=True), cash(700, 0.5)],
        )
    )
    assert result.reason.tolist() == [
        Unscannable.STALE_PRICE,
        Unscannable.MISSING_PRICE,
        Unscannable.OK,
        Unscannable.MISSING_PRICE,
    ]
    unscannable_rows = [0, 1, 2, 3, 4, 7, 8]
    assert np.isnan(result.weight[unscannable_rows]).all()
    assert not result.breached[unscannable_rows].any()
    assert np.isnan(result.total_drift[[0, 1, 3]]).all()
    assert result.breach_count.tolist() == [0, 0, 1, 0]
    # the stale price still values its row; a missing one values nothing
    assert result.total_value.tolist() == [1000.0, 1000.0, 1000.0, 700.0]
    np.testing.assert_allclose(result.weight[5:7], [0.3, 0.7])
    np.testing.assert_allclose(result.drift[5:7], [-0.2, 0.2])
    assert result.breached[5:7].tolist() == [True, False]
    assert result.total_drift[2] == pytest.approx(0.2)
    assert result.account_breached.tolist() == [False, False, True, False]


def test_drift_compute_does_not_flag_a_drift_exactly_on_the_absolute_band():
    # AAA 17 x 1 = 17, cash 983: V = 1000; w = 0.017, t = 0.007, band 0.01.
    # In floats 0.017 - 0.007 = 0.010000000000000002 > 0.01: EPS keeps it inside the band.
    assert 0.017 - 0.007 > 0.01
    at_band = inputs_of([Row(quantity=17, target=0.007, abs_band=0.01), cash(983, 0.993)])
    assert drift_compute(at_band).breached.tolist() == [False, False]
    # a hair beyond the band (0.0101) is a breach
    beyond = inputs_of([Row(quantity=17, target=0.0069, abs_band=0.01), cash(983, 0.9931)])
    assert drift_compute(beyond).breached.tolist() == [True, False]


def test_drift_compute_does_not_flag_a_drift_exactly_on_the_relative_band():
    # AAA 15 x 25 = 375, cash 625: V = 1000; w = 0.375, t = 0.3, band 25% of 0.3 = 0.075.
    # In floats 0.375 - 0.3 = 0.07500000000000001 > 0.3 * 0.25: EPS keeps it inside.
    assert 0.375 - 0.3 > 0.3 * 0.25
    at_band = inputs_of([Row(quantity=15, price=25, target=0.3, rel_band=0.25), cash(625, 0.7)])
    assert drift_compute(at_band).breached.tolist() == [False, False]
    # a hair beyond: t = 0.2999 allows 0.074975, d = 0.0751
    beyond = inputs_of(
        [Row(quantity=15, price=25, target=0.2999, rel_band=0.25), cash(625, 0.7001)]
    )
    assert drift_compute(beyond).breached.tolist() == [True, False]


def test_drift_compute_scans_many_accounts_as_it_scans_each_alone():
    accounts = [
        [Row(quantity=10, price=50, target=0.6), cash(500, 0.4, abs_band=0.05)],
        [Row(quantity=3, price=NAN, target=1.0), cash(10, 0.0)],
        [cash(100, 1.0)],
        [
            Row(quantity=0, price=20, target=0.3, rel_band=0.5),
            Row(quantity=7, price=20, in_model=False, abs_band=0.02),
            cash(60, 0.7),
        ],
    ]
    together = drift_compute(inputs_of(*accounts))
    first_row = 0
    for i, rows in enumerate(accounts):
        alone = drift_compute(inputs_of(rows))
        last_row = first_row + len(rows)
        for name in ("weight", "drift", "breached"):
            np.testing.assert_array_equal(
                getattr(together, name)[first_row:last_row], getattr(alone, name)
            )
        for name in account_fields():
            np.testing.assert_array_equal(getattr(together, name)[i], getattr(alone, name)[0])
        first_row = last_row
    # account 3: V = 140 + 60 = 200; held-not-in-model w = 0.7 breaches 0.02;
    # the model security not held: d = -0.3, |d| / t = 100% > 50%
    assert together.breach_count.tolist() == [1, 0, 0, 2]


# --- properties over random firms ----------------------------------------------------------


def account_fields() -> tuple[str, ...]:
    return (
        "total_value",
        "total_drift",
        "max_drift",
        "cash_drift",
        "breach_count",
        "not_in_model_count",
        "model_not_held_count",
        "reason",
    )


def reference_compute(inputs: DriftInputs) -> dict[str, list]:
    """The engine's rules written plainly: a Python loop over accounts, then over their rows."""
    n = inputs.account.shape[0]
    rows_of: list[list[int]] = [[] for _ in range(inputs.n_accounts)]
    for i in range(n):
        rows_of[int(inputs.account[i])].append(i)
    out: dict[str, list] = {name: [None] * n for name in ("weight", "drift", "breached")}
    out.update({name: [] for name in account_fields()})
    for rows in rows_of:
        q = [float(inputs.quantity[i]) for i in rows]
        p = [float(inputs.price[i]) for i in rows]
        held = [qj > 0 for qj in q]
        missing = any(h and math.isnan(pj) for h, pj in zip(held, p, strict=True))
        stale = any(
            h and not math.isnan(pj) and bool(inputs.stale[i])
            for h, pj, i in zip(held, p, rows, strict=True)
        )
        values = [0.0 if math.isnan(pj) else qj * pj for qj, pj in zip(q, p, strict=True)]
        total = sum(values)
        if missing:
            reason = Unscannable.MISSING_PRICE
        elif stale:
            reason = Unscannable.STALE_PRICE
        elif not (math.isfinite(total) and total > 0):
            reason = Unscannable.NO_VALUE
        else:
            reason = Unscannable.OK
        out["total_value"].append(total)
        out["reason"].append(int(reason))
        if reason != Unscannable.OK:
            for i in rows:
                out["weight"][i] = out["drift"][i] = NAN
                out["breached"][i] = False
            for name in ("total_drift", "max_drift", "cash_drift"):
                out[name].append(NAN)
            for name in ("breach_count", "not_in_model_count", "model_not_held_count"):
                out[name].append(0)
            continue
        total_drift = max_drift = cash_drift = 0.0
        breaches = not_in_model = model_not_held = 0
        for i, value, h in zip(rows, values, held, strict=True):
            t = float(inputs.target[i])
            weight = value / total
            drift = weight - t
            size = abs(drift)
            abs_band, rel_band = float(inputs.abs_band[i]), float(inputs.rel_band[i])
            breached = (not math.isnan(abs_band) and size - EPS > abs_band) or (
                t > 0 and not math.isnan(rel_band) and size - EPS > t * rel_band
            )
            out["weight"][i], out["drift"][i], out["breached"][i] = weight, drift, breached
            total_drift += 0.5 * size
            breaches += breached
            if inputs.is_cash[i]:
                cash_drift += drift
                continue
            max_drift = max(max_drift, size)
            not_in_model += h and not inputs.in_model[i]
            model_not_held += bool(inputs.in_model[i]) and not h
        for name, metric in (
            ("total_drift", total_drift),
            ("max_drift", max_drift),
            ("cash_drift", cash_drift),
            ("breach_count", breaches),
            ("not_in_model_count", not_in_model),
            ("model_not_held_count", model_not_held),
        ):
            out[name].append(metric)
    return out


BANDS = st.one_of(st.just(NAN), st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5]))


@st.composite
def positions(draw: st.DrawFn) -> list[Row]:
    """One account: 0 to 15 securities plus a cash row at a random place, targets summing to 1.

    Now and then a price is missing or stale (so some accounts are not scannable).
    """
    n = draw(st.integers(0, 15))
    rows = []
    raw_targets = []
    for _ in range(n):
        in_model = draw(st.booleans())
        quantity = draw(st.one_of(st.just(0.0), st.integers(1, 10_000).map(float)))
        price = NAN if draw(st.integers(0, 20)) == 0 else draw(st.floats(0.01, 5_000.0))
        raw_targets.append(draw(st.integers(0, 100)) if in_model else 0)
        rows.append(
            Row(
                quantity=quantity,
                price=price,
                abs_band=draw(BANDS),
                rel_band=draw(BANDS),
                in_model=in_model,
                stale=draw(st.integers(0, 30)) == 0,
            )
        )
    cash_raw = draw(st.integers(0, 100))
    total_raw = sum(raw_targets) + cash_raw
    if total_raw == 0:
        cash_raw = total_raw = 1
    rows = [
        replace(row, target=raw / total_raw) for row, raw in zip(rows, raw_targets, strict=True)
    ]
    cash_row = cash(draw(st.floats(0.0, 1e6)), target=cash_raw / total_raw, abs_band=draw(BANDS))
    rows.insert(draw(st.integers(0, len(rows))), cash_row)
    return rows


FIRMS = st.lists(positions(), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(FIRMS)
def test_drift_compute_weights_of_a_scannable_account_sum_to_one(accounts):
    inputs = inputs_of(*accounts)
    result = drift_compute(inputs)
    sums = np.bincount(inputs.account, weights=result.weight, minlength=inputs.n_accounts)
    np.testing.assert_allclose(sums[result.scannable], 1.0, rtol=0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(FIRMS)
def test_drift_compute_total_drift_lies_between_zero_and_one(accounts):
    result = drift_compute(inputs_of(*accounts))
    total_drift = result.total_drift[result.scannable]
    assert (total_drift >= 0).all()
    assert (total_drift <= 1 + 1e-12).all()
    assert np.isnan(result.total_drift[~result.scannable]).all()


@settings(max_examples=300, deadline=None)
@given(FIRMS)
def test_drift_compute_equals_the_plain_reference_on_every_output(accounts):
    inputs = inputs_of(*accounts)
    result = drift_compute(inputs)
    expected = reference_compute(inputs)
    for name in ("weight", "drift", *account_fields()):
        actual = getattr(result, name)
        wanted = np.array(expected[name], dtype=actual.dtype)
        if actual.dtype.kind == "f":
            np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, wanted, err_msg=name)
    np.testing.assert_array_equal(result.breached, np.array(expected["breached"], dtype=bool))


def test_drift_compute_blocks_give_the_same_result_as_one_block(monkeypatch):
    # many accounts of uneven size, cut into blocks smaller than some accounts
    rng = np.random.default_rng(7)
    accounts = []
    for _ in range(300):
        rows = [
            Row(
                quantity=float(rng.integers(0, 50)),
                price=float(rng.uniform(1, 100)),
                target=float(rng.uniform(0, 0.1)),
                abs_band=0.02,
                rel_band=0.25,
                in_model=bool(rng.random() < 0.8),
            )
            for _ in range(int(rng.integers(0, 40)))
        ]
        accounts.append([*rows, cash(float(rng.uniform(0, 1000)), 0.1)])
    inputs = inputs_of(*accounts)
    monkeypatch.setattr("portfolios.drift.BLOCK_ROWS", 16)
    small_blocks = drift_compute(inputs)
    monkeypatch.setattr("portfolios.drift.BLOCK_ROWS", 1 << 30)
    one_block = drift_compute(inputs)
    for name in DriftResult.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(small_blocks, name), getattr(one_block, name))
    assert small_blocks.breach_count.sum() > 0


def test_drift_compute_accepts_an_empty_firm():
    result = drift_compute(inputs_of(n_accounts=2))
    assert result.weight.shape == (0,)
    assert result.reason.tolist() == [Unscannable.NO_VALUE, Unscannable.NO_VALUE]
    assert np.isnan(result.total_drift).all()


# --- input checks --------------------------------------------------------------------------


def valid_arrays() -> dict:
    inputs = inputs_of([Row(quantity=1, price=10, target=0.5), cash(10, 0.5)], [cash(5, 1.0)])
    return {name: getattr(inputs, name) for name in DriftInputs.__dataclass_fields__}


def test_drift_inputs_rejects_an_array_of_the_wrong_length():
    arrays = valid_arrays()
    arrays["price"] = arrays["price"][:2]
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == SHAPE_MESSAGE.format(name="price", shape=(2,), n=3)
    assert str(excinfo.value) == "price has shape (2,), expected (3,)"


def test_drift_inputs_rejects_a_two_dimensional_account_array():
    arrays = valid_arrays()
    arrays["account"] = arrays["account"].reshape(3, 1)
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == ACCOUNT_SHAPE_MESSAGE.format(shape=(3, 1))


def test_drift_inputs_rejects_rows_not_grouped_by_ascending_account():
    arrays = valid_arrays()
    arrays["account"] = np.array([0, 1, 0])
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == ORDER_MESSAGE
    assert str(excinfo.value) == "rows must be grouped by account in ascending order"


def test_drift_inputs_rejects_an_account_index_out_of_range():
    arrays = valid_arrays()
    arrays["n_accounts"] = 1
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == RANGE_MESSAGE.format(last=0, n_accounts=1, found=1)
    arrays = valid_arrays()
    arrays["account"] = np.array([-1, 0, 1])
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == "account indices must lie in 0..1 (n_accounts=2), found -1"


def test_drift_inputs_rejects_flags_that_are_not_bool():
    # ~ on an int array is a bitwise not (~1 == -2, truthy): the engine would count wrongly
    arrays = valid_arrays()
    arrays["is_cash"] = arrays["is_cash"].astype(np.int64)
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == DTYPE_MESSAGE.format(
        name="is_cash", dtype="int64", expected="bool"
    )
    arrays = valid_arrays()
    arrays["account"] = arrays["account"].astype(np.float64)
    with pytest.raises(ValueError) as excinfo:
        DriftInputs(**arrays)
    assert str(excinfo.value) == "account has dtype float64, expected integer"


# --- purity --------------------------------------------------------------------------------


def test_importing_the_drift_engine_does_not_import_django():
    completed = subprocess.run(
        [sys.executable, "-c", "import portfolios.drift, sys; assert 'django' not in sys.modules"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
