"""Validate a frame read by ``read_table`` as one import kind, before anything is written.

``import_validate(kind=, frame=)`` returns ``ValidatedImport(frame, errors, rows)``: the frame
with typed columns and the ids its references resolve to, and every problem found as
``{"line", "column", "message"}`` (``column`` is "" for a problem of the whole row), ordered by
line. The checks run in four vectorized stages, each over the whole frame:

1. the header: every required column present, no unknown column (line 1; when a required
   column is missing the rows are not checked);
2. types: the text is coerced here, not by pandera, so that "abc" in a number column is
   reported as "not a number: 'abc'" rather than as a missing value (numbers with a ``.``
   decimal point and no thousands separator; dates ISO 8601 ``YYYY-MM-DD`` only; booleans
   true/false, yes/no, 1/0);
3. the pandera schema of the kind (``schemas.import_schema``, ``lazy=True`` so that every
   failure is collected): required values, ranges, choices, lengths, dates not in the future,
   price dates on XNYS sessions;
4. references and cross-row rules: one bulk query per lookup table (tickers, accounts,
   households, models, teams), duplicate keys within the file ("duplicate of line 7"), model
   weights summing to 100% with the CASH row, restriction scopes and the like.

At most ``ERROR_CAP`` errors are listed; when there are more, a last entry says how many were
left out (``error_count`` has the full number). The frame is meaningful only when there is no
error. Text values are kept as typed, including those starting with ``=``, ``+``, ``-`` or
``@``: they are data, never evaluated, and exports escape them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from django.utils import timezone

from portfolios.imports.readers import HEADER_LINE, LINE
from portfolios.imports.schemas import (
    CASH_TICKER,
    KINDS,
    NUMERIC,
    KindSpec,
    T,
    import_schema,
    required_message,
)
from rebalance_app.exceptions import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Iterable

ERROR_CAP = 1000
MORE_ERRORS = "... and {n:,} more errors"
UNKNOWN_KIND = "Unknown import kind '{kind}': use one of {kinds}."
MISSING_COLUMN = "missing required column '{column}'"
UNKNOWN_COLUMN = "unknown column '{column}' (the {kind} columns are: {columns})"
NOT_A_NUMBER = "not a number: '{value}'"
NOT_WHOLE = "not a whole number: '{value}'"
NOT_A_DATE = "not a date: '{value}' (use YYYY-MM-DD)"
DATE_OUT_OF_RANGE = "date {value} is out of range (1900-01-01 to 2199-12-31)"
NOT_BOOL = "not true or false: '{value}' (use true/false, yes/no or 1/0)"
UNKNOWN_TICKER = "unknown ticker {value}"
UNKNOWN_ACCOUNT = "unknown account {value}"
UNKNOWN_ACCOUNT_AT = "unknown account {value} at {custodian}"
AMBIGUOUS_ACCOUNT = (
    "account {value} exists at several custodians ({custodians}): fill in the custodian column"
)
UNKNOWN_MODEL = "unknown model '{value}'"
UNKNOWN_TEAM = "unknown team '{value}'"
TEAM_IS_ROLE = "'{value}' is a role, not a PM team"
UNKNOWN_HOUSEHOLD = "unknown household '{value}'"
AMBIGUOUS_HOUSEHOLD = "several households are named '{value}'"
DUPLICATE = "duplicate of line {value}"
WEIGHTS_NOT_100 = "model '{name}' weights sum to {total}, not 100%"
CASH_RESERVED = "CASH is reserved for the cash row of models and position files"
CASH_WEIGHT_ONLY = "the CASH row takes a weight only (found {column} {value})"
MIN_ABOVE_MAX = "min_weight {value} is above max_weight {maximum}"
TAX_DEFERRED_TAXABLE = "a {value} account is tax-deferred: taxable must be false"
TEAM_CONFLICT = "household '{household}' has team '{team}' on line {line}: one team per household"
SCOPE_NEEDS = "{column} is required when scope is {scope}"
SCOPE_FORBIDS = "{column} must be empty when scope is {scope}"
ONE_SUBJECT = "give exactly one of ticker, sector or esg_tag (found {found})"
DATES_REVERSED = "effective_to {value} is before effective_from {start}"
SIGN_POSITIVE = "a {kind} must be positive (got {value})"
SIGN_NEGATIVE = "a {kind} must be negative (got {value})"
AS_OF_DIFFERS = (
    "as_of {value} differs from {first} on line {line}: a position file has one as_of date"
)
SCHEMA_PROBLEM = "{column}: {check}"

ROW = ""  # the column of an error about the whole row
ROW_ORDER = 10_000  # row-level errors sort after the column errors of the same line
MAX_SHOWN = 60  # longer values are cut in messages
IN_LIMIT = 900  # beyond this many keys a lookup reads the whole (small) table instead
BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
DATE_MIN = pd.Timestamp("1900-01-01")
DATE_MAX = pd.Timestamp("2199-12-31")
WEIGHT_TOLERANCE = 0.0001
TAX_DEFERRED = ("ira", "roth")
SIGNS = {"deposit": 1, "withdrawal": -1, "fee": -1}


@dataclass(frozen=True)
class ValidatedImport:
    """The typed frame with resolved ids, the row errors (capped), and the number of rows.
    ``error_count`` is the number of errors found, including those left out of ``errors``."""

    frame: pd.DataFrame
    errors: list[dict[str, Any]]
    rows: int
    error_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------------------
# Error collection: vectorized adds, formatting only of what is reported
# ---------------------------------------------------------------------------


@dataclass
class _Chunk:
    rows: np.ndarray  # positions in the frame
    column: str
    template: str
    values: dict[str, np.ndarray | str]


class _Errors:
    def __init__(self, lines: np.ndarray, order: dict[str, int]) -> None:
        self.lines = lines
        self.order = order
        self.chunks: list[_Chunk] = []
        self.header: list[dict[str, Any]] = []

    def add(
        self, where: np.ndarray | pd.Series, column: str, template: str, /, **values: Any
    ) -> None:
        """Add one error per selected row (``where``: a boolean mask or positions); each
        value is a scalar or a full-length array-like indexed like the frame."""
        where = np.asarray(where)
        rows = np.flatnonzero(where) if where.dtype == bool else where.astype(np.int64)
        if not len(rows):
            return
        picked: dict[str, np.ndarray | str] = {}
        for name, value in values.items():
            if isinstance(value, (pd.Series, np.ndarray, pd.Index)):
                picked[name] = np.asarray(value, dtype=object)[rows]
            else:
                picked[name] = value
        self.chunks.append(_Chunk(rows, column, template, picked))

    def add_at(self, rows: np.ndarray, column: str, template: str, /, **values: Any) -> None:
        """Like ``add`` with positions, but array values are already one per position."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        picked = {
            name: np.asarray(v, dtype=object) if isinstance(v, (pd.Series, np.ndarray)) else v
            for name, v in values.items()
        }
        self.chunks.append(_Chunk(rows, column, template, picked))

    def add_header(self, column: str, message: str) -> None:
        self.header.append({"line": HEADER_LINE, "column": column, "message": message})

    def failed(self, column: str, n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        for chunk in self.chunks:
            if chunk.column == column:
                mask[chunk.rows] = True
        return mask

    def report(self, cap: int = ERROR_CAP) -> tuple[list[dict[str, Any]], int]:
        errors = list(self.header)
        if self.chunks:
            rows = np.concatenate([c.rows for c in self.chunks])
            which = np.concatenate([np.full(len(c.rows), i) for i, c in enumerate(self.chunks)])
            within = np.concatenate([np.arange(len(c.rows)) for c in self.chunks])
            order = np.concatenate(
                [np.full(len(c.rows), self.order.get(c.column, ROW_ORDER)) for c in self.chunks]
            )
            lines = self.lines[rows]
            ranked = np.lexsort((np.arange(len(rows)), order, lines))
            for k in ranked[: max(cap - len(errors), 0)]:
                chunk = self.chunks[which[k]]
                i = within[k]
                values = {
                    name: _shown(v[i] if isinstance(v, np.ndarray) else v)
                    for name, v in chunk.values.items()
                }
                errors.append(
                    {
                        "line": int(lines[k]),
                        "column": chunk.column,
                        "message": chunk.template.format(**values),
                    }
                )
            total = len(self.header) + len(rows)
            if total > cap:
                first_left = ranked[cap - len(self.header)]
                errors.append(
                    {
                        "line": int(lines[first_left]),
                        "column": ROW,
                        "message": MORE_ERRORS.format(n=total - cap),
                    }
                )
            return errors, total
        return errors, len(errors)


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------


@dataclass
class _Ctx:
    spec: KindSpec
    raw: dict[str, pd.Series]
    typed: pd.DataFrame
    sink: _Errors
    present: set[str]
    today: date
    n: int
    bad: dict[str, np.ndarray] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.present

    def valid(self, name: str) -> np.ndarray:
        """Rows where the column holds a value that passed the type and schema checks."""
        if name not in self.present:
            return np.zeros(self.n, dtype=bool)
        filled = (self.raw[name] != "").to_numpy()
        return filled & ~self.bad.get(name, np.zeros(self.n, dtype=bool))

    def text(self, name: str) -> pd.Series:
        return self.typed[name] if name in self.present else pd.Series("", index=self.typed.index)


def import_validate(
    *, kind: str, frame: pd.DataFrame, today: date | None = None
) -> ValidatedImport:
    """Check a frame from ``read_table`` as ``kind`` (``today``: the date that is not future)."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ValidationFailed(UNKNOWN_KIND.format(kind=kind, kinds=", ".join(KINDS)))
    today = today or timezone.localdate()
    frame = frame.reset_index(drop=True)
    n = len(frame)
    columns = [c for c in frame.columns if c != LINE]
    lines = frame[LINE].to_numpy(dtype=np.int64) if LINE in frame else np.arange(2, n + 2)
    order = {name: i for i, name in enumerate(columns)}
    sink = _Errors(lines, order)
    for name in spec.required:
        if name not in columns:
            sink.add_header(name, MISSING_COLUMN.format(column=name))
    for name in columns:
        if name not in spec.names:
            sink.add_header(
                name,
                UNKNOWN_COLUMN.format(column=name, kind=spec.kind, columns=", ".join(spec.names)),
            )
    if any(name not in columns for name in spec.required):
        errors, count = sink.report()
        return ValidatedImport(frame=frame, errors=errors, rows=n, error_count=count)

    present = {name for name in columns if name in spec.names}
    raw = {name: frame[name].astype(str).str.strip() for name in present}
    ctx = _Ctx(spec, raw, pd.DataFrame(index=frame.index), sink, present, today, n)
    check_frame = _coerce(ctx)
    _schema_check(ctx, check_frame)
    REFERENCES[spec.kind](ctx)
    _duplicates(ctx)
    errors, count = sink.report()
    return ValidatedImport(frame=_output(ctx, lines), errors=errors, rows=n, error_count=count)


def _coerce(ctx: _Ctx) -> pd.DataFrame:
    """Fill ``ctx.typed`` from the text and report what does not parse; returns the frame
    pandera checks (blank text as null)."""
    checked: dict[str, pd.Series] = {}
    for f in ctx.spec.fields:
        if f.name not in ctx.present:
            continue
        s = ctx.raw[f.name]
        blank = s == ""
        bad = np.zeros(ctx.n, dtype=bool)
        if f.type in NUMERIC:
            value = pd.to_numeric(s.where(~blank), errors="coerce").astype("float64")
            not_number = (~blank).to_numpy() & ~np.isfinite(value.to_numpy())
            ctx.sink.add(not_number, f.name, NOT_A_NUMBER, value=s)
            bad |= not_number
            if f.type is T.INT:
                fraction = (value % 1 != 0).to_numpy() & value.notna().to_numpy() & ~bad
                ctx.sink.add(fraction, f.name, NOT_WHOLE, value=s)
                bad |= fraction
            value = value.mask(bad)
            ctx.typed[f.name] = value
            checked[f.name] = value
        elif f.type is T.DATE:
            value = pd.to_datetime(s.where(~blank), format="%Y-%m-%d", errors="coerce")
            value = value.astype("datetime64[us]")
            not_date = (~blank).to_numpy() & value.isna().to_numpy()
            ctx.sink.add(not_date, f.name, NOT_A_DATE, value=s)
            out = ((value < DATE_MIN) | (value > DATE_MAX)).to_numpy()
            ctx.sink.add(out, f.name, DATE_OUT_OF_RANGE, value=s)
            bad = not_date | out
            value = value.mask(bad)
            ctx.typed[f.name] = value
            checked[f.name] = value
        elif f.type is T.BOOL:
            value = s.str.lower().map(BOOLS).astype("boolean")
            not_bool = (~blank).to_numpy() & value.isna().to_numpy()
            ctx.sink.add(not_bool, f.name, NOT_BOOL, value=s)
            bad = not_bool
            ctx.typed[f.name] = value
            checked[f.name] = value
        else:
            if f.type is T.CHOICE:
                value = s.str.lower()
            elif f.type is T.TICKER:
                value = s.str.upper()
            else:
                value = s
            ctx.typed[f.name] = value
            checked[f.name] = value.where(~blank)
        ctx.bad[f.name] = bad
    return pd.DataFrame(checked, index=ctx.typed.index)


def _schema_check(ctx: _Ctx, check_frame: pd.DataFrame) -> None:
    schema = import_schema(ctx.spec, today=ctx.today, columns=list(ctx.present))
    try:
        schema.validate(check_frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        index = pd.to_numeric(group["index"], errors="coerce")
        if index.isna().any():
            # A failure of the whole column (a dtype): a bug of ours, never silently passed.
            ctx.sink.add_header(column, SCHEMA_PROBLEM.format(column=column, check=check))
            continue
        rows = index.to_numpy(dtype=np.int64)
        if check == "not_nullable":
            rows = rows[~ctx.bad[column][rows]]
            template = required_message(column)
        else:
            template = check
        ctx.sink.add(rows, column, template, value=ctx.raw[column])
        ctx.bad[column][rows] = True


def _output(ctx: _Ctx, lines: np.ndarray) -> pd.DataFrame:
    """Every column of the kind (absent ones empty) in the documented order, the ids, the line;
    ``attrs["columns"]`` lists the columns the file had."""
    out: dict[str, Any] = {}
    for f in ctx.spec.fields:
        if f.name in ctx.present:
            value = ctx.typed[f.name]
        elif f.type in NUMERIC:
            value = pd.Series(np.nan, index=ctx.typed.index)
        elif f.type is T.DATE:
            value = pd.Series(pd.NaT, index=ctx.typed.index, dtype="datetime64[us]")
        elif f.type is T.BOOL:
            value = pd.Series(pd.NA, index=ctx.typed.index, dtype="boolean")
        else:
            value = pd.Series("", index=ctx.typed.index, dtype=str)
        if f.type is T.INT:
            if f.name in ctx.bad:
                value = value.mask(ctx.bad[f.name])
            value = value.round().astype("Int64")
        elif f.type is T.TAGS:
            value = value.str.split(";").map(lambda tags: [t.strip() for t in tags if t.strip()])
        out[f.name] = value
    for name in ctx.spec.ids:
        out[name] = ctx.typed[name] if name in ctx.typed else pd.Series(pd.NA, dtype="Int64")
    out[LINE] = lines
    frame = pd.DataFrame(out, index=ctx.typed.index)
    frame.attrs["columns"] = [f.name for f in ctx.spec.fields if f.name in ctx.present]
    return frame


# ---------------------------------------------------------------------------
# Lookups: one query per table, matched with vectorized index operations
# ---------------------------------------------------------------------------


def _casefold(s: pd.Series) -> pd.Series:
    return s.str.casefold()


def _keys_in(queryset: Any, field_name: str, keys: Iterable[str], *values: str) -> list[tuple]:
    keys = list(keys)
    if not keys:
        return []
    queryset = queryset.order_by()
    if len(keys) <= IN_LIMIT:
        queryset = queryset.filter(**{f"{field_name}__in": keys})
    return list(queryset.values_list(field_name, *values))


def _ticker_ids(ctx: _Ctx, use: np.ndarray) -> pd.Series:
    """security_id per row (Int64, null where not used or unknown)."""
    from portfolios.models import Security

    tickers = ctx.typed["ticker"].where(use)
    codes, uniques = pd.factorize(tickers)
    found = dict(_keys_in(Security.objects.all(), "ticker", uniques.tolist(), "pk"))
    ids_u = pd.Series(uniques).map(found).to_numpy(dtype="float64", na_value=np.nan)
    ids = np.where(codes >= 0, ids_u[np.maximum(codes, 0)] if len(ids_u) else np.nan, np.nan)
    return pd.Series(ids, index=ctx.typed.index).astype("Int64")


def _resolve_tickers(ctx: _Ctx, *, allow_cash: bool = False, required: bool = True) -> None:
    if not ctx.has("ticker"):
        ctx.typed["security_id"] = pd.Series(pd.NA, index=ctx.typed.index, dtype="Int64")
        return
    use = ctx.valid("ticker")
    if allow_cash:
        use &= (ctx.typed["ticker"] != CASH_TICKER).to_numpy()
    ids = _ticker_ids(ctx, use)
    ctx.typed["security_id"] = ids
    if required:
        unknown = use & ids.isna().to_numpy()
        ctx.sink.add(unknown, "ticker", UNKNOWN_TICKER, value=ctx.typed["ticker"])
        ctx.bad["ticker"] |= unknown


def _resolve_accounts(ctx: _Ctx, use: np.ndarray) -> None:
    """account_id from account_number (+ custodian when given, ignoring case); reports unknown
    and ambiguous numbers."""
    from portfolios.models import Account

    number = ctx.typed["account_number"].where(use, "")
    custodian = _casefold(ctx.text("custodian")).where(use & ctx.valid("custodian"), "")
    num_codes, num_uniques = pd.factorize(number)
    cust_codes, cust_uniques = pd.factorize(custodian)
    width = max(len(cust_uniques), 1)
    pair_codes, pair_uniques = pd.factorize(num_codes.astype(np.int64) * width + cust_codes)
    pairs = pd.DataFrame(
        {
            "number": np.asarray(num_uniques, dtype=object)[pair_uniques // width],
            "cust": np.asarray(cust_uniques, dtype=object)[pair_uniques % width],
        }
    )
    rows = _keys_in(
        Account.objects.all(),
        "account_number",
        [x for x in num_uniques.tolist() if x],
        "custodian",
        "pk",
    )
    books = pd.DataFrame(rows, columns=["number", "custodian", "pk"])
    books["cust"] = _casefold(books["custodian"].astype(str))
    by_pair = books.drop_duplicates(["number", "cust"]).set_index(["number", "cust"])["pk"]
    exact = pd.MultiIndex.from_frame(pairs[["number", "cust"]])
    pk = by_pair.reindex(exact).to_numpy(dtype="float64", na_value=np.nan)
    per_number = books.groupby("number")
    count = pairs["number"].map(per_number.size()).fillna(0).to_numpy()
    only = pairs["number"].map(per_number["pk"].first()).to_numpy(dtype="float64", na_value=np.nan)
    no_cust = (pairs["cust"] == "").to_numpy()
    pk = np.where(no_cust & (count == 1), only, pk)
    ambiguous_u = no_cust & (count > 1)
    ids = pd.Series(pk[pair_codes], index=ctx.typed.index).astype("Int64")
    ctx.typed["account_id"] = ids.where(use)
    ambiguous = use & ambiguous_u[pair_codes]
    unknown = use & ids.isna().to_numpy() & ~ambiguous
    if ambiguous.any():
        names = per_number["custodian"].agg(lambda c: ", ".join(sorted(set(c))))
        custodians = ctx.typed["account_number"].map(names)
        ctx.sink.add(
            ambiguous, "account_number", AMBIGUOUS_ACCOUNT,
            value=ctx.typed["account_number"], custodians=custodians,
        )  # fmt: skip
    with_cust = unknown & (custodian != "").to_numpy()
    ctx.sink.add(
        with_cust, "account_number", UNKNOWN_ACCOUNT_AT,
        value=ctx.typed["account_number"], custodian=ctx.text("custodian"),
    )  # fmt: skip
    ctx.sink.add(
        unknown & ~with_cust, "account_number", UNKNOWN_ACCOUNT, value=ctx.typed["account_number"]
    )
    ctx.bad["account_number"] |= ambiguous | unknown


def _name_ids(
    ctx: _Ctx, column: str, use: np.ndarray, names: Iterable[tuple[int, str]]
) -> tuple[pd.Series, np.ndarray]:
    """id per row for a name column matched ignoring case, and the rows whose name several
    rows of the table share."""
    table = pd.DataFrame(list(names), columns=["pk", "name"])
    table["key"] = _casefold(table["name"].astype(str))
    counts = table.groupby("key").size()
    first = table.groupby("key")["pk"].first()
    keys = _casefold(ctx.typed[column]).where(use)
    codes, uniques = pd.factorize(keys)
    u = pd.Series(uniques)
    ids_u = u.map(first).to_numpy(dtype="float64", na_value=np.nan)
    many_u = (u.map(counts).fillna(0) > 1).to_numpy()
    ids = np.full(ctx.n, np.nan)
    many = np.zeros(ctx.n, dtype=bool)
    hit = codes >= 0
    ids[hit] = ids_u[codes[hit]]
    many[hit] = many_u[codes[hit]]
    ids[many] = np.nan
    return pd.Series(ids, index=ctx.typed.index).astype("Int64"), many


def _household_ids(ctx: _Ctx, use: np.ndarray, *, required: bool) -> None:
    from portfolios.models import Household

    ids, many = _name_ids(
        ctx, "household", use, Household.objects.order_by().values_list("pk", "name")
    )
    ctx.typed["household_id"] = ids
    name = ctx.text("household")
    ctx.sink.add(use & many, "household", AMBIGUOUS_HOUSEHOLD, value=name)
    if required:
        ctx.sink.add(
            use & ~many & ids.isna().to_numpy(), "household", UNKNOWN_HOUSEHOLD, value=name
        )


def _empty_ids(ctx: _Ctx, *names: str) -> None:
    for name in names:
        ctx.typed[name] = pd.Series(pd.NA, index=ctx.typed.index, dtype="Int64")


def _model_ids(ctx: _Ctx, use: np.ndarray) -> pd.Series:
    from portfolios.models import ModelPortfolio

    ids, _ = _name_ids(
        ctx, "model", use, ModelPortfolio.objects.order_by().values_list("pk", "name")
    )
    return ids


# ---------------------------------------------------------------------------
# Per kind: references and cross-row rules
# ---------------------------------------------------------------------------


def _refs_securities(ctx: _Ctx) -> None:
    cash = ctx.valid("ticker") & (ctx.typed["ticker"] == CASH_TICKER).to_numpy()
    ctx.sink.add(cash, "ticker", CASH_RESERVED)
    ctx.bad["ticker"] |= cash
    _resolve_tickers(ctx, required=False)


def _refs_prices(ctx: _Ctx) -> None:
    _resolve_tickers(ctx)


def _refs_models(ctx: _Ctx) -> None:
    _resolve_tickers(ctx, allow_cash=True)
    model = ctx.typed["model"]
    ctx.typed["model_key"] = _casefold(model)
    ctx.typed["model_id"] = _model_ids(ctx, ctx.valid("model"))
    cash = ctx.valid("ticker") & (ctx.typed["ticker"] == CASH_TICKER).to_numpy()
    for column in ("abs_band", "rel_band", "min_weight", "max_weight"):
        if ctx.has(column):
            given = cash & (ctx.raw[column] != "").to_numpy()
            ctx.sink.add(given, column, CASH_WEIGHT_ONLY, column=column, value=ctx.raw[column])
    if ctx.has("min_weight") and ctx.has("max_weight"):
        both = ctx.valid("min_weight") & ctx.valid("max_weight")
        above = both & (ctx.typed["min_weight"] > ctx.typed["max_weight"]).to_numpy()
        ctx.sink.add(
            above, "min_weight", MIN_ABOVE_MAX,
            value=ctx.raw["min_weight"], maximum=ctx.raw["max_weight"],
        )  # fmt: skip
    # Weights per model, CASH row included; a model with a bad weight is not summed.
    usable = ctx.valid("model")
    broken = ~ctx.valid("weight")
    per_model = pd.DataFrame(
        {
            "key": ctx.typed["model_key"],
            "weight": ctx.typed["weight"],
            "broken": broken,
            "pos": np.arange(ctx.n),
        }
    )[usable]
    groups = per_model.groupby("key", sort=False)
    summary = pd.DataFrame(
        {
            "total": groups["weight"].sum(),
            "broken": groups["broken"].any(),
            "pos": groups["pos"].min(),
        }
    )
    off = summary[~summary["broken"] & ((summary["total"] - 1).abs() > WEIGHT_TOLERANCE)]
    if len(off):
        pos = off["pos"].to_numpy()
        ctx.sink.add_at(
            pos, "weight", WEIGHTS_NOT_100,
            name=model.to_numpy(dtype=object)[pos],
            total=np.array([_percent(t) for t in off["total"]], dtype=object),
        )  # fmt: skip


def _percent(total: float) -> str:
    shown = f"{total:.2%}"
    return f"{total:.4%}" if shown == "100.00%" else shown


def _refs_accounts(ctx: _Ctx) -> None:
    from django.contrib.auth.models import Group

    from portfolios.models import Account
    from rebalance_app.roles import Role

    ctx.typed["custodian_key"] = _casefold(ctx.typed["custodian"])
    use = ctx.valid("custodian") & ctx.valid("account_number")
    numbers = ctx.typed["account_number"].where(use)
    found = _keys_in(
        Account.objects.all(), "account_number", pd.unique(numbers.dropna()).tolist(),
        "custodian", "pk",
    )  # fmt: skip
    books = pd.DataFrame(found, columns=["number", "custodian", "pk"])
    books["key"] = _casefold(books["custodian"].astype(str))
    index = pd.MultiIndex.from_arrays([ctx.typed["account_number"], ctx.typed["custodian_key"]])
    by_pair = books.drop_duplicates(["number", "key"]).set_index(["number", "key"])["pk"]
    ids = by_pair.reindex(index).to_numpy(dtype="float64", na_value=np.nan)
    ctx.typed["account_id"] = pd.Series(ids, index=ctx.typed.index).astype("Int64").where(use)

    _household_ids(ctx, ctx.valid("household"), required=False)

    if ctx.has("model"):
        use_model = ctx.valid("model")
        ctx.typed["model_id"] = _model_ids(ctx, use_model)
        unknown = use_model & ctx.typed["model_id"].isna().to_numpy()
        ctx.sink.add(unknown, "model", UNKNOWN_MODEL, value=ctx.typed["model"])
    else:
        _empty_ids(ctx, "model_id")

    if ctx.has("team"):
        use_team = ctx.valid("team")
        roles = [r.value.casefold() for r in Role]
        is_role = use_team & _casefold(ctx.typed["team"]).isin(roles).to_numpy()
        ctx.sink.add(is_role, "team", TEAM_IS_ROLE, value=ctx.typed["team"])
        use_team &= ~is_role
        ids, _ = _name_ids(
            ctx, "team", use_team, Group.objects.order_by().values_list("pk", "name")
        )
        ctx.typed["team_id"] = ids
        unknown = use_team & ids.isna().to_numpy()
        ctx.sink.add(unknown, "team", UNKNOWN_TEAM, value=ctx.typed["team"])
        # One team per household within the file.
        both = ctx.valid("household") & use_team
        keyed = pd.DataFrame(
            {
                "household": _casefold(ctx.typed["household"]),
                "team": _casefold(ctx.typed["team"]),
                "pos": np.arange(ctx.n),
            }
        )[both]
        first = keyed.groupby("household", sort=False).first()
        first_team = keyed["household"].map(first["team"])
        conflict = keyed[(keyed["team"] != first_team).to_numpy()]
        if len(conflict):
            first_pos = conflict["household"].map(first["pos"]).to_numpy()
            pos = conflict["pos"].to_numpy()
            ctx.sink.add_at(
                pos, "team", TEAM_CONFLICT,
                household=ctx.typed["household"].to_numpy(dtype=object)[pos],
                team=ctx.typed["team"].to_numpy(dtype=object)[first_pos],
                line=ctx.sink.lines[first_pos],
            )  # fmt: skip
    else:
        _empty_ids(ctx, "team_id")

    deferred = ctx.valid("registration_type") & ctx.valid("taxable")
    deferred &= ctx.typed["registration_type"].isin(TAX_DEFERRED).to_numpy()
    deferred &= ctx.typed["taxable"].fillna(False).to_numpy(dtype=bool)
    ctx.sink.add(deferred, "taxable", TAX_DEFERRED_TAXABLE, value=ctx.typed["registration_type"])


def _refs_holdings(ctx: _Ctx, *, allow_cash: bool = False) -> None:
    _resolve_accounts(ctx, ctx.valid("account_number"))
    _resolve_tickers(ctx, allow_cash=allow_cash)


def _refs_lots(ctx: _Ctx) -> None:
    _refs_holdings(ctx)


def _refs_transactions(ctx: _Ctx) -> None:
    _refs_holdings(ctx)


def _refs_cash_flows(ctx: _Ctx) -> None:
    _resolve_accounts(ctx, ctx.valid("account_number"))
    use = ctx.valid("amount") & ctx.valid("kind")
    amount = ctx.typed["amount"]
    kind = ctx.typed["kind"]
    for name, sign in SIGNS.items():
        rows = use & (kind == name).to_numpy()
        if sign > 0:
            ctx.sink.add(
                rows & (amount < 0).to_numpy(), "amount", SIGN_POSITIVE,
                kind=name, value=ctx.raw["amount"],
            )  # fmt: skip
        else:
            ctx.sink.add(
                rows & (amount > 0).to_numpy(), "amount", SIGN_NEGATIVE,
                kind=name, value=ctx.raw["amount"],
            )  # fmt: skip


def _refs_custodian_positions(ctx: _Ctx) -> None:
    _refs_holdings(ctx, allow_cash=True)
    use = ctx.valid("as_of")
    if use.any():
        first_pos = int(np.flatnonzero(use)[0])
        first = ctx.typed["as_of"].iloc[first_pos]
        differs = use & (ctx.typed["as_of"] != first).to_numpy()
        ctx.sink.add(
            differs, "as_of", AS_OF_DIFFERS,
            value=ctx.raw["as_of"], first=ctx.raw["as_of"].iloc[first_pos],
            line=int(ctx.sink.lines[first_pos]),
        )  # fmt: skip


def _refs_restrictions(ctx: _Ctx) -> None:
    scope = ctx.typed["scope"].where(ctx.valid("scope"), "")
    for column, needed_by in (("household", "household"), ("account_number", "account")):
        given = (ctx.raw[column] != "").to_numpy() if ctx.has(column) else np.zeros(ctx.n, bool)
        needs = (scope == needed_by).to_numpy()
        ctx.sink.add(needs & ~given, column, SCOPE_NEEDS, column=column, scope=needed_by)
        forbids = (scope != needed_by).to_numpy() & (scope != "").to_numpy() & given
        ctx.sink.add(forbids, column, SCOPE_FORBIDS, column=column, scope=scope)
        if ctx.has(column):
            ctx.bad[column] |= forbids

    subjects = sum(
        ((ctx.raw[c] != "").to_numpy() if ctx.has(c) else np.zeros(ctx.n, dtype=np.int64))
        for c in ("ticker", "sector", "esg_tag")
    )
    subjects = np.asarray(subjects, dtype=np.int64)
    ctx.sink.add(subjects != 1, ROW, ONE_SUBJECT, found=np.where(subjects == 0, "none", subjects))

    use_household = (scope == "household").to_numpy() & ctx.valid("household")
    if ctx.has("household"):
        _household_ids(ctx, use_household, required=True)
    else:
        _empty_ids(ctx, "household_id")
    use_account = (scope == "account").to_numpy() & ctx.valid("account_number")
    if ctx.has("account_number"):
        _resolve_accounts(ctx, use_account)
    else:
        _empty_ids(ctx, "account_id")
    _resolve_tickers(ctx)
    for column in ("sector", "esg_tag"):
        ctx.typed[f"{column}_key"] = _casefold(ctx.text(column))

    if ctx.has("effective_from") and ctx.has("effective_to"):
        both = ctx.valid("effective_from") & ctx.valid("effective_to")
        reversed_ = both & (ctx.typed["effective_to"] < ctx.typed["effective_from"]).to_numpy()
        ctx.sink.add(
            reversed_, "effective_to", DATES_REVERSED,
            value=ctx.raw["effective_to"], start=ctx.raw["effective_from"],
        )  # fmt: skip


REFERENCES = {
    "securities": _refs_securities,
    "prices": _refs_prices,
    "models": _refs_models,
    "accounts": _refs_accounts,
    "lots": _refs_lots,
    "transactions": _refs_transactions,
    "cash_flows": _refs_cash_flows,
    "restrictions": _refs_restrictions,
    "custodian_positions": _refs_custodian_positions,
}


def _duplicates(ctx: _Ctx) -> None:
    """Rows whose key equals an earlier row's: "duplicate of line N" (rows with a bad key value
    are left out: they already have an error)."""
    key = list(ctx.spec.key)
    keyed = pd.DataFrame({name: _key_column(ctx, name) for name in key}, index=ctx.typed.index)
    clean = np.ones(ctx.n, dtype=bool)
    for name in key:
        source = KEY_SOURCES.get(name, name)
        if source in ctx.bad:
            clean &= ~ctx.bad[source]
    subset = keyed[clean]
    dup = subset.duplicated(keep="first").to_numpy()
    if not dup.any():
        return
    groups = subset.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
    positions = np.flatnonzero(clean)
    first = pd.Series(positions).groupby(groups).transform("min").to_numpy()
    ctx.sink.add_at(positions[dup], ROW, DUPLICATE, value=ctx.sink.lines[first[dup]])


# The column whose errors make a key column unusable for the duplicate check.
KEY_SOURCES = {
    "account_id": "account_number",
    "security_id": "ticker",
    "household_id": "household",
    "model_key": "model",
    "custodian_key": "custodian",
    "sector_key": "sector",
    "esg_tag_key": "esg_tag",
}


def _key_column(ctx: _Ctx, name: str) -> pd.Series:
    """A key column with nulls as a sentinel (a missing optional value is a value here)."""
    if name not in ctx.typed:
        return pd.Series("", index=ctx.typed.index)
    column = ctx.typed[name]
    if name.endswith("_id"):
        return column.astype("float64").fillna(-1.0)
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.fillna(pd.Timestamp(0))
    if pd.api.types.is_float_dtype(column):
        return column.fillna(-np.inf)
    return column.fillna("")
