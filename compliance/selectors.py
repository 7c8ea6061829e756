"""Compliance reads: the audit trail (with its filters) and its verification."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from compliance.audit_chain import ChainEvent, VerifyResult, verify_chain
from compliance.models import AuditEvent, ComplianceResult
from compliance.services.audit import audit_checkpoints_read
from rebalance_app.exceptions import NotFound, PermissionDenied
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.db.models import QuerySet

AUDIT_FORBIDDEN = "Only Compliance and Admin users may read the audit trail."


def user_can_read_audit(user: AbstractBaseUser) -> bool:
    return bool(
        user.is_authenticated
        and (
            user.is_superuser
            or user_has_role(user, Role.COMPLIANCE)
            or user_has_role(user, Role.ADMIN)
        )
    )


def audit_event_list(
    *, user: AbstractBaseUser, filters: dict[str, Any] | None = None
) -> QuerySet[AuditEvent]:
    """Audit events visible to ``user`` (Compliance and Admin only), newest first."""
    if not user_can_read_audit(user):
        raise PermissionDenied(AUDIT_FORBIDDEN)
    from compliance.filters import AuditEventFilter

    qs = AuditEvent.objects.select_related("actor").order_by("-seq")
    if filters:
        qs = AuditEventFilter(filters, queryset=qs).qs
    return qs


def audit_object_timeline(
    *, user: AbstractBaseUser, object_type: str, object_id: str
) -> QuerySet[AuditEvent]:
    """Every event about one object, oldest first."""
    return (
        audit_event_list(user=user)
        .filter(object_type=object_type, object_id=str(object_id))
        .order_by("seq")
    )


def _chain_events(batch: int = 5000, *, after_seq: int = 0) -> Iterator[ChainEvent]:
    fields = (
        "id",
        "seq",
        "prev_hash",
        "hash",
        "created_at",
        "actor_id",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "before",
        "after",
        "request_id",
        "ip",
        "reason",
    )
    for row in (
        AuditEvent.objects.filter(seq__gt=after_seq)
        .order_by("seq")
        .values(*fields)
        .iterator(chunk_size=batch)
    ):
        yield ChainEvent(
            id=row["id"], seq=row["seq"], prev_hash=row["prev_hash"], hash=row["hash"], fields=row
        )


def audit_chain_verify() -> VerifyResult:
    """Recompute the whole chain and compare it with the external checkpoints."""
    return verify_chain(_chain_events(), audit_checkpoints_read())


def audit_chain_verify_since_last_checkpoint() -> VerifyResult:
    """Verify only what was appended after the last checkpoint, starting from its hash.

    Cheap enough to run before every scheduled checkpoint; ``audit_chain_verify`` is the full
    check (command, page, API).
    """
    checkpoints = audit_checkpoints_read()
    if not checkpoints:
        return audit_chain_verify()
    last = checkpoints[-1]
    anchor = AuditEvent.objects.filter(seq=last.seq).values_list("id", "hash").first()
    if anchor is None or anchor[1] != last.hash:
        head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first() or (0, "")
        problem = (
            f"the chain ends at #{head[0]} but a checkpoint recorded #{last.seq}: the tail was cut"
            if anchor is None
            else f"checkpoint #{last.seq} does not match the chain: the chain was rewritten"
        )
        return VerifyResult(
            False, 0, head[0], head[1], anchor[0] if anchor else None, last.seq, problem
        )
    return verify_chain(_chain_events(after_seq=last.seq), start=last)


# ---------------------------------------------------------------------------
# Compliance results (pre-trade checks of baskets)
# ---------------------------------------------------------------------------

RESULTS_BASKET_NOT_FOUND = "Basket {id} not found."


def compliance_results_for_basket(
    *, user: AbstractBaseUser, basket_id: Any, check_run: int | None = None
) -> QuerySet[ComplianceResult]:
    """The compliance results of one basket (one check when ``check_run`` is given), latest
    check first, for a user who may see every account the basket trades (Ops, Compliance and
    Admin see all). Anything else is NotFound, like an unknown basket."""
    from django.db.models import Exists, OuterRef

    from orders.models import Order, TradeBasket
    from portfolios.selectors import accounts_visible_to

    not_found = NotFound(RESULTS_BASKET_NOT_FOUND.format(id=basket_id))
    if not user.is_authenticated:
        raise not_found
    baskets = TradeBasket.objects.filter(pk__in=[basket_id]) if str(basket_id).isdigit() else None
    if baskets is None:
        raise not_found
    if not (user.is_superuser or user.has_perm("compliance.view_complianceresult")):
        hidden = Order.objects.filter(basket=OuterRef("pk")).exclude(
            account__in=accounts_visible_to(user).values("pk")
        )
        baskets = baskets.filter(~Exists(hidden))
    basket = baskets.first()
    if basket is None:
        raise not_found
    qs = ComplianceResult.objects.filter(basket=basket).select_related(
        "rule", "order", "order__security", "override", "override__overridden_by"
    )
    if check_run is not None:
        qs = qs.filter(check_run=check_run)
    return qs.order_by("-check_run", "pk")
