"""The fills service on the database: a buy opens a lot, a sell relieves the instructed lots
then FIFO, cash moves by the trade and its commission, wash sales adjust the household's
replacement lots (or disallow for good in the IRA), refusals change nothing, every change is
audited and the changed accounts are handed to the drift scan. Numbers worked by hand."""

from __future__ import annotations

import threading
import time
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from compliance.models import AuditEvent
from portfolios.models import Account, RegistrationType, TaxLot, Transaction
from portfolios.services import fills
from portfolios.services.fills import fill_book
from rebalance_app.exceptions import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def changed(monkeypatch):
    """The account ids handed to ``holdings_changed`` (the event drift scan), per booking."""
    calls: list[list[int]] = []
    monkeypatch.setattr(
        fills, "holdings_changed", lambda *, account_ids: calls.append(list(account_ids))
    )
    return calls


@pytest.fixture
def xyz(db):
    return factories.SecurityFactory(ticker="XYZ", name="XYZ Corp", wash_sale_group="XYZ-GRP")


@pytest.fixture
def taxable(household_a):
    return factories.AccountFactory(
        household=household_a, name="Alpha Taxable", cash_balance=D("1000.00")
    )


@pytest.fixture
def joint(household_a):
    return factories.AccountFactory(
        household=household_a,
        name="Alpha Joint",
        registration_type=RegistrationType.JOINT,
        cash_balance=D("5000.00"),
    )


@pytest.fixture
def ira(household_a):
    return factories.AccountFactory(
        household=household_a,
        name="Alpha IRA",
        registration_type=RegistrationType.IRA,
        taxable=False,
        cash_balance=D("5000.00"),
    )


def _lot(account, security, quantity, basis, acquired):
    return factories.TaxLotFactory(
        account=account,
        security=security,
        quantity=D(quantity),
        cost_basis=D(basis),
        acquired_on=acquired,
    )


def _books():
    """Everything a refused fill must leave alone."""
    return (
        sorted(TaxLot.objects.values_list("pk", "quantity", "cost_basis", "acquired_on")),
        sorted(Transaction.objects.values_list("pk", "realized_st", "wash_sale_disallowed")),
        sorted(Account.objects.values_list("pk", "cash_balance")),
        AuditEvent.objects.count(),
    )


# --- buys and sells --------------------------------------------------------------------------


def test_a_buy_opens_a_lot_records_the_trade_and_pays_for_it(taxable, xyz, changed):
    booking = fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("10"),
        price=D("25.50"),
        trade_date=date(2024, 3, 1),
        commission=D("1.00"),
        reference="alloc:1",
    )
    [txn] = Transaction.objects.filter(account=taxable)
    [lot] = TaxLot.objects.filter(account=taxable)
    assert booking.transaction_ids == (txn.pk,)
    assert booking.lots_opened == (lot.pk,)
    assert (txn.side, txn.quantity, txn.price, txn.trade_date) == (
        "buy",
        D("10"),
        D("25.50"),
        date(2024, 3, 1),
    )
    assert (txn.lot_id, txn.reference) == (lot.pk, "alloc:1")
    # the commission is part of the basis: (255.00 + 1.00) / 10
    assert (lot.quantity, lot.cost_basis, lot.acquired_on) == (D("10"), D("25.6"), date(2024, 3, 1))
    assert lot.opened_by_id == txn.pk
    assert lot.purchased_on is None
    taxable.refresh_from_db()
    assert taxable.cash_balance == D("744.00")  # 1,000 - 255 - 1
    assert booking.cash_delta == D("-256.00")
    assert changed == [[taxable.pk]]


