"""Pre-trade compliance writes (DESIGN 6): run the enabled rules on a basket and store their
results, override a hard failure, create and change rules.

``basket_compliance_check`` reads everything the rules need in a fixed number of bulk queries
whatever the size of the basket (orders, their lots, accounts, holdings, securities with their
last price and volume, restrictions in effect, the households' trades of the last 30 days,
gains realized this year, orders of other live baskets, model targets, the rules), builds the
pure :class:`compliance.rules.BasketView`, runs each applicable rule once and stores one
``ComplianceResult`` per rule and order (or per rule and account for the account-level rules)
under a new ``check_run`` number. It runs inside the caller's transaction: the workflow
service holds the basket's row lock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import DecimalField, IntegerField, Max, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from compliance.models import (
    ComplianceResult,
    ComplianceRule,
    Override,
    Restriction,
    RuleScope,
    Severity,
)
from compliance.rules import (
    RULES,
    WASH_SALE_DAYS,
    AccountView,
    HouseholdTrade,
    LotRelief,
    OrderLine,
    PendingOrder,
    RestrictionView,
    RuleParameterError,
    SecurityView,
    TargetView,
    basket_view_build,
    rule_parameters_validate,
)
from compliance.services.audit import audit_record
from orders.models import BasketState, Order, OrderLot, OrderStatus, TradeBasket
from portfolios.calendar import last_completed_session, session_offset
from portfolios.models import (
    Account,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    Price,
    Security,
    Side,
    TaxLot,
    Transaction,
)
from rebalance_app.exceptions import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.contrib.auth.models import AbstractBaseUser

ACTION_CHECK = "compliance.check"
ACTION_OVERRIDE = "compliance.override"
ACTION_RULE_CREATED = "compliance.rule_created"
ACTION_RULE_CHANGED = "compliance.rule_changed"

MIN_JUSTIFICATION = 10
MSG_OVERRIDE_ROLE = "Only a Compliance officer may override a compliance failure."
MSG_RESULT_NOT_FOUND = "Compliance result {id} not found."
MSG_JUSTIFICATION = (
    "Write a justification of at least 10 characters for overriding this compliance failure."
)
MSG_RESULT_PASSED = "Result {id} passed: only a failed hard result can be overridden."
MSG_RESULT_WARNING = (
    "Result {id} is a warning: warnings are acknowledged by the approver, not overridden."
)
MSG_ALREADY_OVERRIDDEN = "Result {id} was already overridden by {user} on {day}."
MSG_NOT_LATEST = (
    "Result {id} is from check {run} of basket {basket}, whose latest check is {latest}: "
    "override a result of the latest check."
)
MSG_BASKET_CLOSED = (
    "Basket {basket} is {state}: its compliance results can no longer be overridden."
)
MSG_RULE_ROLE = "Only Compliance may create or change compliance rules."
MSG_RULE_NOT_FOUND = "Compliance rule {id} not found."
MSG_RULE_NAME = "Give the rule a name."
MSG_RULE_SEVERITY = "Severity must be one of {choices} (got {got!r})."
MSG_RULE_SCOPE = "Scope must be one of {choices} (got {got!r})."
MSG_RULE_TARGET = {
    RuleScope.FIRM: "A firm-wide rule applies to every account: leave model and account empty.",
    RuleScope.MODEL: "A model rule needs a model (and no account).",
    RuleScope.ACCOUNT: "An account rule needs an account (and no model).",
}
MSG_RULE_FIELD = "Unknown field '{name}'; a rule's editable fields are: {allowed}."
MSG_RULE_TYPE_FIXED = "A rule's type cannot change: create a new rule and disable this one."

# Baskets whose orders are still pending: the duplicate-order rule looks at these.
PENDING_STATES = (
    BasketState.SUBMITTED,
    BasketState.PENDING_APPROVAL,
    BasketState.COMPLIANCE_HOLD,
    BasketState.APPROVED,
    BasketState.ROUTING,
)
DONE_ORDER_STATUSES = (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELLED)
# Once routed (or ended) a basket's results are history: nothing left to override.
CLOSED_STATES = (
    BasketState.ROUTED,
    BasketState.PARTIALLY_FILLED,
    BasketState.FILLED,
    BasketState.CANCELLED,
    BasketState.REJECTED,
)
RULE_FIELDS = ("name", "parameters", "severity", "scope", "model", "account", "enabled")


@dataclass(frozen=True)
class CheckOutcome:
    """One compliance check of a basket: its number, failed hard results without an override,
    failed warnings, and every stored result."""

    check_run: int
    hard_failures: int
    warnings: int
    results: list[ComplianceResult]


def _label(number: str, name: str) -> str:
    return f"{number} ({name})"


def _band(target: float, abs_band: Any, rel_band: Any, default: float) -> float:
    """The drift scan's band: the tighter of the absolute and relative bands, else the firm
    default."""
    widths = []
    if abs_band is not None:
        widths.append(float(abs_band))
    if rel_band is not None and target > 0:
        widths.append(float(rel_band) * target)
    return min(widths) if widths else default


def _rules_for(accounts: list[dict[str, Any]]) -> list[ComplianceRule]:
    return list(
        ComplianceRule.objects.filter(enabled=True)
        .filter(
            Q(scope=RuleScope.FIRM)
            | Q(scope=RuleScope.MODEL, model_id__in={a["model_id"] for a in accounts} - {None})
            | Q(scope=RuleScope.ACCOUNT, account_id__in=[a["id"] for a in accounts])
        )
        .order_by("rule_type", "pk")
    )


def _sessions(days: int) -> tuple[date, ...]:
    last = last_completed_session()
    return tuple(session_offset(last, -k) for k in range(days, -1, -1))


def basket_view_load(
    *, basket: TradeBasket, orders: list[Order], rules: list[ComplianceRule], today: date
) -> Any:
    """The basket's post-trade view (:class:`compliance.rules.BasketView`) from the database,
    in bulk queries whatever the number of orders."""
    account_ids = sorted({o.account_id for o in orders})
    accounts = list(
        Account.objects.filter(pk__in=account_ids).values(
            "id",
            "account_number",
            "name",
            "household_id",
            "status",
            "taxable",
            "model_id",
            "cash_balance",
            "cash_reserve",
            "min_trade_amount",
            "gains_budget",
        )
    )
    households = {a["household_id"] for a in accounts}
    labels = {a["id"]: _label(a["account_number"], a["name"]) for a in accounts}
    lots: dict[int, list[LotRelief]] = defaultdict(list)
    for order_id, lot_id, qty, gain, long_term in (
        OrderLot.objects.filter(order__basket=basket)
        .order_by("pk")
        .values_list("order_id", "lot_id", "quantity", "est_gain", "long_term")
    ):
        lots[order_id].append(LotRelief(lot_id, float(qty), float(gain), long_term))
    holdings = {
        (acc, sec): float(qty)
        for acc, sec, qty in TaxLot.objects.filter(account_id__in=account_ids, quantity__gt=0)
        .values("account_id", "security_id")
        .annotate(q=Sum("quantity"))
        .values_list("account_id", "security_id", "q")
    }
    # Model targets (current version of each account's model).
    versions = {
        v["model_id"]: v["id"]
        for v in ModelVersion.objects.filter(
            model_id__in={a["model_id"] for a in accounts} - {None}, is_current=True
        ).values("id", "model_id")
    }
    default_band = float(settings.DRIFT_DEFAULT_ABS_BAND)
    by_version: dict[int, list[TargetView]] = defaultdict(list)
    for version_id, sec_id, weight, abs_band, rel_band in ModelTarget.objects.filter(
        version_id__in=list(versions.values())
    ).values_list("version_id", "security_id", "weight", "abs_band", "rel_band"):
        by_version[version_id].append(
            TargetView(
                sec_id, float(weight), _band(float(weight), abs_band, rel_band, default_band)
            )
        )
    targets = {
        a["id"]: by_version[versions[a["model_id"]]]
        for a in accounts
        if a["model_id"] in versions and by_version.get(versions[a["model_id"]])
    }
    security_ids = {o.security_id for o in orders} | {sec for _, sec in holdings}
    security_ids |= {t.security_id for rows in targets.values() for t in rows}
    latest = Price.objects.filter(security=OuterRef("pk")).order_by("-as_of")
    securities = [
        SecurityView(
            security_id=row["id"],
            ticker=row["ticker"],
            sector=row["sector"],
            esg_score=float(row["esg_score"]) if row["esg_score"] is not None else None,
            esg_tags=tuple(row["esg_tags"] or ()),
            wash_sale_group=row["wash_sale_group"],
            avg_daily_volume=float(row["adv"]) if row["adv"] is not None else None,
            price=float(row["p"]) if row["p"] is not None else None,
            price_date=row["d"],
        )
        for row in Security.objects.filter(pk__in=security_ids)
        .annotate(
            p=Subquery(
                latest.values("price")[:1],
                output_field=DecimalField(max_digits=18, decimal_places=6),
            ),
            d=Subquery(latest.values("as_of")[:1]),
            adv=Subquery(
                latest.filter(avg_daily_volume__isnull=False).values("avg_daily_volume")[:1],
                output_field=IntegerField(),
            ),
        )
        .values(
            "id", "ticker", "sector", "esg_score", "esg_tags", "wash_sale_group", "p", "d", "adv"
        )
    ]
    restrictions = [
        RestrictionView(
            restriction_id=r.pk,
            scope=r.scope,
            kind=r.kind,
            reason=r.reason,
            security_id=r.security_id,
            sector=r.sector,
            esg_tag=r.esg_tag,
            household_id=r.household_id,
            account_id=r.account_id,
        )
        for r in Restriction.objects.filter(
            Q(scope="firm")
            | Q(scope="household", household_id__in=households)
            | Q(scope="account", account_id__in=account_ids),
            Q(effective_to__isnull=True) | Q(effective_to__gte=today),
            effective_from__lte=today,
        )
    ]
    recent = [
        HouseholdTrade(
            household_id=row[0],
            account_id=row[1],
            account_label=_label(row[2], row[3]),
            ticker=row[4],
            wash_group=row[5] or row[4],
            side=row[6],
            trade_date=row[7],
            realized=float(row[8] + row[9]),
        )
        for row in Transaction.objects.filter(
            account__household_id__in=households,
            trade_date__gte=today - timedelta(days=WASH_SALE_DAYS),
        )
        .order_by("-trade_date", "pk")
        .values_list(
            "account__household_id",
            "account_id",
            "account__account_number",
            "account__name",
            "security__ticker",
            "security__wash_sale_group",
            "side",
            "trade_date",
            "realized_st",
            "realized_lt",
        )
    ]
    budgeted = [a["id"] for a in accounts if a["gains_budget"] is not None and a["taxable"]]
    gains_used: dict[int, float] = {}
    if budgeted:
        for row in (
            Transaction.objects.filter(
                account_id__in=budgeted, trade_date__year=today.year, side=Side.SELL
            )
            .values("account_id")
            .annotate(st=Sum("realized_st"), lt=Sum("realized_lt"))
        ):
            gains_used[row["account_id"]] = float((row["st"] or 0) + (row["lt"] or 0))
    pending = [
        PendingOrder(
            basket_id=row[0],
            basket_name=row[1],
            basket_state=row[2],
            account_id=row[3],
            security_id=row[4],
            side=row[5],
            quantity=float(row[6]),
        )
        for row in Order.objects.filter(
            account_id__in=account_ids,
            security_id__in={o.security_id for o in orders},
            basket__state__in=PENDING_STATES,
        )
        .exclude(basket=basket)
        .exclude(status__in=DONE_ORDER_STATUSES)
        .order_by("basket_id", "pk")
        .values_list(
            "basket_id",
            "basket__name",
            "basket__state",
            "account_id",
            "security_id",
            "side",
            "quantity",
        )
    ]
    stale_days = int(settings.STALE_PRICE_TRADING_DAYS)
    wanted = [
        r.parameters.get("trading_days")
        for r in rules
        if r.rule_type == "stale_price" and isinstance(r.parameters, dict)
    ]
    most = max([stale_days, *[d for d in wanted if isinstance(d, int)]])
    sessions = _sessions(min(most, 60))
    return basket_view_build(
        orders=[
            OrderLine(
                order_id=o.pk,
                account_id=o.account_id,
                security_id=o.security_id,
                side=o.side,
                quantity=float(o.quantity),
                est_price=float(o.est_price),
                notional=float(o.est_notional),
                lots=tuple(lots.get(o.pk, ())),
            )
            for o in orders
        ],
        accounts=[
            AccountView(
                account_id=a["id"],
                label=labels[a["id"]],
                household_id=a["household_id"],
                status=a["status"],
                taxable=a["taxable"],
                model_id=a["model_id"],
                cash_before=float(a["cash_balance"]),
                cash_reserve=float(a["cash_reserve"]),
                min_trade_amount=float(a["min_trade_amount"]),
                gains_budget=float(a["gains_budget"]) if a["gains_budget"] is not None else None,
                gains_used=gains_used.get(a["id"], 0.0),
            )
            for a in accounts
        ],
        holdings_before=holdings,
        securities=securities,
        today=today,
        stale_cutoff=sessions[-1 - stale_days],
        restrictions=restrictions,
        recent_trades=recent,
        pending_orders=pending,
        targets=targets,
        basket_id=basket.pk,
        stale_trading_days=stale_days,
        sessions=sessions,
        default_band=default_band,
    )


def _applies(rule: ComplianceRule, account: AccountView | None) -> bool:
    if rule.scope == RuleScope.FIRM:
        return True
    if account is None:
        return False
    if rule.scope == RuleScope.MODEL:
        return account.model_id == rule.model_id
    return account.account_id == rule.account_id


def basket_compliance_check(
    *, basket: TradeBasket, actor: AbstractBaseUser | str, stage: str = "submit"
) -> CheckOutcome:
    """Run every enabled rule that applies to the basket's accounts (firm-wide rules, rules of
    an account's model, rules of the account) and store the results as check ``previous + 1``.

    Call it inside the caller's transaction (the workflow holds the basket's lock). A rule
    whose stored parameters no longer validate fails closed: one failed result naming the
    problem, at the rule's severity."""
    now = timezone.now()
    today = timezone.localdate()
    with transaction.atomic():
        orders = list(Order.objects.filter(basket=basket).order_by("pk"))
        account_rows = list(
            Account.objects.filter(pk__in={o.account_id for o in orders}).values("id", "model_id")
        )
        rules = _rules_for(account_rows)
        view = basket_view_load(basket=basket, orders=orders, rules=rules, today=today)
        previous = ComplianceResult.objects.filter(basket=basket).aggregate(m=Max("check_run"))
        check_run = (previous["m"] or 0) + 1
        rows: list[ComplianceResult] = []
        for rule in rules:
            try:
                params = rule_parameters_validate(rule.rule_type, rule.parameters)
            except RuleParameterError as exc:
                rows.append(
                    ComplianceResult(
                        rule=rule,
                        basket=basket,
                        check_run=check_run,
                        passed=False,
                        severity=rule.severity,
                        message=exc.message[:500],
                        details={"stage": stage, "error": "invalid_rule"},
                        checked_at=now,
                    )
                )
                continue
            function, _ = RULES[rule.rule_type]  # a known type: it validated
            for finding in function(view, params):
                account = view.accounts.get(finding.account_id) if finding.account_id else None
                if finding.account_id is not None and not _applies(rule, account):
                    continue
                rows.append(
                    ComplianceResult(
                        rule=rule,
                        basket=basket,
                        order=orders[finding.order] if finding.order is not None else None,
                        check_run=check_run,
                        passed=finding.passed,
                        severity=rule.severity,
                        message=finding.message[:500],
                        details={"stage": stage, **finding.details},
                        checked_at=now,
                    )
                )
        results = ComplianceResult.objects.bulk_create(rows)
        hard = sum(1 for r in results if not r.passed and r.severity == Severity.HARD)
        warnings = sum(1 for r in results if not r.passed and r.severity == Severity.WARNING)
        audit_record(
            actor=actor,
            action=ACTION_CHECK,
            obj=basket,
            after={
                "stage": stage,
                "check_run": check_run,
                "rules": len(rules),
                "results": len(results),
                "failed": sum(1 for r in results if not r.passed),
                "hard_failures": hard,
                "warnings": warnings,
            },
        )
    return CheckOutcome(check_run=check_run, hard_failures=hard, warnings=warnings, results=results)


