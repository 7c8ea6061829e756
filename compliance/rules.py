"""The pre-trade compliance rules of DESIGN 6, as small pure functions over a basket's
post-trade view.

A service (``compliance.services.checks``) reads the database in a few bulk queries and builds
a :class:`BasketView` with :func:`basket_view_build`; each rule is a function
``(view, params) -> list[RuleFinding]`` registered in :data:`RULES` with the schema of its
parameters. Nothing here imports Django: rules are tested on hand-built views, and a test
checks that importing this module leaves ``django`` out of ``sys.modules``.

Conventions of the view:

- quantities are shares, prices and amounts dollars, weights fractions of the account's
  post-trade value (securities at their last price plus cash);
- ``holdings_before``/``holdings_after``/``weights_after`` are keyed by ``(account_id,
  security_id)``, ``sector_weights_after`` by ``(account_id, sector)``;
- a finding names an order by its index in ``view.orders`` (``order``) or, for an
  account-level rule (cash, status, drift, gains budget), only its account (``order`` None);
  the service filters findings by the rule's scope through ``account_id``.

Messages are plain sentences naming the account, the ticker and the numbers; they are part of
the contract and the tests assert them word for word.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

BUY = "buy"
SELL = "sell"
WASH_SALE_DAYS = 30  # IRC section 1091: 30 days before or after a loss sale
EPS = 1e-9
SHARE_EPS = 1e-6

# ---------------------------------------------------------------------------
# Messages (the contract: tests assert them word for word)
# ---------------------------------------------------------------------------

MSG_RESTRICTED = "Account {account}: {trade} is restricted: {what}."
MSG_RESTRICTED_OK = "Account {account}: {trade} is on no restricted list."
MSG_ESG_FAIL = "Account {account}: {trade} fails the ESG screen: {problems}."
MSG_ESG_TAGS = "tagged {tags}"
MSG_ESG_SCORE = "ESG score {score} is below the minimum {minimum}"
MSG_ESG_NO_SCORE = "no ESG score on file (minimum {minimum})"
MSG_ESG_OK = "Account {account}: {trade} passes the ESG screen."
MSG_ESG_SELL = "Account {account}: {trade} is a sale: the ESG screen applies to buys."
MSG_SHORT = (
    "Account {account}: {trade} would leave {after} shares: the basket sells {sold} "
    "but the account holds {held}."
)
MSG_SHORT_OK = "Account {account}: {trade} is covered by {held} shares held."
MSG_SHORT_BUY = "Account {account}: {trade} is not a sale."
MSG_OVERDRAFT = (
    "Account {account}: cash after the trades would be {after}, below zero "
    "(cash now {before}, buys {buys}, sells {sells})."
)
MSG_BELOW_RESERVE = (
    "Account {account}: cash after the trades would be {after}, below its reserve of {reserve}."
)
MSG_CASH_OK = "Account {account}: cash after the trades would be {after} (reserve {reserve})."
MSG_CONC_SECURITY = "{ticker} would be {weight} of the account, over the {limit} limit per security"
MSG_CONC_SECTOR = (
    "the {sector} sector would be {weight} of the account, over the {limit} limit per sector"
)
MSG_CONC_FAIL = "Account {account}: after {trade}, {problems}."
MSG_CONC_OK = (
    "Account {account}: after {trade}, {ticker} would be {weight} and the {sector} sector "
    "{sector_weight} of the account (limits {limit} and {sector_limit})."
)
MSG_CONC_SELL = "Account {account}: {trade} is a sale: it adds no concentration."
MSG_CONC_EXEMPT = "Account {account}: {ticker} is exempt from the concentration limits."
MSG_DRIFT_FAIL = (
    "Account {account}: after the trades {count} position{s} would still be outside "
    "{their} band{s}: {items}."
)
MSG_DRIFT_ITEM = "{ticker} {weight} against {target} ± {band}"
MSG_DRIFT_OK = "Account {account}: every position would be within its band after the trades."
MSG_WASH_BUY = (
    "Account {account}: {trade} would be a wash sale: {group} {when} at a loss in the household."
)
MSG_WASH_SELL = (
    "Account {account}: {trade} realizes a loss of {loss} and would be a wash sale: "
    "{group} {when} in the household."
)
MSG_WASH_OK = "Account {account}: {trade} triggers no wash sale."
MSG_WASH_SOLD_ON = "was sold on {day} in account {other}"
MSG_WASH_SOLD_HERE = "is sold in this basket by account {other}"
MSG_WASH_BOUGHT_ON = "was bought on {day} in account {other}"
MSG_WASH_BOUGHT_HERE = "is bought in this basket by account {other}"
MSG_MIN_TRADE = (
    "Account {account}: {trade} is {notional}, below the minimum trade amount of {minimum}."
)
MSG_MIN_TRADE_OK = "Account {account}: {trade} is {notional} (minimum {minimum})."
MSG_MIN_TRADE_SELL_OUT = (
    "Account {account}: {trade} is {notional}, below the minimum of {minimum}, "
    "but it sells out the whole position."
)
MSG_ADV = (
    "Account {account}: {trade} is {share} of the average daily volume of {adv} shares, "
    "over the {limit} limit."
)
MSG_ADV_OK = "Account {account}: {trade} is {share} of the average daily volume ({limit} allowed)."
MSG_ADV_MISSING = "Account {account}: {ticker} has no average daily volume on file."
MSG_PRICE_MISSING = "Account {account}: {ticker} has no price: import one before trading."
MSG_PRICE_STALE = (
    "Account {account}: the price of {ticker} is from {day}, older than {days} trading "
    "day{s} (cutoff {cutoff})."
)
MSG_PRICE_OK = "Account {account}: {ticker} is priced as of {day}."
MSG_DUPLICATE = "Account {account}: a {side} of {ticker} is already pending in {where}."
MSG_DUPLICATE_BASKET = "basket {basket} '{name}' ({state})"
MSG_DUPLICATE_HERE = (
    "Account {account}: the {side} of {ticker} appears {count} times in this basket."
)
MSG_DUPLICATE_OK = "Account {account}: no other pending {side} of {ticker}."
MSG_STATUS = "Account {account} is {status}: it cannot trade."
MSG_STATUS_OK = "Account {account} is active."
MSG_GAINS = (
    "Account {account}: the basket realizes an estimated {gain} of gains, over the {left} left "
    "of its {budget} realized-gains budget this year."
)
MSG_GAINS_OK = (
    "Account {account}: the basket realizes an estimated {gain} of gains, within the {left} "
    "left of its {budget} budget this year."
)

# Parameter validation
MSG_UNKNOWN_RULE = "Unknown rule type '{rule}': choose one of {choices}."
MSG_PARAMS_NOT_OBJECT = "Rule '{rule}': parameters must be an object of name: value (got {got})."
MSG_UNKNOWN_PARAM = "Rule '{rule}': unknown parameter '{name}'; allowed: {allowed}."
MSG_PARAM_FRACTION = "Rule '{rule}': {name} must be a number between 0 and 1 (got {got})."
MSG_PARAM_RANGE = "Rule '{rule}': {name} must be a number between {low} and {high} (got {got})."
MSG_PARAM_NONNEG = "Rule '{rule}': {name} must be a number of at least 0 (got {got})."
MSG_PARAM_INT = "Rule '{rule}': {name} must be a whole number between {low} and {high} (got {got})."
MSG_PARAM_BOOL = "Rule '{rule}': {name} must be true or false (got {got})."
MSG_PARAM_WORDS = "Rule '{rule}': {name} must be a list of words (got {got})."
MSG_PARAM_CHOICES = "Rule '{rule}': {name} may contain only {choices} (got {got})."


class RuleParameterError(ValueError):
    """Parameters a rule cannot accept. Mirrors ``ApplicationError`` (``message``, ``extra``)
    without importing it (that would load Django); services re-raise it as
    ``ValidationFailed``."""

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


# ---------------------------------------------------------------------------
# The post-trade view
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LotRelief:
    """One lot a sell order relieves, with its estimated realized gain (negative: a loss)."""

    lot_id: int | None
    quantity: float
    est_gain: float
    long_term: bool = False


@dataclass(frozen=True)
class OrderLine:
    """One order of the basket."""

    order_id: int | None
    account_id: int
    security_id: int
    side: str
    quantity: float
    est_price: float
    notional: float
    lots: tuple[LotRelief, ...] = ()

    @property
    def est_gain(self) -> float:
        return sum(lot.est_gain for lot in self.lots)

    @property
    def est_loss(self) -> float:
        """The losses realized by the lots sold at a loss, as a positive amount."""
        return -sum(lot.est_gain for lot in self.lots if lot.est_gain < 0)


@dataclass(frozen=True)
class AccountView:
    """An account before and after the basket's trades. ``value_before``, ``value_after`` and
    ``cash_after`` are filled in by :func:`basket_view_build`. ``gains_budget`` None: no
    budget; ``gains_used``: net gains already realized this year."""

    account_id: int
    label: str
    household_id: int
    status: str = "active"
    taxable: bool = True
    model_id: int | None = None
    cash_before: float = 0.0
    cash_reserve: float = 0.0
    min_trade_amount: float = 0.0
    gains_budget: float | None = None
    gains_used: float = 0.0
    value_before: float = 0.0
    value_after: float = 0.0
    cash_after: float = 0.0

    @property
    def frozen_or_closed(self) -> bool:
        return self.status in ("frozen", "closed")

    @property
    def gains_budget_left(self) -> float | None:
        return None if self.gains_budget is None else self.gains_budget - self.gains_used


@dataclass(frozen=True)
class SecurityView:
    """A security's attributes and its last price (None: never priced)."""

    security_id: int
    ticker: str
    sector: str = ""
    esg_score: float | None = None
    esg_tags: tuple[str, ...] = ()
    wash_sale_group: str = ""
    avg_daily_volume: float | None = None
    price: float | None = None
    price_date: date | None = None

    @property
    def wash_group(self) -> str:
        return self.wash_sale_group or self.ticker


