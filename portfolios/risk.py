"""The factor risk model ``Sigma = B F B' + D`` estimated from daily closes (numpy and pandas
only; no Django).

Notation (DESIGN 5). ``N`` securities ``i``, ``K`` factors ``k``, ``T`` daily returns in the
estimation window (the last ``window`` sessions of the price frame).

- the sessions are the dates (rows) on which at least one factor ETF has a close; a price on
  any other date is ignored;
- returns are simple daily returns ``r_t = p_t / p_{t-1} - 1`` between consecutive sessions;
  a return is missing (NaN) when either close is missing, so a gap costs returns but is never
  bridged by a stale price;
- factor returns ``f_t`` are the returns of the factor ETFs (the demo's MTUM QUAL SIZE USMV
  VLUE); a factor with fewer than ``min_observations`` returns in the window is dropped (named
  in ``diagnostics["dropped_factors"]``) and the factor rows used are the sessions on which
  every remaining factor has a return;
- exposures ``B`` (``N x K``): for each security, OLS of ``r_i`` on ``[1, f]`` over the factor
  rows on which the security has a return (the intercept is estimated and discarded);
- specific variance ``D_i`` (``N``): the residual variance ``SSR / (n_i - K - 1)``, floored at
  ``SPECIFIC_VAR_FLOOR`` so that ``D`` is positive definite;
- factor covariance ``F`` (``K x K``): the sample covariance of the factor rows, symmetrised and
  with any negative eigenvalue (rounding) clipped to zero, so it is PSD;
- variances are annualised: multiplied by ``annualisation`` (252 sessions).

A factor ETF has exposure 1 on its own factor, 0 on the others and the floor as specific
variance (the regression of a factor on itself is exact). A security whose prices never change
(a money-market sweep at 1.00) has zero exposures and the floor. Fallbacks, for a security with
fewer than ``min_observations`` usable returns (``fallbacks`` says which and why):

- zero exposures, specific variance = its own sample variance when it has at least
  ``FALLBACK_MIN_RETURNS`` returns;
- zero exposures, specific variance = the cross-sectional median total variance
  (``fallback_var``: the median of ``b_i F b_i' + D_i`` over the regressed securities) when it
  has fewer, or none.

:func:`risk_arrays` maps any list of security ids onto a model's rows: a security the model
does not know gets the same median fallback (zero exposures, ``fallback_var``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

METHOD = "etf_factor_regression"
ANNUALISATION = 252
# The smallest specific variance (annualised): about 0.1% a year of volatility. It keeps D
# positive definite for factor ETFs (exact fit) and constant-price securities.
SPECIFIC_VAR_FLOOR = 1e-6
# With fewer usable returns than min_observations but at least this many, a security's own
# sample variance is a better guess than the median of the others.
FALLBACK_MIN_RETURNS = 10
# The total variance used when nothing could be estimated at all (20% a year of volatility).
DEFAULT_TOTAL_VAR = 0.04
# Returns smaller than this in absolute value are "no change" (a constant price).
CONSTANT_EPS = 1e-12

FACTORS_EMPTY = "Name at least one factor column."
WINDOW_TOO_SMALL = "The window must be at least 2 sessions (got {window})."
MIN_OBS_TOO_SMALL = (
    "min_observations must be at least {need} (the number of factors + 2) to regress on "
    "{k} factors (got {got})."
)
MIN_OBS_OVER_WINDOW = "min_observations ({min}) cannot exceed the window ({window})."
ANNUALISATION_INVALID = "annualisation must be a positive number of sessions (got {value})."
NO_PRICES = "The price frame is empty: there is nothing to estimate from."
NO_FACTOR_HISTORY = (
    "Too little history: no factor has {min} daily returns in the last {window} sessions "
    "(the most is {best})."
)
TOO_LITTLE_HISTORY = (
    "Too little history: the factors have {n} daily returns in common in the last {window} "
    "sessions; at least {min} are needed."
)

DROPPED_NO_PRICES = "no prices"
DROPPED_SHORT = "only {n} daily returns (fewer than {min})"

FALLBACK_NO_RETURNS = "no daily returns in the window: zero exposures, median total variance"
FALLBACK_CONSTANT = "constant price over {n} daily returns: zero exposures, floor variance"
FALLBACK_OWN = "only {n} daily returns (fewer than {min}): zero exposures, its own sample variance"
FALLBACK_MEDIAN = "only {n} daily returns (fewer than {min}): zero exposures, median total variance"


class RiskEstimateError(ValueError):
    """The inputs cannot give a risk model; the message says what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _frozen(array: npt.ArrayLike, dtype: Any = np.float64) -> Any:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class RiskEstimate:
    """A factor risk model, rows in ``security_ids`` order (ascending ids).

    ``exposures`` ``B`` is ``(N, K)`` (columns in ``factors`` order), ``factor_cov`` ``F`` is
    ``(K, K)`` symmetric PSD, ``specific_var`` ``D`` is ``(N,)`` positive; variances are
    annualised. ``fallbacks`` maps a security id to why its row is a fallback;
    ``fallback_var`` is the variance given to a security with no estimate (the median total
    variance). ``diagnostics`` holds JSON-able per-security lists (``n_obs``, ``r2``, aligned
    with ``security_ids``) and window facts (``n_dates``, ``start``, ``as_of``,
    ``dropped_factors``, ``factor_vol``).
    """

    security_ids: tuple[int, ...]
    factors: tuple[Hashable, ...]
    exposures: FloatArray
    factor_cov: FloatArray
    specific_var: FloatArray
    fallbacks: dict[int, str]
    fallback_var: float
    as_of: date | None
    window: int
    min_observations: int
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback_ids(self) -> frozenset[int]:
        return frozenset(self.fallbacks)

    def covariance(self) -> FloatArray:
        """The dense ``N x N`` ``B F B' + diag(D)`` (tests and small reports only: the
        optimizer never forms it)."""
        b = self.exposures
        return np.asarray(b @ self.factor_cov @ b.T + np.diag(self.specific_var))