def compliance_override_create(
    *, actor: AbstractBaseUser, result_id: Any, justification: str
) -> Override:
    """A Compliance officer's written override of a failed hard result of a basket's latest
    check. When it was the basket's last open hard failure and the basket is on compliance
    hold, the hold is released (``orders.services.basket_release_hold``).

    Raises PermissionDenied (not Compliance), NotFound, ValidationFailed (justification too
    short, result passed or a warning, not of the latest check) and InvalidTransition
    (already overridden, basket closed)."""
    if isinstance(actor, str) or not user_has_role(actor, Role.COMPLIANCE):
        raise PermissionDenied(MSG_OVERRIDE_ROLE)
    text = (justification or "").strip()
    try:
        pk = int(result_id)
    except (TypeError, ValueError):
        raise NotFound(MSG_RESULT_NOT_FOUND.format(id=result_id)) from None
    with transaction.atomic():
        basket_id = ComplianceResult.objects.filter(pk=pk).values_list("basket_id", flat=True)
        basket = TradeBasket.objects.select_for_update().filter(pk__in=basket_id).first()
        if basket is None:
            raise NotFound(MSG_RESULT_NOT_FOUND.format(id=result_id))
        result = ComplianceResult.objects.select_related("rule", "order").get(pk=pk)
        if len(text) < MIN_JUSTIFICATION:
            raise ValidationFailed(MSG_JUSTIFICATION, {"result": pk})
        if result.passed:
            raise ValidationFailed(MSG_RESULT_PASSED.format(id=pk), {"result": pk})
        if result.severity != Severity.HARD:
            raise ValidationFailed(MSG_RESULT_WARNING.format(id=pk), {"result": pk})
        existing = Override.objects.filter(result=result).select_related("overridden_by").first()
        if existing is not None:
            raise InvalidTransition(
                MSG_ALREADY_OVERRIDDEN.format(
                    id=pk,
                    user=existing.overridden_by.get_username(),
                    day=timezone.localtime(existing.created_at).date(),
                ),
                {"result": pk, "override": existing.pk},
            )
        if basket.state in CLOSED_STATES:
            raise InvalidTransition(
                MSG_BASKET_CLOSED.format(
                    basket=basket.pk, state=basket.get_state_display().lower()
                ),
                {"state": basket.state, "basket": basket.pk},
            )
        latest = ComplianceResult.objects.filter(basket=basket).aggregate(m=Max("check_run"))["m"]
        if result.check_run != latest:
            raise ValidationFailed(
                MSG_NOT_LATEST.format(id=pk, run=result.check_run, basket=basket.pk, latest=latest),
                {"result": pk, "latest": latest},
            )
        override = Override.objects.create(result=result, overridden_by=actor, justification=text)
        audit_record(
            actor=actor,
            action=ACTION_OVERRIDE,
            obj=basket,
            before={"result": pk, "passed": False, "overridden": False},
            after={
                "result": pk,
                "override": override.pk,
                "rule": result.rule.name,
                "rule_type": result.rule.rule_type,
                "order": result.order_id,
                "check_run": result.check_run,
                "message": result.message,
                "overridden": True,
            },
            reason=text,
        )
        open_hard = ComplianceResult.objects.filter(
            basket=basket,
            check_run=latest,
            passed=False,
            severity=Severity.HARD,
            override__isnull=True,
        ).exists()
        if basket.state == BasketState.COMPLIANCE_HOLD and not open_hard:
            try:
                from orders.services import basket_release_hold
            except ImportError:  # the workflow is not installed: nothing to release
                basket_release_hold = None
            if basket_release_hold is not None:
                basket_release_hold(basket=basket, actor=actor)
    return override