@dataclass(frozen=True)
class RestrictionView:
    """A restriction in effect today. Exactly one of security, sector or ESG tag is set; the
    household or account is set for those scopes. ``kind``: no_buy, no_sell or no_trade."""

    restriction_id: int | None
    scope: str
    kind: str
    reason: str
    security_id: int | None = None
    sector: str = ""
    esg_tag: str = ""
    household_id: int | None = None
    account_id: int | None = None


@dataclass(frozen=True)
class HouseholdTrade:
    """A recent transaction in one of the basket's households (for wash sales)."""

    household_id: int
    account_id: int
    account_label: str
    ticker: str
    wash_group: str
    side: str
    trade_date: date
    realized: float


@dataclass(frozen=True)
class PendingOrder:
    """An order of another live basket."""

    basket_id: int
    basket_name: str
    basket_state: str
    account_id: int
    security_id: int
    side: str
    quantity: float


@dataclass(frozen=True)
class TargetView:
    """A model target of an account: weight and the half-width of its tolerance band."""

    security_id: int
    weight: float
    band: float


@dataclass(frozen=True)
class BasketView:
    """Everything the rules read about one basket, before and after its trades."""

    today: date
    stale_cutoff: date
    orders: tuple[OrderLine, ...]
    accounts: Mapping[int, AccountView]
    securities: Mapping[int, SecurityView]
    holdings_before: Mapping[tuple[int, int], float]
    holdings_after: Mapping[tuple[int, int], float]
    weights_after: Mapping[tuple[int, int], float]
    sector_weights_after: Mapping[tuple[int, str], float]
    restrictions: tuple[RestrictionView, ...] = ()
    recent_trades: tuple[HouseholdTrade, ...] = ()
    pending_orders: tuple[PendingOrder, ...] = ()
    targets: Mapping[int, tuple[TargetView, ...]] = field(default_factory=dict)
    basket_id: int | None = None
    stale_trading_days: int = 3
    sessions: tuple[date, ...] = ()
    default_band: float = 0.03


