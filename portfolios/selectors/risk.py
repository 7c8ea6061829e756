"""Risk model reads: the current model, one version, the list, and a model's arrays mapped
onto any list of securities for the optimizer.

Risk models are firm reference data (no per-object visibility): the API restricts them by the
``view_riskmodel`` model permission that every role holds. A stored model never changes (only
its ``is_current`` flag does), so its parsed arrays are cached per process by id and version.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from threading import Lock

import numpy as np

from portfolios.models import RiskModel, Security
from portfolios.risk import RiskModelArrays, risk_arrays, risk_model_arrays_from_lists
from rebalance_app.exceptions import NotFound

RISK_MODEL_NOT_FOUND = "Risk model {id} not found."
ARRAYS_CACHE_SIZE = 4

_cache: OrderedDict[tuple[int, int], RiskModelArrays] = OrderedDict()
_cache_lock = Lock()


def risk_model_current() -> RiskModel | None:
    """The model the optimizer uses (the newest build), or None before the first build."""
    return RiskModel.objects.filter(is_current=True).first()


def risk_model_get(*, pk: int) -> RiskModel:
    """One version by id. Raises NotFound."""
    model = RiskModel.objects.filter(pk=pk).first()
    if model is None:
        raise NotFound(RISK_MODEL_NOT_FOUND.format(id=pk))
    return model


def risk_model_list() -> Sequence[RiskModel]:
    """Every version, newest first (a queryset)."""
    return RiskModel.objects.order_by("-version")


def risk_model_tickers(*, model: RiskModel) -> dict[int, str]:
    """Ticker of each security of the model (one query)."""
    ids = [int(i) for i in model.security_ids]
    return dict(Security.objects.filter(pk__in=ids).values_list("pk", "ticker"))


def risk_model_parsed(*, model: RiskModel) -> RiskModelArrays:
    """The model's JSON arrays as numpy arrays (cached: stored models never change)."""
    key = (int(model.pk), int(model.version))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    diagnostics = model.diagnostics or {}
    parsed = risk_model_arrays_from_lists(
        security_ids=model.security_ids,
        factors=model.factors,
        exposures=model.exposures,
        factor_cov=model.factor_cov,
        specific_var=model.specific_var,
        fallback_var=diagnostics.get("fallback_var"),
        fallback_ids=list((model.fallbacks or {}).keys()),
    )
    with _cache_lock:
        _cache[key] = parsed
        while len(_cache) > ARRAYS_CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed


def risk_model_arrays(
    *, model: RiskModel, security_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(B, F, D, fallback)`` for ``security_ids`` in that order: exposures ``(N, K)``,
    factor covariance ``(K, K)``, specific variances ``(N,)`` (annualised) and a boolean mask,
    True where the row is a fallback (the security is not in the model, or had too little
    history): zero exposures and, when absent, the model's median total variance."""
    return risk_arrays(risk_model_parsed(model=model), security_ids)
