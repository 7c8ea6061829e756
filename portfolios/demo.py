"""The demo firm: a realistic book built from real market prices, for `manage.py seed_demo`.

``demo_seed`` loads a small universe (20 S&P 500 stocks and 5 iShares factor ETFs with their real
daily closes from ``portfolios/demo_data/``, plus two clearly labelled synthetic securities), four
model portfolios, two PM teams with three households each, tax lots bought on real historical
dates at the real prices of those dates, transactions, and the demo users of every role.
``demo_scale`` adds generated accounts in bulk for scale tests.

The price history is shifted in time so that its last row falls on the latest completed NYSE
(XNYS) session: the i-th last row of the data becomes the i-th last XNYS session, so every date
is a trading day and every daily return is the one in the data. The shift is fixed when the
prices are first loaded; later runs (and ``demo_scale``) reuse the stored end date. See
``docs/demo-data.md``.

Everything is deterministic (numpy ``default_rng`` seeded with 2026) and idempotent: a second run
finds what the first one created and changes nothing.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import accumulate, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import exchange_calendars as xcals
import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from guardian.models import GroupObjectPermission

from compliance.services.audit import audit_record
from portfolios.models import (
    Account,
    AssetClass,
    Household,
    ModelPortfolio,
    ModelVersion,
    Price,
    RegistrationType,
    Security,
    SecurityType,
    Side,
    TaxLot,
    Transaction,
)
from portfolios.services import (
    HOUSEHOLD_PERMS,
    TargetSpec,
    holdings_changed,
    household_assign_team,
    model_version_create,
)
from portfolios.services.risk import risk_model_refresh
from portfolios.tax import is_long_term
from rebalance_app.exceptions import ValidationFailed
from rebalance_app.roles import Role

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from django.db.models import Model

ROLE_GROUP_MISSING = "Role group '{name}' does not exist: run `manage.py migrate` first."
DEMO_NOT_SEEDED = (
    "The demo universe and models are not loaded: run `manage.py seed_demo` before adding "
    "generated accounts."
)
ACCOUNTS_NOT_POSITIVE = "The number of accounts to add must be at least 1 (got {n})."
HISTORY_TOO_SHORT = "Keep at least {min} days of price history (got {n})."
NO_COMPLETED_SESSION = "No completed XNYS session found before {now:%Y-%m-%d %H:%M} UTC."

DATA_DIR = Path(__file__).resolve().parent / "demo_data"
STOCKS_FILE = "sp500_dataset.csv.gz"
FACTORS_FILE = "factors_dataset.csv.gz"

ACTOR = "system:seed_demo"
SOURCE_REAL = "demo:skfolio-shifted"
SOURCE_SYNTHETIC = "demo:synthetic"
SEED = 2026
BATCH_SIZE = 5000
TEAM_A = "Team A"
TEAM_B = "Team B"
GENERATED_PREFIX = "G-"
SESSIONS_PER_YEAR = 252
LOT_LOOKBACK_SESSIONS = 8 * SESSIONS_PER_YEAR  # lots are bought within the last ~8 years
SELL_MIN_AGE_SESSIONS = 31  # demo sells are older than the wash-sale window
MIN_HISTORY_DAYS = 300  # enough for long-term lots, short-term lots and recent sells

# ---------------------------------------------------------------------------
# The universe: real names and GICS sectors. ESG scores are illustrative (not a provider's).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSecurity:
    name: str
    sector: str
    esg: str
    asset_class: str = AssetClass.EQUITY
    security_type: str = SecurityType.EQUITY
    tags: tuple[str, ...] = ()
    wash_sale_group: str = ""
    synthetic: bool = False


_ETF = {"asset_class": AssetClass.EQUITY, "security_type": SecurityType.ETF}
UNIVERSE: dict[str, DemoSecurity] = {
    "AAPL": DemoSecurity("Apple Inc.", "Information Technology", "71.5"),
    "AMD": DemoSecurity("Advanced Micro Devices, Inc.", "Information Technology", "68.0"),
    "BAC": DemoSecurity("Bank of America Corporation", "Financials", "62.4"),
    "BBY": DemoSecurity("Best Buy Co., Inc.", "Consumer Discretionary", "74.2"),
    "CVX": DemoSecurity("Chevron Corporation", "Energy", "38.6", tags=("fossil_fuels",)),
    "GE": DemoSecurity("General Electric Company", "Industrials", "55.1", tags=("defense",)),
    "HD": DemoSecurity("The Home Depot, Inc.", "Consumer Discretionary", "66.3"),
    "JNJ": DemoSecurity("Johnson & Johnson", "Health Care", "64.8"),
    "JPM": DemoSecurity("JPMorgan Chase & Co.", "Financials", "58.9"),
    "KO": DemoSecurity("The Coca-Cola Company", "Consumer Staples", "69.7"),
    "LLY": DemoSecurity("Eli Lilly and Company", "Health Care", "67.2"),
    "MRK": DemoSecurity("Merck & Co., Inc.", "Health Care", "70.1"),
    "MSFT": DemoSecurity("Microsoft Corporation", "Information Technology", "78.3"),
    "PEP": DemoSecurity("PepsiCo, Inc.", "Consumer Staples", "72.6"),
    "PFE": DemoSecurity("Pfizer Inc.", "Health Care", "63.5"),
    "PG": DemoSecurity("The Procter & Gamble Company", "Consumer Staples", "73.9"),
    "RRC": DemoSecurity("Range Resources Corporation", "Energy", "31.2", tags=("fossil_fuels",)),
    "UNH": DemoSecurity("UnitedHealth Group Incorporated", "Health Care", "61.0"),
    "WMT": DemoSecurity("Walmart Inc.", "Consumer Staples", "60.7"),
    "XOM": DemoSecurity("Exxon Mobil Corporation", "Energy", "35.4", tags=("fossil_fuels",)),
    "MTUM": DemoSecurity(
        "iShares MSCI USA Momentum Factor ETF",
        "Multi-sector",
        "64.0",
        wash_sale_group="MTUM",
        **_ETF,
    ),
    "QUAL": DemoSecurity(
        "iShares MSCI USA Quality Factor ETF",
        "Multi-sector",
        "68.5",
        wash_sale_group="QUAL",
        **_ETF,
    ),
    "SIZE": DemoSecurity(
        "iShares MSCI USA Size Factor ETF", "Multi-sector", "61.8", wash_sale_group="SIZE", **_ETF
    ),
    "USMV": DemoSecurity(
        "iShares MSCI USA Min Vol Factor ETF",
        "Multi-sector",
        "66.9",
        wash_sale_group="USMV",
        **_ETF,
    ),
    "VLUE": DemoSecurity(
        "iShares MSCI USA Value Factor ETF", "Multi-sector", "59.3", wash_sale_group="VLUE", **_ETF
    ),
    "AGGD": DemoSecurity(
        "Aggregate Bond Index Fund (synthetic demo)",
        "Fixed Income",
        "70.0",
        asset_class=AssetClass.FIXED_INCOME,
        security_type=SecurityType.ETF,
        wash_sale_group="us-aggregate-bond",
        synthetic=True,
    ),
    "CASHX": DemoSecurity(
        "Money Market Sweep (synthetic demo)",
        "Cash",
        "",
        asset_class=AssetClass.CASH,
        security_type=SecurityType.CASH,
        wash_sale_group="CASHX",
        synthetic=True,
    ),
}
REAL_TICKERS = [t for t, s in UNIVERSE.items() if not s.synthetic]
# Preferred tax-loss-harvesting replacements: similar exposure, not substantially identical.
TLH_SUBSTITUTES: dict[str, tuple[str, ...]] = {
    "KO": ("PEP",),
    "PEP": ("KO",),
    "XOM": ("CVX",),
    "CVX": ("XOM",),
    "MRK": ("PFE",),
    "PFE": ("MRK",),
    "JNJ": ("PFE", "MRK"),
    "JPM": ("BAC",),
    "BAC": ("JPM",),
    "HD": ("BBY",),
    "AAPL": ("MSFT",),
    "MSFT": ("AAPL",),
    "PG": ("KO",),
    "QUAL": ("USMV",),
    "USMV": ("QUAL",),
    "MTUM": ("QUAL",),
    "VLUE": ("SIZE",),
    "SIZE": ("VLUE",),
}
# The synthetic bond fund: a small-volatility random walk (about 4% a year) over the span of
# the factor ETFs; the money-market sweep is a constant 1.00.
BOND_START_PRICE = 100.0
BOND_DAILY_DRIFT = 0.0001
BOND_DAILY_VOL = 0.0025

# ---------------------------------------------------------------------------
# Models (percent weights; with the cash target they sum to 100)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoModel:
    description: str
    # (note, cash percent, {ticker: percent}) per version, oldest first
    versions: tuple[tuple[str, str, dict[str, str]], ...]


ABS_BAND = Decimal("0.02")
REL_BAND = Decimal("0.25")
_CORE_V2 = {
    "AAPL": "10", "MSFT": "10", "JPM": "6", "BAC": "4", "JNJ": "6", "UNH": "6", "LLY": "5",
    "MRK": "4", "PFE": "3", "PG": "6", "KO": "5", "PEP": "5", "WMT": "5", "HD": "6", "XOM": "5",
    "CVX": "4", "GE": "3", "BBY": "2", "AMD": "3",
}  # fmt: skip
_CORE_V1 = {**{t: w for t, w in _CORE_V2.items() if t != "AMD"}, "RRC": "3"}
_BALANCED = {
    "AAPL": "5", "MSFT": "5", "JPM": "4", "JNJ": "4", "PG": "4", "UNH": "4", "KO": "3",
    "PEP": "3", "XOM": "3", "HD": "3", "WMT": "2", "USMV": "6", "QUAL": "6", "MTUM": "3",
    "VLUE": "3", "AGGD": "40",
}  # fmt: skip
_CONSERVATIVE = {
    "AGGD": "55", "USMV": "15", "QUAL": "8", "JNJ": "4", "PG": "4", "KO": "3", "PEP": "3",
    "CASHX": "5",
}  # fmt: skip
_FACTOR = {"MTUM": "20", "QUAL": "22", "SIZE": "16", "USMV": "20", "VLUE": "20"}
MODELS: dict[str, DemoModel] = {
    "Core Equity": DemoModel(
        "Large-cap US equity across all sectors.",
        (
            ("Initial allocation.", "2", _CORE_V1),
            ("Replace RRC with AMD: less fossil-fuel exposure, more technology.", "2", _CORE_V2),
        ),
    ),
    "Balanced 60/40": DemoModel(
        "Stocks and factor ETFs against an aggregate bond sleeve.",
        (("Initial allocation.", "2", _BALANCED),),
    ),
    "Factor Tilt": DemoModel(
        "The five iShares MSCI USA factor ETFs.",
        (("Initial allocation.", "2", _FACTOR),),
    ),
    "Conservative Income": DemoModel(
        "Bond-heavy, with low-volatility equity and a money-market sleeve.",
        (("Initial allocation.", "3", _CONSERVATIVE),),
    ),
}

# ---------------------------------------------------------------------------
# Users, teams, households and accounts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    groups: tuple[str, ...]
    superuser: bool = False


USERS: tuple[DemoUser, ...] = (
    DemoUser("pm", "Priya", "Menon", (Role.PM.value, TEAM_A)),
    DemoUser("pm2", "Marcus", "Boateng", (Role.PM.value, TEAM_B)),
    DemoUser("ops", "Olivia", "Sandoval", (Role.OPS.value,)),
    DemoUser("ops2", "Tomasz", "Nowak", (Role.OPS.value,)),
    DemoUser("compliance", "Claire", "Dubois", (Role.COMPLIANCE.value,)),
    DemoUser("admin", "Adam", "Reyes", (Role.ADMIN.value,), superuser=True),
)


@dataclass(frozen=True)
class DemoAccount:
    name: str
    custodian: str
    number: str
    registration: str
    model: str
    value: int  # approximate market value to build, in dollars
    prefs: dict[str, Any] = field(default_factory=dict)
    legacy: tuple[str, ...] = ()  # held but not in the model


@dataclass(frozen=True)
class DemoHousehold:
    name: str
    team: str
    accounts: tuple[DemoAccount, ...]


_TLH = {"tlh_enabled": True}
HOUSEHOLDS: tuple[DemoHousehold, ...] = (
    DemoHousehold("Okafor Family", TEAM_A, (
        DemoAccount("Okafor Joint", "Schwab", "8841-2207", RegistrationType.JOINT, "Core Equity",
                    1_850_000, {**_TLH, "auto_propose": True, "allow_fractional": True},
                    legacy=("RRC",)),
        DemoAccount("Adaeze Okafor Roth IRA", "Schwab", "8841-2215", RegistrationType.ROTH,
                    "Factor Tilt", 240_000, {"allow_fractional": True}),
    )),
    DemoHousehold("Lindqvist Family", TEAM_A, (
        DemoAccount("Erik Lindqvist Individual", "Fidelity", "Z31-558204",
                    RegistrationType.INDIVIDUAL, "Balanced 60/40", 920_000,
                    {**_TLH, "gains_budget": Decimal("25000"), "min_trade_amount": Decimal("250")}),
        DemoAccount("Erik Lindqvist Rollover IRA", "Fidelity", "Z31-558212",
                    RegistrationType.IRA, "Conservative Income", 610_000),
    )),
    DemoHousehold("Ramirez Family Trust", TEAM_A, (
        DemoAccount("Ramirez Family Trust", "Pershing", "RPK-104477", RegistrationType.TRUST,
                    "Core Equity", 3_200_000,
                    {**_TLH, "gains_budget": Decimal("100000"), "min_trade_amount": Decimal("500")},
                    legacy=("RRC",)),
        DemoAccount("Luis Ramirez IRA", "Pershing", "RPK-104485", RegistrationType.IRA,
                    "Balanced 60/40", 480_000, {"auto_propose": True}),
    )),
    DemoHousehold("Chen-Nakamura Family", TEAM_B, (
        DemoAccount("Chen-Nakamura Joint", "Schwab", "8902-6631", RegistrationType.JOINT,
                    "Balanced 60/40", 1_250_000, {**_TLH, "allow_fractional": True}),
        DemoAccount("Mei Chen Roth IRA", "Schwab", "8902-6649", RegistrationType.ROTH,
                    "Core Equity", 185_000),
    )),
    DemoHousehold("Whitfield Family", TEAM_B, (
        DemoAccount("Grace Whitfield Individual", "Fidelity", "Z47-120938",
                    RegistrationType.INDIVIDUAL, "Factor Tilt", 760_000,
                    {"gains_budget": Decimal("15000")}),
        DemoAccount("Grace Whitfield IRA", "Fidelity", "Z47-120946", RegistrationType.IRA,
                    "Conservative Income", 1_100_000, {"auto_propose": True}),
    )),
    DemoHousehold("Patel Household", TEAM_B, (
        DemoAccount("Patel Joint", "Pershing", "RPK-220913", RegistrationType.JOINT,
                    "Core Equity", 2_400_000, {**_TLH, "min_trade_amount": Decimal("250")}),
        DemoAccount("Anil Patel IRA", "Pershing", "RPK-220921", RegistrationType.IRA,
                    "Balanced 60/40", 350_000),
    )),
)  # fmt: skip
TAX_RATES = ((Decimal("0.37"), Decimal("0.20")), (Decimal("0.35"), Decimal("0.20")),
             (Decimal("0.32"), Decimal("0.15")), (Decimal("0.24"), Decimal("0.15")))  # fmt: skip
CUSTODIANS = ("Schwab", "Fidelity", "Pershing")
TAXABLE_REGISTRATIONS = [
    RegistrationType.INDIVIDUAL,
    RegistrationType.JOINT,
    RegistrationType.TRUST,
]
DEFERRED_REGISTRATIONS = [RegistrationType.IRA, RegistrationType.ROTH]
SURNAMES = (
    "Abara", "Bergström", "Castellanos", "Dlamini", "Eriksen", "Fitzgerald", "Gallagher",
    "Haddad", "Ivanova", "Jaramillo", "Kowalczyk", "Larsen", "Mbeki", "Nguyen", "O'Connell",
    "Petrov", "Quintero", "Rosenberg", "Sato", "Thompson", "Uchenna", "Varga", "Weiss", "Xu",
    "Yamamoto", "Zielinski",
)  # fmt: skip
# Share of generated accounts per model (the rest of the firm looks like the demo).
GENERATED_MODEL_MIX = {
    "Core Equity": 0.4, "Balanced 60/40": 0.3, "Factor Tilt": 0.15, "Conservative Income": 0.15,
}  # fmt: skip


# ---------------------------------------------------------------------------
# Price history: the real data, shifted onto the latest XNYS sessions
# ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _xnys(start_year: int) -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values, which pandas 3.1 deprecates for tz data.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XNYS", start=f"{start_year}-01-01")


def xnys_calendar(*, sessions_back: int, end: date) -> xcals.ExchangeCalendar:
    """An XNYS calendar that reaches ``sessions_back`` sessions before ``end`` (the library's
    default starts only about 20 years back)."""
    return _xnys(end.year - sessions_back // 240 - 2)


def xnys_last_completed_session(*, now: datetime | None = None) -> date:
    """The last XNYS session whose close is before ``now``."""
    now = now or timezone.now()
    stamp = pd.Timestamp(now).tz_convert("UTC") if now.tzinfo else pd.Timestamp(now, tz="UTC")
    calendar = xnys_calendar(sessions_back=30, end=now.date())
    closes = calendar.closes
    closed = closes[(closes.index <= pd.Timestamp(now.date())) & (closes <= stamp)]
    if closed.empty:
        raise ValidationFailed(NO_COMPLETED_SESSION.format(now=now))
    return closed.index[-1].date()


def xnys_sessions_ending(*, end: date, count: int) -> list[date]:
    """The ``count`` XNYS sessions ending on ``end`` (a session), oldest first."""
    calendar = xnys_calendar(sessions_back=count, end=end)
    return [s.date() for s in calendar.sessions_window(pd.Timestamp(end), -count)]


@dataclass(frozen=True)
class DemoHistory:
    """Daily closes on shifted dates: ``values[i, k]`` is ticker ``k`` on ``dates[i]`` (NaN where
    the security has no price yet). ``original_dates`` are the data's own dates."""

    dates: list[date]
    original_dates: list[date]
    tickers: list[str]
    values: np.ndarray

    def col(self, ticker: str) -> np.ndarray:
        return self.values[:, self.tickers.index(ticker)]

    def first_valid(self, ticker: str) -> int:
        return int(np.argmax(~np.isnan(self.col(ticker))))


