"""Tax-lot arithmetic of a fill, pure: which lots a sale relieves, with what gain and holding
period, and the wash-sale matching of IRS Publication 550 ("Wash Sales"). No Django and no
database: the fills service (``portfolios.services.fills``) reads the rows, builds the frozen
inputs below, calls these functions and writes the plans they return, so every rule here is
unit-tested on hand-worked examples.

Conventions. Quantities are share counts (Decimal, 6 places in the database), money is
Decimal dollars rounded to cents, ``cost_basis`` is per share (6 places). A *loss* is a positive
amount. Securities are *substantially identical* when they are the same security or share a
non-empty ``wash_sale_group``. Wash sales span a household.

The wash-sale rule, as applied here:

* A loss on a sale in a taxable account is disallowed when substantially identical shares are
  bought in any account of the household within 30 days before or after the sale (trade dates
  S - 30 .. S + 30). Sales in an IRA or Roth IRA have no deductible loss to disallow and are
  ignored.
* Replacement shares are matched to the loss shares in the order they were bought (purchase
  date, then lot id), each share at most once (``replacement_quantity``), never the shares
  being sold nor the rest of the lot they come from (Rev. Rul. 56-602: selling part of one
  purchase does not make the rest a replacement). Only as many loss shares as there are
  replacement shares are disallowed ("more or less stock bought than sold").
* A replacement in a taxable account gets the disallowed loss added to its basis and the sold
  shares' holding period added to its own: its ``acquired_on`` moves back by the days the sold
  shares were held (purchase date - (sale date - sold shares' acquired_on)); ``purchased_on``
  keeps the real date. When only part of a lot is a replacement, that part is split off into a
  lot of its own, so it carries its own basis and date.
* A replacement bought in an IRA or Roth IRA disallows the loss for good, with no basis
  adjustment anywhere (Rev. Rul. 2008-5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal("0")
CENT = Decimal("0.01")
BASIS_PLACES = Decimal("0.000001")
WASH_SALE_WINDOW_DAYS = 30

SHORT_SALE = (
    "Cannot sell {quantity} shares of security {security}: the account holds only {held} "
    "(short sales are not supported)."
)
UNKNOWN_LOT = "Lot {lot} named in the sale instructions is not a lot of this account and security."
BAD_INSTRUCTION = "Lot {lot} is instructed with {quantity} shares: instructed shares must be > 0."
BAD_QUANTITY = "The quantity to sell must be greater than zero (got {quantity})."


def money(value: Decimal) -> Decimal:
    """Round to cents, half up (how brokers report gains on Form 1099-B)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def per_share(value: Decimal) -> Decimal:
    """Round a per-share amount to the 6 places the database stores."""
    return value.quantize(BASIS_PLACES, rounding=ROUND_HALF_UP)


