"""Drift scans (DESIGN 4): load every position of the accounts to scan in one bulk read, run
the pure engine (``portfolios.drift``), store snapshots and per-security rows in bulk, and
raise or clear breach alerts, all of one chunk in one transaction.

A scan is a ``DriftScan`` work row. A request creates it (queued) and enqueues
``portfolios.drift_scan`` after commit; that task claims the row, splits the accounts into
chunks of ``DRIFT_SCAN_CHUNK_SIZE`` and sends one ``portfolios.drift_scan_chunk`` task per
chunk. Each chunk locks its accounts (so two scans of the same account queue up rather than
fight over its latest snapshot and its open alert), skips itself when this scan already wrote
its snapshots (a redelivered message), and adds its counts to the scan row; the chunk that
brings ``chunks_done`` up to ``chunks_total`` marks the scan succeeded. ``manage.py
scan_drift`` runs the same chunks in-process.

Storage rule (DESIGN 12): per-security rows are kept for each account's latest snapshot and for
snapshots that breached; the rows of a snapshot that stops being the latest without having
breached are deleted in the same transaction. On PostgreSQL the big reads and writes use
``COPY`` (binary for the fixed-width rows); on SQLite they use the ORM.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Func, JSONField, Q, Value
from django.utils import timezone

from compliance.services.audit import audit_record
from portfolios.drift import DriftInputs, DriftResult, Unscannable, drift_compute
from portfolios.models import (
    AccountStatus,
    DriftAlert,
    DriftPosition,
    DriftScan,
    DriftSnapshot,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    ScanTrigger,
    Security,
)
from rebalance_app.exceptions import NotFound, PermissionDenied, ValidationFailed
from rebalance_app.roles import Role, user_has_role
from rebalance_app.work import (
    WorkStatus,
    work_claim,
    work_enqueue,
    work_fail,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = structlog.get_logger(__name__)

# Why an account could not be scanned (stored on its snapshot and in the scan's summary).
NO_MODEL = "Account has no model"
NO_CURRENT_VERSION = "Model '{name}' has no current version"
MODEL_NOT_100 = "Model '{name}' v{version} weights sum to {total:.2%}, not 100%"
NO_PRICE = "No price for {tickers}"
STALE_PRICE = "Stale price for {items}"
STALE_ITEM = "{ticker} (last {day})"
NO_VALUE = "Account has no value"
MORE = "and {count} more"

SCAN_FIRM_FORBIDDEN = "Only Ops, Compliance or Admin users may scan the whole firm."
SCAN_ACCOUNTS_NOT_FOUND = "One or more of the accounts to scan were not found."
SCAN_ACCOUNTS_EMPTY = "List at least one account to scan, or none at all to scan the firm."
CHUNK_FAILED = "Chunk {index} failed: {error}"
SCAN_FAILED = "The scan failed: {error}"

ACTION_SCAN_REQUESTED = "drift.scan_requested"
ACTION_ALERT_RAISED = "drift.alert_raised"
ACTION_ALERT_CLEARED = "drift.alert_cleared"
ACTION_SNAPSHOTS_PRUNED = "drift.snapshots_pruned"

SCAN_ACTOR = "system:drift_scan"
EVENT_ACTOR = "system:drift_event"
SCHEDULE_ACTOR = "system:drift_schedule"

SKIP_NOT_TRADING_DAY = "{day} is not an XNYS trading day"

CASH_LABEL = "CASH"
WEIGHT_TOLERANCE = 1e-4  # the model service's tolerance: 0.01%
REASON_MAX_ITEMS = 5
REASON_MAX_LENGTH = 300
AUDIT_MAX_IDS = 100  # a request for more accounts records their count, not every id
PRUNE_BATCH = 10_000
COPY_SLICE_ROWS = 500_000

SCAN_TASK = "portfolios.drift_scan"
CHUNK_TASK = "portfolios.drift_scan_chunk"

TABLE_ACCOUNT = "portfolios_account"
TABLE_LOT = "portfolios_taxlot"
TABLE_SNAPSHOT = "portfolios_driftsnapshot"
TABLE_POSITION = "portfolios_driftposition"
TABLE_ALERT = "portfolios_driftalert"


# ---------------------------------------------------------------------------
# Bulk reads
# ---------------------------------------------------------------------------


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _ids_clause(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """``column`` in ``ids`` as one bind parameter whatever the number of ids (a PostgreSQL
    array; a JSON list on SQLite), so a chunk of thousands never hits a parameter limit."""
    if _is_postgres():
        return f"{column} = ANY(%s)", [list(map(int, ids))]
    clause = f"{column} IN (SELECT value FROM json_each(%s))"  # noqa: S608 - column is ours
    return clause, [json.dumps(list(map(int, ids)))]


_PG_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_BINARY_TRAILER = struct.pack(">h", -1)
_NUMPY_OF = {"i8": ">i8", "i4": ">i4", "f8": ">f8", "bool": "u1"}
_SIZE_OF = {"i8": 8, "i4": 4, "f8": 8, "bool": 1}


def _fetch(sql: str, params: list[Any], columns: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Run ``sql`` (no NULLs in its result) into one numpy array per column.

    ``columns``: (name, kind) with kind in i8, i4, f8, bool, matching the SQL's types. On
    PostgreSQL the rows come as one binary ``COPY ... TO STDOUT``, parsed by numpy without a
    Python object per value.
    """
    if _is_postgres():
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for name, kind in columns:
            fields += [(f"len_{name}", ">i4"), (name, _NUMPY_OF[kind])]
        dtype = np.dtype(fields)
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
                data = b"".join(bytes(block) for block in copy)
        body = data[len(_PG_BINARY_HEADER) : len(data) - len(_PG_BINARY_TRAILER)]
        rows = np.frombuffer(body, dtype=dtype)
        return {
            name: rows[name].astype(bool if kind == "bool" else _NUMPY_OF[kind][1:])
            for name, kind in columns
        }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out: dict[str, np.ndarray] = {}
    for k, (name, kind) in enumerate(columns):
        np_type = {"i8": np.int64, "i4": np.int64, "f8": np.float64, "bool": bool}[kind]
        out[name] = np.array([row[k] for row in rows], dtype=np_type)
    return out