def test_a_sell_relieves_the_instructed_lots_then_fifo_with_exact_gains_and_cash(
    taxable, xyz, changed
):
    old = _lot(taxable, xyz, "100", "50", date(2022, 1, 3))  # long-term on 2024-06-03
    mid = _lot(taxable, xyz, "100", "80", date(2024, 1, 2))
    new = _lot(taxable, xyz, "50", "120", date(2024, 2, 1))
    booking = fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="sell",
        quantity=D("150"),
        price=D("100"),
        trade_date=date(2024, 6, 3),
        lot_instructions=[(new.pk, D("50")), (mid.pk, D("60"))],
        commission=D("15"),
        reference="alloc:2",
    )
    assert booking.lots_relieved == ((new.pk, D("50")), (mid.pk, D("60")), (old.pk, D("40")))
    sells = {t.lot_id: t for t in Transaction.objects.filter(account=taxable, side="sell")}
    # commission 15 shared by quantity: 5.00, 6.00, 4.00
    assert (sells[new.pk].realized_st, sells[new.pk].realized_lt) == (D("-1005.00"), 0)
    assert (sells[mid.pk].realized_st, sells[mid.pk].realized_lt) == (D("1194.00"), 0)
    assert (sells[old.pk].realized_st, sells[old.pk].realized_lt) == (0, D("1996.00"))
    assert {t.quantity for t in sells.values()} == {D("50"), D("60"), D("40")}
    assert all(t.wash_sale_disallowed == 0 for t in sells.values())
    assert (booking.realized_st, booking.realized_lt) == (D("189.00"), D("1996.00"))
    assert booking.wash_sale_disallowed == 0
    for lot, left in ((old, "60"), (mid, "40"), (new, "0")):
        lot.refresh_from_db()
        assert lot.quantity == D(left)  # the emptied lot stays, with 0 shares
    taxable.refresh_from_db()
    assert taxable.cash_balance == D("15985.00")  # 1,000 + 15,000 - 15
    assert booking.cash_delta == D("14985.00")
    assert changed == [[taxable.pk]]


def test_the_fill_is_audited_with_cash_and_positions_before_and_after(taxable, xyz, changed):
    _lot(taxable, xyz, "30", "10", date(2023, 1, 3))
    fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="sell",
        quantity=D("10"),
        price=D("12"),
        trade_date=date(2024, 6, 3),
        actor="system:routing",
    )
    event = AuditEvent.objects.get(action="fill.booked")
    assert (event.object_id, event.actor_label) == (str(taxable.pk), "system:routing")
    assert event.before == {"cash_balance": "1000.00", "positions": {"XYZ": "30.000000"}}
    assert event.after["cash_balance"] == "1120.00"
    assert event.after["positions"] == {"XYZ": "20.000000"}
    assert event.after["realized_lt"] == "20.00"


# --- wash sales ------------------------------------------------------------------------------


def _sell_at_a_250_loss(account, security):
    """Pub 550 example 1: 100 sh bought for $1,000 on 2024-01-02, sold for $750 on 03-01."""
    lot = _lot(account, security, "100", "10", date(2024, 1, 2))
    fill_book(
        account_id=account.pk,
        security_id=security.pk,
        side="sell",
        quantity=D("100"),
        price=D("7.50"),
        trade_date=date(2024, 3, 1),
    )
    return Transaction.objects.get(lot=lot, side="sell")


