"""Writers of the import pipeline: one function per kind turns a validated frame into rows.

``import_write(*, kind, frame, batch)`` is called by ``portfolios.services.imports`` inside the
one transaction of an import, after ``import_validate`` found no error; it returns a summary
``{"created": n, "updated": n, "account_ids": [...], "security_ids": [...]}`` (plus a few
kind-specific counts). Every row written points to ``batch`` (``import_batch``), updated rows
too: the batch that last wrote a row is its lineage.

How each kind is written:

- securities: upsert by ticker; accounts: upsert by (custodian, account_number), households
  created by name and assigned to their team with ``household_assign_team``. A blank cell (or
  an absent optional column) leaves the stored value as it is; a new row takes the model
  default. Audit: one ``security.create``/``security.update`` (``account.*``, ``household.*``)
  event per changed row, with the changed fields, up to ``AUDIT_PER_ROW_LIMIT`` changed rows;
  past that one ``<entity>.bulk_upsert`` summary event with the counts (the rows themselves
  carry the batch, and the batch keeps the file).
- prices: upsert on (security, date); the row in the file replaces the stored one.
- models: a new current version per model in the file through ``model_version_create``
  (creating the model when new), audited by that service.
- lots, transactions: appended. Large frames (``COPY_MIN_ROWS`` and more) on PostgreSQL go
  through ``COPY ... FROM STDIN`` (text format, built column by column), prices through a
  ``COPY`` into a temporary table and one ``INSERT ... ON CONFLICT``; anything else through
  batched ``bulk_create``.
- cash flows: appended, and each account's ``cash_balance`` moves by the sum of its flows in
  one ``UPDATE ... SET cash_balance = cash_balance + delta`` per chunk of accounts (audited per
  account like upserts).
- restrictions: appended, ``restriction.create`` per row (same limit rule).
- custodian positions: not written as holdings; handed to reconciliation.

The frame's columns are those of the import contract (``docs/data-formats.md``) with typed
values and resolved ids; the converters here accept the usual pandas spellings of a value
(str, float, Decimal, Timestamp, NaN/None for blank).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Case, F, Value, When
from django.utils import timezone

from compliance.models import Restriction
from compliance.services.audit import audit_diff, audit_record, audit_snapshot
from portfolios.models import (
    Account,
    CashFlow,
    Household,
    ImportKind,
    ModelPortfolio,
    Price,
    Security,
    TaxLot,
    Transaction,
)
from rebalance_app.exceptions import ValidationFailed

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.models import ImportBatch

IMPORT_ACTOR = "system:import"
COPY_MIN_ROWS = 10_000  # frames this large go through COPY on PostgreSQL
COPY_CHUNK_ROWS = 100_000  # rows per COPY write (and per progress report)
BULK_BATCH_SIZE = 2_000
AUDIT_PER_ROW_LIMIT = 500  # more changed rows than this: one summary audit event
SUMMARY_MAX_IDS = 1_000  # ids listed in a batch summary; past that only their count
LOOKUP_CHUNK = 900  # values per IN (...) lookup (SQLite's variable limit)
CASH_TICKER = "CASH"

UNKNOWN_KIND = "Imports of kind '{kind}' cannot be written."
UNKNOWN_TEAM = "Team '{team}' does not exist; create the group first."
NOTE_MODEL_IMPORT = "Imported by batch {batch}."

Progress = Callable[[int], None]


# ---------------------------------------------------------------------------
# Value converters: pandas cells to Python values
# ---------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _dec(value: Any) -> Decimal | None:
    if _blank(value):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float | np.floating):
        return Decimal(repr(float(value)))
    if isinstance(value, int | np.integer):
        return Decimal(int(value))
    return Decimal(str(value).strip())


def _int(value: Any) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, str):
        return int(Decimal(value.strip()))
    return int(value)


def _date(value: Any) -> date | None:
    if _blank(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).date()
    return date.fromisoformat(str(value).strip()[:10])


TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t"})


def _bool(value: Any) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return bool(value)
    return str(value).strip().lower() in TRUE_WORDS


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value)


def _tags(value: Any) -> list[str] | None:
    if value is None or (not isinstance(value, list | tuple) and _blank(value)):
        return None
    if isinstance(value, list | tuple):
        return [str(t).strip() for t in value if str(t).strip()]
    return [t.strip() for t in str(value).split(";") if t.strip()]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def _ids(values: Iterable[Any]) -> list[int]:
    return sorted({int(v) for v in values if not _blank(v)})


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


def _actor(batch: ImportBatch) -> AbstractBaseUser | str:
    return batch.created_by if batch.created_by_id else IMPORT_ACTOR


def _use_copy(frame: pd.DataFrame) -> bool:
    return connection.vendor == "postgresql" and len(frame) >= COPY_MIN_ROWS


def _summary(
    *,
    created: int = 0,
    updated: int = 0,
    account_ids: Iterable[int] = (),
    security_ids: Iterable[int] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "created": created,
        "updated": updated,
        "account_ids": sorted(set(account_ids)),
        "security_ids": sorted(set(security_ids)),
        **extra,
    }


# ---------------------------------------------------------------------------
# COPY (PostgreSQL text format)
# ---------------------------------------------------------------------------

NULL = "\\N"


def _copy_text(values: pd.Series, *, kind: str) -> list[str]:
    """One column as COPY text cells: ``kind`` is num, int, date or str; blanks are NULL."""
    if kind == "date":
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            days = values.to_numpy().astype("datetime64[D]")
            cells = np.datetime_as_string(days).tolist()
            return [NULL if c == "NaT" else c for c in cells]
        return [NULL if (d := _date(v)) is None else d.isoformat() for v in values.tolist()]
    if kind in ("num", "int") and pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=float)
        if kind == "int":
            return [NULL if x != x else str(int(x)) for x in arr.tolist()]
        return [NULL if x != x else repr(x) for x in arr.tolist()]
    if kind in ("num", "int") and pd.api.types.is_integer_dtype(values.dtype):
        return [NULL if _blank(x) else str(x) for x in values.tolist()]
    cells = []
    for v in values.tolist():
        if _blank(v):
            cells.append(NULL)
        elif kind == "str":
            s = str(v)
            if any(c in s for c in "\\\t\n\r"):
                s = (
                    s.replace("\\", "\\\\")
                    .replace("\t", "\\t")
                    .replace("\n", "\\n")
                    .replace("\r", "\\r")
                )
            cells.append(s)
        else:
            cells.append(str(v).strip())
    return cells


def copy_rows(
    *,
    table: str,
    columns: list[str],
    cells: list[list[str]],
    progress: Progress | None = None,
) -> int:
    """``COPY table (columns) FROM STDIN`` of text cells given column by column."""
    n = len(cells[0]) if cells else 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    written = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for lo in range(0, n, COPY_CHUNK_ROWS):
            hi = min(lo + COPY_CHUNK_ROWS, n)
            rows = zip(*(col[lo:hi] for col in cells), strict=True)
            copy.write("".join("\t".join(row) + "\n" for row in rows))
            written = hi
            if progress is not None:
                progress(written)
    return written


def _constant(value: str, n: int) -> list[str]:
    return [value] * n


# ---------------------------------------------------------------------------
# Audit helpers
# ---------------------------------------------------------------------------


@dataclass
class _Changes:
    """Rows created and updated by an upsert, kept for the audit events."""

    entity: str
    created: list[Any] = field(default_factory=list)
    updated: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def audit(self, *, actor: AbstractBaseUser | str, batch: ImportBatch) -> None:
        total = len(self.created) + len(self.updated)
        if total == 0:
            return
        if total <= AUDIT_PER_ROW_LIMIT:
            for obj in self.created:
                audit_record(
                    actor=actor,
                    action=f"{self.entity}.create",
                    obj=obj,
                    after=audit_snapshot(obj),
                    reason=f"import batch {batch.pk}",
                )
            for obj, before in self.updated:
                b, a = audit_diff(before, audit_snapshot(obj))
                audit_record(
                    actor=actor,
                    action=f"{self.entity}.update",
                    obj=obj,
                    before=b,
                    after=a,
                    reason=f"import batch {batch.pk}",
                )
            return
        audit_record(
            actor=actor,
            action=f"{self.entity}.bulk_upsert",
            obj=batch,
            after={"created": len(self.created), "updated": len(self.updated)},
            reason=f"import batch {batch.pk}",
        )


def _set_fields(obj: Any, values: dict[str, Any]) -> list[str]:
    """Set the non-blank ``values`` on ``obj``; the names of the fields that changed."""
    changed = []
    for name, value in values.items():
        if value is None:
            continue
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


# ---------------------------------------------------------------------------
# securities
# ---------------------------------------------------------------------------

SECURITY_FIELDS = {
    "name": _text,
    "asset_class": _text,
    "security_type": _text,
    "sector": _text,
    "cusip": _text,
    "isin": _text,
    "esg_score": _dec,
    "esg_tags": _tags,
    "round_lot": _int,
    "wash_sale_group": _text,
}


def _security_values(row: dict[str, Any], columns: set[str]) -> dict[str, Any]:
    values = {}
    for name, convert in SECURITY_FIELDS.items():
        if name not in columns:
            continue
        value = convert(row[name])
        values[name] = None if value == "" else value
    return values


def write_securities(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    columns = set(frame.columns)
    tickers = [str(t).strip().upper() for t in frame["ticker"].tolist()]
    existing: dict[str, Security] = {}
    for part in _chunks(sorted(set(tickers)), LOOKUP_CHUNK):
        existing.update((s.ticker, s) for s in Security.objects.filter(ticker__in=part))
    changes = _Changes(entity="security")
    new: list[Security] = []
    dirty: list[Security] = []
    dirty_fields: set[str] = set()
    for ticker, row in zip(tickers, _records(frame), strict=True):
        values = _security_values(row, columns)
        current = existing.get(ticker)
        if current is None:
            obj = Security(ticker=ticker, import_batch=batch)
            _set_fields(obj, values)
            new.append(obj)
            existing[ticker] = obj
            continue
        if current.pk is None:  # listed twice in the file: the validator refuses that
            _set_fields(current, values)
            continue
        before = audit_snapshot(current)
        changed = _set_fields(current, values)
        if changed:
            current.import_batch = batch
            dirty.append(current)
            dirty_fields.update(changed)
            changes.updated.append((current, before))
    Security.objects.bulk_create(new, batch_size=BULK_BATCH_SIZE)
    if dirty:
        Security.objects.bulk_update(
            dirty, [*sorted(dirty_fields), "import_batch"], batch_size=BULK_BATCH_SIZE
        )
    changes.created = new
    changes.audit(actor=_actor(batch), batch=batch)
    if progress is not None:
        progress(len(frame))
    return _summary(
        created=len(new),
        updated=len(dirty),
        security_ids=[s.pk for s in new] + [s.pk for s in dirty],
        unchanged=len(frame) - len(new) - len(dirty),
    )


# ---------------------------------------------------------------------------
# prices
# ---------------------------------------------------------------------------


def _price_source(value: Any) -> str:
    return _text(value) or "import"


def write_prices(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    security_ids = _ids(frame["security_id"])
    if _use_copy(frame):
        created, updated = _prices_copy(frame, batch, progress)
    else:
        created, updated = _prices_bulk(frame, batch)
        if progress is not None:
            progress(len(frame))
    return _summary(created=created, updated=updated, security_ids=security_ids)


def _prices_bulk(frame: pd.DataFrame, batch: ImportBatch) -> tuple[int, int]:
    columns = set(frame.columns)
    rows = [
        Price(
            security_id=int(r["security_id"]),
            as_of=_date(r["date"]),
            price=_dec(r["price"]),
            source=_price_source(r.get("source")) if "source" in columns else "import",
            avg_daily_volume=_int(r.get("avg_daily_volume")),
            import_batch=batch,
        )
        for r in _records(frame)
    ]
    keys = {(p.security_id, p.as_of) for p in rows}
    existing = 0
    if keys:
        days = [d for _, d in keys]
        for part in _chunks(sorted({s for s, _ in keys}), LOOKUP_CHUNK):
            stored = Price.objects.filter(
                security_id__in=part, as_of__gte=min(days), as_of__lte=max(days)
            ).values_list("security_id", "as_of")
            existing += sum(1 for key in stored if key in keys)
    Price.objects.bulk_create(
        rows,
        batch_size=BULK_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["security", "as_of"],
        update_fields=["price", "source", "avg_daily_volume", "import_batch"],
    )
    return len(rows) - existing, existing


def _prices_copy(
    frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None
) -> tuple[int, int]:
    n = len(frame)
    source = (
        _copy_text(frame["source"].map(_price_source), kind="str")
        if "source" in frame.columns
        else _constant("import", n)
    )
    volume = (
        _copy_text(frame["avg_daily_volume"], kind="int")
        if "avg_daily_volume" in frame.columns
        else _constant(NULL, n)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE import_price_stage (security_id bigint, as_of date, "
            "price numeric(18, 6), source varchar(40), avg_daily_volume bigint) ON COMMIT DROP"
        )
    copy_rows(
        table="import_price_stage",
        columns=["security_id", "as_of", "price", "source", "avg_daily_volume"],
        cells=[
            _copy_text(frame["security_id"], kind="int"),
            _copy_text(frame["date"], kind="date"),
            _copy_text(frame["price"], kind="num"),
            source,
            volume,
        ],
        progress=progress,
    )
    table = Price._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (security_id, as_of, price, source, avg_daily_volume, "  # noqa: S608
            "import_batch_id) SELECT security_id, as_of, price, source, avg_daily_volume, %s "
            "FROM import_price_stage ON CONFLICT (security_id, as_of) DO UPDATE SET "
            "price = EXCLUDED.price, source = EXCLUDED.source, "
            "avg_daily_volume = EXCLUDED.avg_daily_volume, "
            "import_batch_id = EXCLUDED.import_batch_id RETURNING (xmax = 0)",
            [batch.pk],
        )
        inserted = [row[0] for row in cursor.fetchall()]
        cursor.execute("DROP TABLE import_price_stage")
    created = sum(inserted)
    return created, len(inserted) - created


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


def write_models(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    from portfolios.services import TargetSpec, model_version_create

    actor = _actor(batch)
    created = updated = 0
    versions: dict[str, int] = {}
    names = [str(m).strip() for m in frame["model"].tolist()]
    records = _records(frame)
    order = list(dict.fromkeys(names))
    for name in order:
        rows = [r for n, r in zip(names, records, strict=True) if n == name]
        model = ModelPortfolio.objects.filter(name=name).first()
        if model is None:
            model = ModelPortfolio.objects.create(name=name)
            created += 1
        else:
            updated += 1
        cash = Decimal("0")
        targets = []
        for r in rows:
            if str(r["ticker"]).strip().upper() == CASH_TICKER:
                cash += _dec(r["weight"]) or Decimal("0")
                continue
            targets.append(
                TargetSpec(
                    security_id=int(r["security_id"]),
                    weight=_dec(r["weight"]),
                    abs_band=_dec(r.get("abs_band")),
                    rel_band=_dec(r.get("rel_band")),
                    min_weight=_dec(r.get("min_weight")),
                    max_weight=_dec(r.get("max_weight")),
                )
            )
        version = model_version_create(
            model=model,
            targets=targets,
            cash_target=cash,
            actor=actor,
            note=NOTE_MODEL_IMPORT.format(batch=batch.pk),
        )
        versions[name] = version.version
    if progress is not None:
        progress(len(frame))
    security_ids = [
        s
        for s, t in zip(frame["security_id"].tolist(), frame["ticker"].tolist(), strict=True)
        if str(t).strip().upper() != CASH_TICKER
    ]
    return _summary(
        created=created, updated=updated, security_ids=_ids(security_ids), versions=versions
    )


# ---------------------------------------------------------------------------
# households and accounts
# ---------------------------------------------------------------------------

ACCOUNT_FIELDS = {
    "name": _text,
    "registration_type": _text,
    "taxable": _bool,
    "cash_balance": _dec,
    "cash_reserve": _dec,
    "st_tax_rate": _dec,
    "lt_tax_rate": _dec,
    "min_trade_amount": _dec,
    "allow_fractional": _bool,
    "tlh_enabled": _bool,
    "auto_propose": _bool,
}


def _teams(frame: pd.DataFrame) -> list[Group | None]:
    """Each row's team: the validator's ``team_id`` when it resolved one, else by name."""
    n = len(frame)
    names = [_text(t).strip() for t in frame["team"].tolist()] if "team" in frame else [""] * n
    ids = frame["team_id"].tolist() if "team_id" in frame else [None] * n
    groups = {g.pk: g for g in Group.objects.filter(pk__in=_ids(ids))}
    by_name = {g.name: g for g in Group.objects.filter(name__in={m for m in names if m})}
    teams: list[Group | None] = []
    for name, pk in zip(names, ids, strict=True):
        if not _blank(pk):
            teams.append(groups[int(pk)])
        elif name:
            if name not in by_name:
                raise ValidationFailed(UNKNOWN_TEAM.format(team=name))
            teams.append(by_name[name])
        else:
            teams.append(None)
    return teams


def _households(
    frame: pd.DataFrame, batch: ImportBatch, actor: AbstractBaseUser | str
) -> tuple[list[int], dict[str, Any]]:
    """Household id per row: existing ids as resolved, new households created once per name,
    and each household's team set to the file's (``household_assign_team``, audited)."""
    from portfolios.services import household_assign_team

    names = [str(h).strip() for h in frame["household"].tolist()]
    resolved = (
        frame["household_id"].tolist() if "household_id" in frame.columns else [None] * len(names)
    )
    by_name: dict[str, int] = {}
    for name, hid in zip(names, resolved, strict=True):
        if not _blank(hid):
            by_name.setdefault(name.lower(), int(hid))
    created = []
    for name in dict.fromkeys(names):
        if name.lower() in by_name:
            continue
        household = Household.objects.create(name=name, import_batch=batch)
        created.append(household)
        by_name[name.lower()] = household.pk
    _Changes(entity="household", created=created).audit(actor=actor, batch=batch)
    row_ids = [by_name[n.lower()] for n in names]
    team_of: dict[int, Group] = {}
    for hid, team in zip(row_ids, _teams(frame), strict=True):
        if team is not None:
            team_of.setdefault(hid, team)
    for household in Household.objects.filter(pk__in=sorted(team_of)):
        team = team_of[household.pk]
        if household.team_id != team.pk:
            household_assign_team(household=household, team=team, actor=actor)
    return row_ids, {"households_created": len(created)}


def write_accounts(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    actor = _actor(batch)
    columns = set(frame.columns)
    household_ids, extra = _households(frame, batch, actor)
    resolved = frame["account_id"].tolist() if "account_id" in columns else [None] * len(frame)
    existing = {a.pk: a for a in Account.objects.filter(pk__in=_ids(resolved))}
    changes = _Changes(entity="account")
    new: dict[tuple[str, str], Account] = {}
    dirty: dict[int, Account] = {}
    dirty_fields: set[str] = set()
    for account_id, household_id, row in zip(resolved, household_ids, _records(frame), strict=True):
        values = {
            name: convert(row[name]) for name, convert in ACCOUNT_FIELDS.items() if name in columns
        }
        values = {k: (None if v == "" else v) for k, v in values.items()}
        values["household_id"] = household_id
        if "model_id" in columns and not _blank(row.get("model_id")):
            values["model_id"] = int(row["model_id"])
        if _blank(account_id):
            key = (str(row["custodian"]).strip(), str(row["account_number"]).strip())
            obj = new.get(key)
            if obj is None:
                obj = new[key] = Account(
                    custodian=key[0], account_number=key[1], import_batch=batch
                )
            _set_fields(obj, values)
            continue
        current = existing[int(account_id)]
        before = audit_snapshot(current)
        changed = _set_fields(current, values)
        if changed:
            current.import_batch = batch
            dirty[current.pk] = current
            dirty_fields.update(changed)
            changes.updated.append((current, before))
    created = list(new.values())
    Account.objects.bulk_create(created, batch_size=BULK_BATCH_SIZE)
    if dirty:
        Account.objects.bulk_update(
            list(dirty.values()),
            [*sorted(dirty_fields), "import_batch"],
            batch_size=BULK_BATCH_SIZE,
        )
    changes.created = created
    changes.audit(actor=actor, batch=batch)
    if progress is not None:
        progress(len(frame))
    return _summary(
        created=len(created),
        updated=len(dirty),
        account_ids=[a.pk for a in created] + list(dirty),
        unchanged=len(frame) - len(created) - len(dirty),
        **extra,
    )


# ---------------------------------------------------------------------------
# lots and transactions (appends)
# ---------------------------------------------------------------------------


def write_lots(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    account_ids = _ids(frame["account_id"])
    security_ids = _ids(frame["security_id"])
    if _use_copy(frame):
        n = len(frame)
        copy_rows(
            table=TaxLot._meta.db_table,
            columns=[
                "account_id",
                "security_id",
                "quantity",
                "cost_basis",
                "acquired_on",
                "created_at",
                "import_batch_id",
            ],
            cells=[
                _copy_text(frame["account_id"], kind="int"),
                _copy_text(frame["security_id"], kind="int"),
                _copy_text(frame["quantity"], kind="num"),
                _copy_text(frame["cost_basis"], kind="num"),
                _copy_text(frame["acquired_on"], kind="date"),
                _constant(timezone.now().isoformat(), n),
                _constant(str(batch.pk), n),
            ],
            progress=progress,
        )
    else:
        now = timezone.now()
        TaxLot.objects.bulk_create(
            (
                TaxLot(
                    account_id=int(r["account_id"]),
                    security_id=int(r["security_id"]),
                    quantity=_dec(r["quantity"]),
                    cost_basis=_dec(r["cost_basis"]),
                    acquired_on=_date(r["acquired_on"]),
                    created_at=now,
                    import_batch=batch,
                )
                for r in _records(frame)
            ),
            batch_size=BULK_BATCH_SIZE,
        )
        if progress is not None:
            progress(len(frame))
    return _summary(created=len(frame), account_ids=account_ids, security_ids=security_ids)


TRANSACTION_AMOUNTS = ("realized_st", "realized_lt", "wash_sale_disallowed")


def write_transactions(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    account_ids = _ids(frame["account_id"])
    security_ids = _ids(frame["security_id"])
    n = len(frame)
    if _use_copy(frame):
        amounts = [
            ["0" if c == NULL else c for c in _copy_text(frame[name], kind="num")]
            if name in frame.columns
            else _constant("0", n)
            for name in TRANSACTION_AMOUNTS
        ]
        copy_rows(
            table=Transaction._meta.db_table,
            columns=[
                "account_id",
                "security_id",
                "trade_date",
                "side",
                "quantity",
                "price",
                *TRANSACTION_AMOUNTS,
                "created_at",
                "import_batch_id",
            ],
            cells=[
                _copy_text(frame["account_id"], kind="int"),
                _copy_text(frame["security_id"], kind="int"),
                _copy_text(frame["trade_date"], kind="date"),
                _copy_text(frame["side"].map(lambda s: str(s).strip().lower()), kind="str"),
                _copy_text(frame["quantity"], kind="num"),
                _copy_text(frame["price"], kind="num"),
                *amounts,
                _constant(timezone.now().isoformat(), n),
                _constant(str(batch.pk), n),
            ],
            progress=progress,
        )
    else:
        now = timezone.now()
        Transaction.objects.bulk_create(
            (
                Transaction(
                    account_id=int(r["account_id"]),
                    security_id=int(r["security_id"]),
                    trade_date=_date(r["trade_date"]),
                    side=str(r["side"]).strip().lower(),
                    quantity=_dec(r["quantity"]),
                    price=_dec(r["price"]),
                    **{name: _dec(r.get(name)) or Decimal("0") for name in TRANSACTION_AMOUNTS},
                    created_at=now,
                    import_batch=batch,
                )
                for r in _records(frame)
            ),
            batch_size=BULK_BATCH_SIZE,
        )
        if progress is not None:
            progress(n)
    return _summary(created=n, account_ids=account_ids, security_ids=security_ids)


# ---------------------------------------------------------------------------
# cash flows
# ---------------------------------------------------------------------------

CASH_UPDATE_CHUNK = 500


def write_cash_flows(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    now = timezone.now()
    flows = [
        CashFlow(
            account_id=int(r["account_id"]),
            flow_date=_date(r["date"]),
            amount=_dec(r["amount"]),
            kind=str(r["kind"]).strip().lower(),
            note=_text(r.get("note")),
            created_at=now,
            import_batch=batch,
        )
        for r in _records(frame)
    ]
    CashFlow.objects.bulk_create(flows, batch_size=BULK_BATCH_SIZE)
    deltas: dict[int, Decimal] = {}
    for flow in flows:
        deltas[flow.account_id] = deltas.get(flow.account_id, Decimal("0")) + flow.amount
    account_ids = sorted(deltas)
    audit_each = len(account_ids) <= AUDIT_PER_ROW_LIMIT
    before = (
        dict(Account.objects.filter(pk__in=account_ids).values_list("pk", "cash_balance"))
        if audit_each
        else {}
    )
    for part in _chunks(account_ids, CASH_UPDATE_CHUNK):
        Account.objects.filter(pk__in=part).update(
            cash_balance=F("cash_balance")
            + Case(*(When(pk=pk, then=Value(deltas[pk])) for pk in part))
        )
    actor = _actor(batch)
    if audit_each:
        after = dict(Account.objects.filter(pk__in=account_ids).values_list("pk", "cash_balance"))
        for pk in account_ids:
            audit_record(
                actor=actor,
                action="account.cash_flow",
                object_type="portfolios.account",
                object_id=pk,
                before={"cash_balance": before[pk]},
                after={"cash_balance": after[pk], "delta": deltas[pk]},
                reason=f"import batch {batch.pk}",
            )
    else:
        audit_record(
            actor=actor,
            action="account.bulk_cash_flow",
            obj=batch,
            after={"accounts": len(account_ids), "flows": len(flows)},
            reason=f"import batch {batch.pk}",
        )
    if progress is not None:
        progress(len(frame))
    return _summary(
        created=len(flows),
        account_ids=account_ids,
        cash_delta=str(sum(deltas.values(), Decimal("0"))),
    )


# ---------------------------------------------------------------------------
# restrictions
# ---------------------------------------------------------------------------


def _id_or_none(value: Any) -> int | None:
    return None if _blank(value) else int(value)


def write_restrictions(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    actor = _actor(batch)
    user = None if isinstance(actor, str) else actor
    columns = set(frame.columns)
    rows = []
    for r in _records(frame):
        scope = str(r["scope"]).strip().lower()
        restriction = Restriction(
            scope=scope,
            household_id=_id_or_none(r.get("household_id")) if scope == "household" else None,
            account_id=_id_or_none(r.get("account_id")) if scope == "account" else None,
            security_id=_id_or_none(r.get("security_id")) if "ticker" in columns else None,
            sector=_text(r.get("sector")) if "sector" in columns else "",
            esg_tag=_text(r.get("esg_tag")) if "esg_tag" in columns else "",
            kind=str(r["kind"]).strip().lower(),
            reason=_text(r["reason"]),
            effective_to=_date(r.get("effective_to")),
            created_by=user,
            import_batch=batch,
        )
        if restriction.security_id is not None:
            restriction.sector = restriction.esg_tag = ""
        start = _date(r.get("effective_from"))
        if start is not None:
            restriction.effective_from = start
        rows.append(restriction)
    Restriction.objects.bulk_create(rows, batch_size=BULK_BATCH_SIZE)
    _Changes(entity="restriction", created=rows).audit(actor=actor, batch=batch)
    if progress is not None:
        progress(len(frame))
    return _summary(
        created=len(rows),
        account_ids=[r.account_id for r in rows if r.account_id],
        security_ids=[r.security_id for r in rows if r.security_id],
    )


# ---------------------------------------------------------------------------
# custodian positions (reconciliation)
# ---------------------------------------------------------------------------


def write_custodian_positions(
    *, frame: pd.DataFrame, batch: ImportBatch, progress: Progress | None = None
) -> dict[str, Any]:
    from portfolios.services.reconciliation import reconciliation_create

    reconciliation = reconciliation_create(batch=batch, frame=frame, actor=_actor(batch))
    if progress is not None:
        progress(len(frame))
    return _summary(
        account_ids=_ids(frame["account_id"]),
        reconciliation_id=reconciliation.pk,
        accounts_compared=reconciliation.accounts_compared,
        positions_compared=reconciliation.positions_compared,
        break_count=reconciliation.break_count,
    )


WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    ImportKind.SECURITIES: write_securities,
    ImportKind.PRICES: write_prices,
    ImportKind.MODELS: write_models,
    ImportKind.ACCOUNTS: write_accounts,
    ImportKind.LOTS: write_lots,
    ImportKind.TRANSACTIONS: write_transactions,
    ImportKind.CASH_FLOWS: write_cash_flows,
    ImportKind.RESTRICTIONS: write_restrictions,
    ImportKind.CUSTODIAN_POSITIONS: write_custodian_positions,
}


def import_write(
    *,
    kind: str,
    frame: pd.DataFrame,
    batch: ImportBatch,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a validated frame of ``kind``, every row pointing to ``batch``. Call it inside
    the import's transaction: it writes in several statements. ``progress(rows_written)`` is
    called after each chunk. Raises ValidationFailed for a kind that cannot be written."""
    writer = WRITERS.get(kind)
    if writer is None:
        raise ValidationFailed(UNKNOWN_KIND.format(kind=kind))
    return writer(frame=frame, batch=batch, progress=progress)
