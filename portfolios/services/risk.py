"""Risk model builds (DESIGN 5): read the price history in one query, estimate
``Sigma = B F B' + D`` with the pure ``portfolios.risk`` and store it as a new ``RiskModel``
version.

``risk_model_build`` is idempotent per price date: when the current model was estimated up to
the latest price date of the factor ETFs (with the same window) it is returned unchanged, so a
rebuild after every price import and a daily beat schedule change the model at most once a
day. ``force`` builds a
new version anyway. Two builds at once are serialised by a lock (a transaction-scoped advisory
lock on PostgreSQL; SQLite's IMMEDIATE transactions hold the write lock), and the second one
re-checks under the lock, so they never both create a version. The flip of ``is_current``, the
new row and its ``risk_model.built`` audit event commit together.

``risk_model_rebuild_request`` enqueues the Celery task ``portfolios.risk_model_rebuild``
after the surrounding transaction commits (price imports call it); the task runs
``risk_model_refresh``, which records why a build was skipped instead of failing.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import FloatField, Max
from django.db.models.functions import Cast

from compliance.services.audit import audit_record
from portfolios.models import Price, RiskModel, Security
from portfolios.risk import METHOD, RiskEstimate, RiskEstimateError, risk_model_estimate
from rebalance_app.exceptions import ValidationFailed

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = structlog.get_logger(__name__)

RISK_ACTOR = "system:risk_model"
ACTION_BUILT = "risk_model.built"
REBUILD_TASK = "portfolios.risk_model_rebuild"

NO_FACTOR_SECURITIES = (
    "No factor ETF is a known security: none of {tickers} (RISK_FACTOR_TICKERS) is in the "
    "securities list."
)
NO_PRICES = "There are no prices{until}: import prices before building a risk model."
NO_PRICES_UNTIL = " on or before {day}"
NO_FACTOR_PRICES = (
    "None of the factor ETFs {tickers} has a price{until}: import their prices before building "
    "a risk model."
)
REASON_FORCED = "forced rebuild"

# A fixed key for pg_advisory_xact_lock: "riskmdl" in ASCII.
RISK_LOCK_KEY = 0x7269736B6D646C
# Calendar days read per session of the window: 252 sessions span about 365 days; the margin
# covers holidays, and the frame is trimmed to the window in pandas.
CALENDAR_DAYS_PER_SESSION = 1.6
CALENDAR_DAYS_MARGIN = 10


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RISK_LOCK_KEY])


def _up_to_date(model: RiskModel | None, *, last: date, window: int, min_obs: int) -> bool:
    return (
        model is not None
        and model.as_of == last
        and model.window == window
        and model.min_observations == min_obs
    )


def _price_frame(*, last: date, window: int) -> pd.DataFrame:
    """Closes (dates x security ids) of the sessions that can fall in the window, one query."""
    start = last - timedelta(days=int(window * CALENDAR_DAYS_PER_SESSION) + CALENDAR_DAYS_MARGIN)
    rows = (
        Price.objects.filter(as_of__gte=start, as_of__lte=last)
        .order_by()
        .annotate(close=Cast("price", FloatField()))
        .values_list("security_id", "as_of", "close")
    )
    frame = pd.DataFrame.from_records(list(rows), columns=["security_id", "as_of", "close"])
    if frame.empty:
        return pd.DataFrame()
    return frame.pivot(index="as_of", columns="security_id", values="close").sort_index()


def _stored(estimate: RiskEstimate, tickers: dict[int, str]) -> dict[str, Any]:
    diagnostics = dict(estimate.diagnostics)
    diagnostics["dropped_factors"] = {
        tickers.get(int(k), k): reason for k, reason in diagnostics["dropped_factors"].items()
    }
    return {
        "as_of": estimate.as_of,
        "method": METHOD,
        "window": estimate.window,
        "min_observations": estimate.min_observations,
        "factors": [tickers[int(f)] for f in estimate.factors],  # type: ignore[call-overload]
        "factor_cov": estimate.factor_cov.tolist(),
        "security_ids": list(estimate.security_ids),
        "exposures": estimate.exposures.tolist(),
        "specific_var": estimate.specific_var.tolist(),
        "fallbacks": {str(k): v for k, v in estimate.fallbacks.items()},
        "diagnostics": diagnostics,
    }


def risk_model_build(
    *,
    actor: AbstractBaseUser | str = RISK_ACTOR,
    as_of: date | None = None,
    window: int | None = None,
    min_observations: int | None = None,
    force: bool = False,
) -> RiskModel:
    """Estimate the risk model from the prices up to ``as_of`` (default: the latest price) and
    store it as the new current version; return the current model unchanged when it already
    covers that price date with the same window, unless ``force``.

    The model is as of the last date on which a factor ETF has a price (a security priced
    later is not in it yet). ``window`` and ``min_observations`` default to
    ``RISK_MODEL_WINDOW`` and ``RISK_MODEL_MIN_OBSERVATIONS``. Raises ValidationFailed when no
    factor ETF is known or priced, when there are no prices, or when the history is too short
    (the message says which).
    """
    started = time.perf_counter()
    window = int(window or settings.RISK_MODEL_WINDOW)
    min_obs = int(min_observations or settings.RISK_MODEL_MIN_OBSERVATIONS)
    tickers = list(settings.RISK_FACTOR_TICKERS)
    factor_ids = dict(Security.objects.filter(ticker__in=tickers).values_list("ticker", "pk"))
    if not factor_ids:
        raise ValidationFailed(NO_FACTOR_SECURITIES.format(tickers=", ".join(tickers)))
    prices = Price.objects.all() if as_of is None else Price.objects.filter(as_of__lte=as_of)
    # The model is as of the last session of the factors: a stock priced later is ignored.
    last = prices.filter(security_id__in=factor_ids.values()).aggregate(m=Max("as_of"))["m"]
    if last is None:
        until = NO_PRICES_UNTIL.format(day=as_of.isoformat()) if as_of else ""
        if not prices.exists():
            raise ValidationFailed(NO_PRICES.format(until=until))
        named = ", ".join(t for t in tickers if t in factor_ids)
        raise ValidationFailed(NO_FACTOR_PRICES.format(tickers=named, until=until))
    current = RiskModel.objects.filter(is_current=True).first()
    if not force and _up_to_date(current, last=last, window=window, min_obs=min_obs):
        assert current is not None  # noqa: S101 - narrowed by _up_to_date
        return current

    frame = _price_frame(last=last, window=window)
    factor_columns = [factor_ids[t] for t in tickers if t in factor_ids]
    try:
        estimate = risk_model_estimate(
            frame, factor_columns, window=window, min_observations=min_obs
        )
    except RiskEstimateError as exc:
        raise ValidationFailed(exc.message) from exc
    by_id = {pk: ticker for ticker, pk in factor_ids.items()}
    fields = _stored(estimate, by_id)
    fields["diagnostics"]["build_ms"] = round((time.perf_counter() - started) * 1000)

    with transaction.atomic():
        _lock()
        current = RiskModel.objects.select_for_update().filter(is_current=True).first()
        if not force and _up_to_date(current, last=last, window=window, min_obs=min_obs):
            assert current is not None  # noqa: S101 - narrowed by _up_to_date
            return current
        number = (RiskModel.objects.aggregate(m=Max("version"))["m"] or 0) + 1
        if current is not None:
            RiskModel.objects.filter(pk=current.pk).update(is_current=False)
        model = RiskModel.objects.create(version=number, is_current=True, **fields)
        audit_record(
            actor=actor,
            action=ACTION_BUILT,
            obj=model,
            before=({"version": current.version, "as_of": current.as_of} if current else None),
            after={
                "version": number,
                "as_of": model.as_of,
                "window": window,
                "min_observations": min_obs,
                "factors": fields["factors"],
                "securities": len(fields["security_ids"]),
                "fallbacks": len(fields["fallbacks"]),
            },
            reason=REASON_FORCED if force else "",
        )
    logger.info(
        "risk_model.built",
        version=number,
        as_of=str(model.as_of),
        securities=len(fields["security_ids"]),
        fallbacks=len(fields["fallbacks"]),
    )
    return model


def risk_model_refresh(*, actor: AbstractBaseUser | str = RISK_ACTOR) -> dict[str, Any]:
    """The task's body: build if the prices moved on, else keep the current model. A build that
    cannot be made (no factor prices, too little history) is logged and reported as skipped,
    not raised: a price import must not fail because of it. Returns a small JSON result."""
    before = RiskModel.objects.filter(is_current=True).values_list("pk", flat=True).first()
    try:
        model = risk_model_build(actor=actor)
    except ValidationFailed as exc:
        logger.warning("risk_model.skipped", reason=exc.message)
        return {"skipped": exc.message}
    return {
        "risk_model": model.pk,
        "version": model.version,
        "as_of": model.as_of.isoformat(),
        "built": model.pk != before,
    }


def _send_rebuild() -> None:
    from rebalance_app.celery import app

    app.send_task(REBUILD_TASK)


def risk_model_rebuild_request() -> None:
    """Enqueue ``portfolios.risk_model_rebuild`` once the surrounding transaction commits
    (robust: a broker that is down does not fail the caller; the daily schedule catches up)."""
    transaction.on_commit(_send_rebuild, robust=True)