@dataclass(frozen=True)
class DriftMeta:
    """What the engine does not need but the store does, aligned with ``DriftInputs``.

    Per engine account (A,): ``account_ids``, ``version_ids``, ``auto_propose``. Per row (n,):
    ``row_security`` (0 for the cash row). ``unscannable``: accounts not given to the engine
    (no model, a model not summing to 100%) -> reason, with ``unscannable_versions`` their
    model version when there is one. ``price_dates``: the latest price date per security;
    ``stale_before``: prices dated before it are stale.
    """

    account_ids: np.ndarray
    version_ids: np.ndarray
    auto_propose: np.ndarray
    row_security: np.ndarray
    unscannable: dict[int, str]
    unscannable_versions: dict[int, int | None]
    price_dates: dict[int, date]
    stale_before: date
    eligible_ids: list[int] = field(default_factory=list)


_ACCOUNT_SQL = (
    "SELECT id, CAST(cash_balance AS double precision), COALESCE(model_id, 0), auto_propose "
    "FROM portfolios_account WHERE status <> %s AND {ids} ORDER BY id"
)
_ACCOUNT_COLUMNS = [("id", "i8"), ("cash", "f8"), ("model", "i8"), ("auto_propose", "bool")]
_POSITION_SQL = (
    "SELECT account_id, security_id, SUM(CAST(quantity AS double precision)) "
    "FROM portfolios_taxlot WHERE {ids} GROUP BY account_id, security_id "
    "HAVING SUM(CAST(quantity AS double precision)) > 0 ORDER BY account_id, security_id"
)
_POSITION_FIRM_SQL = (
    "SELECT l.account_id, l.security_id, SUM(CAST(l.quantity AS double precision)) "
    "FROM portfolios_taxlot l JOIN portfolios_account a ON a.id = l.account_id AND a.status <> %s "
    "GROUP BY l.account_id, l.security_id HAVING SUM(CAST(l.quantity AS double precision)) > 0 "
    "ORDER BY l.account_id, l.security_id"
)
_POSITION_COLUMNS = [("account", "i8"), ("security", "i8"), ("quantity", "f8")]


def _eligible_account_ids(account_ids: Sequence[int] | None, *, lock: bool) -> list[int]:
    """Ids of the accounts to scan (all but closed ones), ascending; with ``lock`` their rows
    are locked for the rest of the transaction (PostgreSQL), in id order so two scans never
    deadlock."""
    where, params = ("1 = 1", []) if account_ids is None else _ids_clause("id", account_ids)
    sql = f"SELECT id FROM {TABLE_ACCOUNT} WHERE status <> %s AND {where} ORDER BY id"  # noqa: S608 - fixed table and clause, values bound
    if lock and _is_postgres():
        sql += " FOR NO KEY UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [AccountStatus.CLOSED, *params])
        return [row[0] for row in cursor.fetchall()]


VersionInfo = tuple[int, int, float, str, bool, float]


def _current_versions() -> tuple[dict[int, VersionInfo], np.ndarray]:
    """Current version per model id: (version id, number, cash target, model name, sums to
    100%, total weight), and the targets of all current versions as a structured array sorted
    by version then security."""
    targets = list(
        ModelTarget.objects.filter(version__is_current=True)
        .order_by("version_id", "security_id")
        .values_list("version_id", "security_id", "weight", "abs_band", "rel_band")
    )
    totals: dict[int, float] = {}
    for version_id, _sec, weight, _a, _r in targets:
        totals[version_id] = totals.get(version_id, 0.0) + float(weight)
    versions = {}
    for vid, model_id, number, cash_target, name in ModelVersion.objects.filter(
        is_current=True
    ).values_list("id", "model_id", "version", "cash_target", "model__name"):
        total = totals.get(vid, 0.0) + float(cash_target)
        ok = abs(total - 1.0) <= WEIGHT_TOLERANCE
        versions[model_id] = (vid, number, float(cash_target), name, ok, total)
    array = np.array(
        [
            (
                v,
                s,
                float(w),
                np.nan if a is None else float(a),
                np.nan if r is None else float(r),
            )
            for v, s, w, a, r in targets
        ],
        dtype=[
            ("version", "i8"),
            ("security", "i8"),
            ("weight", "f8"),
            ("abs", "f8"),
            ("rel", "f8"),
        ],
    )
    return versions, array