def demo_data_frame() -> pd.DataFrame:
    """The shipped data (stocks and factor ETFs on the stocks' dates) plus the synthetic
    securities, on the data's original dates."""
    stocks = pd.read_csv(DATA_DIR / STOCKS_FILE, parse_dates=["Date"], index_col="Date")
    factors = pd.read_csv(DATA_DIR / FACTORS_FILE, parse_dates=["Date"], index_col="Date")
    frame = pd.concat([stocks, factors], axis=1).sort_index()
    synthetic_rows = frame.index >= factors.index[0]
    n = int(synthetic_rows.sum())
    rng = np.random.default_rng(SEED)
    steps = rng.normal(BOND_DAILY_DRIFT, BOND_DAILY_VOL, n - 1)
    bond = BOND_START_PRICE * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    frame["AGGD"] = np.nan
    frame.loc[synthetic_rows, "AGGD"] = np.round(bond, 4)
    frame["CASHX"] = np.nan
    frame.loc[synthetic_rows, "CASHX"] = 1.0
    return frame[list(UNIVERSE)]


def demo_history(*, end: date, history_days: int | None = None) -> DemoHistory:
    """The demo price history with its last row on ``end``, mapped session by session.

    ``history_days`` keeps only the last rows (tests); the default is the whole history."""
    if history_days is not None and history_days < MIN_HISTORY_DAYS:
        raise ValidationFailed(HISTORY_TOO_SHORT.format(min=MIN_HISTORY_DAYS, n=history_days))
    frame = demo_data_frame()
    if history_days is not None:
        frame = frame.iloc[-history_days:]
    sessions = xnys_sessions_ending(end=end, count=len(frame))
    return DemoHistory(
        dates=sessions,
        original_dates=[d.date() for d in frame.index],
        tickers=list(frame.columns),
        values=frame.to_numpy(dtype=float),
    )