@dataclass(frozen=True, eq=False)
class RiskModelArrays:
    """A stored model's arrays (what :func:`risk_arrays` needs), e.g. parsed from the JSON of
    a ``RiskModel`` row: ids ascending, ``exposures`` ``(N, K)``, ``factor_cov`` ``(K, K)``,
    ``specific_var`` ``(N,)``, the fallback variance and the ids whose rows are fallbacks."""

    security_ids: tuple[int, ...]
    factors: tuple[Hashable, ...]
    exposures: FloatArray
    factor_cov: FloatArray
    specific_var: FloatArray
    fallback_var: float
    fallback_ids: frozenset[int] = frozenset()


class RiskArraysSource(Protocol):
    """Anything :func:`risk_arrays` can map from (a :class:`RiskEstimate` or
    :class:`RiskModelArrays`)."""

    @property
    def security_ids(self) -> Sequence[int]: ...
    @property
    def exposures(self) -> FloatArray: ...
    @property
    def factor_cov(self) -> FloatArray: ...
    @property
    def specific_var(self) -> FloatArray: ...
    @property
    def fallback_var(self) -> float: ...
    @property
    def fallback_ids(self) -> frozenset[int]: ...


def _psd(matrix: FloatArray) -> FloatArray:
    """Symmetrise and clip negative eigenvalues (rounding noise) to zero."""
    sym = 0.5 * (matrix + matrix.T)
    if sym.size == 0:
        return sym
    eigval, eigvec = np.linalg.eigh(sym)
    if eigval.min() < 0:
        sym = (eigvec * np.clip(eigval, 0.0, None)) @ eigvec.T
        sym = 0.5 * (sym + sym.T)
    return np.asarray(sym)


