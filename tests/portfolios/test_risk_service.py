"""Risk model builds from Price rows: what is stored, idempotence per price date, versions and
the one current model, the audit event, bad input with its exact message, the selectors, the
rebuild request after a price import, the task on a real worker, two builds at once on
PostgreSQL, the command and the demo seed."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django_celery_beat.models import PeriodicTask

from compliance.models import AuditEvent
from portfolios.models import Price, RiskModel
from portfolios.risk import FALLBACK_OWN, SPECIFIC_VAR_FLOOR
from portfolios.selectors.risk import (
    risk_model_arrays,
    risk_model_current,
    risk_model_get,
    risk_model_parsed,
)
from portfolios.services import risk as risk_service
from portfolios.services.imports import import_submit
from portfolios.services.risk import (
    REBUILD_TASK,
    risk_model_build,
    risk_model_rebuild_request,
    risk_model_refresh,
)
from portfolios.tasks_risk import risk_model_rebuild
from rebalance_app.celery import app
from rebalance_app.exceptions import NotFound, ValidationFailed
from tests import factories
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

SESSIONS = 101  # 100 daily returns
WINDOW = 80
MIN_OBS = 30
BETAS = {"AAA": (1.5, -0.5), "BBB": (0.3, 1.2)}


@pytest.fixture(autouse=True)
def _risk_settings(settings):
    settings.RISK_FACTOR_TICKERS = ["MTUM", "QUAL"]
    settings.RISK_MODEL_WINDOW = WINDOW
    settings.RISK_MODEL_MIN_OBSERVATIONS = MIN_OBS


def _sessions(count: int, end: str = "2026-11-24") -> list[date]:
    return [d.date() for d in pd.bdate_range(end=end, periods=count)]


def _closes(returns: np.ndarray) -> np.ndarray:
    return 100.0 * np.concatenate([[1.0], np.cumprod(1 + returns)])


def _add_prices(security, dates: list[date], closes: np.ndarray) -> None:
    Price.objects.bulk_create(
        Price(security=security, as_of=d, price=Decimal(f"{c:.6f}"), source="test")
        for d, c in zip(dates, closes, strict=True)
    )


def build_market(*, sessions: int = SESSIONS, short: int | None = None) -> dict[str, Any]:
    """Two factor ETFs and two stocks with known betas (no noise), and optionally a stock
    listed ``short`` sessions ago (a fallback)."""
    rng = np.random.default_rng(11)
    dates = _sessions(sessions)
    f = rng.normal(0.0005, 0.01, (sessions - 1, 2))
    secs = {}
    for k, ticker in enumerate(["MTUM", "QUAL"]):
        secs[ticker] = factories.SecurityFactory(ticker=ticker, security_type="etf")
        _add_prices(secs[ticker], dates, _closes(f[:, k]))
    for ticker, beta in BETAS.items():
        secs[ticker] = factories.SecurityFactory(ticker=ticker)
        _add_prices(secs[ticker], dates, _closes(0.0002 + f @ np.array(beta)))
    if short is not None:
        secs["NEW"] = factories.SecurityFactory(ticker="NEW")
        noise = rng.normal(0, 0.02, short - 1)
        _add_prices(secs["NEW"], dates[-short:], _closes(noise))
    return {"securities": secs, "dates": dates, "factor_returns": f}


def _row(model: RiskModel, security) -> int:
    return model.security_ids.index(security.pk)


# --- building ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_build_stores_a_current_version_estimated_from_the_price_rows():
    market = build_market()
    secs = market["securities"]

    model = risk_model_build()

    assert (model.version, model.is_current, model.as_of) == (1, True, market["dates"][-1])
    assert (model.window, model.min_observations, model.method) == (
        WINDOW,
        MIN_OBS,
        "etf_factor_regression",
    )
    assert model.factors == ["MTUM", "QUAL"]
    assert model.security_ids == sorted(s.pk for s in secs.values())
    for ticker, beta in BETAS.items():
        # prices are stored to 6 decimals, so the betas come back to about 1e-4
        np.testing.assert_allclose(model.exposures[_row(model, secs[ticker])], beta, atol=1e-3)
    assert model.exposures[_row(model, secs["MTUM"])] == [1.0, 0.0]
    assert model.specific_var[_row(model, secs["QUAL"])] == SPECIFIC_VAR_FLOOR
    f = market["factor_returns"][-WINDOW:]
    np.testing.assert_allclose(model.factor_cov, np.cov(f, rowvar=False) * 252, rtol=1e-3)
    assert model.fallbacks == {}
    assert model.diagnostics["n_dates"] == WINDOW


@pytest.mark.django_db
def test_a_build_is_audited_with_what_it_built():
    build_market()

    model = risk_model_build()

    event = AuditEvent.objects.get(action="risk_model.built")
    assert (event.actor_label, event.object_type, event.object_id) == (
        "system:risk_model",
        "portfolios.riskmodel",
        str(model.pk),
    )
    assert event.before is None
    assert event.after == {
        "version": 1,
        "as_of": "2026-11-24",
        "window": WINDOW,
        "min_observations": MIN_OBS,
        "factors": ["MTUM", "QUAL"],
        "securities": 4,
        "fallbacks": 0,
    }


@pytest.mark.django_db
def test_a_second_build_on_the_same_prices_returns_the_current_model_unchanged():
    build_market()
    first = risk_model_build()

    again = risk_model_build()

    assert again.pk == first.pk
    assert RiskModel.objects.count() == 1
    assert AuditEvent.objects.filter(action="risk_model.built").count() == 1


@pytest.mark.django_db
def test_new_prices_make_a_new_version_and_only_it_is_current():
    market = build_market()
    first = risk_model_build()
    next_day = date(2026, 11, 25)
    for sec in market["securities"].values():
        factories.PriceFactory(security=sec, as_of=next_day, price=Decimal("101"))

    second = risk_model_build()
    forced = risk_model_build(force=True)

    assert [(m.version, m.as_of, m.is_current) for m in RiskModel.objects.order_by("version")] == [
        (1, date(2026, 11, 24), False),
        (2, next_day, False),
        (3, next_day, True),
    ]
    assert second.pk != first.pk
    assert risk_model_current().pk == forced.pk
    events = AuditEvent.objects.filter(action="risk_model.built").order_by("seq")
    assert [e.before for e in events] == [
        None,
        {"version": 1, "as_of": "2026-11-24"},
        {"version": 2, "as_of": "2026-11-25"},
    ]
    assert [e.reason for e in events] == ["", "", "forced rebuild"]


@pytest.mark.django_db
def test_another_window_is_a_new_build_even_on_the_same_prices():
    build_market()
    risk_model_build()

    other = risk_model_build(window=60)

    assert (other.version, other.window, other.diagnostics["n_dates"]) == (2, 60, 60)


@pytest.mark.django_db
def test_a_build_as_of_an_earlier_day_uses_only_the_prices_up_to_it():
    market = build_market()
    day = market["dates"][-11]

    model = risk_model_build(as_of=day)

    assert model.as_of == day
    assert model.diagnostics["as_of"] == day.isoformat()
    assert model.diagnostics["n_dates"] == WINDOW


@pytest.mark.django_db
def test_a_security_with_a_short_history_is_stored_as_a_fallback_with_its_reason():
    market = build_market(short=21)
    new = market["securities"]["NEW"]

    model = risk_model_build()

    assert model.fallbacks == {str(new.pk): FALLBACK_OWN.format(n=20, min=MIN_OBS)}
    assert model.fallbacks[str(new.pk)] == (
        "only 20 daily returns (fewer than 30): zero exposures, its own sample variance"
    )
    assert model.exposures[_row(model, new)] == [0.0, 0.0]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_factor_security_is_refused_with_the_tickers_to_set():
    factories.PriceFactory(security=factories.SecurityFactory(ticker="AAA"))

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build()

    assert exc.value.message == (
        "No factor ETF is a known security: none of MTUM, QUAL (RISK_FACTOR_TICKERS) is in the "
        "securities list."
    )
    assert not RiskModel.objects.exists()


@pytest.mark.django_db
def test_no_prices_at_all_are_refused():
    factories.SecurityFactory(ticker="MTUM")

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build()
    assert exc.value.message == ("There are no prices: import prices before building a risk model.")

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build(as_of=date(2020, 1, 1))
    assert exc.value.message == (
        "There are no prices on or before 2020-01-01: import prices before building a risk model."
    )


@pytest.mark.django_db
def test_factor_etfs_without_prices_are_refused():
    factories.SecurityFactory(ticker="MTUM")
    factories.SecurityFactory(ticker="QUAL")
    aaa = factories.SecurityFactory(ticker="AAA")
    _add_prices(aaa, _sessions(SESSIONS), np.linspace(100, 120, SESSIONS))

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build()
    assert exc.value.message == (
        "None of the factor ETFs MTUM, QUAL has a price: import their prices before building a "
        "risk model."
    )

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build(as_of=date(2026, 11, 1))
    assert exc.value.message == (
        "None of the factor ETFs MTUM, QUAL has a price on or before 2026-11-01: import their "
        "prices before building a risk model."
    )


@pytest.mark.django_db
def test_factor_prices_that_stopped_long_ago_are_too_little_history():
    factories.SecurityFactory(ticker="MTUM")
    factories.PriceFactory(
        security=factories.SecurityFactory(ticker="QUAL"), as_of=date(2020, 1, 2)
    )
    aaa = factories.SecurityFactory(ticker="AAA")
    _add_prices(aaa, _sessions(SESSIONS), np.linspace(100, 120, SESSIONS))

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build()

    assert exc.value.message == (
        "Too little history: no factor has 30 daily returns in the last 80 sessions "
        "(the most is 0)."
    )


@pytest.mark.django_db
def test_a_stock_priced_after_the_last_factor_session_waits_for_the_factors():
    market = build_market()
    first = risk_model_build()
    factories.PriceFactory(
        security=market["securities"]["AAA"], as_of=date(2026, 11, 25), price=Decimal("99")
    )

    again = risk_model_build()

    assert again.pk == first.pk
    assert again.as_of == date(2026, 11, 24)
    assert RiskModel.objects.count() == 1


@pytest.mark.django_db
def test_too_little_history_is_refused_with_how_much_is_needed():
    build_market(sessions=25)

    with pytest.raises(ValidationFailed) as exc:
        risk_model_build()

    assert exc.value.message == (
        "Too little history: no factor has 30 daily returns in the last 80 sessions "
        "(the most is 24)."
    )
    assert not AuditEvent.objects.filter(action="risk_model.built").exists()


# --- selectors -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_selectors_find_the_current_model_and_one_by_id():
    assert risk_model_current() is None
    build_market()
    model = risk_model_build()

    assert risk_model_current().pk == model.pk
    assert risk_model_get(pk=model.pk).pk == model.pk
    with pytest.raises(NotFound) as exc:
        risk_model_get(pk=model.pk + 1)
    assert exc.value.message == f"Risk model {model.pk + 1} not found."


@pytest.mark.django_db
def test_risk_model_arrays_maps_securities_with_fallbacks_for_unknown_ones():
    market = build_market(short=15)
    secs = market["securities"]
    model = risk_model_build()
    stranger = factories.SecurityFactory(ticker="ZZZ")

    b, f, d, fallback = risk_model_arrays(
        model=model, security_ids=[secs["BBB"].pk, stranger.pk, secs["QUAL"].pk, secs["NEW"].pk]
    )

    assert b.shape == (4, 2)
    assert f.tolist() == model.factor_cov
    np.testing.assert_array_equal(b[0], model.exposures[_row(model, secs["BBB"])])
    np.testing.assert_array_equal(b[1], [0.0, 0.0])
    np.testing.assert_array_equal(b[2], [0.0, 1.0])
    assert d[1] == model.diagnostics["fallback_var"]
    assert d[3] == model.specific_var[_row(model, secs["NEW"])]
    assert fallback.tolist() == [False, True, False, True]
    assert risk_model_parsed(model=model) is risk_model_parsed(model=model)


# --- rebuild requests and the task ---------------------------------------------------------


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []

    def send_task(name: str, args: list[Any] | None = None, **options: Any) -> None:
        calls.append((name, list(args or [])))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


@pytest.mark.django_db
def test_a_rebuild_request_enqueues_the_task_only_after_commit(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        risk_model_rebuild_request()
    assert sent == []

    for callback in callbacks:
        callback()

    assert sent == [(REBUILD_TASK, [])]


@pytest.mark.django_db
def test_a_price_import_requests_a_risk_model_rebuild(
    ops, sent, django_capture_on_commit_callbacks
):
    factories.SecurityFactory(ticker="AAA")
    data = b"ticker,date,price\nAAA,2026-11-23,10\n"

    with django_capture_on_commit_callbacks(execute=True):
        import_submit(actor=ops, kind="prices", file_name="prices.csv", data=data)

    assert (REBUILD_TASK, []) in sent


@pytest.mark.django_db
def test_a_holdings_import_requests_no_rebuild(
    ops, account_a, security, sent, django_capture_on_commit_callbacks
):
    data = (
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        f"{account_a.account_number},AAPL,5,100,2025-01-02\n"
    ).encode()

    with django_capture_on_commit_callbacks(execute=True):
        import_submit(actor=ops, kind="lots", file_name="lots.csv", data=data)

    assert (REBUILD_TASK, []) not in sent


@pytest.mark.django_db
def test_the_refresh_reports_a_skip_instead_of_failing():
    result = risk_model_refresh()

    assert result == {
        "skipped": "No factor ETF is a known security: none of MTUM, QUAL "
        "(RISK_FACTOR_TICKERS) is in the securities list."
    }


@pytest.mark.django_db
def test_the_task_builds_once_per_price_date():
    build_market()

    first = risk_model_rebuild.apply().get()
    second = risk_model_rebuild.apply().get()

    model = RiskModel.objects.get()
    assert first == {
        "risk_model": model.pk,
        "version": 1,
        "as_of": "2026-11-24",
        "built": True,
    }
    assert second == {**first, "built": False}


@pytest.mark.django_db
def test_the_daily_schedule_runs_the_rebuild_after_the_drift_scan():
    task = PeriodicTask.objects.get(name="Risk model rebuild")

    assert task.task == REBUILD_TASK
    assert task.enabled
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "45",
        "16",
        "1-5",
        "America/New_York",
    )


@pytest.mark.celery_worker
def test_the_rebuild_task_runs_on_a_real_worker(live_worker):  # noqa: F811
    build_market()

    result = app.send_task(REBUILD_TASK).get(timeout=60)

    assert result["built"] is True
    assert result["version"] == 1
    assert RiskModel.objects.get().as_of == date(2026, 11, 24)


# --- two builds at once --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_builds_at_once_make_one_version(monkeypatch):
    build_market()
    barrier = threading.Barrier(2, timeout=30)
    real_estimate = risk_service.risk_model_estimate

    def estimate_then_wait(*args: Any, **kwargs: Any):
        result = real_estimate(*args, **kwargs)
        barrier.wait()  # both have estimated before either takes the lock
        return result

    monkeypatch.setattr(risk_service, "risk_model_estimate", estimate_then_wait)
    results: list[int] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(risk_model_build().pk)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert connection.vendor == "postgresql"
    assert RiskModel.objects.count() == 1
    assert results == [RiskModel.objects.get().pk] * 2
    assert AuditEvent.objects.filter(action="risk_model.built").count() == 1


# --- the command ---------------------------------------------------------------------------


def _command(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("risk_model", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_builds_prints_a_table_and_then_keeps_the_model():
    build_market()

    first = _command()
    second = _command()
    forced = _command("--force")

    assert first.startswith("Risk model v1 built as of 2026-11-24 in ")
    assert "4 securities, 2 factors, 0 fallback(s), window 80" in first
    lines = first.splitlines()
    assert lines[lines.index("factor       vol") + 1].startswith("MTUM ")
    header = next(line for line in lines if line.startswith("ticker"))
    assert header.split() == ["ticker", "MTUM", "QUAL", "spec", "vol", "R2", "obs", "note"]
    aaa = next(line for line in lines if line.startswith("AAA ")).split()
    assert [float(aaa[1]), float(aaa[2])] == pytest.approx([1.5, -0.5], abs=0.01)
    assert second.startswith(
        "Risk model v1 as of 2026-11-24 is up to date (the latest prices): unchanged; "
        "--force builds a new version anyway."
    )
    assert forced.startswith("Risk model v2 built as of 2026-11-24")


@pytest.mark.django_db
def test_the_command_reports_bad_input_as_a_command_error():
    with pytest.raises(CommandError) as exc:
        _command("--as-of", "yesterday")
    assert str(exc.value) == "--as-of must be a date like 2026-11-24 (got 'yesterday')."

    with pytest.raises(CommandError) as exc:
        _command()
    assert str(exc.value) == (
        "No factor ETF is a known security: none of MTUM, QUAL (RISK_FACTOR_TICKERS) is in the "
        "securities list."
    )


# --- the demo ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
def test_seed_demo_builds_the_risk_model_on_the_five_factor_etfs(settings):
    from portfolios.demo import demo_seed

    settings.RISK_FACTOR_TICKERS = ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"]
    settings.RISK_MODEL_WINDOW = 252
    settings.RISK_MODEL_MIN_OBSERVATIONS = 60

    demo_seed(password="demo-pw-for-tests", history_days=300)

    model = RiskModel.objects.get()
    assert model.factors == ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"]
    assert model.as_of == Price.objects.latest("as_of").as_of
    cash = Price.objects.filter(security__ticker="CASHX").first().security_id
    assert model.exposures[model.security_ids.index(cash)] == [0.0] * 5
    assert model.specific_var[model.security_ids.index(cash)] == SPECIFIC_VAR_FLOOR