def demo_prices_end() -> date | None:
    """The last date of the demo prices already loaded (the shift is fixed at the first load)."""
    return Price.objects.filter(source=SOURCE_REAL).aggregate(m=Max("as_of"))["m"]


# ---------------------------------------------------------------------------
# Lots: real dates, real prices, some at a loss, some short-term
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LotPlan:
    ticker: str
    index: int  # session index in the history
    quantity: Decimal
    price: Decimal


def _money(x: float) -> Decimal:
    return Decimal(f"{x:.2f}")


def _price(x: float) -> Decimal:
    return Decimal(f"{x:.6f}")


class LotPlanner:
    """Chooses lot dates and sizes for an account so that its current weights sit near its
    model's (with some drift), on the history's real dates and prices."""

    KINDS = ("old", "high", "short", "any")

    def __init__(self, history: DemoHistory) -> None:
        self.h = history
        n = len(history.dates)
        self.last = n - 1
        year_ago = history.dates[-1] - timedelta(days=365)
        # first session inside the last 365 days: lots from here on are short-term
        self.short_from = next(i for i, d in enumerate(history.dates) if d > year_ago)
        self.cols = {t: history.col(t) for t in history.tickers}
        self.lo = {
            t: max(history.first_valid(t), n - LOT_LOOKBACK_SESSIONS) for t in history.tickers
        }

    def last_price(self, ticker: str) -> float:
        return float(self.cols[ticker][self.last])

    def session(self, rng: np.random.Generator, ticker: str, kind: str) -> int:
        lo, hi, short = self.lo[ticker], self.last, self.short_from
        if kind == "old" and short - lo > 1:
            return int(rng.integers(lo, short - 1))
        if kind == "high":
            # the top of a random quarter in the last two years: usually above today's price
            start = int(rng.integers(max(lo, hi - 2 * SESSIONS_PER_YEAR), max(lo + 1, hi - 63)))
            window = self.cols[ticker][start : start + 63]
            return start + int(np.nanargmax(window))
        if kind == "short":
            return int(rng.integers(max(lo, short), hi))
        return int(rng.integers(lo, hi))

    def plan(
        self,
        rng: np.random.Generator,
        *,
        value: float,
        weights: dict[str, float],
        lots: tuple[int, int],
        kinds: tuple[str, ...] | None = None,
    ) -> list[LotPlan]:
        """Whole-share lots of each model security worth about ``value * weight`` today.

        ``lots`` bounds the number of lots per security; ``kinds`` fixes the order of lot kinds
        (old, high, short, any), otherwise they are drawn at random."""
        out: list[LotPlan] = []
        for ticker, weight in weights.items():
            price_now = self.last_price(ticker)
            shares = value * weight * float(rng.lognormal(0.0, 0.12)) / price_now
            n = int(min(rng.integers(lots[0], lots[1] + 1), max(1, int(shares))))
            if ticker == "CASHX":
                n = 1
            split = rng.dirichlet(np.ones(n)) if n > 1 else np.ones(1)
            chosen = kinds[:n] if kinds else tuple(rng.choice(self.KINDS, n))
            for kind, part in zip(chosen, split, strict=False):
                qty = max(1, round(shares * float(part)))
                i = self.session(rng, ticker, kind)
                out.append(LotPlan(ticker, i, Decimal(qty), _price(self.cols[ticker][i])))
        return out

    def gain_sell(
        self, rng: np.random.Generator, *, ticker: str, value: float
    ) -> tuple[LotPlan, LotPlan] | None:
        """A round trip closed at a gain in the last year (buy long ago, sell recently)."""
        buy_i = self.session(rng, ticker, "old")
        lo = max(self.short_from, buy_i + 1)
        hi = self.last - SELL_MIN_AGE_SESSIONS
        if hi <= lo:
            return None
        sell_i = int(rng.integers(lo, hi))
        p_buy, p_sell = self.cols[ticker][buy_i], self.cols[ticker][sell_i]
        if not p_sell > p_buy:
            return None
        qty = Decimal(max(1, round(value / p_sell)))
        return (
            LotPlan(ticker, buy_i, qty, _price(p_buy)),
            LotPlan(ticker, sell_i, qty, _price(p_sell)),
        )


