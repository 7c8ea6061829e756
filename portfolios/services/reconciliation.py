"""Custodian reconciliation: a custodian position file compared with our books (DESIGN 11).

The books hold a position as the sum of an account's tax lots per security, and cash as the
account's ``cash_balance``. For every account present in the custodian file, every position on
either side is compared: a position we hold that the file omits is a break with custodian
quantity 0, a position in the file we do not hold is a break with book quantity 0. The
comparison is one pandas outer merge of the file with one bulk query of the book positions,
in exact integer micro-units (quantities have six decimal places), so no float rounding can
invent or hide a break.

A new reconciliation supersedes the open breaks of the accounts it compared: the file is the
custodian's newer word on them, so the older breaks are resolved as "superseded by
reconciliation N" in the same transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from compliance.services.audit import audit_record
from portfolios.models import (
    Account,
    ImportBatch,
    Reconciliation,
    ReconciliationBreak,
    TaxLot,
)
from rebalance_app.exceptions import InvalidTransition, PermissionDenied, ValidationFailed
from rebalance_app.roles import Role, user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

ACTION_CREATED = "reconciliation.created"
ACTION_BREAK_RESOLVED = "reconciliation.break_resolved"
SUPERSEDED = "superseded by reconciliation {id}"
BREAK_ALREADY_RESOLVED = "Break {id} was already resolved on {date} by {who}: {resolution}"
RESOLUTION_REQUIRED = "Say how the break was resolved: the resolution cannot be empty."
RESOLUTION_TOO_LONG = "The resolution is at most {max} characters long."
RESOLVE_FORBIDDEN = "Only Ops, Compliance and Admin users may resolve reconciliation breaks."
EMPTY_FILE = "The custodian position file has no rows to reconcile."
MISSING_COLUMNS = "The reconciliation frame lacks the column(s): {columns}."

# A difference larger than this (in shares, or in dollars for cash) is a break.
TOLERANCE = Decimal("0.000001")
RESOLUTION_MAX = 300
RECONCILE_ROLES = frozenset({Role.OPS.value, Role.COMPLIANCE.value, Role.ADMIN.value})
FRAME_COLUMNS = ("account_id", "security_id", "quantity", "as_of")

_MICRO = 1_000_000
_TOLERANCE_MICRO = int(TOLERANCE * _MICRO)
# ``security_id`` 0 stands for cash inside the merge (real ids start at 1).
_CASH = 0


def user_may_reconcile(user: AbstractBaseUser | str | None) -> bool:
    """Ops, Compliance and Admin upload custodian files and resolve breaks."""
    if user is None or isinstance(user, str):
        return False
    return bool(user.is_superuser or user_roles(user) & RECONCILE_ROLES)


def _to_micro(values: pd.Series) -> np.ndarray:
    """Quantities (Decimals, strings or floats) as int64 micro-units, rounded half-even."""
    return np.rint(pd.to_numeric(values, errors="raise").astype("float64") * _MICRO).astype(
        np.int64
    )


def _from_micro(value: int) -> Decimal:
    return Decimal(int(value)).scaleb(-6).quantize(Decimal("0.000001"))


def _custodian_positions(frame: pd.DataFrame) -> pd.DataFrame:
    """The file summed per (account, security) with cash as security 0, in micro-units."""
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationFailed(MISSING_COLUMNS.format(columns=", ".join(missing)))
    if frame.empty:
        raise ValidationFailed(EMPTY_FILE)
    positions = pd.DataFrame(
        {
            "account_id": pd.to_numeric(frame["account_id"]).astype(np.int64),
            "security_id": pd.to_numeric(frame["security_id"]).fillna(_CASH).astype(np.int64),
            "custodian": _to_micro(frame["quantity"]),
        }
    )
    return positions.groupby(["account_id", "security_id"], as_index=False, sort=False)[
        "custodian"
    ].sum()


def _book_positions(account_ids: list[int]) -> pd.DataFrame:
    """Our positions of ``account_ids``: lots summed per security (one query) and cash (one)."""
    lots = (
        TaxLot.objects.filter(account_id__in=account_ids, quantity__gt=0)
        .order_by()
        .values("account_id", "security_id")
        .annotate(quantity=Sum("quantity"))
        .values_list("account_id", "security_id", "quantity")
    )
    cash = Account.objects.filter(pk__in=account_ids).values_list("pk", "cash_balance")
    rows: list[tuple[int, int, Any]] = list(lots)
    rows.extend((pk, _CASH, balance) for pk, balance in cash)
    book = pd.DataFrame(rows, columns=["account_id", "security_id", "quantity"])
    if book.empty:
        return pd.DataFrame(
            {
                "account_id": pd.Series(dtype=np.int64),
                "security_id": pd.Series(dtype=np.int64),
                "book": pd.Series(dtype=np.int64),
            }
        )
    return pd.DataFrame(
        {
            "account_id": book["account_id"].astype(np.int64),
            "security_id": book["security_id"].astype(np.int64),
            "book": _to_micro(book["quantity"].map(str)),
        }
    )


def _as_of(frame: pd.DataFrame) -> Any:
    latest = pd.to_datetime(frame["as_of"]).max()
    return latest.date()


def reconciliation_compare(*, frame: pd.DataFrame) -> pd.DataFrame:
    """Every compared position of the file's accounts: account_id, security_id (0: cash),
    custodian, book and difference (custodian - book) in micro-units, and ``is_break``."""
    custodian = _custodian_positions(frame)
    account_ids = sorted(int(a) for a in custodian["account_id"].unique())
    book = _book_positions(account_ids)
    merged = custodian.merge(book, on=["account_id", "security_id"], how="outer")
    merged[["custodian", "book"]] = merged[["custodian", "book"]].fillna(0).astype(np.int64)
    merged["difference"] = merged["custodian"] - merged["book"]
    merged["is_break"] = merged["difference"].abs() > _TOLERANCE_MICRO
    return merged.sort_values(["account_id", "security_id"], ignore_index=True)


def reconciliation_create(
    *, batch: ImportBatch, frame: pd.DataFrame, actor: AbstractBaseUser | str | None
) -> Reconciliation:
    """Compare a validated custodian-positions frame (account_id, security_id or null for
    cash, quantity, as_of, line) with the books, store the breaks, supersede the earlier open
    breaks of the compared accounts and audit it, in one transaction.

    Raises ValidationFailed when the frame is empty or lacks a column.
    """
    with transaction.atomic():
        compared = reconciliation_compare(frame=frame)
        breaks = compared[compared["is_break"]]
        account_ids = sorted(int(a) for a in compared["account_id"].unique())
        # Lock the compared accounts' open breaks so two reconciliations of the same accounts
        # cannot both leave theirs open.
        open_earlier = list(
            ReconciliationBreak.objects.select_for_update()
            .filter(account_id__in=account_ids, resolved_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        reconciliation = Reconciliation.objects.create(
            import_batch=batch,
            as_of=_as_of(frame),
            created_by=actor if actor is not None and not isinstance(actor, str) else None,
            accounts_compared=len(account_ids),
            positions_compared=len(compared),
            break_count=len(breaks),
        )
        superseded = 0
        if open_earlier:
            superseded = ReconciliationBreak.objects.filter(pk__in=open_earlier).update(
                resolved_at=timezone.now(),
                resolved_by=None,
                resolution=SUPERSEDED.format(id=reconciliation.pk),
            )
        ReconciliationBreak.objects.bulk_create(
            [
                ReconciliationBreak(
                    reconciliation=reconciliation,
                    account_id=int(account_id),
                    security_id=int(security_id) or None,
                    custodian_quantity=_from_micro(custodian),
                    book_quantity=_from_micro(book),
                    difference=_from_micro(difference),
                )
                for account_id, security_id, custodian, book, difference in breaks[
                    ["account_id", "security_id", "custodian", "book", "difference"]
                ].itertuples(index=False)
            ],
            batch_size=2000,
        )
        audit_record(
            actor=actor,
            action=ACTION_CREATED,
            obj=reconciliation,
            after={
                "import_batch": batch.pk,
                "as_of": reconciliation.as_of,
                "accounts_compared": reconciliation.accounts_compared,
                "positions_compared": reconciliation.positions_compared,
                "break_count": reconciliation.break_count,
                "superseded_breaks": superseded,
            },
        )
    return reconciliation


def reconciliation_break_resolve(
    *, brk: ReconciliationBreak, actor: AbstractBaseUser, resolution: str
) -> ReconciliationBreak:
    """Close an open break with a written resolution (Ops, Compliance, Admin).

    Raises PermissionDenied for other roles, ValidationFailed for an empty or too long
    resolution and InvalidTransition when the break is already resolved.
    """
    if not user_may_reconcile(actor):
        raise PermissionDenied(RESOLVE_FORBIDDEN)
    resolution = (resolution or "").strip()
    if not resolution:
        raise ValidationFailed(RESOLUTION_REQUIRED)
    if len(resolution) > RESOLUTION_MAX:
        raise ValidationFailed(RESOLUTION_TOO_LONG.format(max=RESOLUTION_MAX))
    with transaction.atomic():
        brk = (
            ReconciliationBreak.objects.select_for_update(of=("self",))
            .select_related("resolved_by")
            .get(pk=brk.pk)
        )
        if brk.resolved_at is not None:
            who = brk.resolved_by.get_username() if brk.resolved_by else "the system"
            raise InvalidTransition(
                BREAK_ALREADY_RESOLVED.format(
                    id=brk.pk,
                    date=timezone.localtime(brk.resolved_at).strftime("%Y-%m-%d %H:%M"),
                    who=who,
                    resolution=brk.resolution,
                )
            )
        brk.resolved_at = timezone.now()
        brk.resolved_by = actor
        brk.resolution = resolution
        brk.save(update_fields=["resolved_at", "resolved_by", "resolution"])
        audit_record(
            actor=actor,
            action=ACTION_BREAK_RESOLVED,
            obj=brk,
            before={"resolved_at": None, "resolution": ""},
            after={
                "reconciliation": brk.reconciliation_id,
                "account": brk.account_id,
                "security": brk.security_id,
                "difference": brk.difference,
                "resolved_at": brk.resolved_at,
                "resolution": resolution,
            },
            reason=resolution,
        )
    return brk
