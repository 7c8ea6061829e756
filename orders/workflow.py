"""The basket state machine of DESIGN 7 as data: which state may follow which, and the
canonical approval hash of a basket's orders. Pure: no database access, so it is tested
pair by pair without one, and the services in ``orders.services`` consult it under the lock.

``draft -> submitted -> pending_approval | compliance_hold -> approved | rejected -> routing
-> routed -> partially_filled -> filled``; ``cancelled`` from every state before ``routed``.
A hold is released to ``pending_approval`` once every hard failure is overridden; an approved
basket whose pre-routing check fails goes back on hold (and then needs a new approval).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from orders.models import BasketState

S = BasketState

TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.PENDING_APPROVAL, S.COMPLIANCE_HOLD, S.CANCELLED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.COMPLIANCE_HOLD: frozenset({S.PENDING_APPROVAL, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.ROUTING, S.COMPLIANCE_HOLD, S.CANCELLED}),
    S.ROUTING: frozenset({S.ROUTED, S.CANCELLED}),
    S.ROUTED: frozenset({S.PARTIALLY_FILLED, S.FILLED}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED}),
    S.FILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

# States from which the PM may still cancel (every state before routed).
CANCELLABLE = frozenset(s for s, nxt in TRANSITIONS.items() if S.CANCELLED in nxt)
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def transition_allowed(current: str, target: str) -> bool:
    """Whether ``target`` may follow ``current`` (unknown states allow nothing)."""
    return target in TRANSITIONS.get(current, frozenset())


def allowed_targets(current: str) -> frozenset[str]:
    return TRANSITIONS.get(current, frozenset())


def _qty(value: Decimal | str | float | int | None) -> str | None:
    if value is None:
        return None
    return f"{Decimal(str(value)):.6f}"


def orders_canonical(orders: Iterable[Mapping[str, Any]]) -> str:
    """Canonical JSON of a basket's orders as approved: one object per order with account,
    security, side, quantity, order type, limit price and its lot instructions (lot,
    quantity), quantities fixed at 6 decimals, lists sorted, keys sorted, no whitespace.

    Each mapping has keys ``account``, ``security``, ``side``, ``quantity``, ``order_type``,
    ``limit_price`` and ``lots`` (an iterable of ``(lot_id, quantity)``).
    """
    rows = [
        {
            "account": int(o["account"]),
            "security": int(o["security"]),
            "side": str(o["side"]),
            "quantity": _qty(o["quantity"]),
            "order_type": str(o.get("order_type") or "market"),
            "limit_price": _qty(o.get("limit_price")),
            "lots": sorted([int(lot), _qty(q)] for lot, q in o.get("lots", ())),
        }
        for o in orders
    ]
    rows.sort(key=lambda r: (r["account"], r["security"], r["side"], r["quantity"], r["lots"]))
    return json.dumps(rows, sort_keys=True, separators=(",", ":"))


def orders_hash(orders: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 (hex) of ``orders_canonical``: what an approval is bound to."""
    return hashlib.sha256(orders_canonical(orders).encode()).hexdigest()