def one_year_after(day: date) -> date:
    """The first anniversary of ``day``; 29 February's is 28 February of the next year (the
    holding period that starts on 1 March ends with the last day of February)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def is_long_term(*, acquired_on: date, trade_date: date) -> bool:
    """Held *more* than one year (Pub 550, "Holding Period"): counting starts the day after
    acquisition and includes the day of sale, so a sale on the anniversary is still short-term
    and the day after it is long-term."""
    return trade_date > one_year_after(acquired_on)


def substantially_identical(security_a: int, group_a: str, security_b: int, group_b: str) -> bool:
    """The same security, or two securities of the same non-empty wash-sale group."""
    return security_a == security_b or (bool(group_a) and group_a == group_b)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lot:
    """A tax lot as the rules need it. ``tax_deferred`` is the lot's account being an IRA or
    Roth IRA; ``purchased_on`` is set only when ``acquired_on`` was moved back by a wash sale."""

    id: int
    account_id: int
    security_id: int
    quantity: Decimal
    cost_basis: Decimal
    acquired_on: date
    purchased_on: date | None = None
    wash_sale_group: str = ""
    tax_deferred: bool = False
    replacement_quantity: Decimal = ZERO
    wash_sale_adjustment: Decimal = ZERO

    @property
    def purchase_date(self) -> date:
        """The day the shares were really bought (what the 61-day window looks at)."""
        return self.purchased_on or self.acquired_on

    @property
    def available_as_replacement(self) -> Decimal:
        """Shares not yet used as replacement shares of some wash sale."""
        return max(self.quantity - self.replacement_quantity, ZERO)


@dataclass(frozen=True)
class LossSale:
    """Loss shares of one sale not yet matched to replacement shares.

    ``ref`` is the caller's key (the index of a relief in a sale being booked, or the id of an
    earlier sell transaction); ``loss`` is the positive loss of those ``quantity`` shares not
    yet disallowed; ``holding_start`` is the sold shares' ``acquired_on``; ``exclude_lot_ids``
    are lots that cannot replace these shares (the lots the sale relieved)."""

    ref: int
    account_id: int
    security_id: int
    trade_date: date
    quantity: Decimal
    loss: Decimal
    holding_start: date
    long_term: bool
    wash_sale_group: str = ""
    exclude_lot_ids: frozenset[int] = frozenset()


# ---------------------------------------------------------------------------
# Lot relief (specific identification, then FIFO)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Relief:
    """Shares taken out of one lot by a sale. ``gain`` is the economic gain (negative: a loss)
    before any wash-sale disallowance: quantity x (price - basis) less this relief's share of
    the commission, in cents."""

    lot_id: int
    quantity: Decimal
    basis_per_share: Decimal
    holding_start: date
    long_term: bool
    gain: Decimal


def relieve_lots(
    *,
    lots: Sequence[Lot],
    quantity: Decimal,
    price: Decimal,
    trade_date: date,
    instructions: Iterable[tuple[int, Decimal]] = (),
    commission: Decimal = ZERO,
) -> list[Relief]:
    """Relieve ``quantity`` shares from ``lots`` (one account, one security).

    The instructed ``(lot_id, shares)`` pairs go first, in their order, each capped at what the
    lot still holds and at the quantity left to sell (a partial fill uses the first
    instructions); whatever remains comes from the other shares first-in first-out by purchase
    date (the IRS default when shares are not identified). The commission is shared among the
    reliefs by quantity, to the cent, so the gains add up to proceeds - commission - basis.

    Raises ValueError when the lots hold fewer than ``quantity`` shares (a short sale), when an
    instruction names a lot not in ``lots`` or a non-positive share count.
    """
    if quantity <= 0:
        raise ValueError(BAD_QUANTITY.format(quantity=quantity))
    by_id = {lot.id: lot for lot in lots}
    held = sum((lot.quantity for lot in lots), ZERO)
    if held < quantity:
        security = lots[0].security_id if lots else "?"
        raise ValueError(SHORT_SALE.format(quantity=quantity, security=security, held=held))
    left = dict.fromkeys(by_id, ZERO)
    for lot in lots:
        left[lot.id] = lot.quantity
    taken: list[tuple[int, Decimal]] = []
    remaining = quantity
    for lot_id, shares in instructions:
        if lot_id not in by_id:
            raise ValueError(UNKNOWN_LOT.format(lot=lot_id))
        if shares <= 0:
            raise ValueError(BAD_INSTRUCTION.format(lot=lot_id, quantity=shares))
        take = min(shares, left[lot_id], remaining)
        if take > 0:
            taken.append((lot_id, take))
            left[lot_id] -= take
            remaining -= take
    for lot in sorted(lots, key=lambda x: (x.purchase_date, x.id)):
        if remaining <= 0:
            break
        take = min(left[lot.id], remaining)
        if take > 0:
            taken.append((lot.id, take))
            left[lot.id] -= take
            remaining -= take
    merged: dict[int, Decimal] = {}
    for lot_id, take in taken:  # a lot named twice, or instructed and then FIFO: one relief
        merged[lot_id] = merged.get(lot_id, ZERO) + take
    reliefs = []
    done = ZERO
    charged = ZERO
    for lot_id, take in merged.items():
        lot = by_id[lot_id]
        done += take
        commission_part = money(commission * done / quantity) - charged
        charged += commission_part
        reliefs.append(
            Relief(
                lot_id=lot_id,
                quantity=take,
                basis_per_share=lot.cost_basis,
                holding_start=lot.acquired_on,
                long_term=is_long_term(acquired_on=lot.acquired_on, trade_date=trade_date),
                gain=money(take * (price - lot.cost_basis)) - commission_part,
            )
        )
    return reliefs


# ---------------------------------------------------------------------------
# Wash-sale matching
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WashMatch:
    """``quantity`` loss shares of sale ``sale_ref`` matched to as many replacement shares of
    lot ``lot_id``; ``disallowed`` is their loss. ``permanent``: the replacement is in an IRA or
    Roth IRA. ``split_index`` points into ``WashSalePlan.lot_splits`` when the replacement
    shares were split off into a new lot (None: the lot itself was adjusted)."""

    sale_ref: int
    lot_id: int
    quantity: Decimal
    disallowed: Decimal
    permanent: bool
    split_index: int | None = None


@dataclass(frozen=True)
class LotChange:
    """The new state of an existing lot after the plan (only the fields a wash sale moves)."""

    lot_id: int
    quantity: Decimal
    cost_basis: Decimal
    acquired_on: date
    purchased_on: date | None
    wash_sale_adjustment: Decimal
    replacement_quantity: Decimal


@dataclass(frozen=True)
class LotSplit:
    """A new lot carved out of ``source_lot_id``: the replacement shares with their own basis
    and holding period (same account and security as the source)."""

    source_lot_id: int
    sale_ref: int
    quantity: Decimal
    cost_basis: Decimal
    acquired_on: date
    purchased_on: date | None
    wash_sale_adjustment: Decimal
    replacement_quantity: Decimal


@dataclass(frozen=True)
class SaleChange:
    """What the plan does to one loss sale: shares newly matched, the loss newly disallowed (to
    add to ``wash_sale_disallowed`` and to the recognized gain of the ``long_term`` bucket),
    and the part of it lost for good."""

    sale_ref: int
    matched_quantity: Decimal
    disallowed: Decimal
    permanent: Decimal
    long_term: bool


@dataclass(frozen=True)
class WashSalePlan:
    matches: tuple[WashMatch, ...] = ()
    lot_changes: tuple[LotChange, ...] = ()
    lot_splits: tuple[LotSplit, ...] = ()
    sale_changes: tuple[SaleChange, ...] = ()

    @property
    def disallowed(self) -> Decimal:
        return sum((m.disallowed for m in self.matches), ZERO)

    @property
    def permanent(self) -> Decimal:
        return sum((m.disallowed for m in self.matches if m.permanent), ZERO)

    def sale_change(self, ref: int) -> SaleChange | None:
        return next((s for s in self.sale_changes if s.sale_ref == ref), None)


@dataclass
class _LotState:
    lot: Lot
    splits: list[int] = field(default_factory=list)
    changed: bool = False


def in_window(*, purchase: date, sale: date) -> bool:
    """Bought within 30 days before or after the sale (S - 30 .. S + 30, both included)."""
    return abs((purchase - sale).days) <= WASH_SALE_WINDOW_DAYS


def match_wash_sales(*, losses: Sequence[LossSale], lots: Sequence[Lot]) -> WashSalePlan:
    """Match the loss shares of ``losses`` (in their order) to replacement shares of ``lots``
    (the household's candidate lots, matched in order of purchase) and plan the consequences.

    For each match of k shares of a loss sale with unmatched loss L on q shares, the disallowed
    amount is L x k / q (rounded so the matches of one sale add up to the cent). A taxable
    replacement of k shares becomes a lot of its own (split off unless it is the whole lot)
    with basis per share + disallowed / k, ``acquired_on`` = purchase - (sale - holding start)
    and ``purchased_on`` = the purchase date; an IRA or Roth replacement only records the
    shares as used. Lots with no replacement shares left, outside the window, not
    substantially identical or excluded by the sale are skipped.
    """
    states = {lot.id: _LotState(lot=lot) for lot in lots}
    order = sorted(lots, key=lambda x: (x.purchase_date, x.id))
    splits: list[LotSplit] = []
    matches: list[WashMatch] = []
    changes: list[SaleChange] = []
    for sale in losses:
        if sale.quantity <= 0 or sale.loss <= 0:
            continue
        matched = ZERO
        charged = ZERO
        permanent = ZERO
        for candidate in order:
            if matched >= sale.quantity:
                break
            state = states[candidate.id]
            lot = state.lot
            if (
                lot.id in sale.exclude_lot_ids
                or not substantially_identical(
                    sale.security_id, sale.wash_sale_group, lot.security_id, lot.wash_sale_group
                )
                or not in_window(purchase=lot.purchase_date, sale=sale.trade_date)
            ):
                continue
            k = min(lot.available_as_replacement, sale.quantity - matched)
            if k <= 0:
                continue
            matched += k
            disallowed = money(sale.loss * matched / sale.quantity) - charged
            charged += disallowed
            if lot.tax_deferred:
                permanent += disallowed
                state.lot = replace(lot, replacement_quantity=lot.replacement_quantity + k)
                state.changed = True
                matches.append(
                    WashMatch(
                        sale_ref=sale.ref,
                        lot_id=lot.id,
                        quantity=k,
                        disallowed=disallowed,
                        permanent=True,
                    )
                )
                continue
            carried = sale.trade_date - sale.holding_start
            acquired_on = lot.purchase_date - carried
            if k == lot.quantity:  # the whole lot is the replacement: adjust it in place
                state.lot = replace(
                    lot,
                    cost_basis=per_share(lot.cost_basis + disallowed / k),
                    acquired_on=acquired_on,
                    purchased_on=lot.purchase_date,
                    wash_sale_adjustment=lot.wash_sale_adjustment + disallowed,
                    replacement_quantity=k,
                )
                state.changed = True
                split_index = None
            else:
                moved = money(lot.wash_sale_adjustment * k / lot.quantity)
                splits.append(
                    LotSplit(
                        source_lot_id=lot.id,
                        sale_ref=sale.ref,
                        quantity=k,
                        cost_basis=per_share(lot.cost_basis + disallowed / k),
                        acquired_on=acquired_on,
                        purchased_on=lot.purchase_date,
                        wash_sale_adjustment=moved + disallowed,
                        replacement_quantity=k,
                    )
                )
                split_index = len(splits) - 1
                state.splits.append(split_index)
                state.lot = replace(
                    lot,
                    quantity=lot.quantity - k,
                    wash_sale_adjustment=lot.wash_sale_adjustment - moved,
                )
                state.changed = True
            matches.append(
                WashMatch(
                    sale_ref=sale.ref,
                    lot_id=lot.id,
                    quantity=k,
                    disallowed=disallowed,
                    permanent=False,
                    split_index=split_index,
                )
            )
        if matched > 0:
            changes.append(
                SaleChange(
                    sale_ref=sale.ref,
                    matched_quantity=matched,
                    disallowed=charged,
                    permanent=permanent,
                    long_term=sale.long_term,
                )
            )
    lot_changes = tuple(
        LotChange(
            lot_id=s.lot.id,
            quantity=s.lot.quantity,
            cost_basis=s.lot.cost_basis,
            acquired_on=s.lot.acquired_on,
            purchased_on=s.lot.purchased_on,
            wash_sale_adjustment=s.lot.wash_sale_adjustment,
            replacement_quantity=s.lot.replacement_quantity,
        )
        for s in states.values()
        if s.changed
    )
    return WashSalePlan(
        matches=tuple(matches),
        lot_changes=lot_changes,
        lot_splits=tuple(splits),
        sale_changes=tuple(changes),
    )


def losses_from_reliefs(
    *,
    reliefs: Sequence[Relief],
    account_id: int,
    security_id: int,
    wash_sale_group: str,
    trade_date: date,
    taxable: bool,
) -> list[LossSale]:
    """The loss reliefs of a sale being booked, as loss sales keyed by their index in
    ``reliefs``; none of the relieved lots can replace them. ``taxable`` is False for an IRA or
    Roth IRA (or any account whose losses are not deductible): no loss, no wash sale."""
    if not taxable:
        return []
    relieved = frozenset(r.lot_id for r in reliefs)
    return [
        LossSale(
            ref=i,
            account_id=account_id,
            security_id=security_id,
            wash_sale_group=wash_sale_group,
            trade_date=trade_date,
            quantity=r.quantity,
            loss=-r.gain,
            holding_start=r.holding_start,
            long_term=r.long_term,
            exclude_lot_ids=relieved,
        )
        for i, r in enumerate(reliefs)
        if r.gain < 0
    ]


def window_bounds(day: date) -> tuple[date, date]:
    """The first and last trade dates of the 61-day window around ``day``."""
    span = timedelta(days=WASH_SALE_WINDOW_DAYS)
    return day - span, day + span