def _targets_of(version: ModelVersion) -> dict[str, float]:
    # In ticker order: the random draws follow it, so the demo is the same on every database.
    targets = version.targets.select_related("security").order_by("security__ticker")
    return {t.security.ticker: float(t.weight) for t in targets}


def _buy(account: Account, sec_ids: dict[str, int], h: DemoHistory, lot: LotPlan) -> Transaction:
    return Transaction(
        account=account,
        security_id=sec_ids[lot.ticker],
        trade_date=h.dates[lot.index],
        side=Side.BUY,
        quantity=lot.quantity,
        price=lot.price,
    )


def _lot(account: Account, sec_ids: dict[str, int], h: DemoHistory, lot: LotPlan) -> TaxLot:
    return TaxLot(
        account=account,
        security_id=sec_ids[lot.ticker],
        quantity=lot.quantity,
        cost_basis=lot.price,
        acquired_on=h.dates[lot.index],
    )


def _bulk(model: type[Model], rows: Iterable[Model]) -> int:
    """``bulk_create`` in batches without holding every row in memory at once."""
    it = iter(rows)
    total = 0
    while batch := list(islice(it, BATCH_SIZE)):
        model.objects.bulk_create(batch, batch_size=BATCH_SIZE)
        total += len(batch)
    return total


