"""The pure risk model: betas recovered from synthetic factor data against the closed-form OLS,
the factor covariance, every fallback, the window, bad input, and mapping a model onto any list
of securities. No database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolios.risk import (
    DEFAULT_TOTAL_VAR,
    FALLBACK_CONSTANT,
    FALLBACK_MEDIAN,
    FALLBACK_MIN_RETURNS,
    FALLBACK_NO_RETURNS,
    FALLBACK_OWN,
    SPECIFIC_VAR_FLOOR,
    RiskEstimateError,
    risk_arrays,
    risk_model_arrays_from_lists,
    risk_model_estimate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FACTORS = [1, 2, 3]
T = 300  # sessions of returns generated (more than the window)


def _prices(returns: np.ndarray, columns: list[int], start: float = 100.0) -> pd.DataFrame:
    """Closes from simple returns (first row: ``start``), on business days."""
    closes = start * np.vstack([np.ones((1, returns.shape[1])), np.cumprod(1 + returns, axis=0)])
    dates = pd.bdate_range("2025-01-01", periods=closes.shape[0])
    return pd.DataFrame(closes, index=dates, columns=columns)


def _factor_world(
    *, n: int = 6, noise: float = 0.0, seed: int = 7
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Three factor ETFs (ids 1-3) and ``n`` securities (ids 101..) with known betas and
    alphas: ``r = alpha + f B' + e``."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0004, 0.01, (T, len(FACTORS)))
    betas = rng.normal(1.0, 0.6, (n, len(FACTORS)))
    alphas = rng.normal(0.0, 0.0005, n)
    e = rng.normal(0.0, noise, (T, n)) if noise else np.zeros((T, n))
    r = alphas + f @ betas.T + e
    frame = _prices(np.hstack([f, r]), FACTORS + [101 + i for i in range(n)])
    return frame, f, betas, r


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Closed-form OLS with intercept: betas and residual variance SSR / (n - K - 1)."""
    xa = np.column_stack([np.ones(len(x)), x])
    coef = np.linalg.solve(xa.T @ xa, xa.T @ y)
    resid = y - xa @ coef
    return coef[1:], float(resid @ resid / (len(y) - xa.shape[1]))


# --- regression ----------------------------------------------------------------------------


def test_exact_factor_returns_give_back_the_betas_and_no_specific_risk():
    frame, _, betas, _ = _factor_world(noise=0.0)

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    assert est.security_ids == (1, 2, 3, 101, 102, 103, 104, 105, 106)
    assert est.factors == (1, 2, 3)
    np.testing.assert_allclose(est.exposures[3:], betas, atol=1e-9)
    np.testing.assert_array_equal(est.specific_var[3:], np.full(6, SPECIFIC_VAR_FLOOR))
    assert est.fallbacks == {}
    assert est.diagnostics["n_obs"] == [252] * 9
    assert est.diagnostics["r2"][3:] == pytest.approx([1.0] * 6)


def test_noisy_returns_match_the_closed_form_ols_over_the_window():
    frame, f, _, r = _factor_world(noise=0.02)
    window = 200

    est = risk_model_estimate(frame, FACTORS, window=window, min_observations=60)

    for i in range(r.shape[1]):
        beta, resid_var = _ols(f[-window:], r[-window:, i])
        np.testing.assert_allclose(est.exposures[3 + i], beta, rtol=1e-9, atol=1e-12)
        assert est.specific_var[3 + i] == pytest.approx(resid_var * 252, rel=1e-9)


def test_a_late_listed_security_is_regressed_over_its_own_returns_only():
    frame, f, _, r = _factor_world(noise=0.02)
    frame.iloc[: T + 1 - 101, 3] = np.nan  # security 101 priced on the last 101 rows: 100 returns

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    beta, resid_var = _ols(f[-100:], r[-100:, 0])
    np.testing.assert_allclose(est.exposures[3], beta, rtol=1e-9)
    assert est.specific_var[3] == pytest.approx(resid_var * 252, rel=1e-9)
    assert est.diagnostics["n_obs"][3] == 100
    assert 101 not in est.fallbacks


