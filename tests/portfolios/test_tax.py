"""The pure tax-lot rules: lot relief (specific identification, then FIFO), the long-term
boundary, and wash-sale matching on the examples of IRS Publication 550 ("Wash Sales"),
every expected number worked by hand."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from portfolios.tax import (
    LossSale,
    Lot,
    is_long_term,
    losses_from_reliefs,
    match_wash_sales,
    relieve_lots,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
D = Decimal
X, Y, Z = 1, 2, 3  # security ids
TAXABLE, OTHER_TAXABLE, IRA = 10, 11, 12  # account ids


def lot(
    id_: int,
    quantity: str,
    basis: str,
    acquired: date,
    *,
    account: int = TAXABLE,
    security: int = X,
    group: str = "",
    ira: bool = False,
    replacement: str = "0",
) -> Lot:
    return Lot(
        id=id_,
        account_id=account,
        security_id=security,
        quantity=D(quantity),
        cost_basis=D(basis),
        acquired_on=acquired,
        wash_sale_group=group,
        tax_deferred=ira,
        replacement_quantity=D(replacement),
    )


def loss_sale(
    *,
    quantity: str,
    loss: str,
    sold_on: date,
    held_since: date,
    security: int = X,
    group: str = "",
    exclude: frozenset[int] = frozenset(),
    ref: int = 0,
) -> LossSale:
    return LossSale(
        ref=ref,
        account_id=TAXABLE,
        security_id=security,
        wash_sale_group=group,
        trade_date=sold_on,
        quantity=D(quantity),
        loss=D(loss),
        holding_start=held_since,
        long_term=is_long_term(acquired_on=held_since, trade_date=sold_on),
        exclude_lot_ids=exclude,
    )


# --- holding period --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acquired", "sold", "long_term"),
    [
        (date(2023, 3, 15), date(2024, 3, 14), False),
        (date(2023, 3, 15), date(2024, 3, 15), False),  # the anniversary: exactly one year
        (date(2023, 3, 15), date(2024, 3, 16), True),  # more than one year
        (date(2024, 2, 29), date(2025, 2, 28), False),  # leap day: the year ends on 28 Feb
        (date(2024, 2, 29), date(2025, 3, 1), True),
        (date(2023, 3, 1), date(2024, 2, 29), False),  # 365 days, still inside the year
        (date(2023, 3, 1), date(2024, 3, 1), False),  # 366 days but only the anniversary
        (date(2023, 3, 1), date(2024, 3, 2), True),
    ],
)
def test_long_term_means_held_more_than_one_year(acquired, sold, long_term):
    assert is_long_term(acquired_on=acquired, trade_date=sold) is long_term


# --- lot relief ------------------------------------------------------------------------------


def test_instructed_lots_are_relieved_first_and_fifo_takes_the_rest():
    lots = [
        lot(1, "100", "50", date(2022, 1, 3)),  # oldest: FIFO's first choice
        lot(2, "100", "80", date(2023, 6, 1)),
        lot(3, "100", "120", date(2024, 5, 1)),
    ]
    reliefs = relieve_lots(
        lots=lots,
        quantity=D("250"),
        price=D("100"),
        trade_date=date(2024, 9, 2),
        instructions=[(3, D("100")), (2, D("30"))],
    )
    # 3 and 2 as instructed, then 120 FIFO: all of lot 1 and 20 more of lot 2 (one relief)
    assert [(r.lot_id, r.quantity) for r in reliefs] == [
        (3, D("100")),
        (2, D("50")),
        (1, D("100")),
    ]
    by_lot = {r.lot_id: r for r in reliefs}
    # 3: 100 x (100 - 120) = -2,000 short-term; 2: 50 x (100 - 80) = 1,000 long-term (held
    # since 2023-06-01, more than a year); 1: 100 x (100 - 50) = 5,000 long-term
    assert by_lot[3].gain == D("-2000.00")
    assert by_lot[3].long_term is False
    assert by_lot[2].gain == D("1000.00")
    assert by_lot[2].long_term is True
    assert by_lot[1].gain == D("5000.00")
    assert by_lot[1].holding_start == date(2022, 1, 3)


def test_fifo_alone_relieves_the_oldest_purchase_first():
    lots = [lot(7, "10", "30", date(2024, 2, 1)), lot(4, "10", "20", date(2024, 1, 5))]
    reliefs = relieve_lots(lots=lots, quantity=D("15"), price=D("25"), trade_date=date(2024, 3, 1))
    assert [(r.lot_id, r.quantity, r.gain) for r in reliefs] == [
        (4, D("10"), D("50.00")),  # 10 x (25 - 20)
        (7, D("5"), D("-25.00")),  # 5 x (25 - 30)
    ]


def test_an_instruction_is_capped_at_what_the_lot_still_holds():
    lots = [lot(1, "40", "10", date(2024, 1, 2)), lot(2, "100", "12", date(2024, 2, 1))]
    reliefs = relieve_lots(
        lots=lots,
        quantity=D("60"),
        price=D("11"),
        trade_date=date(2024, 3, 1),
        instructions=[(1, D("100"))],
    )
    assert [(r.lot_id, r.quantity) for r in reliefs] == [(1, D("40")), (2, D("20"))]


def test_a_partial_fill_uses_the_first_instructions_only():
    lots = [lot(1, "50", "10", date(2024, 1, 2)), lot(2, "50", "12", date(2024, 2, 1))]
    reliefs = relieve_lots(
        lots=lots,
        quantity=D("30"),
        price=D("11"),
        trade_date=date(2024, 3, 1),
        instructions=[(2, D("50")), (1, D("50"))],
    )
    assert [(r.lot_id, r.quantity) for r in reliefs] == [(2, D("30"))]


def test_selling_more_than_held_is_refused_as_a_short_sale():
    lots = [lot(1, "40", "10", date(2024, 1, 2)), lot(2, "10", "12", date(2024, 2, 1))]
    with pytest.raises(ValueError, match=r"holds only 50 \(short sales are not supported\)"):
        relieve_lots(lots=lots, quantity=D("50.5"), price=D("11"), trade_date=date(2024, 3, 1))


def test_an_instruction_naming_a_foreign_lot_is_refused():
    with pytest.raises(ValueError, match="Lot 99 named in the sale instructions"):
        relieve_lots(
            lots=[lot(1, "40", "10", date(2024, 1, 2))],
            quantity=D("1"),
            price=D("11"),
            trade_date=date(2024, 3, 1),
            instructions=[(99, D("1"))],
        )


def test_the_commission_comes_off_the_gains_to_the_cent():
    lots = [lot(1, "1", "10", date(2024, 1, 2)), lot(2, "2", "10", date(2024, 1, 3))]
    reliefs = relieve_lots(
        lots=lots, quantity=D("3"), price=D("20"), trade_date=date(2024, 3, 1), commission=D("10")
    )
    # 10.00 shared 1:2 -> 3.33 and 6.67; gains 10 - 3.33 and 20 - 6.67
    assert [r.gain for r in reliefs] == [D("6.67"), D("13.33")]


# --- wash sales: Publication 550's examples --------------------------------------------------


def test_pub_550_example_1_the_loss_goes_into_the_new_shares_basis():
    """Bought 100 sh X for $1,000, sold them for $750, bought 100 sh for $800 within 30 days:
    the $250 loss is disallowed and the new shares' basis is $1,050."""
    sold = relieve_lots(
        lots=[lot(1, "100", "10", date(2024, 1, 2))],
        quantity=D("100"),
        price=D("7.50"),
        trade_date=date(2024, 3, 1),
    )
    assert sold[0].gain == D("-250.00")
    losses = losses_from_reliefs(
        reliefs=sold,
        account_id=TAXABLE,
        security_id=X,
        wash_sale_group="",
        trade_date=date(2024, 3, 1),
        taxable=True,
    )
    new = lot(2, "100", "8", date(2024, 3, 15))
    plan = match_wash_sales(losses=losses, lots=[new])
    assert plan.disallowed == D("250.00")
    [change] = plan.lot_changes
    assert change.lot_id == 2
    assert change.cost_basis * change.quantity == D("1050")  # 10.50 a share
    assert change.wash_sale_adjustment == D("250.00")
    assert change.replacement_quantity == D("100")
    # held 2024-01-02 .. 2024-03-01 = 59 days, carried: 2024-03-15 - 59 days = 2024-01-16
    assert change.acquired_on == date(2024, 1, 16)
    assert change.purchased_on == date(2024, 3, 15)
    [sale] = plan.sale_changes
    assert (sale.matched_quantity, sale.disallowed, sale.permanent) == (D("100"), D("250.00"), 0)
    assert plan.lot_splits == ()