# ---------------------------------------------------------------------------
# The seed, step by step
# ---------------------------------------------------------------------------


@dataclass
class DemoSeedResult:
    users: list[tuple[str, str, str]] = field(default_factory=list)  # username, roles, password
    created: dict[str, int] = field(default_factory=dict)


def _say(stdout: TextIO | None, line: str) -> None:
    if stdout is not None:
        stdout.write(line + "\n")


def _audit_step(step: str, counts: dict[str, Any]) -> None:
    audit_record(actor=ACTOR, action="demo.seed", object_type="demo", object_id=step, after=counts)


def _role_group(name: str) -> Group:
    try:
        return Group.objects.get(name=name)
    except Group.DoesNotExist:
        raise ValidationFailed(ROLE_GROUP_MISSING.format(name=name)) from None


def demo_users_ensure(*, password: str | None) -> list[tuple[str, str, str]]:
    """The demo users of every role. New users get ``password`` (or the default); existing
    users get it only when one is given explicitly."""
    user_model = get_user_model()
    teams = {name: Group.objects.get_or_create(name=name)[0] for name in (TEAM_A, TEAM_B)}
    groups = {r.value: _role_group(r.value) for r in Role} | teams
    created: list[str] = []
    reset: list[str] = []
    rows: list[tuple[str, str, str]] = []
    for spec in USERS:
        user, is_new = user_model.objects.get_or_create(
            username=spec.username,
            defaults={
                "first_name": spec.first_name,
                "last_name": spec.last_name,
                "email": f"{spec.username}@demo.example.com",
                "is_superuser": spec.superuser,
                "is_staff": spec.superuser,
            },
        )
        if is_new:
            user.set_password(password or settings.DEMO_PASSWORD_DEFAULT)
            user.save(update_fields=["password"])
            created.append(spec.username)
        elif password is not None and not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
            reset.append(spec.username)
        if spec.superuser and not (user.is_superuser and user.is_staff):
            user.is_superuser = user.is_staff = True
            user.save(update_fields=["is_superuser", "is_staff"])
        missing = [
            groups[g] for g in spec.groups if not user.groups.filter(pk=groups[g].pk).exists()
        ]
        if missing:
            user.groups.add(*missing)
        shown = (
            (password or settings.DEMO_PASSWORD_DEFAULT) if (is_new or password) else "(unchanged)"
        )
        rows.append((spec.username, ", ".join(spec.groups), shown))
    if created or reset:
        _audit_step("users", {"created": created, "password_reset": reset})
    return rows