@dataclass(frozen=True)
class RuleFinding:
    """One outcome of one rule: on an order (its index in ``view.orders``) or an account."""

    order: int | None
    account_id: int | None
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def basket_view_build(
    *,
    orders: Sequence[OrderLine],
    accounts: Sequence[AccountView],
    holdings_before: Mapping[tuple[int, int], float],
    securities: Sequence[SecurityView],
    today: date,
    stale_cutoff: date,
    restrictions: Sequence[RestrictionView] = (),
    recent_trades: Sequence[HouseholdTrade] = (),
    pending_orders: Sequence[PendingOrder] = (),
    targets: Mapping[int, Sequence[TargetView]] | None = None,
    basket_id: int | None = None,
    stale_trading_days: int = 3,
    sessions: Sequence[date] = (),
    default_band: float = 0.03,
) -> BasketView:
    """The post-trade view: holdings after (buys add, sells remove), cash after (sells add
    their estimated notional, buys spend it), values before and after (securities at their last
    price, or the order's estimated price when there is none, plus cash) and weights after."""
    after: dict[tuple[int, int], float] = defaultdict(float, holdings_before)
    flows: dict[int, float] = defaultdict(float)
    est_price: dict[int, float] = {}
    for o in orders:
        sign = 1.0 if o.side == BUY else -1.0
        after[(o.account_id, o.security_id)] += sign * o.quantity
        flows[o.account_id] -= sign * o.notional
        est_price.setdefault(o.security_id, o.est_price)
    secs = {s.security_id: s for s in securities}

    def price(sec_id: int) -> float:
        s = secs.get(sec_id)
        if s is not None and s.price is not None:
            return s.price
        return est_price.get(sec_id, 0.0)

    value_before: dict[int, float] = defaultdict(float)
    value_after: dict[int, float] = defaultdict(float)
    for (acc, sec), qty in holdings_before.items():
        value_before[acc] += qty * price(sec)
    for (acc, sec), qty in after.items():
        value_after[acc] += qty * price(sec)
    account_views: dict[int, AccountView] = {}
    for a in accounts:
        cash_after = a.cash_before + flows.get(a.account_id, 0.0)
        account_views[a.account_id] = replace(
            a,
            cash_after=cash_after,
            value_before=a.cash_before + value_before.get(a.account_id, 0.0),
            value_after=cash_after + value_after.get(a.account_id, 0.0),
        )
    weights: dict[tuple[int, int], float] = {}
    sectors: dict[tuple[int, str], float] = defaultdict(float)
    for (acc, sec), qty in after.items():
        total = account_views[acc].value_after if acc in account_views else 0.0
        w = qty * price(sec) / total if total > EPS else 0.0
        weights[(acc, sec)] = w
        sector = secs[sec].sector if sec in secs else ""
        if sector:
            sectors[(acc, sector)] += w
    return BasketView(
        today=today,
        stale_cutoff=stale_cutoff,
        orders=tuple(orders),
        accounts=account_views,
        securities=secs,
        holdings_before=dict(holdings_before),
        holdings_after=dict(after),
        weights_after=weights,
        sector_weights_after=dict(sectors),
        restrictions=tuple(restrictions),
        recent_trades=tuple(recent_trades),
        pending_orders=tuple(pending_orders),
        targets={k: tuple(v) for k, v in (targets or {}).items()},
        basket_id=basket_id,
        stale_trading_days=stale_trading_days,
        sessions=tuple(sessions),
        default_band=default_band,
    )


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def money(x: float) -> str:
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def shares(x: float) -> str:
    text = f"{x:,.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ticker(view: BasketView, sec_id: int) -> str:
    s = view.securities.get(sec_id)
    return s.ticker if s is not None else f"security {sec_id}"


def _label(view: BasketView, account_id: int) -> str:
    a = view.accounts.get(account_id)
    return a.label if a is not None else str(account_id)


def _trade(view: BasketView, o: OrderLine) -> str:
    return f"{o.side} {shares(o.quantity)} {_ticker(view, o.security_id)}"


def _finding(view: BasketView, i: int, passed: bool, message: str, **details: Any) -> RuleFinding:
    o = view.orders[i]
    base = {
        "account_id": o.account_id,
        "security_id": o.security_id,
        "ticker": _ticker(view, o.security_id),
        "side": o.side,
        "quantity": o.quantity,
    }
    return RuleFinding(i, o.account_id, passed, message, {**base, **details})


