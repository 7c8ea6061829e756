"""The allocation rule of orders.allocation, by hand-computed cases and by properties: every
filled share goes to exactly one order, none gets more than it asked, shares are whole when
the orders are, and the result depends only on the inputs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orders.allocation import Request, allocate_pro_rata, allocation_unit, average_price
from orders.tradefile import COLUMNS, trade_file_render

D = Decimal


def R(order_id: int, qty: str) -> Request:
    return Request(order_id=order_id, quantity=D(qty))


def test_a_full_fill_gives_every_order_its_quantity():
    assert allocate_pro_rata(D("600"), [R(1, "100"), R(2, "200"), R(3, "300")]) == {
        1: D("100"),
        2: D("200"),
        3: D("300"),
    }


def test_a_partial_fill_is_pro_rata_with_the_remainder_to_the_largest_fraction():
    # 250 of 600: exact shares 41.67, 83.33, 125 -> floors 41, 83, 125 (249); the one share
    # left goes to order 1 (remainder .67 beats .33 and 0).
    assert allocate_pro_rata(D("250"), [R(1, "100"), R(2, "200"), R(3, "300")]) == {
        1: D("42"),
        2: D("83"),
        3: D("125"),
    }


def test_equal_remainders_go_to_the_larger_order_then_the_lower_id():
    # 5 of 3+3+4: exact 1.5, 1.5, 2.0 -> floors 1, 1, 2; one share left; orders 1 and 2 tie
    # at .5 with equal size: the lower id wins.
    assert allocate_pro_rata(D("5"), [R(2, "3"), R(1, "3"), R(3, "4")]) == {
        1: D("2"),
        2: D("1"),
        3: D("2"),
    }
    # 1 of 1+3: exact .25 and .75 -> the larger remainder (order 9) gets it
    assert allocate_pro_rata(D("1"), [R(1, "1"), R(9, "3")]) == {1: D("0"), 9: D("1")}


def test_fractional_orders_are_allocated_in_millionths():
    shares = allocate_pro_rata(D("10"), [R(1, "0.5"), R(2, "19.5")])
    assert allocation_unit(D("10"), [R(1, "0.5"), R(2, "19.5")]) == D("0.000001")
    assert shares == {1: D("0.25"), 2: D("9.75")}


def test_nothing_filled_allocates_nothing_and_overfills_are_refused():
    assert allocate_pro_rata(D("0"), [R(1, "5")]) == {1: D("0")}
    with pytest.raises(ValueError, match="Cannot allocate 7 shares: the orders only ask for 5"):
        allocate_pro_rata(D("7"), [R(1, "5")])
    with pytest.raises(ValueError, match="negative"):
        allocate_pro_rata(D("-1"), [R(1, "5")])


@given(
    quantities=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=12),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_allocation_properties(quantities, fraction):
    requests = [R(i + 1, str(q)) for i, q in enumerate(quantities)]
    total = sum(quantities)
    filled = D(int(total * fraction))
    shares = allocate_pro_rata(filled, requests)
    assert sum(shares.values()) == filled
    for r in requests:
        assert D(0) <= shares[r.order_id] <= r.quantity
        assert shares[r.order_id] == shares[r.order_id].to_integral_value()
        # never more than one share away from the exact pro-rata share
        exact = filled * r.quantity / total
        assert abs(shares[r.order_id] - exact) < 1
    assert allocate_pro_rata(filled, list(reversed(requests))) == shares


def test_average_price_is_quantity_weighted():
    assert average_price([(D("100"), D("10")), (D("300"), D("11"))]) == D("10.750000")
    assert average_price([]) is None


def test_trade_file_has_its_header_escapes_formulas_and_hashes_its_bytes():
    import hashlib

    text, digest, rows = trade_file_render(
        [
            {
                "client_order_id": "RB-1-1",
                "account_number": "=HYPERLINK(1)",
                "side": "BUY",
                "quantity": "10",
                "limit_price": "-1.5",
            },
        ]
    )
    lines = text.split("\r\n")
    assert lines[0] == ",".join(COLUMNS)
    assert "'=HYPERLINK(1)" in lines[1]
    assert ",-1.5," in lines[1]  # numbers are left alone
    assert rows == 1
    assert digest == hashlib.sha256(text.encode()).hexdigest()
