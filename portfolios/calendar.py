"""Trading days of the New York Stock Exchange (XNYS, from ``exchange_calendars``).

The drift scan runs on trading days only and calls a price stale when it is older than a
number of trading sessions; both questions are answered here, in dates of New York. The
calendar object is built once per process (about 0.1 s) and covers about twenty years back and
one year ahead; dates outside that range are clamped to its ends.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Callable

    from exchange_calendars import ExchangeCalendar

P = ParamSpec("P")
R = TypeVar("R")

EXCHANGE = "XNYS"


def _quiet(func: Callable[P, R]) -> Callable[P, R]:
    """exchange_calendars 4.13 calls pandas APIs that pandas 3.1 deprecates; the warnings are
    the library's and say nothing about our use, so they are silenced around its calls."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return func(*args, **kwargs)

    return wrapper


@lru_cache(maxsize=1)
def _calendar() -> ExchangeCalendar:
    import exchange_calendars

    return exchange_calendars.get_calendar(EXCHANGE)


@_quiet
def is_trading_day(day: date) -> bool:
    """True when ``day`` is an XNYS session (not a weekend or an exchange holiday)."""
    calendar = _calendar()
    ts = pd.Timestamp(day)
    if ts < calendar.first_session or ts > calendar.last_session:
        return ts.dayofweek < 5
    return bool(calendar.is_session(ts))


@_quiet
def last_completed_session(now: datetime | None = None) -> date:
    """The latest session whose close is at or before ``now`` (an aware datetime)."""
    from django.utils import timezone

    calendar = _calendar()
    moment = pd.Timestamp(now or timezone.now())
    if moment.tzinfo is None:
        raise ValueError("last_completed_session needs an aware datetime")
    moment = moment.tz_convert("UTC")
    if moment > calendar.last_session_close:
        return calendar.last_session.date()
    if moment <= calendar.first_session_open:
        return calendar.first_session.date()
    session = calendar.minute_to_past_session(moment.floor("min"))
    next_session = calendar.next_session(session)
    if calendar.session_close(next_session) <= moment:
        session = next_session
    return session.date()


@_quiet
def session_offset(day: date, sessions: int) -> date:
    """The session ``sessions`` trading days from ``day`` (negative: back); ``day`` is taken
    to its own session, or the previous one when it is not a trading day."""
    calendar = _calendar()
    ts = pd.Timestamp(day)
    ts = min(max(ts, calendar.first_session), calendar.last_session)
    session = calendar.date_to_session(ts, direction="previous")
    return calendar.session_offset(session, sessions).date()


def stale_price_cutoff(*, now: datetime | None = None, trading_days: int) -> date:
    """Prices dated before the returned day are stale: it is ``trading_days`` sessions before
    the latest completed session."""
    return session_offset(last_completed_session(now), -trading_days)