def _lookup(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each of ``values`` in the sorted ``keys``, and whether it is there at all."""
    if len(keys) == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    index = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return index, keys[index] == values


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of an int64 array by sort and compare (numpy 2's hash-based unique is
    several times slower on millions of keys)."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _latest_prices() -> tuple[np.ndarray, np.ndarray, dict[int, date]]:
    from portfolios.selectors import latest_prices

    prices = latest_prices()
    ids = np.array(sorted(prices), dtype=np.int64)
    values = np.array([float(prices[i][0]) for i in ids], dtype=np.float64)
    return ids, values, {int(i): prices[int(i)][1] for i in ids}


def drift_inputs_load(
    *, account_ids: Sequence[int] | None = None, now: datetime | None = None
) -> tuple[DriftInputs, DriftMeta]:
    """The engine's flat arrays for the accounts to scan (all but closed ones; ``None``: the
    whole firm): lots summed per account and security in one bulk read, each account's cash,
    its model's current targets and cash target, the latest price and its date per security.

    Accounts the engine cannot see a problem with are left out and reported in
    ``meta.unscannable``: no model, a model without a current version, or a model whose
    weights do not sum to 100%.
    """
    from portfolios.calendar import stale_price_cutoff

    stale_before = stale_price_cutoff(now=now, trading_days=settings.STALE_PRICE_TRADING_DAYS)
    default_abs = float(settings.DRIFT_DEFAULT_ABS_BAND)

    if account_ids is None:
        where, params = ("1 = 1", [])
    else:
        where, params = _ids_clause("id", account_ids)
    acc = _fetch(_ACCOUNT_SQL.format(ids=where), [AccountStatus.CLOSED, *params], _ACCOUNT_COLUMNS)
    versions, targets = _current_versions()

    # Accounts the engine must not see: no model, no current version, weights not 100%.
    unscannable: dict[int, str] = {}
    unscannable_versions: dict[int, int | None] = {}
    model_of = acc["model"]
    account_version = np.zeros(len(model_of), dtype=np.int64)
    account_cash_target = np.zeros(len(model_of), dtype=np.float64)
    ok = np.ones(len(model_of), dtype=bool)
    missing_models = {int(m) for m in np.unique(model_of) if m and int(m) not in versions}
    model_names = (
        dict(ModelPortfolio.objects.filter(pk__in=missing_models).values_list("pk", "name"))
        if missing_models
        else {}
    )
    for model_id in np.unique(model_of):
        mask = model_of == model_id
        model_id = int(model_id)
        if model_id == 0:
            reason, version_id = NO_MODEL, None
        elif model_id not in versions:
            reason = NO_CURRENT_VERSION.format(name=model_names.get(model_id, model_id))
            version_id = None
        else:
            vid, number, cash_target, name, sums_to_100, total = versions[model_id]
            account_version[mask] = vid
            account_cash_target[mask] = cash_target
            if sums_to_100:
                continue
            reason = MODEL_NOT_100.format(name=name, version=number, total=total)
            version_id = vid
        ok[mask] = False
        for account_id in acc["id"][mask].tolist():
            unscannable[account_id] = reason
            unscannable_versions[account_id] = version_id

    ids = acc["id"][ok]
    version = account_version[ok]
    cash = acc["cash"][ok]
    cash_target = account_cash_target[ok]
    n_accounts = len(ids)

    if account_ids is None:
        pos = _fetch(_POSITION_FIRM_SQL, [AccountStatus.CLOSED], _POSITION_COLUMNS)
    else:
        where, params = _ids_clause("account_id", acc["id"].tolist())
        pos = _fetch(_POSITION_SQL.format(ids=where), params, _POSITION_COLUMNS)
    price_ids, price_values, price_dates = _latest_prices()

    # Dense indices: accounts 0..A-1 in id order, securities 0..S-1, and S for cash.
    pos_acc, in_scan = _lookup(ids, pos["account"])
    pos_acc, pos_sec_id, pos_qty = (
        pos_acc[in_scan],
        pos["security"][in_scan],
        pos["quantity"][in_scan],
    )

    # Targets of each account's version: a block of rows per version, repeated per account.
    versions_sorted, t_start, t_count = np.unique(
        targets["version"], return_index=True, return_counts=True
    )
    vpos, has_block = _lookup(versions_sorted, version)
    counts = np.where(has_block, t_count[vpos] if len(t_count) else 0, 0)
    starts = np.where(has_block, t_start[vpos] if len(t_start) else 0, 0)
    tgt_acc = np.repeat(np.arange(n_accounts, dtype=np.int64), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    tgt_row = np.repeat(starts, counts) + offsets
    tgt_sec_id = targets["security"][tgt_row]

    sec_ids = _sorted_unique(np.concatenate([pos_sec_id, tgt_sec_id]))
    n_sec = len(sec_ids)
    width = n_sec + 1  # the cash "security" sorts last in each account
    pos_key = pos_acc * width + np.searchsorted(sec_ids, pos_sec_id)
    tgt_key = tgt_acc * width + np.searchsorted(sec_ids, tgt_sec_id)
    cash_key = np.arange(n_accounts, dtype=np.int64) * width + n_sec
    keys = _sorted_unique(np.concatenate([pos_key, tgt_key, cash_key]))
    row_acc = keys // width
    row_sec = keys % width
    is_cash = row_sec == n_sec
    n = len(keys)

    quantity = np.zeros(n)
    quantity[np.searchsorted(keys, pos_key)] = pos_qty
    cash_rows = np.searchsorted(keys, cash_key)
    quantity[cash_rows] = cash

    # Latest price per security (NaN when none) and whether it is stale; cash is priced at 1.
    sec_price = np.full(width, np.nan)
    sec_stale = np.zeros(width, dtype=bool)
    where_priced, priced = _lookup(price_ids, sec_ids)
    sec_price[:n_sec][priced] = price_values[where_priced[priced]]
    sec_stale[:n_sec] = [
        bool(p) and price_dates[int(s)] < stale_before for s, p in zip(sec_ids, priced, strict=True)
    ]
    sec_price[n_sec] = 1.0
    price = sec_price[row_sec]
    stale = sec_stale[row_sec]

    target = np.zeros(n)
    abs_band = np.full(n, np.nan)
    rel_band = np.full(n, np.nan)
    in_model = np.zeros(n, dtype=bool)
    tgt_rows = np.searchsorted(keys, tgt_key)
    target[tgt_rows] = targets["weight"][tgt_row]
    abs_band[tgt_rows] = targets["abs"][tgt_row]
    rel_band[tgt_rows] = targets["rel"][tgt_row]
    in_model[tgt_rows] = True
    target[cash_rows] = cash_target
    in_model[cash_rows] = True
    abs_band[np.isnan(abs_band) & np.isnan(rel_band)] = default_abs

    inputs = DriftInputs(
        account=row_acc.astype(np.int64),
        quantity=quantity,
        price=price,
        stale=stale,
        target=target,
        abs_band=abs_band,
        rel_band=rel_band,
        in_model=in_model,
        is_cash=is_cash,
        n_accounts=n_accounts,
    )
    meta = DriftMeta(
        account_ids=ids,
        version_ids=version,
        auto_propose=acc["auto_propose"][ok],
        row_security=np.append(sec_ids, 0)[row_sec],
        unscannable=unscannable,
        unscannable_versions=unscannable_versions,
        price_dates=price_dates,
        stale_before=stale_before,
        eligible_ids=acc["id"].tolist(),
    )
    return inputs, meta


# ---------------------------------------------------------------------------
# Reasons in words
# ---------------------------------------------------------------------------


def _items(items: list[str]) -> str:
    shown = ", ".join(items[:REASON_MAX_ITEMS])
    if len(items) > REASON_MAX_ITEMS:
        shown += " " + MORE.format(count=len(items) - REASON_MAX_ITEMS)
    return shown


def _tickers(security_ids: Iterable[int]) -> dict[int, str]:
    ids = {int(i) for i in security_ids if i}
    if not ids:
        return {}
    return dict(Security.objects.filter(pk__in=ids).values_list("pk", "ticker"))


def _engine_reasons(
    inputs: DriftInputs, result: DriftResult, meta: DriftMeta, tickers: dict[int, str]
) -> dict[int, str]:
    """Engine account index -> the reason in words, naming the securities at fault."""
    bad = ~result.scannable
    if not bad.any():
        return {}
    held = inputs.quantity > 0
    missing = held & np.isnan(inputs.price)
    stale = held & ~missing & inputs.stale
    rows = np.flatnonzero((missing | stale) & bad[inputs.account])
    missing_by: dict[int, list[str]] = {}
    stale_by: dict[int, list[str]] = {}
    for row in rows.tolist():
        a = int(inputs.account[row])
        sec = int(meta.row_security[row])
        ticker = tickers.get(sec, str(sec))
        if missing[row]:
            missing_by.setdefault(a, []).append(ticker)
        else:
            day = meta.price_dates[sec].isoformat()
            stale_by.setdefault(a, []).append(STALE_ITEM.format(ticker=ticker, day=day))
    reasons: dict[int, str] = {}
    for a in np.flatnonzero(bad).tolist():
        code = int(result.reason[a])
        if code == Unscannable.MISSING_PRICE:
            text = NO_PRICE.format(tickers=_items(missing_by.get(a, [])))
        elif code == Unscannable.STALE_PRICE:
            text = STALE_PRICE.format(items=_items(stale_by.get(a, [])))
        else:
            text = NO_VALUE
        reasons[a] = text[:REASON_MAX_LENGTH]
    return reasons


# ---------------------------------------------------------------------------
# Bulk writes
# ---------------------------------------------------------------------------


def _binary_rows(columns: list[tuple[np.ndarray, str, np.ndarray | None]]) -> Iterator[bytes]:
    """Rows in PostgreSQL's binary COPY format, built by numpy (no Python object per value).

    ``columns``: (values, kind, null mask or None). Rows are grouped by their pattern of
    NULLs so that each group is a fixed-width structured array; COPY does not care about row
    order.
    """
    n = len(columns[0][0])
    pattern = np.zeros(n, dtype=np.int64)
    for k, (_values, _kind, nulls) in enumerate(columns):
        if nulls is not None:
            pattern |= nulls.astype(np.int64) << k
    for p in np.unique(pattern).tolist():
        selected = np.flatnonzero(pattern == p)
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for k, (_values, kind, _nulls) in enumerate(columns):
            fields.append((f"l{k}", ">i4"))
            if not (p >> k) & 1:
                fields.append((f"v{k}", _NUMPY_OF[kind]))
        dtype = np.dtype(fields)
        for lo in range(0, len(selected), COPY_SLICE_ROWS):
            part = selected[lo : lo + COPY_SLICE_ROWS]
            rows = np.empty(len(part), dtype=dtype)
            rows["n"] = len(columns)
            for k, (values, kind, _nulls) in enumerate(columns):
                if (p >> k) & 1:
                    rows[f"l{k}"] = -1
                else:
                    rows[f"l{k}"] = _SIZE_OF[kind]
                    rows[f"v{k}"] = values[part]
            yield rows.tobytes()


def _copy_binary(table: str, names: list[str], columns: list[Any]) -> None:
    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
        with cursor.cursor.copy(sql) as copy:
            copy.write(_PG_BINARY_HEADER)
            for block in _binary_rows(columns):
                copy.write(block)
            copy.write(_PG_BINARY_TRAILER)


def _nan_to_none(x: float) -> float | None:
    return None if x != x else x  # NaN is the only value not equal to itself


@dataclass
class _Snapshots:
    """The snapshot rows of a chunk, engine accounts first, then those it never saw."""

    account: list[int]
    version: list[int | None]
    total_value: list[Decimal | None]
    total_drift: list[float | None]
    max_drift: list[float | None]
    cash_drift: list[float | None]
    breach_count: list[int]
    breached: list[bool]
    not_in_model: list[int]
    model_not_held: list[int]
    scannable: list[bool]
    reason: list[str]


def _snapshot_rows(result: DriftResult, meta: DriftMeta, reasons: dict[int, str]) -> _Snapshots:
    ok = result.scannable
    n = len(meta.account_ids)
    extra = sorted(meta.unscannable)
    value = np.where(ok, result.total_value, np.nan)
    return _Snapshots(
        account=meta.account_ids.tolist() + extra,
        version=meta.version_ids.tolist() + [meta.unscannable_versions[a] for a in extra],
        total_value=[None if v != v else Decimal(f"{v:.2f}") for v in value.tolist()]
        + [None] * len(extra),
        total_drift=[_nan_to_none(x) for x in result.total_drift.tolist()] + [None] * len(extra),
        max_drift=[_nan_to_none(x) for x in result.max_drift.tolist()] + [None] * len(extra),
        cash_drift=[_nan_to_none(x) for x in result.cash_drift.tolist()] + [None] * len(extra),
        breach_count=result.breach_count.tolist() + [0] * len(extra),
        breached=result.account_breached.tolist() + [False] * len(extra),
        not_in_model=result.not_in_model_count.tolist() + [0] * len(extra),
        model_not_held=result.model_not_held_count.tolist() + [0] * len(extra),
        scannable=ok.tolist() + [False] * len(extra),
        reason=[reasons.get(a, "") for a in range(n)] + [meta.unscannable[a] for a in extra],
    )


_SNAPSHOT_COLUMNS = [
    "id",
    "account_id",
    "scan_id",
    "scanned_at",
    "is_latest",
    "model_version_id",
    "total_value",
    "total_drift",
    "max_drift",
    "cash_drift",
    "breach_count",
    "breached",
    "not_in_model_count",
    "model_not_held_count",
    "scannable",
    "unscannable_reason",
]
_POSITION_NAMES = [
    "snapshot_id",
    "security_id",
    "weight",
    "target",
    "drift",
    "abs_band",
    "rel_band",
    "breached",
    "in_model",
]


def _insert_snapshots(*, scan_id: int, rows: _Snapshots, scanned_at: datetime) -> list[int]:
    """Insert the snapshot rows (each the account's new latest); returns their ids in order."""
    n = len(rows.account)
    if n == 0:
        return []
    if _is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [TABLE_SNAPSHOT, n],
            )
            ids = [row[0] for row in cursor.fetchall()]
            sql = f"COPY {TABLE_SNAPSHOT} ({', '.join(_SNAPSHOT_COLUMNS)}) FROM STDIN"
            with cursor.cursor.copy(sql) as copy:
                for row in zip(
                    ids,
                    rows.account,
                    [scan_id] * n,
                    [scanned_at] * n,
                    [True] * n,
                    rows.version,
                    rows.total_value,
                    rows.total_drift,
                    rows.max_drift,
                    rows.cash_drift,
                    rows.breach_count,
                    rows.breached,
                    rows.not_in_model,
                    rows.model_not_held,
                    rows.scannable,
                    rows.reason,
                    strict=True,
                ):
                    copy.write_row(row)
        return ids
    created = DriftSnapshot.objects.bulk_create(
        DriftSnapshot(
            account_id=rows.account[i],
            scan_id=scan_id,
            scanned_at=scanned_at,
            is_latest=True,
            model_version_id=rows.version[i],
            total_value=rows.total_value[i],
            total_drift=rows.total_drift[i],
            max_drift=rows.max_drift[i],
            cash_drift=rows.cash_drift[i],
            breach_count=rows.breach_count[i],
            breached=rows.breached[i],
            not_in_model_count=rows.not_in_model[i],
            model_not_held_count=rows.model_not_held[i],
            scannable=rows.scannable[i],
            unscannable_reason=rows.reason[i],
        )
        for i in range(n)
    )
    return [s.pk for s in created]