def _account_finding(
    view: BasketView, account_id: int, passed: bool, message: str, **details: Any
) -> RuleFinding:
    return RuleFinding(
        None,
        account_id,
        passed,
        message,
        {"account_id": account_id, "account": _label(view, account_id), **details},
    )


def _basket_accounts(view: BasketView) -> list[int]:
    seen: dict[int, None] = {}
    for o in view.orders:
        seen.setdefault(o.account_id, None)
    return list(seen)


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------

KIND_WORDS = {"no_buy": "no-buy", "no_sell": "no-sell", "no_trade": "no-trade"}
SCOPE_WORDS = {"firm": "firm-wide", "household": "household", "account": "account"}
BLOCKS = {BUY: ("no_buy", "no_trade"), SELL: ("no_sell", "no_trade")}


def _restriction_applies(r: RestrictionView, account: AccountView | None, o: OrderLine) -> bool:
    if r.scope == "household" and (account is None or r.household_id != account.household_id):
        return False
    if r.scope == "account" and r.account_id != o.account_id:
        return False
    return r.kind in BLOCKS.get(o.side, ())


def _restriction_subject(view: BasketView, r: RestrictionView) -> str:
    if r.security_id is not None:
        return _ticker(view, r.security_id)
    if r.sector:
        return f"sector {r.sector}"
    return f"ESG tag '{r.esg_tag}'"