def demo_securities_ensure() -> dict[str, int]:
    """The demo universe (existing securities are left as they are); ticker -> id."""
    created: list[str] = []
    for ticker, spec in UNIVERSE.items():
        _, is_new = Security.objects.get_or_create(
            ticker=ticker,
            defaults={
                "name": spec.name,
                "asset_class": spec.asset_class,
                "security_type": spec.security_type,
                "sector": spec.sector,
                "esg_score": Decimal(spec.esg) if spec.esg else None,
                "esg_tags": list(spec.tags),
                "wash_sale_group": spec.wash_sale_group,
                "is_synthetic": spec.synthetic,
            },
        )
        if is_new:
            created.append(ticker)
    by_ticker = {s.ticker: s for s in Security.objects.filter(ticker__in=list(UNIVERSE))}
    through = Security.tlh_substitutes.through
    have = set(
        through.objects.filter(from_security__in=by_ticker.values()).values_list(
            "from_security_id", "to_security_id"
        )
    )
    links = [
        through(from_security_id=by_ticker[a].pk, to_security_id=by_ticker[b].pk)
        for a, subs in TLH_SUBSTITUTES.items()
        for b in subs
        if (by_ticker[a].pk, by_ticker[b].pk) not in have
    ]
    through.objects.bulk_create(links)
    if created or links:
        _audit_step("securities", {"created": created, "tlh_substitutes_added": len(links)})
    return {t: s.pk for t, s in by_ticker.items()}


def demo_prices_load(*, history: DemoHistory, sec_ids: dict[str, int]) -> int:
    """Every demo price of the securities that have none yet, in batches."""
    have = set(
        Price.objects.filter(
            security_id__in=sec_ids.values(), source__in=[SOURCE_REAL, SOURCE_SYNTHETIC]
        )
        .values_list("security_id", flat=True)
        .distinct()
    )
    todo = [t for t in history.tickers if sec_ids[t] not in have]

    def rows() -> Iterator[Price]:
        for ticker in todo:
            source = SOURCE_SYNTHETIC if UNIVERSE[ticker].synthetic else SOURCE_REAL
            sid = sec_ids[ticker]
            col = history.col(ticker)
            for i in np.flatnonzero(~np.isnan(col)):
                yield Price(
                    security_id=sid, as_of=history.dates[i], price=_price(col[i]), source=source
                )

    count = _bulk(Price, rows())
    if count:
        _audit_step(
            "prices",
            {
                "rows": count,
                "securities": todo,
                "first": history.dates[0],
                "last": history.dates[-1],
                "data_last": history.original_dates[-1],
            },
        )
    return count


def demo_models_ensure(*, sec_ids: dict[str, int]) -> dict[str, ModelVersion]:
    """The demo models through ``model_version_create`` (which audits each version)."""
    out: dict[str, ModelVersion] = {}
    for name, spec in MODELS.items():
        model, _ = ModelPortfolio.objects.get_or_create(
            name=name, defaults={"description": spec.description}
        )
        if not model.versions.exists():
            for note, cash, weights in spec.versions:
                model_version_create(
                    model=model,
                    targets=[
                        TargetSpec(
                            security_id=sec_ids[t],
                            weight=Decimal(w) / 100,
                            abs_band=ABS_BAND,
                            rel_band=REL_BAND,
                        )
                        for t, w in weights.items()
                    ],
                    cash_target=Decimal(cash) / 100,
                    actor=ACTOR,
                    note=note,
                )
        out[name] = ModelVersion.objects.get(model=model, is_current=True)
    return out


def _account_fields(
    rng: np.random.Generator, *, registration: str, value: float, cash_target: float
) -> dict[str, Any]:
    taxable = registration not in (RegistrationType.IRA, RegistrationType.ROTH)
    st, lt = TAX_RATES[int(rng.integers(len(TAX_RATES)))] if taxable else (Decimal(0), Decimal(0))
    reserve = _money(max(1000.0, round(value * 0.005, -2)))
    cash = _money(value * max(cash_target, 0.005) * float(rng.uniform(0.6, 2.2)) + float(reserve))
    return {
        "registration_type": registration,
        "taxable": taxable,
        "cash_balance": cash,
        "cash_reserve": reserve,
        "st_tax_rate": st,
        "lt_tax_rate": lt,
    }