def _insert_positions(
    *, inputs: DriftInputs, result: DriftResult, meta: DriftMeta, snapshot_ids: np.ndarray
) -> int:
    """Per-security rows of every scannable account of the chunk (its new latest snapshot)."""
    rows = np.flatnonzero(result.scannable[inputs.account])
    if len(rows) == 0:
        return 0
    snapshot = snapshot_ids[inputs.account[rows]]
    security = meta.row_security[rows]
    abs_band = inputs.abs_band[rows]
    rel_band = inputs.rel_band[rows]
    if _is_postgres():
        _copy_binary(
            TABLE_POSITION,
            _POSITION_NAMES,
            [
                (snapshot, "i8", None),
                (security, "i8", security == 0),
                (result.weight[rows], "f8", None),
                (inputs.target[rows], "f8", None),
                (result.drift[rows], "f8", None),
                (abs_band, "f8", np.isnan(abs_band)),
                (rel_band, "f8", np.isnan(rel_band)),
                (result.breached[rows], "bool", None),
                (inputs.in_model[rows], "bool", None),
            ],
        )
        return len(rows)
    DriftPosition.objects.bulk_create(
        (
            DriftPosition(
                snapshot_id=int(snap),
                security_id=int(sec) or None,
                weight=float(w),
                target=float(t),
                drift=float(d),
                abs_band=_nan_to_none(float(ab)),
                rel_band=_nan_to_none(float(rb)),
                breached=bool(b),
                in_model=bool(m),
            )
            for snap, sec, w, t, d, ab, rb, b, m in zip(
                snapshot.tolist(),
                security.tolist(),
                result.weight[rows].tolist(),
                inputs.target[rows].tolist(),
                result.drift[rows].tolist(),
                abs_band.tolist(),
                rel_band.tolist(),
                result.breached[rows].tolist(),
                inputs.in_model[rows].tolist(),
                strict=True,
            )
        ),
        batch_size=2000,
    )
    return len(rows)