def rule_restricted_list(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an order whose security, sector or ESG tag is on a restricted list (firm, household
    or account) of a kind that blocks its side: no-buy blocks buys, no-sell sells, no-trade
    both. ``scopes`` limits which lists are checked."""
    scopes = set(params.get("scopes") or ("firm", "household", "account"))
    out = []
    for i, o in enumerate(view.orders):
        sec = view.securities.get(o.security_id)
        account = view.accounts.get(o.account_id)
        hits = []
        for r in view.restrictions:
            if r.scope not in scopes or not _restriction_applies(r, account, o):
                continue
            if (
                (r.security_id is not None and r.security_id == o.security_id)
                or (r.sector and sec is not None and sec.sector == r.sector)
                or (r.esg_tag and sec is not None and r.esg_tag in sec.esg_tags)
            ):
                hits.append(r)
        label, trade = _label(view, o.account_id), _trade(view, o)
        if hits:
            what = "; ".join(
                f"{SCOPE_WORDS.get(r.scope, r.scope)} {KIND_WORDS.get(r.kind, r.kind)} on "
                f"{_restriction_subject(view, r)} ({r.reason})"
                for r in hits
            )
            out.append(
                _finding(
                    view,
                    i,
                    False,
                    MSG_RESTRICTED.format(account=label, trade=trade, what=what),
                    restrictions=[r.restriction_id for r in hits],
                )
            )
        else:
            out.append(
                _finding(view, i, True, MSG_RESTRICTED_OK.format(account=label, trade=trade))
            )
    return out


def rule_esg(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail a buy of a security carrying an excluded ESG tag, or with an ESG score below
    ``min_score`` (a missing score fails only with ``fail_missing_score``). Sales pass: selling
    out of an excluded security is what the screen wants."""
    excluded = {t.lower() for t in params.get("excluded_tags") or ()}
    minimum = params.get("min_score")
    fail_missing = bool(params.get("fail_missing_score"))
    out = []
    for i, o in enumerate(view.orders):
        label, trade = _label(view, o.account_id), _trade(view, o)
        if o.side != BUY:
            out.append(_finding(view, i, True, MSG_ESG_SELL.format(account=label, trade=trade)))
            continue
        sec = view.securities.get(o.security_id)
        tags = [t for t in (sec.esg_tags if sec else ()) if t.lower() in excluded]
        score = sec.esg_score if sec else None
        problems = []
        if tags:
            problems.append(MSG_ESG_TAGS.format(tags=", ".join(tags)))
        if minimum is not None:
            if score is None:
                if fail_missing:
                    problems.append(MSG_ESG_NO_SCORE.format(minimum=f"{minimum:g}"))
            elif score < minimum:
                problems.append(MSG_ESG_SCORE.format(score=f"{score:g}", minimum=f"{minimum:g}"))
        details = {"esg_score": score, "excluded_tags": tags}
        if problems:
            message = MSG_ESG_FAIL.format(account=label, trade=trade, problems="; ".join(problems))
            out.append(_finding(view, i, False, message, **details))
        else:
            out.append(
                _finding(view, i, True, MSG_ESG_OK.format(account=label, trade=trade), **details)
            )
    return out


def rule_short_sale(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail a sell when the basket's sells of that security in that account exceed the shares
    the account holds (the position would go short)."""
    sold: dict[tuple[int, int], float] = defaultdict(float)
    for o in view.orders:
        if o.side == SELL:
            sold[(o.account_id, o.security_id)] += o.quantity
    out = []
    for i, o in enumerate(view.orders):
        label, trade = _label(view, o.account_id), _trade(view, o)
        key = (o.account_id, o.security_id)
        if o.side != SELL:
            out.append(_finding(view, i, True, MSG_SHORT_BUY.format(account=label, trade=trade)))
            continue
        held = view.holdings_before.get(key, 0.0)
        after = view.holdings_after.get(key, 0.0)
        details = {"held": held, "sold": sold[key], "after": after}
        if held - sold[key] < -SHARE_EPS:
            message = MSG_SHORT.format(
                account=label,
                trade=trade,
                after=shares(held - sold[key]),
                sold=shares(sold[key]),
                held=shares(held),
            )
            out.append(_finding(view, i, False, message, **details))
        else:
            message = MSG_SHORT_OK.format(account=label, trade=trade, held=shares(held))
            out.append(_finding(view, i, True, message, **details))
    return out


def rule_cash_overdraft(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an account whose cash after the trades is below zero, or below its cash reserve
    (unless ``respect_reserve`` is false)."""
    respect_reserve = params.get("respect_reserve", True)
    buys: dict[int, float] = defaultdict(float)
    sells: dict[int, float] = defaultdict(float)
    for o in view.orders:
        (buys if o.side == BUY else sells)[o.account_id] += o.notional
    out = []
    for acc in _basket_accounts(view):
        a = view.accounts[acc]
        details = {
            "cash_before": a.cash_before,
            "cash_after": a.cash_after,
            "reserve": a.cash_reserve,
            "buys": buys[acc],
            "sells": sells[acc],
        }
        if a.cash_after < -0.005:
            message = MSG_OVERDRAFT.format(
                account=a.label,
                after=money(a.cash_after),
                before=money(a.cash_before),
                buys=money(buys[acc]),
                sells=money(sells[acc]),
            )
            out.append(_account_finding(view, acc, False, message, **details))
        elif respect_reserve and a.cash_after < a.cash_reserve - 0.005:
            message = MSG_BELOW_RESERVE.format(
                account=a.label, after=money(a.cash_after), reserve=money(a.cash_reserve)
            )
            out.append(_account_finding(view, acc, False, message, **details))
        else:
            message = MSG_CASH_OK.format(
                account=a.label, after=money(a.cash_after), reserve=money(a.cash_reserve)
            )
            out.append(_account_finding(view, acc, True, message, **details))
    return out


def rule_concentration(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail a buy after which its security, or its sector, is over the weight limit of the
    account's post-trade value (``max_security_weight``, ``max_sector_weight``). Sales only
    reduce concentration and pass; ``exempt_tickers`` (broad funds) are not checked."""
    limit = float(params.get("max_security_weight", 0.25))
    sector_limit = float(params.get("max_sector_weight", 0.40))
    exempt = {t.upper() for t in params.get("exempt_tickers") or ()}
    out = []
    for i, o in enumerate(view.orders):
        label, trade = _label(view, o.account_id), _trade(view, o)
        ticker = _ticker(view, o.security_id)
        if o.side != BUY:
            out.append(_finding(view, i, True, MSG_CONC_SELL.format(account=label, trade=trade)))
            continue
        if ticker.upper() in exempt:
            out.append(
                _finding(view, i, True, MSG_CONC_EXEMPT.format(account=label, ticker=ticker))
            )
            continue
        sec = view.securities.get(o.security_id)
        sector = sec.sector if sec is not None else ""
        weight = view.weights_after.get((o.account_id, o.security_id), 0.0)
        sector_weight = (
            view.sector_weights_after.get((o.account_id, sector), 0.0) if sector else 0.0
        )
        details = {"weight": weight, "sector": sector, "sector_weight": sector_weight}
        problems = []
        if weight > limit + EPS:
            problems.append(
                MSG_CONC_SECURITY.format(ticker=ticker, weight=pct(weight), limit=pct(limit))
            )
        if sector and sector_weight > sector_limit + EPS:
            problems.append(
                MSG_CONC_SECTOR.format(
                    sector=sector, weight=pct(sector_weight), limit=pct(sector_limit)
                )
            )
        if problems:
            message = MSG_CONC_FAIL.format(
                account=label, trade=trade, problems=" and ".join(problems)
            )
            out.append(_finding(view, i, False, message, **details))
        else:
            message = MSG_CONC_OK.format(
                account=label,
                trade=trade,
                ticker=ticker,
                weight=pct(weight),
                sector=sector or "unclassified",
                sector_weight=pct(sector_weight),
                limit=pct(limit),
                sector_limit=pct(sector_limit),
            )
            out.append(_finding(view, i, True, message, **details))
    return out


def rule_post_trade_drift(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an account with a model when, after the trades, a target is still outside its band
    (``|w - target| > band + extra_tolerance``) or a security outside the model is still held
    above the default band. Accounts without model targets are not checked."""
    extra = float(params.get("extra_tolerance", 0.0))
    out = []
    for acc in _basket_accounts(view):
        targets = view.targets.get(acc)
        if not targets:
            continue
        a = view.accounts[acc]
        rows = [(t.security_id, t.weight, t.band) for t in targets]
        in_model = {t.security_id for t in targets}
        rows += [
            (sec, 0.0, view.default_band)
            for (acc_id, sec), qty in view.holdings_after.items()
            if acc_id == acc and sec not in in_model and qty > SHARE_EPS
        ]
        breaches = []
        for sec, target, band in rows:
            weight = view.weights_after.get((acc, sec), 0.0)
            if abs(weight - target) > band + extra + EPS:
                breaches.append(
                    {
                        "security_id": sec,
                        "ticker": _ticker(view, sec),
                        "weight": weight,
                        "target": target,
                        "band": band,
                    }
                )
        if breaches:
            items = "; ".join(
                MSG_DRIFT_ITEM.format(
                    ticker=b["ticker"],
                    weight=pct(b["weight"]),
                    target=pct(b["target"]),
                    band=pct(b["band"]),
                )
                for b in breaches
            )
            many = len(breaches) != 1
            message = MSG_DRIFT_FAIL.format(
                account=a.label,
                count=len(breaches),
                s="s" if many else "",
                their="their" if many else "its",
                items=items,
            )
            out.append(_account_finding(view, acc, False, message, breaches=breaches))
        else:
            out.append(_account_finding(view, acc, True, MSG_DRIFT_OK.format(account=a.label)))
    return out


def rule_wash_sale(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """DESIGN 5's wash-sale rule across the household, in both directions: no buy of a
    security (or its wash-sale group) within 30 days after a loss sale anywhere in the
    household, and no loss sale of a security bought in the household within the last 30
    days; the basket's own orders count too (a loss sale in one account and a buy in another
    account of the same household)."""
    since = view.today - timedelta(days=WASH_SALE_DAYS)

    def household(acc: int) -> int | None:
        a = view.accounts.get(acc)
        return a.household_id if a is not None else None

    def group(sec_id: int) -> str:
        s = view.securities.get(sec_id)
        return s.wash_group if s is not None else str(sec_id)

    out = []
    for i, o in enumerate(view.orders):
        label, trade = _label(view, o.account_id), _trade(view, o)
        hh, grp = household(o.account_id), group(o.security_id)
        when = ""
        other_id: int | None = None
        if o.side == BUY:
            for t in view.recent_trades:
                if (
                    t.household_id == hh
                    and t.wash_group == grp
                    and t.side == SELL
                    and t.realized < 0
                    and t.trade_date >= since
                ):
                    when = MSG_WASH_SOLD_ON.format(day=t.trade_date, other=t.account_label)
                    break
            else:
                for j, p in enumerate(view.orders):
                    if (
                        j != i
                        and p.side == SELL
                        and p.est_loss > 0
                        and household(p.account_id) == hh
                        and group(p.security_id) == grp
                    ):
                        other_id = p.account_id
                        when = MSG_WASH_SOLD_HERE.format(other=_label(view, p.account_id))
                        break
            if when:
                message = MSG_WASH_BUY.format(account=label, trade=trade, group=grp, when=when)
                out.append(_finding(view, i, False, message, group=grp, other=other_id))
                continue
        elif o.est_loss > 0:
            for t in view.recent_trades:
                if (
                    t.household_id == hh
                    and t.wash_group == grp
                    and t.side == BUY
                    and t.trade_date >= since
                ):
                    when = MSG_WASH_BOUGHT_ON.format(day=t.trade_date, other=t.account_label)
                    break
            else:
                for j, p in enumerate(view.orders):
                    if (
                        j != i
                        and p.side == BUY
                        and household(p.account_id) == hh
                        and group(p.security_id) == grp
                    ):
                        other_id = p.account_id
                        when = MSG_WASH_BOUGHT_HERE.format(other=_label(view, p.account_id))
                        break
            if when:
                message = MSG_WASH_SELL.format(
                    account=label, trade=trade, loss=money(o.est_loss), group=grp, when=when
                )
                out.append(
                    _finding(view, i, False, message, group=grp, other=other_id, loss=o.est_loss)
                )
                continue
        out.append(_finding(view, i, True, MSG_WASH_OK.format(account=label, trade=trade)))
    return out


def rule_min_trade(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an order whose notional is below the account's minimum trade amount (or
    ``min_amount`` when set). A sell of the whole position passes when
    ``allow_full_liquidation`` (the default): a small remnant can only be sold small."""
    override = params.get("min_amount")
    allow_sell_out = params.get("allow_full_liquidation", True)
    out = []
    for i, o in enumerate(view.orders):
        a = view.accounts.get(o.account_id)
        minimum = float(override) if override is not None else (a.min_trade_amount if a else 0)
        label, trade = _label(view, o.account_id), _trade(view, o)
        fmt = {
            "account": label,
            "trade": trade,
            "notional": money(o.notional),
            "minimum": money(minimum),
        }
        details = {"notional": o.notional, "minimum": minimum}
        if o.notional >= minimum - 0.005:
            out.append(_finding(view, i, True, MSG_MIN_TRADE_OK.format(**fmt), **details))
        elif (
            allow_sell_out
            and o.side == SELL
            and abs(view.holdings_after.get((o.account_id, o.security_id), 0.0)) <= SHARE_EPS
        ):
            out.append(_finding(view, i, True, MSG_MIN_TRADE_SELL_OUT.format(**fmt), **details))
        else:
            out.append(_finding(view, i, False, MSG_MIN_TRADE.format(**fmt), **details))
    return out


def rule_adv(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an order larger than ``max_adv_fraction`` of the security's average daily volume.
    A security without a volume on file passes, unless ``fail_when_missing``."""
    limit = float(params.get("max_adv_fraction", 0.05))
    fail_missing = bool(params.get("fail_when_missing"))
    out = []
    for i, o in enumerate(view.orders):
        sec = view.securities.get(o.security_id)
        adv = sec.avg_daily_volume if sec is not None else None
        label, trade = _label(view, o.account_id), _trade(view, o)
        if not adv:
            message = MSG_ADV_MISSING.format(account=label, ticker=_ticker(view, o.security_id))
            out.append(_finding(view, i, not fail_missing, message, adv=adv))
            continue
        share = o.quantity / adv
        details = {"adv": adv, "share": share, "limit": limit}
        if share > limit + EPS:
            message = MSG_ADV.format(
                account=label,
                trade=trade,
                share=f"{100 * share:.2f}%",
                adv=shares(adv),
                limit=pct(limit),
            )
            out.append(_finding(view, i, False, message, **details))
        else:
            message = MSG_ADV_OK.format(
                account=label, trade=trade, share=f"{100 * share:.2f}%", limit=pct(limit)
            )
            out.append(_finding(view, i, True, message, **details))
    return out


def rule_stale_price(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an order whose security has no price, or a last price dated before the cutoff:
    ``trading_days`` sessions before the latest completed one (the firm setting when not set,
    whose cutoff the view carries)."""
    days = params.get("trading_days")
    if days is not None and len(view.sessions) > days:
        cutoff = view.sessions[-1 - days]
    else:
        days, cutoff = view.stale_trading_days, view.stale_cutoff
    out = []
    for i, o in enumerate(view.orders):
        sec = view.securities.get(o.security_id)
        label, ticker = _label(view, o.account_id), _ticker(view, o.security_id)
        day = sec.price_date if sec is not None and sec.price is not None else None
        details = {"price_date": day.isoformat() if day else None, "cutoff": cutoff.isoformat()}
        if day is None:
            message = MSG_PRICE_MISSING.format(account=label, ticker=ticker)
            out.append(_finding(view, i, False, message, **details))
        elif day < cutoff:
            message = MSG_PRICE_STALE.format(
                account=label,
                ticker=ticker,
                day=day,
                days=days,
                s="" if days == 1 else "s",
                cutoff=cutoff,
            )
            out.append(_finding(view, i, False, message, **details))
        else:
            message = MSG_PRICE_OK.format(account=label, ticker=ticker, day=day)
            out.append(_finding(view, i, True, message, **details))
    return out


def rule_duplicate_order(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an order when the same account, security and side is already pending in another
    live basket, or appears more than once in this basket."""
    count: dict[tuple[int, int, str], int] = defaultdict(int)
    for o in view.orders:
        count[(o.account_id, o.security_id, o.side)] += 1
    out = []
    for i, o in enumerate(view.orders):
        key = (o.account_id, o.security_id, o.side)
        label, ticker = _label(view, o.account_id), _ticker(view, o.security_id)
        others = [
            p
            for p in view.pending_orders
            if (p.account_id, p.security_id, p.side) == key and p.basket_id != view.basket_id
        ]
        if others:
            where = ", ".join(
                MSG_DUPLICATE_BASKET.format(
                    basket=p.basket_id, name=p.basket_name, state=p.basket_state.replace("_", " ")
                )
                for p in others
            )
            message = MSG_DUPLICATE.format(account=label, side=o.side, ticker=ticker, where=where)
            out.append(_finding(view, i, False, message, baskets=[p.basket_id for p in others]))
        elif count[key] > 1:
            message = MSG_DUPLICATE_HERE.format(
                account=label, side=o.side, ticker=ticker, count=count[key]
            )
            out.append(_finding(view, i, False, message, count=count[key]))
        else:
            message = MSG_DUPLICATE_OK.format(account=label, side=o.side, ticker=ticker)
            out.append(_finding(view, i, True, message))
    return out


def rule_account_status(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail an account that is frozen or closed."""
    out = []
    for acc in _basket_accounts(view):
        a = view.accounts[acc]
        if a.frozen_or_closed:
            message = MSG_STATUS.format(account=a.label, status=a.status)
            out.append(_account_finding(view, acc, False, message, status=a.status))
        else:
            message = MSG_STATUS_OK.format(account=a.label)
            out.append(_account_finding(view, acc, True, message, status=a.status))
    return out


def rule_gains_budget(view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Fail a taxable account with a realized-gains budget when the basket's estimated net
    realized gains exceed what is left of the budget this year (plus ``tolerance``). Accounts
    without a budget, or not taxable, are not checked."""
    tolerance = float(params.get("tolerance", 0.0))
    gains: dict[int, float] = defaultdict(float)
    for o in view.orders:
        if o.side == SELL:
            gains[o.account_id] += o.est_gain
    out = []
    for acc in _basket_accounts(view):
        a = view.accounts[acc]
        left = a.gains_budget_left
        if left is None or not a.taxable or a.gains_budget is None:
            continue
        fmt = {
            "account": a.label,
            "gain": money(gains[acc]),
            "left": money(left),
            "budget": money(a.gains_budget),
        }
        details = {"gain": gains[acc], "left": left, "budget": a.gains_budget}
        if gains[acc] > left + tolerance + 0.005:
            out.append(_account_finding(view, acc, False, MSG_GAINS.format(**fmt), **details))
        else:
            out.append(_account_finding(view, acc, True, MSG_GAINS_OK.format(**fmt), **details))
    return out


# ---------------------------------------------------------------------------
# Parameter schemas and the registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of a rule: ``kind`` is fraction, number (``low``..``high``), nonneg,
    int (``low``..``high``), bool, words (a list of strings) or choices (a list drawn from
    ``choices``); ``nullable`` accepts None."""

    kind: str
    default: Any
    help: str
    low: float = 0.0
    high: float = math.inf
    nullable: bool = False
    choices: tuple[str, ...] = ()


Rule = Callable[[BasketView, Mapping[str, Any]], list[RuleFinding]]

RULES: dict[str, tuple[Rule, dict[str, Param]]] = {
    "restricted_list": (
        rule_restricted_list,
        {
            "scopes": Param(
                "choices",
                ["firm", "household", "account"],
                "Which restricted lists to check.",
                choices=("firm", "household", "account"),
            )
        },
    ),
    "esg": (
        rule_esg,
        {
            "excluded_tags": Param("words", [], "ESG tags no buy may carry."),
            "min_score": Param(
                "number", None, "Lowest ESG score a buy may have.", high=100, nullable=True
            ),
            "fail_missing_score": Param(
                "bool", False, "Fail a buy without an ESG score when a minimum is set."
            ),
        },
    ),
    "short_sale": (rule_short_sale, {}),
    "cash_overdraft": (
        rule_cash_overdraft,
        {"respect_reserve": Param("bool", True, "Also fail below the account's cash reserve.")},
    ),
    "concentration": (
        rule_concentration,
        {
            "max_security_weight": Param("fraction", 0.25, "Largest weight of one security."),
            "max_sector_weight": Param("fraction", 0.40, "Largest weight of one sector."),
            "exempt_tickers": Param("words", [], "Tickers not checked (broad funds)."),
        },
    ),
    "post_trade_drift": (
        rule_post_trade_drift,
        {"extra_tolerance": Param("fraction", 0.0, "Slack added to every band.")},
    ),
    "wash_sale": (rule_wash_sale, {}),
    "min_trade": (
        rule_min_trade,
        {
            "min_amount": Param(
                "nonneg", None, "Minimum notional (empty: the account's own).", nullable=True
            ),
            "allow_full_liquidation": Param(
                "bool", True, "Let a sale of the whole position be smaller."
            ),
        },
    ),
    "adv": (
        rule_adv,
        {
            "max_adv_fraction": Param(
                "fraction", 0.05, "Largest order as a share of average daily volume."
            ),
            "fail_when_missing": Param("bool", False, "Fail when no volume is on file."),
        },
    ),
    "stale_price": (
        rule_stale_price,
        {
            "trading_days": Param(
                "int",
                None,
                "Oldest acceptable price, in trading days (empty: the firm setting).",
                high=60,
                nullable=True,
            )
        },
    ),
    "duplicate_order": (rule_duplicate_order, {}),
    "account_status": (rule_account_status, {}),
    "gains_budget": (
        rule_gains_budget,
        {"tolerance": Param("nonneg", 0.0, "Dollars of gains allowed over the budget.")},
    ),
}

# Rules whose findings are per account (``order`` None) rather than per order.
ACCOUNT_LEVEL_RULES = frozenset(
    {"cash_overdraft", "post_trade_drift", "account_status", "gains_budget"}
)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def _clean(rule: str, name: str, p: Param, raw: Any) -> Any:
    if raw is None and p.nullable:
        return None
    fmt = {"rule": rule, "name": name, "got": repr(raw)}
    if p.kind in ("fraction", "number", "nonneg"):
        value = _number(raw)
        low, high = (0.0, 1.0) if p.kind == "fraction" else (p.low, p.high)
        if value is None or not low <= value <= high:
            if p.kind == "fraction":
                raise RuleParameterError(MSG_PARAM_FRACTION.format(**fmt))
            if p.kind == "nonneg":
                raise RuleParameterError(MSG_PARAM_NONNEG.format(**fmt))
            raise RuleParameterError(
                MSG_PARAM_RANGE.format(low=f"{low:g}", high=f"{high:g}", **fmt)
            )
        return value
    if p.kind == "int":
        value = _number(raw)
        if value is None or value != int(value) or not p.low <= value <= p.high:
            raise RuleParameterError(
                MSG_PARAM_INT.format(low=f"{p.low:g}", high=f"{p.high:g}", **fmt)
            )
        return int(value)
    if p.kind == "bool":
        if not isinstance(raw, bool):
            raise RuleParameterError(MSG_PARAM_BOOL.format(**fmt))
        return raw
    if not isinstance(raw, list | tuple) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise RuleParameterError(MSG_PARAM_WORDS.format(**fmt))
    words = [x.strip() for x in raw]
    if p.kind == "choices":
        bad = [w for w in words if w not in p.choices]
        if bad:
            raise RuleParameterError(
                MSG_PARAM_CHOICES.format(
                    choices=", ".join(p.choices), **{**fmt, "got": repr(bad[0])}
                )
            )
    return words


def rule_parameters_validate(rule_type: str, params: Any) -> dict[str, Any]:
    """The rule's parameters checked and completed with their defaults.

    Raises :class:`RuleParameterError` naming the rule, the parameter, what it must be and
    what was given, e.g. "Rule 'concentration': max_security_weight must be a number between
    0 and 1 (got 'abc')."
    """
    if rule_type not in RULES:
        raise RuleParameterError(
            MSG_UNKNOWN_RULE.format(rule=rule_type, choices=", ".join(sorted(RULES)))
        )
    _, schema = RULES[rule_type]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise RuleParameterError(MSG_PARAMS_NOT_OBJECT.format(rule=rule_type, got=repr(params)))
    for name in params:
        if name not in schema:
            raise RuleParameterError(
                MSG_UNKNOWN_PARAM.format(
                    rule=rule_type, name=name, allowed=", ".join(sorted(schema)) or "none"
                ),
                {"parameter": name},
            )
    cleaned: dict[str, Any] = {}
    for name, p in schema.items():
        if name in params:
            cleaned[name] = _clean(rule_type, name, p, params[name])
        else:
            cleaned[name] = list(p.default) if isinstance(p.default, list) else p.default
    return cleaned


def rule_run(rule_type: str, view: BasketView, params: Mapping[str, Any]) -> list[RuleFinding]:
    """Validate ``params`` and run one rule on ``view``."""
    function, _ = RULES[rule_type]
    return function(view, rule_parameters_validate(rule_type, params))