def demo_households_ensure(
    *, history: DemoHistory, sec_ids: dict[str, int], versions: dict[str, ModelVersion]
) -> dict[str, int]:
    """The six demo households with their accounts, lots and transactions; a household or an
    account that exists already is left alone."""
    teams = {name: Group.objects.get(name=name) for name in (TEAM_A, TEAM_B)}
    planner = LotPlanner(history)
    counts = {"households": 0, "accounts": 0, "lots": 0, "transactions": 0}
    new_accounts: list[int] = []
    for h_index, spec in enumerate(HOUSEHOLDS):
        household = Household.objects.filter(name=spec.name).first()
        if household is None:
            household = Household.objects.create(name=spec.name)
            counts["households"] += 1
        household_assign_team(household=household, team=teams[spec.team], actor=ACTOR)
        for a_index, acc in enumerate(spec.accounts):
            if Account.objects.filter(custodian=acc.custodian, account_number=acc.number).exists():
                continue
            rng = np.random.default_rng([SEED, h_index, a_index])
            version = versions[acc.model]
            fields = _account_fields(
                rng,
                registration=acc.registration,
                value=acc.value,
                cash_target=float(version.cash_target),
            )
            account = Account.objects.create(
                household=household,
                name=acc.name,
                custodian=acc.custodian,
                account_number=acc.number,
                model=version.model,
                **fields,
                **acc.prefs,
            )
            weights = _targets_of(version) | dict.fromkeys(acc.legacy, 0.015)
            lots = planner.plan(
                rng, value=acc.value, weights=weights, lots=(2, 4), kinds=LotPlanner.KINDS
            )
            txns = [_buy(account, sec_ids, history, lot) for lot in lots]
            if fields["taxable"]:
                sellable = [t for t in weights if t not in ("CASHX", "AGGD")]
                for ticker in rng.choice(sellable, size=min(2, len(sellable)), replace=False):
                    trip = planner.gain_sell(rng, ticker=str(ticker), value=acc.value * 0.01)
                    if trip is None:
                        continue
                    buy, sell = trip
                    long_term = is_long_term(
                        acquired_on=history.dates[buy.index], trade_date=history.dates[sell.index]
                    )
                    gain = _money(float(sell.quantity * (sell.price - buy.price)))
                    txns.append(_buy(account, sec_ids, history, buy))
                    txns.append(
                        Transaction(
                            account=account,
                            security_id=sec_ids[sell.ticker],
                            trade_date=history.dates[sell.index],
                            side=Side.SELL,
                            quantity=sell.quantity,
                            price=sell.price,
                            realized_lt=gain if long_term else Decimal(0),
                            realized_st=Decimal(0) if long_term else gain,
                        )
                    )
            counts["lots"] += _bulk(TaxLot, (_lot(account, sec_ids, history, x) for x in lots))
            counts["transactions"] += _bulk(Transaction, txns)
            counts["accounts"] += 1
            new_accounts.append(account.pk)
    if counts["accounts"] or counts["households"]:
        _audit_step("households", counts)
    holdings_changed(account_ids=new_accounts)
    return counts


def demo_seed(
    *, password: str | None, stdout: TextIO | None = None, history_days: int | None = None
) -> DemoSeedResult:
    """Build (or complete) the demo firm. ``password`` is set on new demo users, and on the
    existing ones too when given; ``None`` means the default for new users only.
    ``history_days`` keeps only the last rows of the price data (tests)."""
    result = DemoSeedResult()
    with transaction.atomic():
        result.users = demo_users_ensure(password=password)
        sec_ids = demo_securities_ensure()
        end = demo_prices_end() or xnys_last_completed_session()
        history = demo_history(end=end, history_days=history_days)
        started = time.monotonic()
        result.created["prices"] = demo_prices_load(history=history, sec_ids=sec_ids)
        _say(
            stdout,
            f"Prices: {result.created['prices']:,} rows loaded in "
            f"{time.monotonic() - started:.1f} s (data {history.original_dates[0]} to "
            f"{history.original_dates[-1]} shown as {history.dates[0]} to {history.dates[-1]}).",
        )
        versions = demo_models_ensure(sec_ids=sec_ids)
        result.created |= demo_households_ensure(
            history=history, sec_ids=sec_ids, versions=versions
        )
    risk = risk_model_refresh(actor=ACTOR)  # from the committed prices; kept when up to date
    _say(stdout, f"Risk model: {risk.get('skipped') or 'v{version} as of {as_of}.'.format(**risk)}")
    return result


# ---------------------------------------------------------------------------
# Scale: generated accounts in bulk
# ---------------------------------------------------------------------------