# ---------------------------------------------------------------------------
# Rule edits
# ---------------------------------------------------------------------------


def _rule_snapshot(rule: ComplianceRule) -> dict[str, Any]:
    return {
        "rule_type": rule.rule_type,
        "name": rule.name,
        "parameters": rule.parameters,
        "severity": rule.severity,
        "scope": rule.scope,
        "model": rule.model_id,
        "account": rule.account_id,
        "enabled": rule.enabled,
    }


def _require_rule_editor(actor: AbstractBaseUser | str, perm: str) -> None:
    if isinstance(actor, str):
        return
    if not (actor.is_superuser or user_has_role(actor, Role.COMPLIANCE)) or not actor.has_perm(
        perm
    ):
        raise PermissionDenied(MSG_RULE_ROLE)


def _params(rule_type: str, parameters: Any) -> dict[str, Any]:
    try:
        return rule_parameters_validate(rule_type, parameters)
    except RuleParameterError as exc:
        raise ValidationFailed(exc.message, exc.extra) from None


def _rule_clean(rule: ComplianceRule) -> None:
    if not (rule.name or "").strip():
        raise ValidationFailed(MSG_RULE_NAME)
    rule.name = rule.name.strip()[:120]
    if rule.severity not in Severity.values:
        raise ValidationFailed(
            MSG_RULE_SEVERITY.format(choices=", ".join(Severity.values), got=rule.severity)
        )
    if rule.scope not in RuleScope.values:
        raise ValidationFailed(
            MSG_RULE_SCOPE.format(choices=", ".join(RuleScope.values), got=rule.scope)
        )
    ok = {
        RuleScope.FIRM: rule.model_id is None and rule.account_id is None,
        RuleScope.MODEL: rule.model_id is not None and rule.account_id is None,
        RuleScope.ACCOUNT: rule.account_id is not None and rule.model_id is None,
    }[RuleScope(rule.scope)]
    if not ok:
        raise ValidationFailed(MSG_RULE_TARGET[RuleScope(rule.scope)])