def test_a_missing_price_costs_two_returns_and_is_not_bridged():
    frame, f, _, r = _factor_world(noise=0.01)
    frame.iloc[-50, 4] = np.nan  # security 102: returns into and out of that day are lost

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    keep = np.ones(252, dtype=bool)
    keep[[-50, -49]] = False
    beta, resid_var = _ols(f[-252:][keep], r[-252:, 1][keep])
    assert est.diagnostics["n_obs"][4] == 250
    np.testing.assert_allclose(est.exposures[4], beta, rtol=1e-9)
    assert est.specific_var[4] == pytest.approx(resid_var * 252, rel=1e-9)


def test_a_stray_price_on_a_day_without_factor_closes_is_ignored():
    frame, *_ = _factor_world(noise=0.02)
    stray = pd.DataFrame({101: [55.0]}, index=[frame.index[-30] + pd.Timedelta(hours=12)])
    with_stray = pd.concat([frame, stray]).sort_index()

    a = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    b = risk_model_estimate(with_stray, FACTORS, window=252, min_observations=60)

    np.testing.assert_array_equal(a.exposures, b.exposures)
    np.testing.assert_array_equal(a.specific_var, b.specific_var)
    assert b.diagnostics["n_factor_dates"] == 252


def test_each_factor_etf_has_unit_exposure_on_its_own_factor():
    frame, *_ = _factor_world(noise=0.02)

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    np.testing.assert_array_equal(est.exposures[:3], np.eye(3))
    np.testing.assert_array_equal(est.specific_var[:3], np.full(3, SPECIFIC_VAR_FLOOR))


def test_only_the_last_window_sessions_count():
    frame, *_ = _factor_world(noise=0.02)
    changed = frame.copy()
    changed.iloc[:40] = changed.iloc[:40] * np.linspace(0.5, 2.0, 40)[:, None]  # old history

    a = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    b = risk_model_estimate(changed, FACTORS, window=252, min_observations=60)

    np.testing.assert_array_equal(a.exposures, b.exposures)
    np.testing.assert_array_equal(a.specific_var, b.specific_var)
    assert a.diagnostics["n_dates"] == 252
    assert a.as_of == frame.index[-1].date()
    assert a.diagnostics["start"] == frame.index[-252].date().isoformat()


def test_rows_and_dates_in_any_order_give_the_same_model():
    frame, *_ = _factor_world(noise=0.02)
    shuffled = frame.iloc[::-1][frame.columns[::-1]]

    a = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    b = risk_model_estimate(shuffled, FACTORS[::-1], window=252, min_observations=60)

    assert b.security_ids == a.security_ids
    assert b.factors == (3, 2, 1)
    np.testing.assert_allclose(b.exposures[:, ::-1], a.exposures, atol=1e-12)


# --- factor covariance ---------------------------------------------------------------------


def test_the_factor_covariance_is_the_annualised_sample_covariance():
    frame, f, _, _ = _factor_world(noise=0.02)

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60, annualisation=252)

    np.testing.assert_allclose(est.factor_cov, np.cov(f[-252:], rowvar=False) * 252, rtol=1e-12)
    np.testing.assert_array_equal(est.factor_cov, est.factor_cov.T)
    assert est.diagnostics["factor_vol"] == pytest.approx(np.sqrt(np.diag(est.factor_cov)))


def test_collinear_factors_give_a_psd_covariance_and_finite_exposures():
    frame, *_ = _factor_world(noise=0.02)
    frame[4] = frame[1]  # a fourth factor identical to the first

    est = risk_model_estimate(frame, [*FACTORS, 4], window=252, min_observations=60)

    assert np.linalg.eigvalsh(est.factor_cov).min() >= -1e-15
    assert np.isfinite(est.exposures).all()
    assert np.linalg.eigvalsh(est.covariance()).min() > 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 12),
    k=st.integers(1, 5),
    gaps=st.floats(0.0, 0.3),
)
def test_any_price_history_gives_a_psd_model_with_positive_specific_variance(seed, n, k, gaps):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.015, (120, k + n))
    frame = _prices(returns, list(range(1, k + n + 1)))
    holes = rng.random(frame.shape) < gaps
    holes[:, :k] = False  # factor ETFs fully priced
    frame = frame.mask(holes)

    est = risk_model_estimate(frame, list(range(1, k + 1)), window=100, min_observations=k + 20)

    assert est.exposures.shape == (k + n, k)
    assert np.isfinite(est.exposures).all()
    assert (est.specific_var >= SPECIFIC_VAR_FLOOR).all()
    assert np.linalg.eigvalsh(est.factor_cov).min() >= -1e-12
    assert np.linalg.eigvalsh(est.covariance()).min() > 0