def test_a_repurchase_in_another_taxable_account_carries_the_loss_and_holding_period(
    taxable, joint, xyz, changed
):
    sale = _sell_at_a_250_loss(taxable, xyz)
    assert (sale.realized_st, sale.wash_sale_disallowed) == (D("-250.00"), 0)
    booking = fill_book(
        account_id=joint.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("100"),
        price=D("8"),
        trade_date=date(2024, 3, 15),
    )
    sale.refresh_from_db()
    assert (sale.realized_st, sale.wash_sale_disallowed) == (0, D("250.00"))
    assert (sale.wash_sale_matched_quantity, sale.wash_sale_permanent) == (D("100"), 0)
    lot = TaxLot.objects.get(pk=booking.lots_opened[0])
    assert lot.cost_basis * lot.quantity == D("1050")  # $800 + $250
    assert lot.wash_sale_adjustment == D("250.00")
    assert lot.acquired_on == date(2024, 1, 16)  # 03-15 minus the 59 days held
    assert lot.purchased_on == date(2024, 3, 15)
    assert booking.adjusted_transaction_ids == (sale.pk,)
    assert booking.wash_sale_disallowed == D("250.00")
    assert changed[-1] == [joint.pk]
    adjusted = AuditEvent.objects.get(action="transaction.wash_sale_adjusted")
    assert adjusted.object_id == str(sale.pk)
    assert (adjusted.before["realized_st"], adjusted.after["realized_st"]) == ("-250.00", "0.00")
    lot_event = AuditEvent.objects.get(action="lot.wash_sale_adjusted")
    assert lot_event.object_id == str(lot.pk)
    assert (lot_event.before["cost_basis"], lot_event.after["cost_basis"]) == (
        "8.000000",
        "10.500000",
    )
    assert lot_event.after["acquired_on"] == "2024-01-16"


def test_a_repurchase_in_the_household_ira_disallows_the_loss_for_good(taxable, ira, xyz, changed):
    sale = _sell_at_a_250_loss(taxable, xyz)
    booking = fill_book(
        account_id=ira.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("100"),
        price=D("8"),
        trade_date=date(2024, 3, 15),
    )
    sale.refresh_from_db()
    assert (sale.realized_st, sale.wash_sale_disallowed, sale.wash_sale_permanent) == (
        0,
        D("250.00"),
        D("250.00"),
    )
    lot = TaxLot.objects.get(pk=booking.lots_opened[0])
    assert (lot.cost_basis, lot.acquired_on, lot.purchased_on) == (D("8"), date(2024, 3, 15), None)
    assert lot.wash_sale_adjustment == 0
    assert lot.replacement_quantity == D("100")


def test_a_loss_sale_after_a_purchase_adjusts_the_replacement_part_of_that_lot(
    taxable, joint, xyz, changed
):
    held = _lot(taxable, xyz, "100", "10", date(2024, 1, 2))
    bought = fill_book(
        account_id=joint.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("150"),
        price=D("8"),
        trade_date=date(2024, 2, 20),
    )
    booking = fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="sell",
        quantity=D("100"),
        price=D("7.50"),
        trade_date=date(2024, 3, 1),
    )
    sale = Transaction.objects.get(lot=held, side="sell")
    assert (sale.realized_st, sale.wash_sale_disallowed) == (0, D("250.00"))
    assert (booking.realized_st, booking.wash_sale_disallowed) == (0, D("250.00"))
    source = TaxLot.objects.get(pk=bought.lots_opened[0])
    [split] = TaxLot.objects.filter(pk__in=booking.lots_split)
    assert (source.quantity, source.cost_basis, source.acquired_on) == (
        D("50"),
        D("8"),
        date(2024, 2, 20),
    )
    assert (split.account_id, split.quantity, split.cost_basis) == (joint.pk, D("100"), D("10.5"))
    # 02-20 minus the 59 days the sold shares were held
    assert (split.acquired_on, split.purchased_on) == (date(2023, 12, 23), date(2024, 2, 20))
    assert split.opened_by_id == source.opened_by_id
    assert changed[-1] == [taxable.pk, joint.pk]


def test_pub_550_example_2_four_purchases_after_the_sale(taxable, xyz, changed):
    sold = _lot(taxable, xyz, "100", "20", date(2022, 9, 24))
    fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="sell",
        quantity=D("100"),
        price=D("10"),
        trade_date=date(2023, 2, 3),
    )
    opened = {}
    for day in (10, 11, 12, 13):
        booking = fill_book(
            account_id=taxable.pk,
            security_id=xyz.pk,
            side="buy",
            quantity=D("50"),
            price=D("11"),
            trade_date=date(2023, 2, day),
        )
        opened[day] = TaxLot.objects.get(pk=booking.lots_opened[0])
    assert {d: x.cost_basis for d, x in opened.items()} == {
        10: D("21"),  # 11 + 500 / 50
        11: D("21"),
        12: D("11"),
        13: D("11"),
    }
    assert (opened[10].acquired_on, opened[11].acquired_on) == (
        date(2022, 10, 1),
        date(2022, 10, 2),
    )
    sale = Transaction.objects.get(lot=sold, side="sell")
    assert (sale.realized_st, sale.wash_sale_disallowed) == (0, D("1000.00"))