def compliance_rule_create(
    *,
    actor: AbstractBaseUser | str,
    rule_type: str,
    name: str,
    parameters: Mapping[str, Any] | None = None,
    severity: str = Severity.HARD,
    scope: str = RuleScope.FIRM,
    model: ModelPortfolio | None = None,
    account: Account | None = None,
    enabled: bool = True,
) -> ComplianceRule:
    """A new rule with validated parameters (defaults filled in), audited.

    Raises PermissionDenied (not Compliance) and ValidationFailed (unknown type, bad
    parameters, severity, scope or its target)."""
    _require_rule_editor(actor, "compliance.add_compliancerule")
    cleaned = _params(rule_type, parameters)
    rule = ComplianceRule(
        rule_type=rule_type,
        name=name,
        parameters=cleaned,
        severity=severity,
        scope=scope,
        model=model,
        account=account,
        enabled=enabled,
    )
    _rule_clean(rule)
    with transaction.atomic():
        rule.save()
        audit_record(actor=actor, action=ACTION_RULE_CREATED, obj=rule, after=_rule_snapshot(rule))
    return rule


def compliance_rule_update(
    *, actor: AbstractBaseUser | str, rule_id: Any, data: Mapping[str, Any]
) -> ComplianceRule:
    """Change a rule's name, parameters, severity, scope (with model or account) or enabled
    flag; the parameters are validated against its type. Audited with before and after.

    Raises PermissionDenied, NotFound and ValidationFailed."""
    _require_rule_editor(actor, "compliance.change_compliancerule")
    for key in data:
        if key not in (*RULE_FIELDS, "rule_type"):
            raise ValidationFailed(MSG_RULE_FIELD.format(name=key, allowed=", ".join(RULE_FIELDS)))
    with transaction.atomic():
        try:
            rule = ComplianceRule.objects.select_for_update().get(pk=rule_id)
        except (ComplianceRule.DoesNotExist, ValueError, TypeError):
            raise NotFound(MSG_RULE_NOT_FOUND.format(id=rule_id)) from None
        if data.get("rule_type", rule.rule_type) != rule.rule_type:
            raise ValidationFailed(MSG_RULE_TYPE_FIXED)
        before = _rule_snapshot(rule)
        for key, value in data.items():
            if key == "rule_type":
                continue
            if key == "parameters":
                rule.parameters = _params(rule.rule_type, value)
            elif key == "enabled":
                rule.enabled = bool(value)
            else:
                setattr(rule, key, value)
        _rule_clean(rule)
        after = _rule_snapshot(rule)
        if after != before:
            rule.save()
            audit_record(
                actor=actor, action=ACTION_RULE_CHANGED, obj=rule, before=before, after=after
            )
    return rule