def test_pub_550_example_2_replacements_matched_in_order_of_purchase():
    """Sold 100 sh at a $1,000 loss on Feb 3, then bought 50 sh on each of Feb 10-13: $500 goes
    to the 50 shares of Feb 10, $500 to those of Feb 11; Feb 12 and 13 are untouched."""
    sale = loss_sale(
        quantity="100", loss="1000", sold_on=date(2023, 2, 3), held_since=date(2022, 9, 24)
    )
    buys = [lot(10 + d, "50", "11", date(2023, 2, d)) for d in (13, 12, 11, 10)]
    plan = match_wash_sales(losses=[sale], lots=buys)
    changes = {c.lot_id: c for c in plan.lot_changes}
    assert set(changes) == {20, 21}  # Feb 10 and Feb 11
    assert changes[20].cost_basis == D("21")  # 11 + 500 / 50
    assert changes[21].cost_basis == D("21")
    assert changes[20].wash_sale_adjustment == D("500.00")
    # held 2022-09-24 .. 2023-02-03 = 132 days: Feb 10 - 132 = 2022-10-01, Feb 11 -> 10-02
    assert changes[20].acquired_on == date(2022, 10, 1)
    assert changes[21].acquired_on == date(2022, 10, 2)
    assert [(m.lot_id, m.quantity, m.disallowed) for m in plan.matches] == [
        (20, D("50"), D("500.00")),
        (21, D("50"), D("500.00")),
    ]