# --- fallbacks -----------------------------------------------------------------------------


def test_a_short_history_gets_zero_exposures_and_its_own_sample_variance():
    frame, _, _, r = _factor_world(noise=0.02)
    frame.iloc[: T + 1 - 31, 3] = np.nan  # 30 returns, fewer than 60

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    np.testing.assert_array_equal(est.exposures[3], np.zeros(3))
    assert est.specific_var[3] == pytest.approx(np.var(r[-30:, 0], ddof=1) * 252, rel=1e-9)
    assert est.fallbacks == {
        101: "only 30 daily returns (fewer than 60): zero exposures, its own sample variance"
    }
    assert est.fallbacks[101] == FALLBACK_OWN.format(n=30, min=60)


def test_a_handful_of_returns_gets_the_median_total_variance():
    frame, *_ = _factor_world(noise=0.02)
    frame.iloc[: T + 1 - (FALLBACK_MIN_RETURNS - 1) - 1, 3] = np.nan  # 9 returns

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    b, f, d = est.exposures, est.factor_cov, est.specific_var
    total = np.einsum("nk,kl,nl->n", b, f, b) + d
    regressed = [i for i, sid in enumerate(est.security_ids) if sid != 101]
    assert est.fallback_var == pytest.approx(float(np.median(total[regressed])))
    assert est.specific_var[3] == est.fallback_var
    np.testing.assert_array_equal(est.exposures[3], np.zeros(3))
    assert est.fallbacks == {101: FALLBACK_MEDIAN.format(n=9, min=60)}
    assert est.fallbacks[101] == (
        "only 9 daily returns (fewer than 60): zero exposures, median total variance"
    )


def test_a_security_without_prices_in_the_window_gets_the_median_total_variance():
    frame, *_ = _factor_world(noise=0.02)
    frame.iloc[:, 3] = np.nan
    frame.iloc[:20, 3] = 50.0  # priced only long before the window

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    assert est.fallbacks[101] == FALLBACK_NO_RETURNS
    assert est.specific_var[3] == est.fallback_var
    np.testing.assert_array_equal(est.exposures[3], np.zeros(3))


def test_a_money_market_sweep_at_a_constant_price_has_no_risk_to_speak_of():
    frame, *_ = _factor_world(noise=0.02)
    frame[900] = 1.0  # a full history at 1.00
    frame[901] = np.nan
    frame.iloc[-6:, frame.columns.get_loc(901)] = 1.0  # listed five sessions ago

    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    for sid in (900, 901):
        row = est.security_ids.index(sid)
        np.testing.assert_array_equal(est.exposures[row], np.zeros(3))
        assert est.specific_var[row] == SPECIFIC_VAR_FLOOR
    assert 900 not in est.fallbacks  # a full history: the regression says the same
    assert est.fallbacks[901] == FALLBACK_CONSTANT.format(n=5)
    assert (
        est.fallbacks[901] == "constant price over 5 daily returns: zero exposures, floor variance"
    )


def test_a_factor_with_too_little_history_is_dropped_and_named():
    frame, *_ = _factor_world(noise=0.02)
    frame.iloc[:-40, 2] = np.nan  # factor 3: 39 returns

    est = risk_model_estimate(frame, [*FACTORS, 77], window=252, min_observations=60)

    assert est.factors == (1, 2)
    assert est.exposures.shape == (9, 2)
    assert est.diagnostics["dropped_factors"] == {
        "3": "only 39 daily returns (fewer than 60)",
        "77": "no prices",
    }
    # the dropped ETF is now an ordinary security, a short-history fallback
    assert est.fallbacks[3] == FALLBACK_OWN.format(n=39, min=60)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factors", "kwargs", "message"),
    [
        ([], {}, "Name at least one factor column."),
        (FACTORS, {"window": 1}, "The window must be at least 2 sessions (got 1)."),
        (
            FACTORS,
            {"min_observations": 4},
            "min_observations must be at least 5 (the number of factors + 2) to regress on 3 "
            "factors (got 4).",
        ),
        (
            FACTORS,
            {"window": 50, "min_observations": 60},
            "min_observations (60) cannot exceed the window (50).",
        ),
        (
            FACTORS,
            {"annualisation": 0},
            "annualisation must be a positive number of sessions (got 0).",
        ),
    ],
)
def test_arguments_that_cannot_work_are_refused_with_what_to_change(factors, kwargs, message):
    frame, *_ = _factor_world()

    with pytest.raises(RiskEstimateError) as exc:
        risk_model_estimate(frame, factors, **kwargs)

    assert exc.value.message == message