def demo_scale(
    *, accounts: int, stdout: TextIO | None = None, history_days: int | None = None
) -> dict[str, int]:
    """Add ``accounts`` generated accounts (each call adds more), in households of 1-3 accounts
    spread over both teams, with lots in their model's securities. Bulk writes throughout:
    one audit event for the whole batch, not one per account."""
    if accounts < 1:
        raise ValidationFailed(ACCOUNTS_NOT_POSITIVE.format(n=accounts))
    versions = {
        v.model.name: v
        for v in ModelVersion.objects.filter(
            model__name__in=list(MODELS), is_current=True
        ).select_related("model")
    }
    sec_ids = dict(Security.objects.filter(ticker__in=list(UNIVERSE)).values_list("ticker", "pk"))
    end = demo_prices_end()
    if len(versions) < len(MODELS) or len(sec_ids) < len(UNIVERSE) or end is None:
        raise ValidationFailed(DEMO_NOT_SEEDED)
    history = demo_history(end=end, history_days=history_days)
    planner = LotPlanner(history)
    targets = {name: _targets_of(v) for name, v in versions.items()}
    mix_names = list(GENERATED_MODEL_MIX)
    mix_p = np.array([GENERATED_MODEL_MIX[n] for n in mix_names])
    teams = [Group.objects.get(name=TEAM_A), Group.objects.get(name=TEAM_B)]
    ct = ContentType.objects.get_for_model(Household)
    perms = list(Permission.objects.filter(content_type=ct, codename__in=HOUSEHOLD_PERMS))
    started = time.monotonic()
    counts = {"households": 0, "accounts": 0, "lots": 0, "transactions": 0, "permissions": 0}

    with transaction.atomic():
        last = Account.objects.filter(account_number__startswith=GENERATED_PREFIX).aggregate(
            m=Max("account_number")
        )["m"]
        first_no = int(last[len(GENERATED_PREFIX) :]) + 1 if last else 1
        rng = np.random.default_rng([SEED, first_no])
        sizes: list[int] = []
        placed = 0
        while placed < accounts:
            sizes.append(int(min(rng.integers(1, 4), accounts - placed)))
            placed += sizes[-1]
        firsts = [first_no + n for n in accumulate([0, *sizes[:-1]])]
        surnames = [SURNAMES[int(i)] for i in rng.integers(len(SURNAMES), size=len(sizes))]
        # A household's name carries its first account number, so generated names stay distinct.
        households = [
            Household(name=f"{surname} Family ({GENERATED_PREFIX}{first:08d})", team=teams[i % 2])
            for i, (surname, first) in enumerate(zip(surnames, firsts, strict=True))
        ]
        _bulk_returning(Household, households)
        GroupObjectPermission.objects.bulk_create(
            (
                GroupObjectPermission(
                    group=h.team, permission=p, content_type=ct, object_pk=str(h.pk)
                )
                for h in households
                for p in perms
            ),
            batch_size=BATCH_SIZE,
        )
        counts["households"] = len(households)
        counts["permissions"] = len(households) * len(perms)

        plan: list[tuple[Account, list[LotPlan]]] = []
        number = first_no
        for household, surname, size in zip(households, surnames, sizes, strict=True):
            for j in range(size):
                model_name = mix_names[int(rng.choice(len(mix_names), p=mix_p))]
                registration = (
                    str(rng.choice(TAXABLE_REGISTRATIONS))
                    if j == 0
                    else str(rng.choice(DEFERRED_REGISTRATIONS))
                )
                value = float(np.clip(rng.lognormal(np.log(400_000), 0.9), 25_000, 20_000_000))
                fields = _account_fields(
                    rng,
                    registration=registration,
                    value=value,
                    cash_target=float(versions[model_name].cash_target),
                )
                account = Account(
                    household=household,
                    name=f"{surname} {RegistrationType(registration).label}",
                    custodian=CUSTODIANS[number % len(CUSTODIANS)],
                    account_number=f"{GENERATED_PREFIX}{number:08d}",
                    model=versions[model_name].model,
                    tlh_enabled=fields["taxable"] and bool(rng.random() < 0.5),
                    auto_propose=bool(rng.random() < 0.2),
                    **fields,
                )
                lots = planner.plan(rng, value=value, weights=targets[model_name], lots=(1, 3))
                plan.append((account, lots))
                number += 1
        _bulk_returning(Account, [a for a, _ in plan])
        counts["accounts"] = len(plan)
        counts["lots"] = _bulk(
            TaxLot, (_lot(a, sec_ids, history, x) for a, lots in plan for x in lots)
        )
        counts["transactions"] = _bulk(
            Transaction, (_buy(a, sec_ids, history, x) for a, lots in plan for x in lots)
        )
        audit_record(
            actor=ACTOR,
            action="demo.scale",
            object_type="demo",
            object_id="generated_accounts",
            after={
                **counts,
                "first_account": f"{GENERATED_PREFIX}{first_no:08d}",
                "last_account": f"{GENERATED_PREFIX}{number - 1:08d}",
            },
        )
        holdings_changed(account_ids=[a.pk for a, _ in plan])
    _say(
        stdout,
        f"Generated {counts['accounts']:,} accounts in {counts['households']:,} households "
        f"({counts['lots']:,} lots) in {time.monotonic() - started:.1f} s.",
    )
    return counts


def _bulk_returning(model: type[Model], rows: list[Model]) -> None:
    """``bulk_create`` that sets primary keys on ``rows`` (PostgreSQL and SQLite 3.35+)."""
    for start in range(0, len(rows), BATCH_SIZE):
        model.objects.bulk_create(rows[start : start + BATCH_SIZE])


# ---------------------------------------------------------------------------
# Reads for the command's report
# ---------------------------------------------------------------------------


def demo_firm_has_accounts() -> bool:
    return Account.objects.exists()


def demo_counts() -> dict[str, int]:
    return {
        "securities": Security.objects.count(),
        "prices": Price.objects.count(),
        "models": ModelPortfolio.objects.count(),
        "households": Household.objects.count(),
        "accounts": Account.objects.count(),
        "lots": TaxLot.objects.count(),
        "transactions": Transaction.objects.count(),
    }


def demo_analyze() -> None:
    """Refresh PostgreSQL's planner statistics after a bulk load: with the counts of an empty
    database the planner reads a security's whole price history to find its latest price."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