def test_pub_550_example_2_booked_one_purchase_at_a_time():
    """The same example as the fills service sees it: each purchase is matched on its own
    against what is left unmatched of the sale."""
    left_qty, left_loss = D("100"), D("1000")
    added = {}
    for day in (10, 11, 12, 13):
        sale = LossSale(
            ref=1,
            account_id=TAXABLE,
            security_id=X,
            trade_date=date(2023, 2, 3),
            quantity=left_qty,
            loss=left_loss,
            holding_start=date(2022, 9, 24),
            long_term=False,
        )
        plan = match_wash_sales(losses=[sale], lots=[lot(day, "50", "11", date(2023, 2, day))])
        added[day] = plan.disallowed
        if plan.sale_changes:
            left_qty -= plan.sale_changes[0].matched_quantity
            left_loss -= plan.sale_changes[0].disallowed
    assert added == {10: D("500.00"), 11: D("500.00"), 12: 0, 13: 0}


def test_fewer_replacement_shares_disallow_only_their_part_of_the_loss():
    sale = loss_sale(
        quantity="100", loss="1000", sold_on=date(2024, 5, 1), held_since=date(2024, 1, 2)
    )
    plan = match_wash_sales(losses=[sale], lots=[lot(2, "40", "9", date(2024, 5, 20))])
    [change] = plan.sale_changes
    assert change.matched_quantity == D("40")
    assert change.disallowed == D("400.00")  # 40 of 100 loss shares: 1,000 x 40/100
    assert plan.lot_changes[0].cost_basis == D("19")  # 9 + 400 / 40


