"""Reconciliation reads: reconciliations, their breaks and the open breaks per account, plus the
import batches (the lineage each reconciliation hangs on) for the imports pages.

Breaks belong to accounts, so they are filtered through ``accounts_visible_to``: a PM sees the
breaks of their own accounts only, and a reconciliation only when it broke on one of them.
Ops, Compliance and Admin see the whole firm. Import batches are firm-wide records that only
those three roles read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from portfolios.models import ImportBatch, Reconciliation, ReconciliationBreak
from portfolios.selectors import accounts_visible_to
from rebalance_app.exceptions import NotFound, PermissionDenied
from rebalance_app.roles import Role, user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

RECONCILIATION_NOT_FOUND = "Reconciliation {id} not found."
BREAK_NOT_FOUND = "Reconciliation break {id} not found."
IMPORT_NOT_FOUND = "Import batch {id} not found."
IMPORTS_FORBIDDEN = "Only Ops, Compliance and Admin users may see and submit imports."
FIRM_ROLES = frozenset({Role.OPS.value, Role.COMPLIANCE.value, Role.ADMIN.value})


def user_sees_firm_data(user: AbstractBaseUser) -> bool:
    """Ops, Compliance and Admin: imports, uploads and every account's breaks."""
    if not user.is_authenticated:
        return False
    return bool(user.is_superuser or user_roles(user) & FIRM_ROLES)


def reconciliation_breaks_visible(*, user: AbstractBaseUser) -> QuerySet[ReconciliationBreak]:
    """Every break (open or resolved) on an account ``user`` may see."""
    if user_sees_firm_data(user):
        return ReconciliationBreak.objects.all()
    return ReconciliationBreak.objects.filter(account__in=accounts_visible_to(user).values("pk"))


def reconciliation_list(*, user: AbstractBaseUser) -> QuerySet[Reconciliation]:
    """Reconciliations newest first, each annotated with the breaks ``user`` may see
    (``visible_breaks``) and how many of them are still open (``open_breaks``)."""
    qs = Reconciliation.objects.select_related("import_batch", "created_by")
    if user_sees_firm_data(user):
        breaks = Q()
    else:
        visible = accounts_visible_to(user).values("pk")
        qs = qs.filter(
            Exists(
                ReconciliationBreak.objects.filter(
                    reconciliation=OuterRef("pk"), account__in=visible
                )
            )
        )
        breaks = Q(breaks__account__in=visible)
    return qs.annotate(
        visible_breaks=Count("breaks", filter=breaks),
        open_breaks=Count("breaks", filter=breaks & Q(breaks__resolved_at__isnull=True)),
    ).order_by("-created_at", "-pk")


def reconciliation_get(*, user: AbstractBaseUser, pk: Any) -> Reconciliation:
    """One reconciliation ``user`` may see (see ``reconciliation_list``), else NotFound."""
    try:
        return reconciliation_list(user=user).get(pk=pk)
    except (Reconciliation.DoesNotExist, ValueError, TypeError):
        raise NotFound(RECONCILIATION_NOT_FOUND.format(id=pk)) from None


def reconciliation_breaks(
    *, user: AbstractBaseUser, reconciliation: Reconciliation, open_only: bool = False
) -> QuerySet[ReconciliationBreak]:
    """The reconciliation's breaks on accounts ``user`` may see, by account and ticker."""
    qs = reconciliation_breaks_visible(user=user).filter(reconciliation=reconciliation)
    if open_only:
        qs = qs.filter(resolved_at__isnull=True)
    return qs.select_related("account", "account__household", "security", "resolved_by").order_by(
        "account__account_number", "security__ticker", "pk"
    )


def reconciliation_break_get(*, user: AbstractBaseUser, pk: Any) -> ReconciliationBreak:
    """One break on an account ``user`` may see, else NotFound (never tell it exists)."""
    try:
        return (
            reconciliation_breaks_visible(user=user)
            .select_related("account", "security")
            .get(pk=pk)
        )
    except (ReconciliationBreak.DoesNotExist, ValueError, TypeError):
        raise NotFound(BREAK_NOT_FOUND.format(id=pk)) from None


def reconciliation_breaks_open(*, user: AbstractBaseUser) -> QuerySet[ReconciliationBreak]:
    """Every open break ``user`` may see, by account and ticker."""
    return (
        reconciliation_breaks_visible(user=user)
        .filter(resolved_at__isnull=True)
        .select_related("account", "security", "reconciliation")
        .order_by("account__account_number", "security__ticker", "pk")
    )


def open_breaks_by_account(*, user: AbstractBaseUser) -> dict[int, int]:
    """Account id -> number of open breaks, for the accounts ``user`` may see (one query)."""
    rows = (
        reconciliation_breaks_visible(user=user)
        .filter(resolved_at__isnull=True)
        .order_by()
        .values("account_id")
        .annotate(n=Count("pk"))
        .values_list("account_id", "n")
    )
    return dict(rows)


# ---------------------------------------------------------------------------
# Import batches (lineage) for the imports pages
# ---------------------------------------------------------------------------


def import_batch_list(*, user: AbstractBaseUser) -> QuerySet[ImportBatch]:
    """Every import batch, newest first. Raises PermissionDenied unless Ops/Compliance/Admin."""
    if not user_sees_firm_data(user):
        raise PermissionDenied(IMPORTS_FORBIDDEN)
    return (
        ImportBatch.objects.select_related("created_by")
        .defer("errors", "summary", "error_detail")
        .order_by("-created_at", "-pk")
    )


def import_batch_get(*, user: AbstractBaseUser, pk: Any) -> ImportBatch:
    """One import batch with its errors. Raises PermissionDenied or NotFound."""
    if not user_sees_firm_data(user):
        raise PermissionDenied(IMPORTS_FORBIDDEN)
    try:
        return ImportBatch.objects.select_related("created_by").get(pk=pk)
    except (ImportBatch.DoesNotExist, ValueError, TypeError):
        raise NotFound(IMPORT_NOT_FOUND.format(id=pk)) from None