def test_a_loss_in_the_ira_is_no_wash_sale(taxable, ira, xyz, changed):
    _lot(ira, xyz, "100", "10", date(2024, 1, 2))
    fill_book(
        account_id=ira.pk,
        security_id=xyz.pk,
        side="sell",
        quantity=D("100"),
        price=D("7.50"),
        trade_date=date(2024, 3, 1),
    )
    booking = fill_book(
        account_id=taxable.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("100"),
        price=D("8"),
        trade_date=date(2024, 3, 15),
    )
    assert booking.wash_sale_disallowed == 0
    assert TaxLot.objects.get(pk=booking.lots_opened[0]).cost_basis == D("8")


def test_a_sibling_in_the_same_wash_sale_group_is_a_replacement(taxable, joint, xyz, changed):
    sibling = factories.SecurityFactory(ticker="XYZ2", wash_sale_group="XYZ-GRP")
    sale = _sell_at_a_250_loss(taxable, xyz)
    booking = fill_book(
        account_id=joint.pk,
        security_id=sibling.pk,
        side="buy",
        quantity=D("100"),
        price=D("8"),
        trade_date=date(2024, 3, 31),  # the 30th day after the sale
    )
    sale.refresh_from_db()
    assert sale.wash_sale_disallowed == D("250.00")
    assert TaxLot.objects.get(pk=booking.lots_opened[0]).cost_basis == D("10.5")


def test_another_households_purchase_is_no_replacement(taxable, xyz, household_b, changed):
    stranger = factories.AccountFactory(household=household_b)
    sale = _sell_at_a_250_loss(taxable, xyz)
    fill_book(
        account_id=stranger.pk,
        security_id=xyz.pk,
        side="buy",
        quantity=D("100"),
        price=D("8"),
        trade_date=date(2024, 3, 15),
    )
    sale.refresh_from_db()
    assert (sale.realized_st, sale.wash_sale_disallowed) == (D("-250.00"), 0)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": D("0")}, "Fill quantity must be greater than zero (got 0)."),
        ({"price": D("-1")}, "Fill price must be greater than zero (got -1)."),
        ({"side": "short"}, "Fill side must be 'buy' or 'sell' (got 'short')."),
        ({"account_id": 999999}, "Cannot book a fill: account 999999 does not exist."),
        ({"security_id": 999999}, "Cannot book a fill: security 999999 does not exist."),
    ],
)
def test_bad_fills_are_refused_and_change_nothing(taxable, xyz, changed, change, message):
    _lot(taxable, xyz, "30", "10", date(2023, 1, 3))
    before = _books()
    args = {
        "account_id": taxable.pk,
        "security_id": xyz.pk,
        "side": "sell",
        "quantity": D("10"),
        "price": D("12"),
        "trade_date": date(2024, 6, 3),
        **change,
    }
    with pytest.raises(ValidationFailed) as excinfo:
        fill_book(**args)
    assert excinfo.value.message == message
    assert _books() == before
    assert changed == []


def test_selling_more_than_held_is_refused_and_changes_nothing(taxable, xyz, changed):
    _lot(taxable, xyz, "30", "10", date(2023, 1, 3))
    before = _books()
    with pytest.raises(ValidationFailed) as excinfo:
        fill_book(
            account_id=taxable.pk,
            security_id=xyz.pk,
            side="sell",
            quantity=D("31"),
            price=D("12"),
            trade_date=date(2024, 6, 3),
        )
    assert excinfo.value.message == (
        f"Cannot sell 31 shares of XYZ in account {taxable.account_number}: it holds only "
        "30.000000 (short sales are not supported)."
    )
    assert _books() == before