def _retire_latest(account_ids: Sequence[int]) -> tuple[int, int]:
    """Flip the accounts' latest snapshots to not latest and drop the per-security rows of
    those that did not breach. Returns (snapshots retired, position rows deleted)."""
    if not account_ids:
        return 0, 0
    where, params = _ids_clause("account_id", account_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE_SNAPSHOT} SET is_latest = %s WHERE is_latest = %s AND {where} "  # noqa: S608 - fixed table and clause, values bound
            "RETURNING id, breached",
            [False, True, *params],
        )
        retired = cursor.fetchall()
        drop = [sid for sid, breached in retired if not breached]
        deleted = 0
        if drop:
            where, params = _ids_clause("snapshot_id", drop)
            cursor.execute(f"DELETE FROM {TABLE_POSITION} WHERE {where}", params)  # noqa: S608 - fixed table and clause, values bound
            deleted = cursor.rowcount
    return len(retired), deleted


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------


def _open_alerts(account_ids: Sequence[int]) -> dict[int, int]:
    if not account_ids:
        return {}
    where, params = _ids_clause("account_id", account_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT account_id, id FROM {TABLE_ALERT} WHERE cleared_at IS NULL AND {where}",  # noqa: S608 - fixed table and clause, values bound
            params,
        )
        return dict(cursor.fetchall())