def test_part_of_a_lot_that_replaces_is_split_off_with_its_own_basis_and_date():
    sale = loss_sale(
        quantity="40", loss="200", sold_on=date(2024, 5, 1), held_since=date(2024, 4, 1)
    )
    plan = match_wash_sales(losses=[sale], lots=[lot(2, "100", "9", date(2024, 5, 10))])
    [split] = plan.lot_splits
    assert split.source_lot_id == 2
    assert split.quantity == D("40")
    assert split.cost_basis == D("14")  # 9 + 200 / 40
    assert split.wash_sale_adjustment == D("200.00")
    assert split.acquired_on == date(2024, 4, 10)  # 05-10 minus the 30 days held
    assert split.purchased_on == date(2024, 5, 10)
    [rest] = plan.lot_changes
    assert (rest.lot_id, rest.quantity, rest.cost_basis) == (2, D("60"), D("9"))
    assert rest.acquired_on == date(2024, 5, 10)
    assert rest.replacement_quantity == 0
    assert plan.matches[0].split_index == 0


@pytest.mark.parametrize(
    ("bought", "is_replacement"),
    [
        (date(2024, 3, 1), True),  # 30 days before the sale
        (date(2024, 2, 29), False),  # 31 days before
        (date(2024, 4, 30), True),  # 30 days after
        (date(2024, 5, 1), False),  # 31 days after
        (date(2024, 3, 31), True),  # the day of the sale
    ],
)
def test_the_window_is_30_days_before_and_after_the_sale(bought, is_replacement):
    sale = loss_sale(
        quantity="10", loss="50", sold_on=date(2024, 3, 31), held_since=date(2023, 1, 3)
    )
    plan = match_wash_sales(losses=[sale], lots=[lot(2, "10", "9", bought)])
    assert plan.disallowed == (D("50.00") if is_replacement else 0)


def test_a_replacement_in_an_ira_disallows_the_loss_for_good_without_basis_change():
    sale = loss_sale(
        quantity="100", loss="250", sold_on=date(2024, 3, 1), held_since=date(2024, 1, 2)
    )
    ira_lot = lot(2, "100", "8", date(2024, 3, 15), account=IRA, ira=True)
    plan = match_wash_sales(losses=[sale], lots=[ira_lot])
    assert plan.disallowed == D("250.00")
    assert plan.permanent == D("250.00")
    [change] = plan.lot_changes
    assert change.cost_basis == D("8")
    assert change.acquired_on == date(2024, 3, 15)
    assert change.purchased_on is None
    assert change.wash_sale_adjustment == 0
    assert change.replacement_quantity == D("100")  # never a replacement twice
    assert plan.sale_changes[0].permanent == D("250.00")
    assert plan.matches[0].permanent is True


def test_a_sale_in_an_ira_is_no_wash_sale():
    sold = relieve_lots(
        lots=[lot(1, "100", "10", date(2024, 1, 2), account=IRA, ira=True)],
        quantity=D("100"),
        price=D("7.50"),
        trade_date=date(2024, 3, 1),
    )
    losses = losses_from_reliefs(
        reliefs=sold,
        account_id=IRA,
        security_id=X,
        wash_sale_group="",
        trade_date=date(2024, 3, 1),
        taxable=False,
    )
    assert losses == []
    assert (
        match_wash_sales(losses=losses, lots=[lot(2, "100", "8", date(2024, 3, 15))]).matches == ()
    )


def test_a_gain_is_no_wash_sale():
    sold = relieve_lots(
        lots=[lot(1, "100", "10", date(2024, 1, 2)), lot(3, "10", "12", date(2024, 1, 3))],
        quantity=D("110"),
        price=D("11"),
        trade_date=date(2024, 3, 1),
    )
    losses = losses_from_reliefs(
        reliefs=sold,
        account_id=TAXABLE,
        security_id=X,
        wash_sale_group="",
        trade_date=date(2024, 3, 1),
        taxable=True,
    )
    assert [(x.ref, x.quantity, x.loss) for x in losses] == [(1, D("10"), D("10.00"))]
    plan = match_wash_sales(losses=losses, lots=[lot(2, "100", "8", date(2024, 3, 15))])
    assert plan.disallowed == D("10.00")  # only lot 3's loss; lot 1's gain stays a gain