def test_an_empty_frame_is_refused():
    with pytest.raises(RiskEstimateError) as exc:
        risk_model_estimate(pd.DataFrame(), FACTORS)

    assert exc.value.message == "The price frame is empty: there is nothing to estimate from."


def test_factors_with_too_short_a_history_are_refused():
    frame, *_ = _factor_world()
    short = frame.iloc[-41:]  # 40 returns

    with pytest.raises(RiskEstimateError) as exc:
        risk_model_estimate(short, FACTORS, window=252, min_observations=60)

    assert exc.value.message == (
        "Too little history: no factor has 60 daily returns in the last 252 sessions "
        "(the most is 40)."
    )


def test_factors_without_enough_returns_in_common_are_refused():
    frame, *_ = _factor_world()
    frame.iloc[-100:, 0] = np.nan  # factor 1 stops; factor 2 starts late
    frame.iloc[: T + 1 - 150, 1] = np.nan

    with pytest.raises(RiskEstimateError) as exc:
        risk_model_estimate(frame, FACTORS, window=252, min_observations=60)

    assert exc.value.message == (
        "Too little history: the factors have 49 daily returns in common in the last 252 "
        "sessions; at least 60 are needed."
    )


# --- mapping onto securities ---------------------------------------------------------------


def test_risk_arrays_maps_ids_in_order_with_fallbacks_for_unknown_securities():
    frame, *_ = _factor_world(noise=0.02)
    frame.iloc[:-20, 4] = np.nan  # 102: a fallback row
    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    row = {sid: i for i, sid in enumerate(est.security_ids)}

    b, f, d, fallback = risk_arrays(est, [103, 555, 2, 102, 103])

    np.testing.assert_array_equal(b[0], est.exposures[row[103]])
    np.testing.assert_array_equal(b[1], np.zeros(3))
    np.testing.assert_array_equal(b[2], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(b[4], b[0])
    np.testing.assert_array_equal(f, est.factor_cov)
    assert d.tolist() == [
        est.specific_var[row[103]],
        est.fallback_var,
        SPECIFIC_VAR_FLOOR,
        est.specific_var[row[102]],
        est.specific_var[row[103]],
    ]
    assert fallback.tolist() == [False, True, False, True, False]


def test_risk_arrays_of_no_securities_or_an_empty_model_have_the_right_shapes():
    frame, *_ = _factor_world()
    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    empty = risk_model_arrays_from_lists(
        security_ids=[], factors=["A"], exposures=[], factor_cov=[[0.04]], specific_var=[]
    )

    b, f, d, fallback = risk_arrays(est, [])
    assert (b.shape, f.shape, d.shape, fallback.shape) == ((0, 3), (3, 3), (0,), (0,))
    b, f, d, fallback = risk_arrays(empty, [5, 6])
    assert b.tolist() == [[0.0], [0.0]]
    assert d.tolist() == [DEFAULT_TOTAL_VAR, DEFAULT_TOTAL_VAR]
    assert fallback.tolist() == [True, True]


def test_stored_lists_map_exactly_like_the_estimate_they_came_from():
    frame, *_ = _factor_world(noise=0.02)
    frame.iloc[:-20, 5] = np.nan
    est = risk_model_estimate(frame, FACTORS, window=252, min_observations=60)
    # as stored: JSON lists, rows in any order, fallback ids as strings
    order = np.arange(len(est.security_ids))[::-1]
    stored = risk_model_arrays_from_lists(
        security_ids=[est.security_ids[i] for i in order],
        factors=["MTUM", "QUAL", "SIZE"],
        exposures=est.exposures[order].tolist(),
        factor_cov=est.factor_cov.tolist(),
        specific_var=est.specific_var[order].tolist(),
        fallback_var=est.fallback_var,
        fallback_ids=[str(k) for k in est.fallbacks],
    )
    ids = [104, 1, 999, 103, 102]

    for left, right in zip(risk_arrays(est, ids), risk_arrays(stored, ids), strict=True):
        np.testing.assert_array_equal(left, right)


def test_importing_the_risk_model_does_not_import_django():
    completed = subprocess.run(
        [sys.executable, "-c", "import portfolios.risk, sys; assert 'django' not in sys.modules"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
