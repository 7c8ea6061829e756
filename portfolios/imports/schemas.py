"""The columns of each import kind, and the pandera schema that checks a typed frame of one.

``KINDS`` describes every kind's columns (name, type, required, range, choices, length) and its
duplicate key; ``import_schema`` turns one description into a ``pandera`` ``DataFrameSchema``
whose checks carry the message a person reads when a value fails. The messages keep a
``{value}`` placeholder that ``portfolios.imports.validate`` fills with the text from the file,
so a report says "quantity must be greater than 0 (got -5)" with the value as it was typed.

Types are not checked here: ``validate`` coerces the text first (numbers, ISO dates, booleans)
and reports what does not parse, so the schema sees float, datetime and boolean columns with
nulls where a value was blank or bad. The limits mirror the database: a value pandera accepts
fits its column (digits, lengths, ranges).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import pandas as pd
import pandera.pandas as pa

from compliance.models import RestrictionKind, RestrictionScope
from portfolios.models import AssetClass, CashFlowKind, RegistrationType, SecurityType, Side

VALUE = "{value}"
MSG_GT = "{column} must be greater than {bound} (got {value})"
MSG_GE = "{column} must be at least {bound} (got {value})"
MSG_NOT_NEGATIVE = "{column} must not be negative (got {value})"
MSG_BETWEEN = "{column} must be between {low} and {high} (got {value})"
MSG_NONZERO = "{column} must not be 0"
MSG_TOO_LARGE = "{column} is too large (got {value})"
MSG_CHOICE = "{column} must be one of {choices} (got '{value}')"
MSG_TOO_LONG = "{column} is longer than {max_length} characters"
MSG_PATTERN = "{column} {rule} (got {value})"
MSG_FUTURE = "date {value} is in the future"
MSG_NOT_SESSION = "date {value} is not an NYSE trading day"
MSG_REQUIRED = "{column} is required"

CASH_TICKER = "CASH"
TICKER_PATTERN = r"^[A-Z0-9][A-Z0-9./-]{0,15}$"
TICKER_RULE = "must be 1 to 16 letters, digits, '.', '-' or '/'"
CUSIP_PATTERN = r"^[0-9A-Z]{9}$"
CUSIP_RULE = "must be 9 letters or digits"
ISIN_PATTERN = r"^[A-Z]{2}[0-9A-Z]{9}[0-9]$"
ISIN_RULE = "must be 2 letters, 9 letters or digits and a check digit"

# Largest absolute values the database columns hold (digits before the decimal point).
MONEY_LIMIT = 1e16
QTY_LIMIT = 1e14
PRICE_LIMIT = 1e12
BIGINT_LIMIT = 9e18


class T(StrEnum):
    """Column types: how ``validate`` coerces the text and what the typed frame holds."""

    TEXT = "text"  # str, kept as typed (stripped); "" when blank
    NAME = "name"  # str matched against names in the database ignoring case
    CHOICE = "choice"  # str, lower-cased, one of ``choices``
    TICKER = "ticker"  # str, upper-cased
    DECIMAL = "decimal"  # float64
    INT = "int"  # Int64 (whole numbers)
    DATE = "date"  # datetime64[us], ISO 8601 YYYY-MM-DD only
    BOOL = "bool"  # boolean: true/false, yes/no, 1/0
    TAGS = "tags"  # list[str], semicolon-separated in the file


@dataclass(frozen=True)
class Field:
    """One column of a kind."""

    name: str
    type: T
    required: bool = False
    choices: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    nonzero: bool = False
    limit: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_rule: str = ""
    not_future: bool = False
    trading_day: bool = False


@dataclass(frozen=True)
class KindSpec:
    """A kind's columns, the columns forming its duplicate key (after resolution) and the id
    columns ``validate`` adds."""

    kind: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    ids: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]


def _choices(enum: type[StrEnum] | type) -> tuple[str, ...]:
    return tuple(str(v) for v in enum.values)


_ACCOUNT_REF = (
    Field("account_number", T.TEXT, required=True, max_length=40),
    Field("custodian", T.NAME, max_length=60),
)
_TICKER_REF = Field("ticker", T.TICKER, required=True, max_length=16)

KINDS: dict[str, KindSpec] = {
    "securities": KindSpec(
        "securities",
        (
            Field(
                "ticker", T.TICKER, True, pattern=TICKER_PATTERN, pattern_rule=TICKER_RULE,
                max_length=16,
            ),
            Field("name", T.TEXT, True, max_length=200),
            Field("asset_class", T.CHOICE, True, choices=_choices(AssetClass)),
            Field("security_type", T.CHOICE, True, choices=_choices(SecurityType)),
            Field("sector", T.TEXT, max_length=60),
            Field("cusip", T.TICKER, pattern=CUSIP_PATTERN, pattern_rule=CUSIP_RULE),
            Field("isin", T.TICKER, pattern=ISIN_PATTERN, pattern_rule=ISIN_RULE),
            Field("esg_score", T.DECIMAL, ge=0, le=100),
            Field("esg_tags", T.TAGS),
            Field("round_lot", T.INT, ge=1, limit=2_147_483_647),
            Field("wash_sale_group", T.TEXT, max_length=40),
        ),
        key=("ticker",),
        ids=("security_id",),
    ),
    "prices": KindSpec(
        "prices",
        (
            _TICKER_REF,
            Field("date", T.DATE, True, not_future=True, trading_day=True),
            Field("price", T.DECIMAL, True, gt=0, limit=PRICE_LIMIT),
            Field("source", T.TEXT, max_length=40),
            Field("avg_daily_volume", T.INT, ge=0, limit=BIGINT_LIMIT),
        ),
        key=("security_id", "date"),
        ids=("security_id",),
    ),
    "models": KindSpec(
        "models",
        (
            Field("model", T.NAME, True, max_length=120),
            _TICKER_REF,
            Field("weight", T.DECIMAL, True, ge=0, le=1),
            Field("abs_band", T.DECIMAL, ge=0, le=1),
            Field("rel_band", T.DECIMAL, ge=0, limit=1000),
            Field("min_weight", T.DECIMAL, ge=0, le=1),
            Field("max_weight", T.DECIMAL, ge=0, le=1),
        ),
        key=("model_key", "ticker"),
        ids=("security_id", "model_id"),
    ),
    "accounts": KindSpec(
        "accounts",
        (
            Field("household", T.NAME, True, max_length=200),
            Field("custodian", T.NAME, True, max_length=60),
            Field("account_number", T.TEXT, True, max_length=40),
            Field("name", T.TEXT, True, max_length=200),
            Field(
                "registration_type", T.CHOICE, True, choices=_choices(RegistrationType)
            ),
            Field("taxable", T.BOOL, True),
            Field("model", T.NAME, max_length=120),
            Field("team", T.NAME, max_length=150),
            Field("cash_balance", T.DECIMAL, limit=MONEY_LIMIT),
            Field("cash_reserve", T.DECIMAL, ge=0, limit=MONEY_LIMIT),
            Field("st_tax_rate", T.DECIMAL, ge=0, le=1),
            Field("lt_tax_rate", T.DECIMAL, ge=0, le=1),
            Field("min_trade_amount", T.DECIMAL, ge=0, limit=MONEY_LIMIT),
            Field("allow_fractional", T.BOOL),
            Field("tlh_enabled", T.BOOL),
            Field("auto_propose", T.BOOL),
        ),
        key=("custodian_key", "account_number"),
        ids=("household_id", "account_id", "model_id", "team_id"),
    ),
    "lots": KindSpec(
        "lots",
        (
            *_ACCOUNT_REF,
            _TICKER_REF,
            Field("quantity", T.DECIMAL, True, gt=0, limit=QTY_LIMIT),
            Field("cost_basis", T.DECIMAL, True, ge=0, limit=PRICE_LIMIT),
            Field("acquired_on", T.DATE, True, not_future=True),
        ),
        key=("account_id", "security_id", "quantity", "cost_basis", "acquired_on"),
        ids=("account_id", "security_id"),
    ),
    "transactions": KindSpec(
        "transactions",
        (
            *_ACCOUNT_REF,
            _TICKER_REF,
            Field("trade_date", T.DATE, True, not_future=True),
            Field("side", T.CHOICE, True, choices=_choices(Side)),
            Field("quantity", T.DECIMAL, True, gt=0, limit=QTY_LIMIT),
            Field("price", T.DECIMAL, True, gt=0, limit=PRICE_LIMIT),
            Field("realized_st", T.DECIMAL, limit=MONEY_LIMIT),
            Field("realized_lt", T.DECIMAL, limit=MONEY_LIMIT),
            Field("wash_sale_disallowed", T.DECIMAL, ge=0, limit=MONEY_LIMIT),
        ),
        key=("account_id", "security_id", "trade_date", "side", "quantity", "price"),
        ids=("account_id", "security_id"),
    ),
    "cash_flows": KindSpec(
        "cash_flows",
        (
            *_ACCOUNT_REF,
            Field("date", T.DATE, True, not_future=True),
            Field("amount", T.DECIMAL, True, nonzero=True, limit=MONEY_LIMIT),
            Field("kind", T.CHOICE, True, choices=_choices(CashFlowKind)),
            Field("note", T.TEXT, max_length=300),
        ),
        key=("account_id", "date", "amount", "kind", "note"),
        ids=("account_id",),
    ),
    "restrictions": KindSpec(
        "restrictions",
        (
            Field("scope", T.CHOICE, True, choices=_choices(RestrictionScope)),
            Field("household", T.NAME, max_length=200),
            Field("account_number", T.TEXT, max_length=40),
            Field("custodian", T.NAME, max_length=60),
            Field("ticker", T.TICKER, max_length=16),
            Field("sector", T.TEXT, max_length=60),
            Field("esg_tag", T.TEXT, max_length=60),
            Field("kind", T.CHOICE, True, choices=_choices(RestrictionKind)),
            Field("reason", T.TEXT, True, max_length=300),
            Field("effective_from", T.DATE),
            Field("effective_to", T.DATE),
        ),
        key=(
            "scope", "household_id", "account_id", "security_id", "sector_key", "esg_tag_key",
            "kind",
        ),
        ids=("household_id", "account_id", "security_id"),
    ),
    "custodian_positions": KindSpec(
        "custodian_positions",
        (
            *_ACCOUNT_REF,
            _TICKER_REF,
            Field("quantity", T.DECIMAL, True, ge=0, limit=QTY_LIMIT),
            Field("as_of", T.DATE, True, not_future=True),
        ),
        key=("account_id", "ticker"),
        ids=("account_id", "security_id"),
    ),
}  # fmt: skip

NUMERIC = (T.DECIMAL, T.INT)


def _bound(x: float) -> str:
    return f"{x:g}"


def trading_day_mask(days: pd.Series) -> pd.Series:
    """True where a (datetime64, null-free) value is an XNYS session; outside the calendar's
    range (about twenty years back, one year ahead) any weekday counts."""
    from portfolios.calendar import _calendar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        calendar = _calendar()
        sessions = calendar.sessions
        first, last = calendar.first_session, calendar.last_session
    inside = (days >= first) & (days <= last)
    is_session = days.isin(sessions)
    weekday = days.dt.day_of_week < 5
    return is_session.where(inside, weekday)


def _checks(f: Field, today: date) -> list[pa.Check]:
    column = f.name
    checks: list[pa.Check] = []
    if f.gt is not None:
        checks.append(
            pa.Check.gt(f.gt, error=MSG_GT.format(column=column, bound=_bound(f.gt), value=VALUE))
        )
    if f.ge is not None and f.le is not None:
        message = MSG_BETWEEN.format(
            column=column, low=_bound(f.ge), high=_bound(f.le), value=VALUE
        )
        checks.append(pa.Check.in_range(f.ge, f.le, error=message))
    elif f.ge is not None:
        template = MSG_NOT_NEGATIVE if f.ge == 0 else MSG_GE
        message = template.format(column=column, bound=_bound(f.ge), value=VALUE)
        checks.append(pa.Check.ge(f.ge, error=message))
    if f.nonzero:
        checks.append(pa.Check.ne(0, error=MSG_NONZERO.format(column=column)))
    if f.limit is not None:
        limit = f.limit
        checks.append(
            pa.Check(
                lambda s: s.abs() < limit, error=MSG_TOO_LARGE.format(column=column, value=VALUE)
            )
        )
    if f.choices:
        message = MSG_CHOICE.format(column=column, choices=", ".join(f.choices), value=VALUE)
        checks.append(pa.Check.isin(f.choices, error=message))
    if f.max_length is not None:
        message = MSG_TOO_LONG.format(column=column, max_length=f.max_length)
        checks.append(pa.Check.str_length(max_value=f.max_length, error=message))
    if f.pattern is not None:
        message = MSG_PATTERN.format(column=column, rule=f.pattern_rule, value=VALUE)
        checks.append(pa.Check.str_matches(f.pattern, error=message))
    if f.not_future:
        checks.append(pa.Check.le(pd.Timestamp(today), error=MSG_FUTURE))
    if f.trading_day:
        checks.append(pa.Check(trading_day_mask, error=MSG_NOT_SESSION))
    return checks


DTYPES: dict[T, str | None] = {
    T.DECIMAL: "float64",
    T.INT: "float64",  # whole-ness is checked while coercing; Int64 after validation
    T.DATE: "datetime64[us]",
    T.BOOL: "boolean",
}


def import_schema(
    spec: KindSpec, *, today: date, columns: list[str] | None = None
) -> pa.DataFrameSchema:
    """The pandera schema of a kind's typed frame (``columns``: those present in the file)."""
    present = set(columns if columns is not None else spec.names)
    return pa.DataFrameSchema(
        {
            f.name: pa.Column(
                DTYPES.get(f.type),
                checks=_checks(f, today),
                nullable=not f.required,
                required=False,
            )
            for f in spec.fields
            if f.name in present and f.type is not T.TAGS
        },
        name=spec.kind,
        strict=False,
    )


def required_message(column: str) -> str:
    return MSG_REQUIRED.format(column=column)


__all__ = [
    "CASH_TICKER",
    "KINDS",
    "NUMERIC",
    "Field",
    "KindSpec",
    "T",
    "import_schema",
    "required_message",
    "trading_day_mask",
]