def _returns(
    prices: pd.DataFrame, factors: list[Hashable], window: int
) -> tuple[pd.DataFrame, FloatArray]:
    frame = prices.sort_index().sort_index(axis=1)
    present = [f for f in factors if f in frame.columns]
    if present:
        # Sessions are the dates some factor ETF has a close: a stray price on another date
        # (a weekend correction) must not split two factor returns.
        frame = frame.loc[frame[present].notna().any(axis=1).to_numpy()]
    frame = frame.iloc[-(window + 1) :]
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.where(values > 0, values, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = values[1:] / values[:-1] - 1.0
    return frame, returns


def _check_arguments(
    factor_columns: Sequence[Hashable], window: int, min_observations: int, annualisation: float
) -> list[Hashable]:
    factors = list(dict.fromkeys(factor_columns))
    if not factors:
        raise RiskEstimateError(FACTORS_EMPTY)
    if window < 2:
        raise RiskEstimateError(WINDOW_TOO_SMALL.format(window=window))
    need = len(factors) + 2
    if min_observations < need:
        raise RiskEstimateError(
            MIN_OBS_TOO_SMALL.format(need=need, k=len(factors), got=min_observations)
        )
    if min_observations > window:
        raise RiskEstimateError(MIN_OBS_OVER_WINDOW.format(min=min_observations, window=window))
    if not annualisation > 0:
        raise RiskEstimateError(ANNUALISATION_INVALID.format(value=annualisation))
    return factors


def _regress(
    xa: FloatArray, y: FloatArray, mask: BoolArray, n_obs: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """OLS of each column of ``y`` on ``xa`` (``T x (K+1)``, intercept first) over the rows
    where ``mask`` holds. Returns coefficients ``(N, K+1)``, SSR ``(N,)`` and SST ``(N,)``.

    Columns observed on every row share one least-squares solve; the others (gaps, late
    listings) solve their own masked normal equations, all at once (a stack of small systems).
    """
    t, n = y.shape
    k1 = xa.shape[1]
    coef = np.zeros((n, k1))
    y0 = np.where(mask, y, 0.0)
    full = n_obs == t
    if full.any():
        sol, *_ = np.linalg.lstsq(xa, y0[:, full], rcond=None)
        coef[full] = sol.T
    partial = ~full & (n_obs > 0)
    if partial.any():
        m = mask[:, partial].astype(np.float64)
        xtx = np.einsum("tn,tk,tl->nkl", m, xa, xa, optimize=True)
        xty = np.einsum("tk,tn->nk", xa, y0[:, partial])
        coef[partial] = np.einsum("nkl,nl->nk", np.linalg.pinv(xtx, hermitian=True), xty)
    resid = np.where(mask, y0 - xa @ coef.T, 0.0)
    ssr = (resid**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = y0.sum(axis=0) / n_obs
    centred = np.where(mask, y0 - mean, 0.0)
    sst = (centred**2).sum(axis=0)
    return coef, ssr, sst


def risk_model_estimate(
    prices: pd.DataFrame,
    factor_columns: Sequence[Hashable],
    *,
    window: int = 252,
    min_observations: int = 60,
    annualisation: float = ANNUALISATION,
) -> RiskEstimate:
    """Estimate ``Sigma = B F B' + D`` from daily closes (module docstring for the method).

    ``prices``: dates (ascending or not) x security ids, closes, NaN where there is no price;
    ``factor_columns``: the columns that are factor ETFs. Every column becomes a row of the
    model. Raises :class:`RiskEstimateError` for arguments that cannot work and for too little
    history of the factors.
    """
    factors = _check_arguments(factor_columns, window, min_observations, annualisation)
    if prices.shape[0] == 0 or prices.shape[1] == 0:
        raise RiskEstimateError(NO_PRICES)
    frame, returns = _returns(prices, factors, window)
    columns = list(frame.columns)
    position = {c: j for j, c in enumerate(columns)}
    t, n = returns.shape
    observed = ~np.isnan(returns)
    n_raw = observed.sum(axis=0)

    dropped: dict[Hashable, str] = {}
    kept: list[Hashable] = []
    best = 0
    for f in factors:
        if f not in position:
            dropped[f] = DROPPED_NO_PRICES
            continue
        count = int(n_raw[position[f]])
        best = max(best, count)
        if count < min_observations:
            dropped[f] = DROPPED_SHORT.format(n=count, min=min_observations)
        else:
            kept.append(f)
    if not kept:
        raise RiskEstimateError(
            NO_FACTOR_HISTORY.format(min=min_observations, window=window, best=best)
        )
    fidx = np.array([position[f] for f in kept], dtype=np.int64)
    k = len(kept)
    factor_rows = observed[:, fidx].all(axis=1)
    n_common = int(factor_rows.sum())
    if n_common < min_observations:
        raise RiskEstimateError(
            TOO_LITTLE_HISTORY.format(n=n_common, window=window, min=min_observations)
        )

    x = returns[factor_rows][:, fidx]
    factor_cov = _psd(np.atleast_2d(np.cov(x, rowvar=False, ddof=1)) * annualisation)

    y = returns[factor_rows]
    mask = observed[factor_rows]
    n_obs = mask.sum(axis=0)
    xa = np.column_stack([np.ones(n_common), x])
    biggest = np.abs(np.where(observed, returns, 0.0)).max(axis=0, initial=0.0)
    constant = (n_raw > 0) & (biggest <= CONSTANT_EPS)
    regressed = (n_obs >= min_observations) & ~constant
    exposures = np.zeros((n, k))
    specific = np.full(n, np.nan)
    r2: list[float | None] = [None] * n
    if regressed.any():
        coef, ssr, sst = _regress(xa, y[:, regressed], mask[:, regressed], n_obs[regressed])
        exposures[regressed] = coef[:, 1:]
        specific[regressed] = ssr / (n_obs[regressed] - k - 1) * annualisation
        with np.errstate(invalid="ignore", divide="ignore"):
            r2_values = np.where(sst > 0, 1.0 - ssr / sst, np.nan)
        for j, value in zip(np.flatnonzero(regressed), r2_values, strict=True):
            r2[j] = None if np.isnan(value) else float(value)
    # A factor ETF is its own factor: exact unit exposure, no specific risk.
    for col, f_pos in enumerate(fidx):
        exposures[f_pos] = 0.0
        exposures[f_pos, col] = 1.0
        specific[f_pos] = SPECIFIC_VAR_FLOOR
        r2[f_pos] = 1.0
    exposures[constant] = 0.0
    specific[constant] = SPECIFIC_VAR_FLOOR

    total = np.einsum("nk,kl,nl->n", exposures, factor_cov, exposures) + np.fmax(
        specific, SPECIFIC_VAR_FLOOR
    )
    estimated = regressed.copy()
    estimated[fidx] = True
    fallbacks: dict[int, str] = {}
    own_var = np.full(n, np.nan)
    short = ~estimated & ~constant
    for j in np.flatnonzero(short & (n_raw >= FALLBACK_MIN_RETURNS)):
        own_var[j] = float(np.var(returns[observed[:, j], j], ddof=1)) * annualisation
    if estimated.any():
        fallback_var = float(np.median(total[estimated]))
    elif np.isfinite(own_var).any():
        fallback_var = float(np.nanmedian(own_var))
    else:
        fallback_var = DEFAULT_TOTAL_VAR
    fallback_var = max(fallback_var, SPECIFIC_VAR_FLOOR)
    for j in np.flatnonzero(short | (constant & (n_obs < min_observations))):
        sid = _as_id(columns[j])
        count = int(n_raw[j])
        if constant[j]:
            fallbacks[sid] = FALLBACK_CONSTANT.format(n=count)
        elif count == 0:
            fallbacks[sid] = FALLBACK_NO_RETURNS
            specific[j] = fallback_var
        elif np.isfinite(own_var[j]):
            fallbacks[sid] = FALLBACK_OWN.format(n=int(n_obs[j]), min=min_observations)
            specific[j] = own_var[j]
        else:
            fallbacks[sid] = FALLBACK_MEDIAN.format(n=int(n_obs[j]), min=min_observations)
            specific[j] = fallback_var
    specific = np.fmax(specific, SPECIFIC_VAR_FLOOR)

    index = frame.index
    as_of = _as_date(index[-1]) if len(index) else None
    start = _as_date(index[-t]) if t else None
    diagnostics: dict[str, Any] = {
        "n_obs": [int(v) for v in n_obs],
        "r2": r2,
        "n_dates": int(t),
        "n_factor_dates": n_common,
        "start": start.isoformat() if start else None,
        "as_of": as_of.isoformat() if as_of else None,
        "dropped_factors": {str(f): reason for f, reason in dropped.items()},
        "factor_vol": [float(v) for v in np.sqrt(np.diag(factor_cov))],
        "fallback_var": fallback_var,
        "annualisation": annualisation,
    }
    return RiskEstimate(
        security_ids=tuple(_as_id(c) for c in columns),
        factors=tuple(kept),
        exposures=_frozen(exposures),
        factor_cov=_frozen(factor_cov),
        specific_var=_frozen(specific),
        fallbacks=fallbacks,
        fallback_var=fallback_var,
        as_of=as_of,
        window=window,
        min_observations=min_observations,
        diagnostics=diagnostics,
    )


def _as_id(column: Hashable) -> int:
    return int(column)  # type: ignore[call-overload]


def _as_date(value: Any) -> date:
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


def risk_model_arrays_from_lists(
    *,
    security_ids: Sequence[int],
    factors: Sequence[Hashable],
    exposures: Sequence[Sequence[float]],
    factor_cov: Sequence[Sequence[float]],
    specific_var: Sequence[float],
    fallback_var: float | None = None,
    fallback_ids: Mapping[Any, Any] | Sequence[Any] = (),
) -> RiskModelArrays:
    """:class:`RiskModelArrays` from stored lists (a ``RiskModel`` row's JSON), rows sorted
    by id. ``fallback_var`` defaults to the median specific variance."""
    ids = np.asarray(list(security_ids), dtype=np.int64)
    k = len(factors)
    b = np.asarray(exposures, dtype=np.float64).reshape(len(ids), k)
    d = np.asarray(specific_var, dtype=np.float64).reshape(len(ids))
    f = np.asarray(factor_cov, dtype=np.float64).reshape(k, k)
    order = np.argsort(ids, kind="stable")
    if fallback_var is None:
        fallback_var = float(np.median(d)) if len(d) else DEFAULT_TOTAL_VAR
    return RiskModelArrays(
        security_ids=tuple(int(i) for i in ids[order]),
        factors=tuple(factors),
        exposures=_frozen(b[order]),
        factor_cov=_frozen(f),
        specific_var=_frozen(d[order]),
        fallback_var=float(fallback_var),
        fallback_ids=frozenset(int(i) for i in fallback_ids),
    )


def risk_arrays(
    source: RiskArraysSource, security_ids: Sequence[int]
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    """Rows of the model for ``security_ids``, in that order: ``B`` ``(len, K)``, ``F``
    ``(K, K)``, ``D`` ``(len,)`` and a mask, True where the row is a fallback: the security is
    not in the model (it gets zero exposures and ``source.fallback_var``) or its model row is
    itself a fallback (too little history)."""
    model_ids = np.asarray(source.security_ids, dtype=np.int64)
    wanted = np.asarray(list(security_ids), dtype=np.int64).reshape(-1)
    k = source.factor_cov.shape[0]
    order = np.argsort(model_ids, kind="stable")
    sorted_ids = model_ids[order]
    slot = np.searchsorted(sorted_ids, wanted)
    slot_clipped = np.minimum(slot, max(len(sorted_ids) - 1, 0))
    found = (
        (slot < len(sorted_ids)) & (sorted_ids[slot_clipped] == wanted)
        if len(sorted_ids)
        else np.zeros(len(wanted), dtype=bool)
    )
    rows = order[slot_clipped] if len(sorted_ids) else np.zeros(len(wanted), dtype=np.int64)
    b = np.zeros((len(wanted), k))
    d = np.full(len(wanted), float(source.fallback_var))
    if found.any():
        b[found] = np.asarray(source.exposures)[rows[found]]
        d[found] = np.asarray(source.specific_var)[rows[found]]
    fallback_ids = np.asarray(sorted(source.fallback_ids), dtype=np.int64)
    mask = ~found | np.isin(wanted, fallback_ids)
    return b, np.array(source.factor_cov, dtype=np.float64), d, mask
