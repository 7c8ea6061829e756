"""Portfolio reads. Selectors own visibility: every read of a permissioned model goes through
``households_visible_to`` / ``accounts_visible_to``, so there is one place to get it right.

A PM team (a group) holds ``view_household`` on its households (django-guardian); accounts
inherit through their household. Ops, Compliance and Admin hold the permission globally.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import (
    DecimalField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from guardian.shortcuts import get_objects_for_user

from portfolios.models import (
    Account,
    DriftSnapshot,
    Household,
    Price,
    Security,
    TaxLot,
    Transaction,
)
from rebalance_app.exceptions import NotFound

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

ACCOUNT_NOT_FOUND = "Account {id} not found."
HOUSEHOLD_NOT_FOUND = "Household {id} not found."


def households_visible_to(
    user: AbstractBaseUser, *, perm: str = "view_household"
) -> QuerySet[Household]:
    if not user.is_authenticated:
        return Household.objects.none()
    return get_objects_for_user(
        user,
        f"portfolios.{perm}",
        klass=Household,
        accept_global_perms=True,
        with_superuser=True,
    )


def accounts_visible_to(
    user: AbstractBaseUser, *, perm: str = "view_household"
) -> QuerySet[Account]:
    """Accounts whose household ``user`` may see (or change, with ``perm="change_household"``)."""
    if not user.is_authenticated:
        return Account.objects.none()
    if user.is_superuser or user.has_perm(f"portfolios.{perm}"):
        return Account.objects.all()
    return Account.objects.filter(household__in=households_visible_to(user, perm=perm).values("pk"))


def household_get(*, user: AbstractBaseUser, pk: Any) -> Household:
    try:
        return households_visible_to(user).get(pk=pk)
    except (Household.DoesNotExist, ValueError, TypeError):
        raise NotFound(HOUSEHOLD_NOT_FOUND.format(id=pk)) from None


def account_get(*, user: AbstractBaseUser, pk: Any) -> Account:
    """One account ``user`` may see; anything else is NotFound (never tell it exists)."""
    try:
        return (
            accounts_visible_to(user)
            .select_related("household", "household__team", "model")
            .get(pk=pk)
        )
    except (Account.DoesNotExist, ValueError, TypeError):
        raise NotFound(ACCOUNT_NOT_FOUND.format(id=pk)) from None


def latest_price_subquery(security_ref: str = "pk") -> Subquery:
    return Subquery(
        Price.objects.filter(security=OuterRef(security_ref))
        .order_by("-as_of")
        .values("price")[:1],
        output_field=DecimalField(max_digits=18, decimal_places=6),
    )


def latest_prices(*, security_ids: list[int] | None = None) -> dict[int, tuple[Decimal, date]]:
    """The latest price and its date per security, in one query."""
    qs = Security.objects.all()
    if security_ids is not None:
        qs = qs.filter(pk__in=security_ids)
    latest_date = Subquery(
        Price.objects.filter(security=OuterRef("pk")).order_by("-as_of").values("as_of")[:1]
    )
    rows = qs.annotate(p=latest_price_subquery(), d=latest_date).values_list("pk", "p", "d")
    return {pk: (p, d) for pk, p, d in rows if p is not None}


def account_list(
    *, user: AbstractBaseUser, search: str = "", team: str = "", model: str = ""
) -> QuerySet[Account]:
    """Visible accounts with their household, team and model, for lists (constant queries)."""
    qs = accounts_visible_to(user).select_related("household", "household__team", "model")
    if search:
        qs = qs.filter(
            Q(name__icontains=search)
            | Q(account_number__icontains=search)
            | Q(household__name__icontains=search)
        )
    if team:
        qs = qs.filter(household__team__name=team)
    if model:
        qs = qs.filter(model_id=model)
    return qs.order_by("household__name", "account_number")


@dataclass(frozen=True)
class Holding:
    security_id: int
    ticker: str
    name: str
    sector: str
    quantity: Decimal
    cost: Decimal
    price: Decimal | None
    price_date: date | None
    market_value: Decimal | None
    weight: float | None
    target: float | None
    unrealized: Decimal | None


@dataclass(frozen=True)
class AccountHoldings:
    holdings: list[Holding]
    cash: Decimal
    total_value: Decimal
    cash_weight: float
    cash_target: float | None
    missing_prices: list[str]


def account_holdings(*, account: Account) -> AccountHoldings:
    """Positions (lots summed per security) valued at the latest price, with model targets.

    Two queries: the lot sums with the latest price, and the model's current targets.
    """
    rows = (
        TaxLot.objects.filter(account=account, quantity__gt=0)
        .values("security_id", "security__ticker", "security__name", "security__sector")
        .annotate(
            qty=Sum("quantity"),
            cost=Sum(
                F("quantity") * F("cost_basis"),
                output_field=DecimalField(max_digits=30, decimal_places=6),
            ),
            price=latest_price_subquery("security_id"),
            price_date=Subquery(
                Price.objects.filter(security=OuterRef("security_id"))
                .order_by("-as_of")
                .values("as_of")[:1]
            ),
        )
        .order_by("security__ticker")
    )
    targets: dict[int, float] = {}
    cash_target: float | None = None
    version = account.model.current_version if account.model_id else None
    if version is not None:
        targets = {t.security_id: float(t.weight) for t in version.targets.all()}
        cash_target = float(version.cash_target)
    invested = Decimal("0")
    missing: list[str] = []
    for r in rows:
        if r["price"] is None:
            missing.append(r["security__ticker"])
        else:
            invested += r["qty"] * r["price"]
    total = invested + account.cash_balance
    holdings = []
    for r in rows:
        mv = r["qty"] * r["price"] if r["price"] is not None else None
        holdings.append(
            Holding(
                security_id=r["security_id"],
                ticker=r["security__ticker"],
                name=r["security__name"],
                sector=r["security__sector"],
                quantity=r["qty"],
                cost=r["cost"].quantize(Decimal("0.01")),
                price=r["price"],
                price_date=r["price_date"],
                market_value=mv.quantize(Decimal("0.01")) if mv is not None else None,
                weight=float(mv / total) if mv is not None and total else None,
                target=targets.get(r["security_id"]),
                unrealized=(mv - r["cost"]).quantize(Decimal("0.01")) if mv is not None else None,
            )
        )
    held = {h.security_id for h in holdings}
    # Model securities not held: weight 0 against their target.
    if targets:
        unheld = Security.objects.filter(pk__in=[s for s in targets if s not in held])
        holdings.extend(
            Holding(
                sec.pk,
                sec.ticker,
                sec.name,
                sec.sector,
                Decimal("0"),
                Decimal("0"),
                None,
                None,
                Decimal("0"),
                0.0,
                targets[sec.pk],
                None,
            )
            for sec in unheld
        )
    return AccountHoldings(
        holdings=holdings,
        cash=account.cash_balance,
        total_value=total.quantize(Decimal("0.01")),
        cash_weight=float(account.cash_balance / total) if total else 0.0,
        cash_target=cash_target,
        missing_prices=missing,
    )


def account_latest_drift(*, account: Account) -> DriftSnapshot | None:
    """The account's latest drift snapshot (the caller has already seen the account)."""
    return DriftSnapshot.objects.filter(account=account, is_latest=True).first()


def account_lots(*, account: Account) -> QuerySet[TaxLot]:
    return (
        TaxLot.objects.filter(account=account, quantity__gt=0)
        .select_related("security")
        .order_by("security__ticker", "acquired_on")
    )


def account_transactions(*, account: Account) -> QuerySet[Transaction]:
    return (
        Transaction.objects.filter(account=account)
        .select_related("security")
        .order_by("-trade_date", "-id")
    )