def test_the_same_wash_sale_group_counts_across_tickers():
    sale = loss_sale(
        quantity="10",
        loss="30",
        sold_on=date(2024, 3, 1),
        held_since=date(2024, 1, 2),
        group="SP500",
    )
    same_group = lot(2, "10", "5", date(2024, 3, 5), security=Y, group="SP500")
    other_group = lot(3, "10", "5", date(2024, 3, 4), security=Z, group="NASDAQ")
    no_group = lot(4, "10", "5", date(2024, 3, 3), security=Z)
    plan = match_wash_sales(losses=[sale], lots=[same_group, other_group, no_group])
    assert [m.lot_id for m in plan.matches] == [2]


def test_securities_without_a_group_are_identical_only_to_themselves():
    sale = loss_sale(
        quantity="10", loss="30", sold_on=date(2024, 3, 1), held_since=date(2024, 1, 2)
    )
    plan = match_wash_sales(losses=[sale], lots=[lot(2, "10", "5", date(2024, 3, 5), security=Y)])
    assert plan.matches == ()


def test_shares_already_used_as_replacements_are_not_used_again():
    sale = loss_sale(
        quantity="10", loss="30", sold_on=date(2024, 3, 1), held_since=date(2024, 1, 2)
    )
    used = lot(2, "10", "5", date(2024, 3, 2), replacement="10")
    half_used = lot(3, "10", "5", date(2024, 3, 3), replacement="4", account=IRA, ira=True)
    fresh = lot(4, "10", "5", date(2024, 3, 4))
    plan = match_wash_sales(losses=[sale], lots=[used, half_used, fresh])
    assert [(m.lot_id, m.quantity, m.disallowed) for m in plan.matches] == [
        (3, D("6"), D("18.00")),  # 6 free shares of the IRA lot: 30 x 6/10, permanent
        (4, D("4"), D("12.00")),
    ]


def test_the_rest_of_the_lot_being_sold_is_no_replacement():
    """Rev. Rul. 56-602: selling part of one purchase at a loss does not make the shares kept
    from that same purchase replacement shares."""
    lots = [lot(1, "100", "10", date(2024, 2, 20)), lot(2, "10", "9", date(2024, 2, 25))]
    sold = relieve_lots(lots=lots, quantity=D("60"), price=D("8"), trade_date=date(2024, 3, 1))
    losses = losses_from_reliefs(
        reliefs=sold,
        account_id=TAXABLE,
        security_id=X,
        wash_sale_group="",
        trade_date=date(2024, 3, 1),
        taxable=True,
    )
    after = [lot(1, "40", "10", date(2024, 2, 20)), lot(2, "10", "9", date(2024, 2, 25))]
    plan = match_wash_sales(losses=losses, lots=after)
    # 60 x (8 - 10) = 120 lost; only lot 2's 10 shares replace: 120 x 10/60 = 20
    assert [(m.lot_id, m.quantity, m.disallowed) for m in plan.matches] == [
        (2, D("10"), D("20.00"))
    ]
    assert plan.sale_changes[0].matched_quantity == D("10")


def test_matched_amounts_of_one_sale_add_up_to_the_cent():
    sale = loss_sale(
        quantity="3", loss="100", sold_on=date(2024, 3, 1), held_since=date(2024, 1, 2)
    )
    lots = [lot(i, "1", "5", date(2024, 3, i)) for i in (2, 3, 4)]
    plan = match_wash_sales(losses=[sale], lots=lots)
    assert [m.disallowed for m in plan.matches] == [D("33.33"), D("33.34"), D("33.33")]
    assert plan.disallowed == D("100.00")


def test_importing_the_tax_rules_does_not_import_django():
    completed = subprocess.run(
        [sys.executable, "-c", "import portfolios.tax, sys; assert 'django' not in sys.modules"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