def _alerts_update(
    *,
    scan: DriftScan,
    inputs: DriftInputs,
    result: DriftResult,
    meta: DriftMeta,
    snapshot_ids: np.ndarray,
    tickers: dict[int, str],
    now: datetime,
) -> tuple[int, int]:
    """Raise one alert per newly breached account and clear the open alerts of accounts back
    inside their bands (an unscannable account keeps its alert: nothing is known). Each is
    audited. Returns (raised, cleared)."""
    open_alerts = _open_alerts(meta.account_ids.tolist())
    has_open = np.isin(meta.account_ids, np.fromiter(open_alerts, dtype=np.int64))
    raise_idx = np.flatnonzero(result.account_breached & ~has_open)
    clear_idx = np.flatnonzero(result.scannable & ~result.account_breached & has_open)

    breaches: dict[int, list[str]] = {}
    if len(raise_idx):
        raising = np.zeros(len(meta.account_ids), dtype=bool)
        raising[raise_idx] = True
        for row in np.flatnonzero(result.breached & raising[inputs.account]).tolist():
            sec = int(meta.row_security[row])
            label = CASH_LABEL if sec == 0 else tickers.get(sec, str(sec))
            breaches.setdefault(int(inputs.account[row]), []).append(label)

    created = DriftAlert.objects.bulk_create(
        DriftAlert(
            account_id=int(meta.account_ids[a]),
            raised_at=now,
            raised_snapshot_id=int(snapshot_ids[a]),
            total_drift=float(result.total_drift[a]),
            max_drift=float(result.max_drift[a]),
            breach_count=int(result.breach_count[a]),
        )
        for a in raise_idx.tolist()
    )
    for a, alert in zip(raise_idx.tolist(), created, strict=True):
        after = {
            "alert": alert.pk,
            "scan": scan.pk,
            "snapshot": int(snapshot_ids[a]),
            "total_drift": round(float(result.total_drift[a]), 6),
            "max_drift": round(float(result.max_drift[a]), 6),
            "breach_count": int(result.breach_count[a]),
            "breaches": breaches.get(a, []),
        }
        if meta.auto_propose[a]:
            # The optimizer acts on this request (auto-propose on breach).
            after["auto_propose_requested"] = True
        audit_record(
            actor=SCAN_ACTOR,
            action=ACTION_ALERT_RAISED,
            object_type="portfolios.account",
            object_id=int(meta.account_ids[a]),
            after=after,
        )

    auto = [int(meta.account_ids[a]) for a in raise_idx.tolist() if meta.auto_propose[a]]
    if auto:
        transaction.on_commit(lambda: _auto_propose_send(auto), robust=True)

    cleared = [
        DriftAlert(
            pk=open_alerts[int(meta.account_ids[a])],
            cleared_at=now,
            cleared_snapshot_id=int(snapshot_ids[a]),
        )
        for a in clear_idx.tolist()
    ]
    if cleared:
        DriftAlert.objects.bulk_update(cleared, ["cleared_at", "cleared_snapshot"], batch_size=1000)
    for a, alert in zip(clear_idx.tolist(), cleared, strict=True):
        audit_record(
            actor=SCAN_ACTOR,
            action=ACTION_ALERT_CLEARED,
            object_type="portfolios.account",
            object_id=int(meta.account_ids[a]),
            before={"alert": alert.pk, "open": True},
            after={
                "alert": alert.pk,
                "scan": scan.pk,
                "snapshot": int(snapshot_ids[a]),
                "total_drift": round(float(result.total_drift[a]), 6),
                "max_drift": round(float(result.max_drift[a]), 6),
            },
        )
    return len(created), len(cleared)


def _auto_propose_send(account_ids: list[int]) -> None:
    """Ask for proposals for newly breached accounts that want them (DESIGN 4)."""
    from rebalance_app.celery import app

    app.send_task("portfolios.rebalance_auto_propose", args=[account_ids])


# ---------------------------------------------------------------------------
# One chunk: load, compute, store, alert, count
# ---------------------------------------------------------------------------


class _JsonMerge(Func):
    """``a`` merged with the JSON object ``b`` (keys of ``b`` win), in the database."""

    function = "json_patch"
    output_field = JSONField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return super().as_sql(
            compiler, connection, template="(%(expressions)s)", arg_joiner=" || ", **extra
        )


@dataclass
class ChunkSummary:
    """What one chunk (or an in-process scan of a set of accounts) did, with its timings."""

    chunk_index: int | None
    skipped: bool = False
    accounts_scanned: int = 0
    accounts_breached: int = 0
    accounts_unscannable: int = 0
    alerts_raised: int = 0
    alerts_cleared: int = 0
    unscannable: dict[int, str] = field(default_factory=dict)
    positions_written: int = 0
    positions_deleted: int = 0
    rows: int = 0
    load_s: float = 0.0
    compute_s: float = 0.0
    store_s: float = 0.0
    alerts_s: float = 0.0
    lock_s: float = 0.0
    commit_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk_index,
            "skipped": self.skipped,
            "scanned": self.accounts_scanned,
            "breached": self.accounts_breached,
            "unscannable": self.accounts_unscannable,
            "alerts_raised": self.alerts_raised,
            "alerts_cleared": self.alerts_cleared,
        }


