"""Portfolio writes: team assignment of households (object permissions), model versioning and
account edits. Each is atomic, takes the acting user and writes its audit event in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Max
from guardian.shortcuts import assign_perm, remove_perm

from compliance.services.audit import audit_diff, audit_record, audit_snapshot
from portfolios.models import Account, Household, ModelPortfolio, ModelTarget, ModelVersion
from rebalance_app.exceptions import PermissionDenied, ValidationFailed

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

HOUSEHOLD_PERMS = ("view_household", "change_household")
WEIGHT_TOLERANCE = Decimal("0.0001")
MODEL_WEIGHTS_NOT_100 = (
    "Model '{name}' weights sum to {total:.4%} including cash; they must sum to 100% "
    "(within 0.01%)."
)
MODEL_DUPLICATE_SECURITY = "Model '{name}' lists {ticker} more than once."
MODEL_WEIGHT_RANGE = "Model '{name}': the weight of {ticker} must be between 0% and 100%."


def household_assign_team(
    *, household: Household, team: Group | None, actor: AbstractBaseUser | str
) -> Household:
    """Grant ``team`` the household's object permissions (and revoke the previous team's)."""
    with transaction.atomic():
        household = Household.objects.select_for_update().get(pk=household.pk)
        previous = household.team
        if previous == team:
            return household
        if previous is not None:
            for perm in HOUSEHOLD_PERMS:
                remove_perm(f"portfolios.{perm}", previous, household)
        if team is not None:
            for perm in HOUSEHOLD_PERMS:
                assign_perm(f"portfolios.{perm}", team, household)
        household.team = team
        household.save(update_fields=["team"])
        audit_record(
            actor=actor,
            action="household.assign_team",
            obj=household,
            before={"team": previous.name if previous else None},
            after={"team": team.name if team else None},
        )
    return household


@dataclass(frozen=True)
class TargetSpec:
    security_id: int
    weight: Decimal
    abs_band: Decimal | None = None
    rel_band: Decimal | None = None
    min_weight: Decimal | None = None
    max_weight: Decimal | None = None


def model_targets_validate(
    *, name: str, targets: Iterable[TargetSpec], cash_target: Decimal, tickers: dict[int, str]
) -> None:
    """Weights in [0, 1], no security twice, and a total of 100% including cash."""
    seen: set[int] = set()
    total = cash_target
    for t in targets:
        ticker = tickers.get(t.security_id, str(t.security_id))
        if t.security_id in seen:
            raise ValidationFailed(MODEL_DUPLICATE_SECURITY.format(name=name, ticker=ticker))
        seen.add(t.security_id)
        if not (Decimal("0") <= t.weight <= Decimal("1")):
            raise ValidationFailed(MODEL_WEIGHT_RANGE.format(name=name, ticker=ticker))
        total += t.weight
    if abs(total - Decimal("1")) > WEIGHT_TOLERANCE:
        raise ValidationFailed(MODEL_WEIGHTS_NOT_100.format(name=name, total=float(total)))


def model_version_create(
    *,
    model: ModelPortfolio,
    targets: list[TargetSpec],
    cash_target: Decimal,
    actor: AbstractBaseUser | str,
    note: str = "",
) -> ModelVersion:
    """Make a new current version of ``model`` with these targets; the old one stays readable."""
    from portfolios.models import Security

    tickers = dict(
        Security.objects.filter(pk__in=[t.security_id for t in targets]).values_list("pk", "ticker")
    )
    model_targets_validate(
        name=model.name, targets=targets, cash_target=cash_target, tickers=tickers
    )
    with transaction.atomic():
        model = ModelPortfolio.objects.select_for_update().get(pk=model.pk)
        previous = ModelVersion.objects.filter(model=model, is_current=True).first()
        number = (
            ModelVersion.objects.filter(model=model).aggregate(m=Max("version"))["m"] or 0
        ) + 1
        if previous is not None:
            ModelVersion.objects.filter(pk=previous.pk).update(is_current=False)
        version = ModelVersion.objects.create(
            model=model,
            version=number,
            is_current=True,
            cash_target=cash_target,
            note=note,
            created_by=actor if not isinstance(actor, str) else None,
        )
        ModelTarget.objects.bulk_create(
            ModelTarget(
                version=version,
                security_id=t.security_id,
                weight=t.weight,
                abs_band=t.abs_band,
                rel_band=t.rel_band,
                min_weight=t.min_weight,
                max_weight=t.max_weight,
            )
            for t in targets
        )
        audit_record(
            actor=actor,
            action="model.version_create",
            obj=model,
            before={"version": previous.version if previous else None},
            after={
                "version": number,
                "cash_target": cash_target,
                "targets": {tickers.get(t.security_id, t.security_id): t.weight for t in targets},
            },
            reason=note,
        )
    return version


MODEL_UNKNOWN_TICKERS = "Model '{name}': unknown tickers: {tickers}."


def model_version_create_from_tickers(
    *,
    model: ModelPortfolio,
    targets: list[dict[str, Any]],
    cash_target: Decimal,
    actor: AbstractBaseUser | str,
    note: str = "",
) -> ModelVersion:
    """``model_version_create`` with targets named by ticker (API and imports)."""
    from portfolios.models import Security

    tickers = [t["ticker"].strip().upper() for t in targets]
    ids = dict(Security.objects.filter(ticker__in=tickers).values_list("ticker", "pk"))
    unknown = sorted({t for t in tickers if t not in ids})
    if unknown:
        raise ValidationFailed(
            MODEL_UNKNOWN_TICKERS.format(name=model.name, tickers=", ".join(unknown)),
            extra={"unknown_tickers": unknown},
        )
    specs = [
        TargetSpec(
            security_id=ids[ticker],
            weight=t["weight"],
            abs_band=t.get("abs_band"),
            rel_band=t.get("rel_band"),
            min_weight=t.get("min_weight"),
            max_weight=t.get("max_weight"),
        )
        for ticker, t in zip(tickers, targets, strict=True)
    ]
    return model_version_create(
        model=model, targets=specs, cash_target=cash_target, actor=actor, note=note
    )


# Hooks called after a change to an account's holdings, prices or cash. The drift issue wires
# its event scan here; each hook receives the affected account ids after commit.
_holdings_changed_hooks: list[Callable[[list[int]], None]] = []


def on_holdings_changed(hook: Callable[[list[int]], None]) -> None:
    _holdings_changed_hooks.append(hook)


def holdings_changed(*, account_ids: Iterable[int]) -> None:
    ids = sorted(set(account_ids))
    if not ids:
        return
    for hook in _holdings_changed_hooks:
        transaction.on_commit(lambda hook=hook: hook(ids))


ACCOUNT_EDITABLE_FIELDS = (
    "name",
    "model",
    "cash_reserve",
    "st_tax_rate",
    "lt_tax_rate",
    "status",
    "auto_propose",
    "allow_fractional",
    "min_trade_amount",
    "tlh_enabled",
    "gains_budget",
)


def account_update(
    *, account: Account, actor: AbstractBaseUser | str, data: dict[str, Any], reason: str = ""
) -> Account:
    """Change an account's settings (not its holdings or cash, which only trades and imports
    change), audited with before and after.

    Raises PermissionDenied unless the actor holds ``change_household`` on the household.
    """
    from portfolios.permissions import ACCOUNT_CHANGE_FORBIDDEN, account_can_change

    if not isinstance(actor, str) and not account_can_change(user=actor, account=account):
        raise PermissionDenied(ACCOUNT_CHANGE_FORBIDDEN.format(id=account.pk))
    unknown = set(data) - set(ACCOUNT_EDITABLE_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"These account fields cannot be edited: {', '.join(sorted(unknown))}."
        )
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        before = audit_snapshot(account)
        for name, value in data.items():
            setattr(account, name, value)
        account.full_clean(exclude=["household", "import_batch"])
        account.save(update_fields=list(data))
        b, a = audit_diff(before, audit_snapshot(account))
        if a:
            audit_record(
                actor=actor, action="account.update", obj=account, before=b, after=a, reason=reason
            )
    return account
