"""Fills into the books (DESIGN 9): one allocated fill of one account becomes lot relief or a new
lot, sell or buy transactions, a cash movement and any wash-sale adjustments in the household.

``fill_book`` runs inside the caller's transaction (routing allocates a block's fill to each
account's order and books each allocation). It locks the account row, then the household row
(the point that serialises every booking of one household, so a sale and a repurchase booked
at the same moment in two accounts still see each other), then the household's lots of the
substantially identical securities, and only then reads. The tax rules themselves are the pure
``portfolios.tax``; this module reads their inputs and writes their plans, with an audit event
for every change and a drift scan of the changed accounts after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F, Q

from compliance.services.audit import audit_record
from portfolios import tax
from portfolios.models import (
    TAX_DEFERRED_REGISTRATIONS,
    Account,
    Household,
    Security,
    Side,
    TaxLot,
    Transaction,
)
from portfolios.services import holdings_changed
from rebalance_app.exceptions import ValidationFailed

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

FILL_BAD_SIDE = "Fill side must be 'buy' or 'sell' (got '{side}')."
FILL_BAD_QUANTITY = "Fill quantity must be greater than zero (got {quantity})."
FILL_BAD_PRICE = "Fill price must be greater than zero (got {price})."
FILL_BAD_COMMISSION = "Fill commission cannot be negative (got {commission})."
FILL_UNKNOWN_ACCOUNT = "Cannot book a fill: account {id} does not exist."
FILL_UNKNOWN_SECURITY = "Cannot book a fill: security {id} does not exist."
FILL_SHORT_SALE = (
    "Cannot sell {quantity} shares of {ticker} in account {account}: it holds only {held} "
    "(short sales are not supported)."
)
FILL_BAD_LOT = "Cannot book the sale in account {account}: {problem}"
FILL_ALREADY_BOOKED = (
    "A fill with reference '{reference}' is already booked in account {account}; it is not "
    "booked twice."
)

ACTION_FILL_BOOKED = "fill.booked"
ACTION_LOT_ADJUSTED = "lot.wash_sale_adjusted"
ACTION_TRANSACTION_ADJUSTED = "transaction.wash_sale_adjusted"

ZERO = Decimal("0")


@dataclass(frozen=True)
class FillBooking:
    """What one fill did. ``realized_st``/``realized_lt`` are the recognized gains of this
    fill's sells (after any disallowance); ``wash_sale_disallowed`` is every loss this booking
    disallowed, including earlier sales' losses a buy made wash sales
    (``adjusted_transaction_ids``); ``lots_split`` are lots carved out as replacement shares."""

    transaction_ids: tuple[int, ...]
    lots_opened: tuple[int, ...]
    lots_relieved: tuple[tuple[int, Decimal], ...]
    realized_st: Decimal
    realized_lt: Decimal
    wash_sale_disallowed: Decimal
    cash_delta: Decimal
    lots_split: tuple[int, ...] = ()
    adjusted_transaction_ids: tuple[int, ...] = ()
    # Every account whose lots or transactions changed (this one first): a caller booking many
    # fills with ``notify=False`` triggers their drift scan once for all of them.
    touched_account_ids: tuple[int, ...] = ()


def _is_tax_deferred(account: Account) -> bool:
    return account.registration_type in TAX_DEFERRED_REGISTRATIONS


def _loss_can_be_wash_sale(account: Account) -> bool:
    """A loss a wash sale can disallow: a sale in a taxable account that is no IRA or Roth."""
    return account.taxable and not _is_tax_deferred(account)


def _lot_input(lot: TaxLot, *, accounts: dict[int, Account], groups: dict[int, str]) -> tax.Lot:
    return tax.Lot(
        id=lot.pk,
        account_id=lot.account_id,
        security_id=lot.security_id,
        quantity=lot.quantity,
        cost_basis=lot.cost_basis,
        acquired_on=lot.acquired_on,
        purchased_on=lot.purchased_on,
        wash_sale_group=groups.get(lot.security_id, ""),
        tax_deferred=_is_tax_deferred(accounts[lot.account_id]),
        replacement_quantity=lot.replacement_quantity,
        wash_sale_adjustment=lot.wash_sale_adjustment,
    )


def _lot_audit(lot: TaxLot) -> dict[str, Any]:
    return {
        "account": lot.account_id,
        "security": lot.security_id,
        "quantity": str(lot.quantity),
        "cost_basis": str(lot.cost_basis),
        "acquired_on": lot.acquired_on.isoformat(),
        "purchased_on": lot.purchased_on.isoformat() if lot.purchased_on else None,
        "wash_sale_adjustment": str(lot.wash_sale_adjustment),
        "replacement_quantity": str(lot.replacement_quantity),
    }


def _position(lots: Sequence[TaxLot], *, account_id: int, security_id: int) -> Decimal:
    return sum(
        (x.quantity for x in lots if x.account_id == account_id and x.security_id == security_id),
        ZERO,
    )


def _validate(*, side: str, quantity: Decimal, price: Decimal, commission: Decimal) -> None:
    if side not in (Side.BUY, Side.SELL):
        raise ValidationFailed(FILL_BAD_SIDE.format(side=side))
    if quantity is None or quantity <= 0:
        raise ValidationFailed(FILL_BAD_QUANTITY.format(quantity=quantity))
    if price is None or price <= 0:
        raise ValidationFailed(FILL_BAD_PRICE.format(price=price))
    if commission < 0:
        raise ValidationFailed(FILL_BAD_COMMISSION.format(commission=commission))


def _apply_plan(
    *,
    plan: tax.WashSalePlan,
    lots_by_id: dict[int, TaxLot],
    actor: AbstractBaseUser | str,
    reason: str,
) -> tuple[set[int], list[int]]:
    """Write a wash-sale plan's lot changes and splits, each audited. Returns the accounts
    whose lots changed and the ids of the new (split) lots, in plan order."""
    touched: set[int] = set()
    for change in plan.lot_changes:
        lot = lots_by_id[change.lot_id]
        before = _lot_audit(lot)
        lot.quantity = change.quantity
        lot.cost_basis = change.cost_basis
        lot.acquired_on = change.acquired_on
        lot.purchased_on = change.purchased_on
        lot.wash_sale_adjustment = change.wash_sale_adjustment
        lot.replacement_quantity = change.replacement_quantity
        lot.save(
            update_fields=[
                "quantity",
                "cost_basis",
                "acquired_on",
                "purchased_on",
                "wash_sale_adjustment",
                "replacement_quantity",
            ]
        )
        touched.add(lot.account_id)
        audit_record(
            actor=actor,
            action=ACTION_LOT_ADJUSTED,
            obj=lot,
            before=before,
            after=_lot_audit(lot),
            reason=reason,
        )
    split_ids: list[int] = []
    for split in plan.lot_splits:
        source = lots_by_id[split.source_lot_id]
        new = TaxLot.objects.create(
            account_id=source.account_id,
            security_id=source.security_id,
            quantity=split.quantity,
            cost_basis=split.cost_basis,
            acquired_on=split.acquired_on,
            purchased_on=split.purchased_on,
            wash_sale_adjustment=split.wash_sale_adjustment,
            replacement_quantity=split.replacement_quantity,
            opened_by_id=source.opened_by_id,
            import_batch_id=source.import_batch_id,
        )
        split_ids.append(new.pk)
        touched.add(new.account_id)
        audit_record(
            actor=actor,
            action=ACTION_LOT_ADJUSTED,
            obj=new,
            before={"split_from": source.pk, **_lot_audit(source)},
            after=_lot_audit(new),
            reason=reason,
        )
    return touched, split_ids


def fill_book(
    *,
    account_id: int,
    security_id: int,
    side: str,
    quantity: Decimal,
    price: Decimal,
    trade_date: date,
    lot_instructions: Sequence[tuple[int, Decimal]] = (),
    commission: Decimal = ZERO,
    reference: str = "",
    actor: AbstractBaseUser | str = "system:fills",
    notify: bool = True,
) -> FillBooking:
    """Book one account's fill: relieve lots (sell) or open one (buy), record the transactions,
    move the cash and apply the household's wash sales, all audited; the changed accounts get
    an event drift scan after commit (``notify=False`` leaves that to a caller booking many
    fills, with ``FillBooking.touched_account_ids``).

    Sells relieve ``lot_instructions`` first (capped at what each lot holds), then FIFO; one
    sell transaction per relieved lot. The commission is part of the basis of a buy and comes
    off the proceeds of a sell (Pub 550), and moves cash with the trade.

    Raises ValidationFailed, with nothing changed, for a side other than buy/sell, a
    non-positive quantity or price, a negative commission, an unknown account or security, an
    instructed lot that is not this account's lot of this security, a sell of more shares than
    the account holds, or a ``reference`` already booked in the account.
    """
    _validate(side=side, quantity=quantity, price=price, commission=commission)
    with transaction.atomic():
        account = Account.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise ValidationFailed(FILL_UNKNOWN_ACCOUNT.format(id=account_id))
        security = Security.objects.filter(pk=security_id).first()
        if security is None:
            raise ValidationFailed(FILL_UNKNOWN_SECURITY.format(id=security_id))
        Household.objects.select_for_update().filter(pk=account.household_id).first()
        if (
            reference
            and Transaction.objects.filter(account_id=account.pk, reference=reference).exists()
        ):
            raise ValidationFailed(
                FILL_ALREADY_BOOKED.format(reference=reference, account=account.account_number)
            )
        group = security.wash_sale_group
        identical = Q(pk=security.pk) | (Q(wash_sale_group=group) if group else Q(pk__in=[]))
        groups = dict(Security.objects.filter(identical).values_list("pk", "wash_sale_group"))
        accounts = {a.pk: a for a in Account.objects.filter(household_id=account.household_id)}
        accounts[account.pk] = account
        lots = list(
            TaxLot.objects.select_for_update()
            .filter(account_id__in=list(accounts), security_id__in=list(groups))
            .order_by("pk")
        )
        lots_by_id = {lot.pk: lot for lot in lots}
        position_before = _position(lots, account_id=account.pk, security_id=security.pk)
        cash_before = account.cash_balance
        if side == Side.SELL:
            result = _book_sell(
                account=account,
                security=security,
                quantity=quantity,
                price=price,
                trade_date=trade_date,
                lot_instructions=lot_instructions,
                commission=commission,
                reference=reference,
                actor=actor,
                lots=lots,
                lots_by_id=lots_by_id,
                accounts=accounts,
                groups=groups,
                held=position_before,
            )
            cash_delta = tax.money(quantity * price) - commission
        else:
            result = _book_buy(
                account=account,
                security=security,
                quantity=quantity,
                price=price,
                trade_date=trade_date,
                commission=commission,
                reference=reference,
                actor=actor,
                lots_by_id=lots_by_id,
                accounts=accounts,
                groups=groups,
            )
            cash_delta = -(tax.money(quantity * price) + commission)
        account.cash_balance = cash_before + cash_delta
        account.save(update_fields=["cash_balance"])
        position_after = position_before + (quantity if side == Side.BUY else -quantity)
        booking = FillBooking(
            transaction_ids=tuple(result["transaction_ids"]),
            lots_opened=tuple(result["lots_opened"]),
            lots_relieved=tuple(result["lots_relieved"]),
            realized_st=result["realized_st"],
            realized_lt=result["realized_lt"],
            wash_sale_disallowed=result["disallowed"],
            cash_delta=cash_delta,
            lots_split=tuple(result["lots_split"]),
            adjusted_transaction_ids=tuple(result["adjusted"]),
            touched_account_ids=(account.pk, *sorted(result["touched"] - {account.pk})),
        )
        audit_record(
            actor=actor,
            action=ACTION_FILL_BOOKED,
            obj=account,
            before={
                "cash_balance": str(cash_before),
                "positions": {security.ticker: str(position_before)},
            },
            after={
                "cash_balance": str(account.cash_balance),
                "positions": {security.ticker: str(position_after)},
                "side": side,
                "quantity": str(quantity),
                "price": str(price),
                "commission": str(commission),
                "trade_date": trade_date.isoformat(),
                "transactions": list(booking.transaction_ids),
                "lots_opened": list(booking.lots_opened),
                "lots_relieved": [[lot, str(q)] for lot, q in booking.lots_relieved],
                "lots_split": list(booking.lots_split),
                "realized_st": str(booking.realized_st),
                "realized_lt": str(booking.realized_lt),
                "wash_sale_disallowed": str(booking.wash_sale_disallowed),
            },
            reason=reference,
        )
        if notify:
            holdings_changed(account_ids=booking.touched_account_ids)
    return booking


def _book_sell(
    *,
    account: Account,
    security: Security,
    quantity: Decimal,
    price: Decimal,
    trade_date: date,
    lot_instructions: Sequence[tuple[int, Decimal]],
    commission: Decimal,
    reference: str,
    actor: AbstractBaseUser | str,
    lots: list[TaxLot],
    lots_by_id: dict[int, TaxLot],
    accounts: dict[int, Account],
    groups: dict[int, str],
    held: Decimal,
) -> dict[str, Any]:
    if held < quantity:
        raise ValidationFailed(
            FILL_SHORT_SALE.format(
                quantity=quantity,
                ticker=security.ticker,
                account=account.account_number,
                held=held,
            )
        )
    own = [
        _lot_input(x, accounts=accounts, groups=groups)
        for x in lots
        if x.account_id == account.pk and x.security_id == security.pk
    ]
    try:
        reliefs = tax.relieve_lots(
            lots=own,
            quantity=quantity,
            price=price,
            trade_date=trade_date,
            instructions=[(int(lot), Decimal(str(q))) for lot, q in lot_instructions],
            commission=commission,
        )
    except ValueError as exc:
        raise ValidationFailed(
            FILL_BAD_LOT.format(account=account.account_number, problem=exc)
        ) from exc
    for relief in reliefs:
        lot = lots_by_id[relief.lot_id]
        lot.quantity -= relief.quantity
        # A replacement lot stays wholly replacement as it is sold down.
        lot.replacement_quantity = min(lot.replacement_quantity, lot.quantity)
        lot.save(update_fields=["quantity", "replacement_quantity"])
    plan = tax.WashSalePlan()
    losses = tax.losses_from_reliefs(
        reliefs=reliefs,
        account_id=account.pk,
        security_id=security.pk,
        wash_sale_group=security.wash_sale_group,
        trade_date=trade_date,
        taxable=_loss_can_be_wash_sale(account),
    )
    if losses:
        candidates = [
            _lot_input(x, accounts=accounts, groups=groups) for x in lots if x.quantity > 0
        ]
        plan = tax.match_wash_sales(losses=losses, lots=candidates)
    reason = f"Wash sale: sale of {quantity} {security.ticker} in account "
    reason += f"{account.account_number} on {trade_date.isoformat()}"
    touched, split_ids = _apply_plan(plan=plan, lots_by_id=lots_by_id, actor=actor, reason=reason)
    realized_st = realized_lt = ZERO
    txn_ids = []
    for i, relief in enumerate(reliefs):
        change = plan.sale_change(i)
        disallowed = change.disallowed if change else ZERO
        recognized = relief.gain + disallowed
        txn = Transaction.objects.create(
            account=account,
            security=security,
            trade_date=trade_date,
            side=Side.SELL,
            quantity=relief.quantity,
            price=price,
            realized_st=ZERO if relief.long_term else recognized,
            realized_lt=recognized if relief.long_term else ZERO,
            wash_sale_disallowed=disallowed,
            wash_sale_matched_quantity=change.matched_quantity if change else ZERO,
            wash_sale_permanent=change.permanent if change else ZERO,
            lot_id=relief.lot_id,
            reference=reference,
        )
        txn_ids.append(txn.pk)
        if relief.long_term:
            realized_lt += recognized
        else:
            realized_st += recognized
    return {
        "transaction_ids": txn_ids,
        "lots_opened": [],
        "lots_relieved": [(r.lot_id, r.quantity) for r in reliefs],
        "lots_split": split_ids,
        "realized_st": realized_st,
        "realized_lt": realized_lt,
        "disallowed": plan.disallowed,
        "touched": touched,
        "adjusted": [],
    }


def _book_buy(
    *,
    account: Account,
    security: Security,
    quantity: Decimal,
    price: Decimal,
    trade_date: date,
    commission: Decimal,
    reference: str,
    actor: AbstractBaseUser | str,
    lots_by_id: dict[int, TaxLot],
    accounts: dict[int, Account],
    groups: dict[int, str],
) -> dict[str, Any]:
    lot = TaxLot.objects.create(
        account=account,
        security=security,
        quantity=quantity,
        cost_basis=tax.per_share(price + commission / quantity),
        acquired_on=trade_date,
    )
    txn = Transaction.objects.create(
        account=account,
        security=security,
        trade_date=trade_date,
        side=Side.BUY,
        quantity=quantity,
        price=price,
        lot=lot,
        reference=reference,
    )
    lot.opened_by = txn
    lot.save(update_fields=["opened_by"])
    lots_by_id[lot.pk] = lot
    first, last = tax.window_bounds(trade_date)
    taxable_ids = [a.pk for a in accounts.values() if _loss_can_be_wash_sale(a)]
    sales = list(
        Transaction.objects.select_for_update()
        .filter(
            account_id__in=taxable_ids,
            security_id__in=list(groups),
            side=Side.SELL,
            trade_date__range=(first, last),
            quantity__gt=F("wash_sale_matched_quantity"),
        )
        # Sales someone else already adjusted (an import with a disallowed loss but no
        # matched shares) are left alone: their replacement shares are unknown.
        .exclude(wash_sale_disallowed__gt=0, wash_sale_matched_quantity=0)
        .annotate(recognized=F("realized_st") + F("realized_lt"))
        .filter(recognized__lt=0)
        .order_by("trade_date", "pk")
    )
    sold_from = {
        x.pk: x.acquired_on
        for x in TaxLot.objects.filter(pk__in=[s.lot_id for s in sales if s.lot_id])
    }
    losses = [
        tax.LossSale(
            ref=s.pk,
            account_id=s.account_id,
            security_id=s.security_id,
            wash_sale_group=groups.get(s.security_id, ""),
            trade_date=s.trade_date,
            quantity=s.quantity - s.wash_sale_matched_quantity,
            loss=-(s.realized_st + s.realized_lt),
            # Imported sales carry no lot: their holding period starts on the sale date.
            holding_start=sold_from.get(s.lot_id, s.trade_date),
            long_term=s.realized_lt < 0,
            exclude_lot_ids=frozenset({s.lot_id}) if s.lot_id else frozenset(),
        )
        for s in sales
    ]
    plan = tax.WashSalePlan()
    if losses:
        plan = tax.match_wash_sales(
            losses=losses, lots=[_lot_input(lot, accounts=accounts, groups=groups)]
        )
    reason = f"Wash sale: purchase of {quantity} {security.ticker} in account "
    reason += f"{account.account_number} on {trade_date.isoformat()}"
    touched, split_ids = _apply_plan(plan=plan, lots_by_id=lots_by_id, actor=actor, reason=reason)
    by_id = {s.pk: s for s in sales}
    adjusted = []
    for change in plan.sale_changes:
        sale = by_id[change.sale_ref]
        before = _sale_audit(sale)
        if change.long_term:
            sale.realized_lt += change.disallowed
        else:
            sale.realized_st += change.disallowed
        sale.wash_sale_disallowed += change.disallowed
        sale.wash_sale_permanent += change.permanent
        sale.wash_sale_matched_quantity += change.matched_quantity
        sale.save(
            update_fields=[
                "realized_st",
                "realized_lt",
                "wash_sale_disallowed",
                "wash_sale_permanent",
                "wash_sale_matched_quantity",
            ]
        )
        adjusted.append(sale.pk)
        audit_record(
            actor=actor,
            action=ACTION_TRANSACTION_ADJUSTED,
            obj=sale,
            before=before,
            after=_sale_audit(sale),
            reason=reason,
        )
    return {
        "transaction_ids": [txn.pk],
        "lots_opened": [lot.pk],
        "lots_relieved": [],
        "lots_split": split_ids,
        "realized_st": ZERO,
        "realized_lt": ZERO,
        "disallowed": plan.disallowed,
        "touched": touched,
        "adjusted": adjusted,
    }


def _sale_audit(sale: Transaction) -> dict[str, Any]:
    return {
        "account": sale.account_id,
        "trade_date": sale.trade_date.isoformat(),
        "quantity": str(sale.quantity),
        "realized_st": str(sale.realized_st),
        "realized_lt": str(sale.realized_lt),
        "wash_sale_disallowed": str(sale.wash_sale_disallowed),
        "wash_sale_permanent": str(sale.wash_sale_permanent),
        "wash_sale_matched_quantity": str(sale.wash_sale_matched_quantity),
    }