def _chunk_done(scan_id: int, account_ids: Sequence[int]) -> bool:
    """Whether this scan already wrote the chunk. A chunk's snapshots are written in one
    transaction, one for each of its accounts that is not closed, so its first such account
    answers for all of them (one index probe, whatever the size of the chunk)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {TABLE_SNAPSHOT} WHERE account_id = %s AND scan_id = %s LIMIT 1",  # noqa: S608 - fixed table name
            [account_ids[0], scan_id],
        )
        return cursor.fetchone() is not None


def _scan_finish_if_done(scan_id: int) -> bool:
    """Mark the scan succeeded once every chunk is done (only the last chunk's update
    matches). Returns True when this call finished it."""
    row = DriftScan.objects.filter(pk=scan_id).values("started_at", "created_at").first()
    if row is None:
        return False
    now = timezone.now()
    started = row["started_at"] or row["created_at"]
    return (
        DriftScan.objects.filter(
            pk=scan_id, status=WorkStatus.RUNNING, chunks_done__gte=F("chunks_total")
        ).update(
            status=WorkStatus.SUCCEEDED,
            finished_at=now,
            duration_ms=max(0, int((now - started).total_seconds() * 1000)),
        )
        == 1
    )


def drift_scan_run(
    *,
    scan: DriftScan,
    account_ids: Sequence[int] | None = None,
    chunk_index: int | None = None,
    now: datetime | None = None,
) -> ChunkSummary:
    """Scan ``account_ids`` (``None``: every account of the firm but closed ones) for a running
    ``scan`` in one transaction: snapshots, per-security rows, alerts and the scan's counters
    are written together or not at all.

    A chunk (``chunk_index`` given) whose accounts this scan already wrote is skipped, so a
    redelivered chunk task counts nothing twice. ``now`` is the moment for the stale-price
    cutoff (default: the current time).
    """
    summary = ChunkSummary(chunk_index=chunk_index)
    with transaction.atomic():
        status = DriftScan.objects.filter(pk=scan.pk).values_list("status", flat=True).first()
        if status != WorkStatus.RUNNING:
            summary.skipped = True
            return summary
        locking = time.perf_counter()
        eligible = _eligible_account_ids(account_ids, lock=True)
        if chunk_index is not None and eligible and _chunk_done(scan.pk, eligible):
            summary.skipped = True
            return summary

        started = time.perf_counter()
        summary.lock_s = started - locking
        inputs, meta = drift_inputs_load(
            account_ids=None if account_ids is None else eligible, now=now
        )
        loaded = time.perf_counter()
        result = drift_compute(inputs)
        computed = time.perf_counter()

        scanned_at = timezone.now()
        need_tickers = set(meta.row_security[result.breached].tolist())
        bad_rows = (inputs.quantity > 0) & (np.isnan(inputs.price) | inputs.stale)
        need_tickers |= set(
            meta.row_security[bad_rows & ~result.scannable[inputs.account]].tolist()
        )
        tickers = _tickers(need_tickers)
        reasons = _engine_reasons(inputs, result, meta, tickers)
        rows = _snapshot_rows(result, meta, reasons)
        retired, deleted = _retire_latest(rows.account)
        ids = _insert_snapshots(scan_id=scan.pk, rows=rows, scanned_at=scanned_at)
        snapshot_ids = np.array(ids[: len(meta.account_ids)], dtype=np.int64)
        written = _insert_positions(
            inputs=inputs, result=result, meta=meta, snapshot_ids=snapshot_ids
        )
        stored = time.perf_counter()
        raised, cleared = _alerts_update(
            scan=scan,
            inputs=inputs,
            result=result,
            meta=meta,
            snapshot_ids=snapshot_ids,
            tickers=tickers,
            now=scanned_at,
        )
        alerted = time.perf_counter()

        unscannable = {
            int(meta.account_ids[a]): text for a, text in reasons.items()
        } | meta.unscannable
        summary.accounts_scanned = int(result.scannable.sum())
        summary.accounts_breached = int(result.account_breached.sum())
        summary.accounts_unscannable = len(unscannable)
        summary.alerts_raised, summary.alerts_cleared = raised, cleared
        summary.unscannable = unscannable
        summary.positions_written, summary.positions_deleted = written, deleted
        summary.rows = len(inputs.account)
        summary.load_s = loaded - started
        summary.compute_s = computed - loaded
        summary.store_s = stored - computed
        summary.alerts_s = alerted - stored

        counters: dict[str, Any] = {
            "chunks_done": F("chunks_done") + 1,
            "accounts_scanned": F("accounts_scanned") + summary.accounts_scanned,
            "accounts_breached": F("accounts_breached") + summary.accounts_breached,
            "accounts_unscannable": F("accounts_unscannable") + summary.accounts_unscannable,
            "alerts_raised": F("alerts_raised") + raised,
            "alerts_cleared": F("alerts_cleared") + cleared,
        }
        if unscannable:
            merged = {str(k): v for k, v in unscannable.items()}
            counters["unscannable"] = _JsonMerge(
                F("unscannable"), Value(merged, output_field=JSONField())
            )
        DriftScan.objects.filter(pk=scan.pk).update(**counters)
        _scan_finish_if_done(scan.pk)
        logger.info(
            "drift_chunk_scanned",
            scan=scan.pk,
            accounts=len(rows.account),
            retired=retired,
            **summary.as_dict(),
        )
        committing = time.perf_counter()
    summary.commit_s = time.perf_counter() - committing
    return summary


# ---------------------------------------------------------------------------
# Scans: request, plan, run (tasks or in-process)
# ---------------------------------------------------------------------------


FIRM_ROLES = (Role.OPS, Role.COMPLIANCE, Role.ADMIN)


def drift_scan_create(
    *,
    actor: AbstractBaseUser | str,
    account_ids: Iterable[int] | None = None,
    trigger: str = ScanTrigger.MANUAL,
) -> DriftScan:
    """Create a queued scan of ``account_ids`` (``None``: the firm), audited.

    Raises PermissionDenied when a user without a firm-wide role (Ops, Compliance, Admin)
    asks for the firm, NotFound when a listed account does not exist or the user may not see
    it (without saying which), ValidationFailed for an empty list.
    """
    from portfolios.selectors import accounts_visible_to

    ids = None if account_ids is None else sorted({int(i) for i in account_ids})
    if ids is not None and not ids:
        raise ValidationFailed(SCAN_ACCOUNTS_EMPTY)
    if not isinstance(actor, str):
        if ids is None:
            if not any(user_has_role(actor, role) for role in FIRM_ROLES):
                raise PermissionDenied(SCAN_FIRM_FORBIDDEN)
        elif accounts_visible_to(actor).filter(pk__in=ids).count() != len(ids):
            raise NotFound(SCAN_ACCOUNTS_NOT_FOUND)
    with transaction.atomic():
        scan = DriftScan.objects.create(
            trigger=trigger,
            account_ids=ids,
            requested_by=None if isinstance(actor, str) else actor,
        )
        after: dict[str, Any] = {
            "trigger": trigger,
            "scope": "firm" if ids is None else "accounts",
        }
        if ids is not None:
            after["account_count"] = len(ids)
            if len(ids) <= AUDIT_MAX_IDS:
                after["account_ids"] = ids
        audit_record(actor=actor, action=ACTION_SCAN_REQUESTED, obj=scan, after=after)
    return scan


def drift_scan_request(
    *,
    actor: AbstractBaseUser | str,
    account_ids: Iterable[int] | None = None,
    trigger: str = ScanTrigger.MANUAL,
) -> DriftScan:
    """Create a scan (see ``drift_scan_create``) and enqueue ``portfolios.drift_scan`` once
    the transaction commits. The returned row carries the task id when the send happened."""
    with transaction.atomic():
        scan = drift_scan_create(actor=actor, account_ids=account_ids, trigger=trigger)
        work_enqueue(item=scan)
    scan.task_id = DriftScan.objects.values_list("task_id", flat=True).get(pk=scan.pk)
    return scan


def drift_scan_plan(*, scan: DriftScan) -> list[list[int]]:
    """The scan's accounts (all but closed ones), ascending, in chunks of
    ``DRIFT_SCAN_CHUNK_SIZE``."""
    ids = _eligible_account_ids(scan.account_ids, lock=False)
    size = max(1, int(settings.DRIFT_SCAN_CHUNK_SIZE))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _plan_record(scan_id: int, chunks: list[list[int]]) -> None:
    # A re-claimed scan (its worker died) keeps the totals of its first plan.
    DriftScan.objects.filter(pk=scan_id, chunks_total=0).update(
        chunks_total=len(chunks), accounts_total=sum(map(len, chunks))
    )


def _dispatch_chunks(scan_id: int, chunks: list[list[int]]) -> None:
    from celery import group

    from rebalance_app.celery import app

    group(
        app.signature(CHUNK_TASK, args=[scan_id, index, ids]) for index, ids in enumerate(chunks)
    ).apply_async()


def drift_scan_start(*, scan_id: int) -> dict[str, Any]:
    """The ``portfolios.drift_scan`` task: claim the scan, plan its chunks and send one chunk
    task per chunk. A scan already claimed or finished is left alone."""
    if not work_claim(model=DriftScan, pk=scan_id):
        return {"claimed": False}
    try:
        scan = DriftScan.objects.get(pk=scan_id)
        chunks = drift_scan_plan(scan=scan)
        _plan_record(scan_id, chunks)
        if chunks:
            _dispatch_chunks(scan_id, chunks)
        else:
            _scan_finish_if_done(scan_id)
    except Exception as exc:
        work_fail(
            model=DriftScan, pk=scan_id, error=SCAN_FAILED.format(error=exc), detail=repr(exc)
        )
        raise
    return {"claimed": True, "chunks": len(chunks)}


def drift_scan_chunk_run(
    *, scan_id: int, chunk_index: int, account_ids: list[int]
) -> dict[str, Any]:
    """The ``portfolios.drift_scan_chunk`` task: scan one chunk; a failure fails the scan."""
    scan = DriftScan.objects.filter(pk=scan_id).first()
    if scan is None:
        return {"chunk": chunk_index, "skipped": True}
    try:
        summary = drift_scan_run(scan=scan, account_ids=account_ids, chunk_index=chunk_index)
    except Exception as exc:
        error = CHUNK_FAILED.format(index=chunk_index, error=exc)
        work_fail(model=DriftScan, pk=scan_id, error=error, detail=repr(exc))
        raise
    return summary.as_dict()


@dataclass(frozen=True)
class ScanExecution:
    scan: DriftScan
    chunks: list[ChunkSummary]
    claimed: bool


def drift_scan_execute(*, scan: DriftScan, now: datetime | None = None) -> ScanExecution:
    """Run a queued scan in this process, chunk after chunk, through the same steps as the
    tasks (``manage.py scan_drift`` and the bench)."""
    if not work_claim(model=DriftScan, pk=scan.pk):
        scan.refresh_from_db()
        return ScanExecution(scan=scan, chunks=[], claimed=False)
    summaries: list[ChunkSummary] = []
    try:
        chunks = drift_scan_plan(scan=scan)
        _plan_record(scan.pk, chunks)
        for index, ids in enumerate(chunks):
            summaries.append(drift_scan_run(scan=scan, account_ids=ids, chunk_index=index, now=now))
        if not chunks:
            _scan_finish_if_done(scan.pk)
    except Exception as exc:
        work_fail(
            model=DriftScan, pk=scan.pk, error=SCAN_FAILED.format(error=exc), detail=repr(exc)
        )
        raise
    scan.refresh_from_db()
    return ScanExecution(scan=scan, chunks=summaries, claimed=True)


# ---------------------------------------------------------------------------
# Triggers: holdings/prices events, the schedule, retention
# ---------------------------------------------------------------------------


def drift_event_scan(account_ids: list[int]) -> None:
    """The ``holdings_changed`` hook: an event scan of exactly these accounts."""
    drift_scan_request(actor=EVENT_ACTOR, account_ids=account_ids, trigger=ScanTrigger.EVENT)


def prices_changed(*, security_ids: Iterable[int]) -> list[int]:
    """Call after prices of ``security_ids`` changed (price admin, price imports): the
    accounts holding them are rescanned after commit. Returns those account ids."""
    from portfolios.models import TaxLot
    from portfolios.services import holdings_changed

    ids = sorted({int(i) for i in security_ids})
    if not ids:
        return []
    accounts = sorted(
        set(
            TaxLot.objects.filter(security_id__in=ids, quantity__gt=0)
            .exclude(account__status=AccountStatus.CLOSED)
            .order_by()
            .values_list("account_id", flat=True)
            .distinct()
        )
    )
    holdings_changed(account_ids=accounts)
    return accounts


def drift_snapshots_prune(*, now: datetime | None = None) -> int:
    """Delete snapshots older than ``DRIFT_SNAPSHOT_RETENTION_DAYS`` that are neither an
    account's latest nor referenced by an alert (their per-security rows go with them).
    Returns how many were deleted; audited when any were."""
    from django.db.models import Exists, OuterRef

    cutoff = (now or timezone.now()) - timedelta(days=settings.DRIFT_SNAPSHOT_RETENTION_DAYS)
    referenced = DriftAlert.objects.filter(
        Q(raised_snapshot=OuterRef("pk")) | Q(cleared_snapshot=OuterRef("pk"))
    )
    old = DriftSnapshot.objects.filter(scanned_at__lt=cutoff, is_latest=False).filter(
        ~Exists(referenced)
    )
    deleted = 0
    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            break
        with transaction.atomic():
            DriftPosition.objects.filter(snapshot_id__in=ids).delete()
            deleted += (
                DriftSnapshot.objects.filter(pk__in=ids)
                .delete()[1]
                .get(DriftSnapshot._meta.label, 0)
            )
    if deleted:
        audit_record(
            actor=SCHEDULE_ACTOR,
            action=ACTION_SNAPSHOTS_PRUNED,
            object_type=DriftSnapshot._meta.label_lower,
            after={"deleted": deleted, "scanned_before": cutoff.isoformat()},
        )
    return deleted


def drift_scan_scheduled(*, today: date | None = None) -> dict[str, Any]:
    """The beat task: prune old snapshots, then request a firm scan when ``today`` (New York)
    is an XNYS trading day; otherwise log why not."""
    from zoneinfo import ZoneInfo

    from portfolios.calendar import is_trading_day

    pruned = drift_snapshots_prune()
    today = today or timezone.localtime(timezone.now(), ZoneInfo("America/New_York")).date()
    if not is_trading_day(today):
        reason = SKIP_NOT_TRADING_DAY.format(day=today.isoformat())
        logger.info("drift_scan_skipped", reason=reason)
        return {"skipped": reason, "pruned": pruned}
    scan = drift_scan_request(actor=SCHEDULE_ACTOR, trigger=ScanTrigger.SCHEDULE)
    return {"scan": scan.pk, "pruned": pruned}
