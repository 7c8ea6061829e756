"""The data-quality report (DESIGN 11): what in the books would make a drift figure or a
proposal wrong, found before anyone relies on it.

Six checks, each with a count and its first items: held securities whose latest price is
older than ``STALE_PRICE_TRADING_DAYS`` XNYS sessions (or that have no price), accounts
without a model, models whose current version does not sum to 100% (targets plus cash),
held securities that are not in the account's model, lots acquired in the future, and
accounts with open reconciliation breaks. Every check is two queries (a count and the first
items), so the report costs the same number of queries for ten accounts or a million.

Account-bound checks cover the accounts the user may see (``accounts_visible_to``); models
are reference data every role reads, so the model check covers every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import (
    Count,
    DecimalField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from portfolios import calendar
from portfolios.models import (
    Account,
    AccountStatus,
    ModelTarget,
    ModelVersion,
    Price,
    ReconciliationBreak,
    Security,
    TaxLot,
)
from portfolios.selectors import accounts_visible_to

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

DEFAULT_LIMIT = 20
WEIGHT_TOLERANCE = Decimal("0.0001")
CLEAN = "Data quality: no problems found."
SUMMARY = "Data quality: {problems}."

# key -> (title, one-line explanation, summary phrase with {n})
CHECKS: dict[str, tuple[str, str, str]] = {
    "stale_prices": (
        "Stale or missing prices",
        "Held securities whose latest price is older than {days} trading day(s) on the XNYS "
        "calendar (before {cutoff}), or that have no price at all.",
        "{n} held securit{plural_y} with stale or missing prices",
    ),
    "accounts_without_model": (
        "Accounts without a model",
        "Open accounts that follow no model: they cannot be scanned for drift or rebalanced.",
        "{n} account{plural_s} without a model",
    ),
    "models_not_100": (
        "Models not summing to 100%",
        "Models whose current version's targets plus cash do not sum to 100% (within 0.01%).",
        "{n} model{plural_s} not summing to 100%",
    ),
    "held_not_in_model": (
        "Held securities not in the model",
        "Positions in a security that the account's model does not hold.",
        "{n} held position{plural_s} not in the model",
    ),
    "future_lots": (
        "Lots with a future acquisition date",
        "Tax lots acquired after today: a typing error or a trade booked early.",
        "{n} lot{plural_s} with a future acquisition date",
    ),
    "open_breaks": (
        "Accounts with open reconciliation breaks",
        "The custodian's positions differ from ours and nobody has resolved the difference.",
        "{n} account{plural_s} with open reconciliation breaks",
    ),
}


@dataclass(frozen=True)
class DataQualityCheck:
    key: str
    title: str
    description: str
    count: int
    items: list[dict[str, Any]]

    @property
    def more(self) -> int:
        """How many problems the first items leave out."""
        return max(self.count - len(self.items), 0)

    @property
    def phrase(self) -> str:
        template = CHECKS[self.key][2]
        return template.format(
            n=self.count,
            plural_s="" if self.count == 1 else "s",
            plural_y="y" if self.count == 1 else "ies",
        )


@dataclass(frozen=True)
class DataQualityReport:
    generated_at: datetime
    today: date
    stale_cutoff: date
    stale_days: int
    limit: int
    stale_prices: DataQualityCheck
    accounts_without_model: DataQualityCheck
    models_not_100: DataQualityCheck
    held_not_in_model: DataQualityCheck
    future_lots: DataQualityCheck
    open_breaks: DataQualityCheck
    checks: list[DataQualityCheck] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(check.count for check in self.checks)

    @property
    def clean(self) -> bool:
        return self.problems == 0


def _check(key: str, qs: QuerySet[Any], limit: int, **fmt: Any) -> DataQualityCheck:
    title, description, _ = CHECKS[key]
    return DataQualityCheck(
        key=key,
        title=title,
        description=description.format(**fmt),
        count=qs.count(),
        items=list(qs[:limit]),
    )


def _held_lots(accounts: QuerySet[Account]) -> QuerySet[TaxLot]:
    return TaxLot.objects.filter(quantity__gt=0, account__in=accounts.values("pk"))


def _stale_prices(accounts: QuerySet[Account], cutoff: date) -> QuerySet[Any]:
    latest = Subquery(
        Price.objects.filter(security=OuterRef("pk")).order_by("-as_of").values("as_of")[:1]
    )
    held = _held_lots(accounts).filter(security=OuterRef("pk"))
    return (
        Security.objects.filter(Exists(held))
        .annotate(last_price=latest)
        .filter(Q(last_price__isnull=True) | Q(last_price__lt=cutoff))
        .order_by(F("last_price").asc(nulls_first=True), "ticker")
        .values("pk", "ticker", "name", "last_price")
    )


def _accounts_without_model(accounts: QuerySet[Account]) -> QuerySet[Any]:
    return (
        accounts.filter(model__isnull=True)
        .exclude(status=AccountStatus.CLOSED)
        .order_by("account_number", "pk")
        .values("pk", "account_number", "name", "household__name")
    )


def _models_not_100() -> QuerySet[Any]:
    weight = DecimalField(max_digits=12, decimal_places=6)
    total = Coalesce(Sum("targets__weight"), Value(Decimal("0")), output_field=weight) + F(
        "cash_target"
    )
    return (
        ModelVersion.objects.filter(is_current=True)
        .annotate(total=total)
        .filter(Q(total__lt=1 - WEIGHT_TOLERANCE) | Q(total__gt=1 + WEIGHT_TOLERANCE))
        .order_by("model__name", "pk")
        .values("pk", "model_id", "model__name", "version", "total", "cash_target")
    )


def _held_not_in_model(accounts: QuerySet[Account]) -> QuerySet[Any]:
    in_model = ModelTarget.objects.filter(
        version__model=OuterRef("account__model"),
        version__is_current=True,
        security=OuterRef("security"),
    )
    return (
        _held_lots(accounts)
        .filter(account__model__isnull=False)
        .exclude(Exists(in_model))
        .order_by("account__account_number", "security__ticker")
        .values("account_id", "account__account_number", "security__ticker", "account__model__name")
        .annotate(quantity=Sum("quantity"))
    )


def _future_lots(accounts: QuerySet[Account], today: date) -> QuerySet[Any]:
    return (
        TaxLot.objects.filter(
            account__in=accounts.values("pk"), acquired_on__gt=today, quantity__gt=0
        )
        .order_by("-acquired_on", "account__account_number", "pk")
        .values(
            "pk",
            "account_id",
            "account__account_number",
            "security__ticker",
            "quantity",
            "acquired_on",
        )
    )


def _open_breaks(accounts: QuerySet[Account]) -> QuerySet[Any]:
    return (
        ReconciliationBreak.objects.filter(
            resolved_at__isnull=True, account__in=accounts.values("pk")
        )
        .order_by("account__account_number")
        .values("account_id", "account__account_number", "account__name")
        .annotate(breaks=Count("pk"))
    )


def _report(*, accounts: QuerySet[Account], limit: int, now: datetime | None) -> DataQualityReport:
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = settings.STALE_PRICE_TRADING_DAYS
    cutoff = calendar.stale_price_cutoff(now=now, trading_days=days)
    checks = {
        "stale_prices": _check(
            "stale_prices", _stale_prices(accounts, cutoff), limit, days=days, cutoff=cutoff
        ),
        "accounts_without_model": _check(
            "accounts_without_model", _accounts_without_model(accounts), limit
        ),
        "models_not_100": _check("models_not_100", _models_not_100(), limit),
        "held_not_in_model": _check("held_not_in_model", _held_not_in_model(accounts), limit),
        "future_lots": _check("future_lots", _future_lots(accounts, today), limit),
        "open_breaks": _check("open_breaks", _open_breaks(accounts), limit),
    }
    return DataQualityReport(
        generated_at=now,
        today=today,
        stale_cutoff=cutoff,
        stale_days=days,
        limit=limit,
        checks=list(checks.values()),
        **checks,
    )


def data_quality_report(
    *, user: AbstractBaseUser, limit: int = DEFAULT_LIMIT, now: datetime | None = None
) -> DataQualityReport:
    """The report over the accounts ``user`` may see (a PM: their own accounts)."""
    return _report(accounts=accounts_visible_to(user), limit=limit, now=now)


def data_quality_firm_report(
    *, limit: int = DEFAULT_LIMIT, now: datetime | None = None
) -> DataQualityReport:
    """The report over the whole firm, for system callers (``scan_drift``) that have no user."""
    return _report(accounts=Account.objects.all(), limit=limit, now=now)


def data_quality_summary(report: DataQualityReport) -> str:
    """One line naming every check that found something, e.g. for ``scan_drift``."""
    found = [check.phrase for check in report.checks if check.count]
    if not found:
        return CLEAN
    return SUMMARY.format(problems=", ".join(found))
