"""Allocation of a block's fills back to the accounts' orders (DESIGN 9). Pure: no database.

The rule, written into every block's allocation statement before the block is sent:

1. Each order gets its pro-rata share of the filled quantity, ``filled * q_i / Q``, rounded
   down to the allocation unit (one share; one millionth of a share when the block or an
   order is fractional).
2. The units left over go one at a time to the orders with the largest fractional remainder;
   ties go to the larger order, then to the lower order id. No order gets more than it asked.
3. Every order is filled at the block's average price, so no account is favoured over
   another (the SEC's SMC Capital no-action letter: average price, allocation written before
   the order is placed).

A full fill therefore gives every order exactly its quantity, and the same inputs always give
the same allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

WHOLE = Decimal("1")
MICRO = Decimal("0.000001")

ALLOCATION_RULE = (
    "Pro rata to each order's quantity, rounded down to whole shares (millionths when the "
    "block or an order is fractional); the shares left over go one at a time to the largest "
    "fractional remainder, ties to the larger order, then to the lower order id; no order "
    "gets more than it asked for. Every account gets the block's average price."
)
MSG_OVER = "Cannot allocate {filled} shares: the orders only ask for {total}."
MSG_NEGATIVE = "Cannot allocate a negative quantity ({filled})."


@dataclass(frozen=True)
class Request:
    order_id: int
    quantity: Decimal


def allocation_unit(filled: Decimal, requests: Sequence[Request]) -> Decimal:
    """One share, unless the fill or any order is fractional."""
    values = [filled, *(r.quantity for r in requests)]
    return WHOLE if all(v == v.to_integral_value() for v in values) else MICRO


def allocate_pro_rata(filled: Decimal, requests: Sequence[Request]) -> dict[int, Decimal]:
    """How many of ``filled`` shares each order gets (every order appears, possibly with 0)."""
    filled = Decimal(filled)
    if filled < 0:
        raise ValueError(MSG_NEGATIVE.format(filled=filled))
    total = sum((r.quantity for r in requests), Decimal("0"))
    if filled > total:
        raise ValueError(MSG_OVER.format(filled=filled, total=total))
    if filled == 0 or total == 0:
        return {r.order_id: Decimal("0") for r in requests}
    unit = allocation_unit(filled, requests)
    shares: dict[int, Decimal] = {}
    remainders: list[tuple[Decimal, Decimal, int]] = []
    for r in requests:
        exact = filled * r.quantity / total
        base = (exact / unit).to_integral_value(rounding=ROUND_DOWN) * unit
        shares[r.order_id] = base
        remainders.append((exact - base, r.quantity, r.order_id))
    left = int(((filled - sum(shares.values())) / unit).to_integral_value(ROUND_HALF_UP))
    quantities = {r.order_id: r.quantity for r in requests}
    # largest remainder first, then the larger order, then the lower id
    remainders.sort(key=lambda t: (-t[0], -t[1], t[2]))
    i = 0
    while left > 0 and remainders:
        _, _, order_id = remainders[i % len(remainders)]
        if shares[order_id] + unit <= quantities[order_id]:
            shares[order_id] += unit
            left -= 1
        i += 1
    return shares


def average_price(fills: Sequence[tuple[Decimal, Decimal]]) -> Decimal | None:
    """Quantity-weighted average of ``(quantity, price)`` fills, to six decimals."""
    qty = sum((q for q, _ in fills), Decimal("0"))
    if qty == 0:
        return None
    notional = sum((q * p for q, p in fills), Decimal("0"))
    return (notional / qty).quantize(MICRO, rounding=ROUND_HALF_UP)