def test_a_lot_of_another_account_cannot_be_instructed(taxable, joint, xyz, changed):
    _lot(taxable, xyz, "30", "10", date(2023, 1, 3))
    foreign = _lot(joint, xyz, "30", "10", date(2023, 1, 3))
    before = _books()
    with pytest.raises(ValidationFailed, match=f"Lot {foreign.pk} named in the sale instructions"):
        fill_book(
            account_id=taxable.pk,
            security_id=xyz.pk,
            side="sell",
            quantity=D("5"),
            price=D("12"),
            trade_date=date(2024, 6, 3),
            lot_instructions=[(foreign.pk, D("5"))],
        )
    assert _books() == before


def test_the_same_reference_is_not_booked_twice(taxable, xyz, changed):
    args = {
        "account_id": taxable.pk,
        "security_id": xyz.pk,
        "side": "buy",
        "quantity": D("1"),
        "price": D("10"),
        "trade_date": date(2024, 6, 3),
        "reference": "alloc:9",
    }
    fill_book(**args)
    before = _books()
    with pytest.raises(ValidationFailed) as excinfo:
        fill_book(**args)
    assert excinfo.value.message == (
        f"A fill with reference 'alloc:9' is already booked in account "
        f"{taxable.account_number}; it is not booked twice."
    )
    assert _books() == before


def test_holdings_changed_hooks_run_after_commit(
    taxable, xyz, monkeypatch, django_capture_on_commit_callbacks
):
    """Through the real ``holdings_changed``: the hooks (the event drift scan, replaced here by
    a recorder) are deferred to commit, so a rolled-back fill never scans."""
    from portfolios import services

    seen: list[list[int]] = []
    monkeypatch.setattr(services, "_holdings_changed_hooks", [seen.append])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fill_book(
            account_id=taxable.pk,
            security_id=xyz.pk,
            side="buy",
            quantity=D("1"),
            price=D("10"),
            trade_date=date(2024, 6, 3),
        )
    assert seen == []
    for callback in callbacks:
        callback()
    assert seen == [[taxable.pk]]


# --- a race on PostgreSQL --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sale_booked_while_a_repurchase_commits_still_sees_it(changed):
    """A repurchase in one account holds its transaction open while a loss sale in another
    account of the household is booked. The sale waits on the household lock and then sees
    the new lot; locking only the existing lots would let the sale read the lots from before
    the purchase and miss the wash sale."""
    household = factories.HouseholdFactory()
    seller = factories.AccountFactory(household=household)
    buyer = factories.AccountFactory(household=household, registration_type="joint")
    xyz = factories.SecurityFactory(ticker="XYZ")
    held = _lot(seller, xyz, "100", "10", date(2024, 1, 2))
    bought, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def buy():
        try:
            with transaction.atomic():
                fill_book(
                    account_id=buyer.pk,
                    security_id=xyz.pk,
                    side="buy",
                    quantity=D("100"),
                    price=D("8"),
                    trade_date=date(2024, 3, 15),
                )
                bought.set()
                go.wait(timeout=10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            bought.set()
            connection.close()

    def sell():
        try:
            fill_book(
                account_id=seller.pk,
                security_id=xyz.pk,
                side="sell",
                quantity=D("100"),
                price=D("7.50"),
                trade_date=date(2024, 3, 1),
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=buy)
    first.start()
    assert bought.wait(timeout=10)
    second = threading.Thread(target=sell)
    second.start()
    time.sleep(0.5)  # the sale is now waiting for the purchase's locks
    go.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert errors == []
    sale = Transaction.objects.get(lot=held, side="sell")
    assert (sale.realized_st, sale.wash_sale_disallowed) == (0, D("250.00"))
    assert TaxLot.objects.get(account=buyer).cost_basis == D("10.5")
