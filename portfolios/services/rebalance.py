"""Rebalance runs: build one account's optimizer problem from the database, solve it in a
worker, store the proposal with everything needed to reproduce and explain it (DESIGN 5).

The pure optimizer (``portfolios.optimizer``) sees arrays only. This module

- validates a request (the account, its status and model, the mode and its parameters) and
  creates a ``RebalanceRun`` row before its task is enqueued (after commit);
- builds the :class:`AccountProblem` in a handful of bulk queries: the account's lots, the
  securities of its holdings and model (plus harvesting substitutes), their latest prices
  (stale or missing ones are refused by name), restrictions in effect (firm, household,
  account; by security, sector or ESG tag), wash-sale blocks from the household's trades of
  the last 30 days, the realized-gains budget left this year, and the current risk model;
- runs the optimizer and stores the trades (each with its reason, its lots and their
  estimated gains), the objective terms and metrics before and after, the exact input
  snapshot and its SHA-256, timings split into load, solve and store;
- replays a stored run from its snapshot, applies a PM's edit of one trade (metrics are
  recomputed from the edited trades) and fans many accounts out as one task each.

Errors a user can act on are :class:`ApplicationError`s with the messages below; optimizer
errors are mapped to them (an infeasible run keeps the named conflicts).
"""

from __future__ import annotations

import time
import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from compliance.models import Restriction, RestrictionKind
from compliance.services.audit import audit_record
from portfolios.calendar import stale_price_cutoff
from portfolios.models import (
    Account,
    AccountStatus,
    DriftSnapshot,
    ModelTarget,
    ModelVersion,
    Price,
    RebalanceBatch,
    RebalanceMode,
    RebalanceRun,
    RebalanceTrigger,
    RiskModel,
    RunStatus,
    Security,
    SecurityType,
    Side,
    TaxLot,
    Transaction,
)
from portfolios.optimizer import (
    AccountProblem,
    Infeasible,
    Lots,
    Mode,
    OptimizerError,
    ProblemInvalid,
    Securities,
    optimize,
)
from portfolios.optimizer.snapshot import problem_from_json, problem_hash, problem_to_json
from portfolios.selectors import accounts_visible_to, latest_prices
from rebalance_app.exceptions import (
    ApplicationError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    StalePrice,
    ValidationFailed,
)
from rebalance_app.work import WorkStatus, work_claim, work_enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.optimizer import OptimizeResult

Actor = "AbstractBaseUser | str"

logger = structlog.get_logger(__name__)

WASH_SALE_DAYS = 30  # IRC section 1091: 30 days before or after a loss sale
AUTO_ACTOR = "system:auto_propose"
TASK_ACTOR = "system:rebalance"

MSG_ACCOUNT_NOT_FOUND = "Account {id} not found."
MSG_NOT_ALLOWED = "You may view account {account} but not propose trades for it."
MSG_UNKNOWN_MODE = "Unknown mode '{mode}': choose one of {choices}."
MSG_STATUS = "Account {account} is {status}: no rebalance can be proposed for it."
MSG_NO_MODEL = "Account {account} has no model portfolio: assign one before rebalancing."
MSG_NO_VERSION = "Model '{model}' has no current version: create one before rebalancing."
MSG_MODEL_NOT_100 = (
    "Model '{model}' v{version} weights sum to {total:.2%} including cash, not 100%: "
    "fix the model before rebalancing."
)
MSG_TLH_NOT_TAXABLE = (
    "Tax-loss harvesting applies to taxable accounts only; account {account} is a "
    "{registration} account."
)
MSG_TLH_OFF = (
    "Tax-loss harvesting is turned off for account {account}: turn it on in its preferences."
)
MSG_CASH_AMOUNT = "A cash raise needs a positive amount (got {amount})."
MSG_CASH_TOO_LARGE = (
    "Cannot raise {amount}: account {account} is worth {value} in all, and {reserve} of it "
    "is its cash reserve."
)
MSG_CASH_INVEST_NOTHING = (
    "Account {account} has {cash} in cash and a reserve of {reserve}: there is nothing to invest."
)
MSG_STALE = "Stale or missing price for {items}: import current prices before rebalancing."
MSG_EMPTY = "Account {account} holds nothing and has no cash: there is nothing to rebalance."
MSG_BAD_PARAMETER = "Parameter '{name}': {problem}."
MSG_UNKNOWN_PARAMETER = "Unknown parameter '{name}' for mode {mode}; allowed: {allowed}."
MSG_IN_PROGRESS = "Account {account} already has a rebalance in progress (run {run})."
MSG_RUN_NOT_FOUND = "Rebalance run {id} not found."
MSG_RUN_NOT_EDITABLE = "Run {run} is {status}: only a succeeded proposal can be edited."
MSG_RUN_LOCKED = "Run {run} is in basket {basket} ({state}): its trades can no longer be edited."
MSG_NO_SUCH_TRADE = "Run {run} has no trade in {ticker}."
MSG_EDIT_QUANTITY = (
    "The new quantity of {ticker} must be a number between 0 and {limit} (got {got})."
)
MSG_EDIT_WHOLE = "Account {account} trades whole shares only: {got} is not a whole number."
MSG_REPLAY_NO_SNAPSHOT = "Run {run} has no stored inputs (it was {status}): it cannot be re-run."
MSG_BATCH_EMPTY = "No account to rebalance: {why}."
MSG_BATCH_SELECTION = "Choose either a list of accounts or a model (with breached=true), not both."
MSG_SOLVER = "The optimizer failed on account {account}: {error}"
MSG_CRASHED = (
    "The run stopped on an unexpected error ({error}); it has been logged. Try again, and "
    "report it if it persists."
)

ACTION_REQUESTED = "rebalance_run.requested"
ACTION_SUCCEEDED = "rebalance_run.succeeded"
ACTION_INFEASIBLE = "rebalance_run.infeasible"
ACTION_FAILED = "rebalance_run.failed"
ACTION_TRADE_EDITED = "rebalance_run.trade_edited"
ACTION_BATCH_REQUESTED = "rebalance_batch.requested"
ACTION_BATCH_FINISHED = "rebalance_batch.finished"

CASH_LIKE = {SecurityType.CASH}
WEIGHT_TOLERANCE = 1e-4

# Parameters a request may set, per mode, with their types. Everything else comes from the
# account (reserve, tax rates, preferences), the model and the firm settings.
COMMON_PARAMETERS: dict[str, type] = {
    "turnover_limit": float,
    "tracking_weight": float,
    "drift_weight": float,
    "esg_sell_out": bool,
    "sector_max": dict,
}
MODE_PARAMETERS: dict[str, dict[str, type]] = {
    RebalanceMode.FULL: {},
    RebalanceMode.TOLERANCE: {"tolerance_to_target": bool},
    RebalanceMode.CASH_RAISE: {"cash_amount": float},
    RebalanceMode.CASH_INVEST: {},
    RebalanceMode.TLH: {"tlh_loss_threshold": float},
}


def _money(x: float | Decimal) -> str:
    return f"${float(x):,.2f}"


def _label(account: Account) -> str:
    return f"{account.account_number} ({account.name})"


# ---------------------------------------------------------------------------
# Validation of a request
# ---------------------------------------------------------------------------


def rebalance_mode_clean(mode: Any) -> str:
    """The mode as stored, or ValidationFailed naming the choices."""
    if mode not in RebalanceMode.values:
        raise ValidationFailed(
            MSG_UNKNOWN_MODE.format(mode=mode, choices=", ".join(RebalanceMode.values))
        )
    return str(mode)


def rebalance_parameters_clean(*, mode: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Check a request's parameters against its mode; returns them typed (JSON-able)."""
    allowed = {**COMMON_PARAMETERS, **MODE_PARAMETERS[mode]}
    out: dict[str, Any] = {}
    for name, raw in (parameters or {}).items():
        if raw is None or raw == "":
            continue
        kind = allowed.get(name)
        if kind is None:
            raise ValidationFailed(
                MSG_UNKNOWN_PARAMETER.format(name=name, mode=mode, allowed=", ".join(allowed))
            )
        out[name] = _parameter_value(name, kind, raw)
    if mode == RebalanceMode.CASH_RAISE:
        amount = out.get("cash_amount")
        if amount is None or amount <= 0:
            raise ValidationFailed(MSG_CASH_AMOUNT.format(amount=amount))
    return out


def _parameter_value(name: str, kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ValidationFailed(MSG_BAD_PARAMETER.format(name=name, problem="must be true or false"))
    if kind is dict:
        if not isinstance(raw, dict):
            raise ValidationFailed(
                MSG_BAD_PARAMETER.format(name=name, problem="must be an object of sector: weight")
            )
        return {str(k): _fraction(f"{name}.{k}", v) for k, v in raw.items()}
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationFailed(
            MSG_BAD_PARAMETER.format(name=name, problem=f"'{raw}' is not a number")
        ) from None
    if not np.isfinite(value) or value < 0:
        raise ValidationFailed(MSG_BAD_PARAMETER.format(name=name, problem="must not be negative"))
    if name in ("tlh_loss_threshold",) and value >= 1:
        raise ValidationFailed(MSG_BAD_PARAMETER.format(name=name, problem="must be below 1"))
    return value


def _fraction(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:
        raise ValidationFailed(
            MSG_BAD_PARAMETER.format(name=name, problem="must be a weight between 0 and 1")
        )
    return value


def _account_for(*, actor: AbstractBaseUser | str, account_id: Any) -> Account:
    """The account, if ``actor`` may propose trades for it (a user needs change_household)."""
    qs = Account.objects.all() if isinstance(actor, str) else accounts_visible_to(actor)
    try:
        account = qs.select_related("household", "model").get(pk=account_id)
    except (Account.DoesNotExist, ValueError, TypeError):
        raise NotFound(MSG_ACCOUNT_NOT_FOUND.format(id=account_id)) from None
    if not isinstance(actor, str):
        changeable = accounts_visible_to(actor, perm="change_household").filter(pk=account.pk)
        if not changeable.exists():
            raise PermissionDenied(MSG_NOT_ALLOWED.format(account=_label(account)))
    return account


def _account_checks(account: Account, mode: str) -> None:
    """What can be said from the account row alone (cheap, used for batches too)."""
    if account.status != AccountStatus.ACTIVE:
        raise ValidationFailed(
            MSG_STATUS.format(account=_label(account), status=account.get_status_display().lower())
        )
    if account.model_id is None:
        raise ValidationFailed(MSG_NO_MODEL.format(account=_label(account)))
    if mode == RebalanceMode.TLH:
        if not account.taxable:
            raise ValidationFailed(
                MSG_TLH_NOT_TAXABLE.format(
                    account=_label(account), registration=account.get_registration_type_display()
                )
            )
        if not account.tlh_enabled:
            raise ValidationFailed(MSG_TLH_OFF.format(account=_label(account)))


def _in_progress(account_ids: Iterable[int]) -> dict[int, int]:
    rows = RebalanceRun.objects.filter(
        account_id__in=list(account_ids), status__in=[WorkStatus.QUEUED, WorkStatus.RUNNING]
    ).values_list("account_id", "pk")
    return dict(rows)


# ---------------------------------------------------------------------------
# Building the problem
# ---------------------------------------------------------------------------


@dataclass
class ProblemContext:
    """The problem and what maps its rows back to the database."""

    problem: AccountProblem
    security_ids: list[int]
    lot_ids: list[int]
    lot_acquired: list[str]
    model_version_id: int | None
    risk_model_id: int | None
    prices_as_of: str
    warnings: list[str] = field(default_factory=list)
    load_ms: float = 0.0

    def as_snapshot(self) -> dict[str, Any]:
        return {
            "problem": problem_to_json(self.problem),
            "security_ids": self.security_ids,
            "lot_ids": self.lot_ids,
            "lot_acquired": self.lot_acquired,
            "model_version": self.model_version_id,
            "risk_model": self.risk_model_id,
            "prices_as_of": self.prices_as_of,
        }


def _is_long_term(acquired: date, today: date) -> bool:
    """Held more than one year: sold after the first anniversary of the acquisition."""
    from portfolios.tax import is_long_term

    return is_long_term(acquired_on=acquired, trade_date=today)


def _band(target: float, abs_band: Decimal | None, rel_band: Decimal | None) -> float:
    """Half-width of the tolerance band: the tighter of the absolute and relative bands (the
    drift scan's breach rule), the firm default where the target has neither."""
    widths = []
    if abs_band is not None:
        widths.append(float(abs_band))
    if rel_band is not None and target > 0:
        widths.append(float(rel_band) * target)
    return min(widths) if widths else float(settings.DRIFT_DEFAULT_ABS_BAND)


@dataclass
class SharedInputs:
    """What the accounts of one task share, read in one go: a handful of bulk queries for a
    chunk of accounts instead of as many per account. Keys: model id (versions), version id
    (targets), account id (lots, gains used), household id (wash-sale trades)."""

    today: date
    cutoff: date
    versions: dict[int, ModelVersion]
    targets: dict[int, list[ModelTarget]]
    lots: dict[int, list[tuple[Any, ...]]]
    securities: dict[int, Security]
    prices: dict[int, tuple[Decimal, date]]
    substitutes: dict[int, int]
    restrictions: list[Restriction]
    wash: dict[int, list[tuple[Any, ...]]]
    gains_used: dict[int, float]
    risk: RiskModel | None
    load_ms: float = 0.0


def rebalance_inputs_load(
    *, accounts: Sequence[Account], tlh: bool = False, today: date | None = None
) -> SharedInputs:
    """Everything the problems of ``accounts`` read from the database (see the module
    docstring), in about nine queries whatever the number of accounts."""
    start = time.perf_counter()
    today = today or timezone.localdate()
    account_ids = [a.pk for a in accounts]
    households = {a.household_id for a in accounts}
    versions = {
        v.model_id: v
        for v in ModelVersion.objects.filter(
            model_id__in={a.model_id for a in accounts if a.model_id}, is_current=True
        ).select_related("model")
    }
    targets: dict[int, list[ModelTarget]] = defaultdict(list)
    for t in ModelTarget.objects.filter(version_id__in=[v.pk for v in versions.values()]):
        targets[t.version_id].append(t)
    lots: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in (
        TaxLot.objects.filter(account_id__in=account_ids, quantity__gt=0)
        .order_by("account_id", "security_id", "acquired_on", "pk")
        .values_list("account_id", "pk", "security_id", "quantity", "cost_basis", "acquired_on")
    ):
        lots[row[0]].append(row[1:])
    ids = {t.security_id for rows in targets.values() for t in rows}
    ids |= {row[1] for rows in lots.values() for row in rows}
    substitutes: dict[int, int] = {}
    if tlh:
        through = Security.tlh_substitutes.through.objects.filter(from_security_id__in=set(ids))
        for sec_id, sub_id in through.order_by("pk").values_list(
            "from_security_id", "to_security_id"
        ):
            substitutes.setdefault(sec_id, sub_id)
        ids |= set(substitutes.values())
    securities = {s.pk: s for s in Security.objects.filter(pk__in=ids)}
    cutoff = stale_price_cutoff(trading_days=settings.STALE_PRICE_TRADING_DAYS)
    prices = _fresh_prices(list(ids), cutoff)
    missing = ids - set(prices)
    if missing:  # stale or never priced: their last price (if any) names them later
        prices.update(latest_prices(security_ids=list(missing)))
    restrictions = list(
        Restriction.objects.filter(
            Q(scope="firm")
            | Q(scope="household", household_id__in=households)
            | Q(scope="account", account_id__in=account_ids),
            Q(effective_to__isnull=True) | Q(effective_to__gte=today),
            effective_from__lte=today,
        )
    )
    wash: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in Transaction.objects.filter(
        account__household_id__in=households,
        trade_date__gte=today - timedelta(days=WASH_SALE_DAYS),
    ).values_list(
        "account__household_id",
        "security__ticker",
        "security__wash_sale_group",
        "side",
        "realized_st",
        "realized_lt",
        "trade_date",
    ):
        wash[row[0]].append(row[1:])
    budgeted = [a.pk for a in accounts if a.gains_budget is not None and a.taxable]
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
    return SharedInputs(
        today=today,
        cutoff=cutoff,
        versions=versions,
        targets=targets,
        lots=lots,
        securities=securities,
        prices=prices,
        substitutes=substitutes,
        restrictions=restrictions,
        wash=wash,
        gains_used=gains_used,
        risk=_risk_model(),
        load_ms=1000 * (time.perf_counter() - start),
    )


def _applies(r: Restriction, account: Account) -> bool:
    return (
        r.scope == "firm"
        or (r.scope == "household" and r.household_id == account.household_id)
        or (r.scope == "account" and r.account_id == account.pk)
    )


def _wash_blocks(rows: list[tuple[Any, ...]]) -> tuple[set[str], set[str], list[str]]:
    """Wash-sale groups blocked for buys (a loss sale in the household within 30 days) and for
    loss sales (a purchase in the household within 30 days), with the reasons in words."""
    no_buy: set[str] = set()
    no_loss_sale: set[str] = set()
    reasons: list[str] = []
    for ticker, group, side, st, lt, day in rows:
        key = group or ticker
        until = day + timedelta(days=WASH_SALE_DAYS + 1)
        if side == Side.SELL and (st + lt) < 0:
            no_buy.add(key)
            reasons.append(f"{ticker} sold at a loss on {day}: no buy of {key} until {until}")
        elif side == Side.BUY:
            no_loss_sale.add(key)
            reasons.append(f"{ticker} bought on {day}: no loss sale of {key} until {until}")
    return no_buy, no_loss_sale, reasons


def _risk_model() -> RiskModel | None:
    # Only the key: the arrays are parsed once per process per version (deferred fields load
    # on a cache miss only).
    return RiskModel.objects.filter(is_current=True).only("pk", "version").first()


def _risk_arrays(
    model: RiskModel | None, security_ids: list[int]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    if model is None:
        return None, None, None
    from portfolios.selectors.risk import risk_model_arrays

    b, f, d, _missing = risk_model_arrays(model=model, security_ids=security_ids)
    return b, f, d


def _fresh_prices(security_ids: list[int], cutoff: date) -> dict[int, tuple[Decimal, date]]:
    """The latest price of each security dated on or after ``cutoff`` (a few rows each, by the
    (security, as_of) index); a security without one is absent."""
    out: dict[int, tuple[Decimal, date]] = {}
    rows = Price.objects.filter(security_id__in=security_ids, as_of__gte=cutoff).values_list(
        "security_id", "price", "as_of"
    )
    for sec_id, value, day in rows:
        if sec_id not in out or day > out[sec_id][1]:
            out[sec_id] = (value, day)
    return out


def _pad_lots(lots: list[tuple[Any, ...]], index: dict[int, int], n: int) -> list[tuple[Any, ...]]:
    """Lots grouped by security, each security padded with empty lots (no id, no shares) up
    to the same count, a power of two. The optimizer caches its compiled problem by the
    lot-to-security structure: padded, every account with the same number of securities has
    the same structure, so a batch compiles a handful of problems instead of one per account.
    An empty lot can sell nothing (its cap is zero)."""
    by_security: list[list[tuple[Any, ...]]] = [[] for _ in range(n)]
    for row in lots:
        by_security[index[row[1]]].append(row)
    most = max((len(rows) for rows in by_security), default=1)
    slots = 1 << max(0, most - 1).bit_length()
    sec_ids = {j: sec_id for sec_id, j in index.items()}
    out: list[tuple[Any, ...]] = []
    for j, rows in enumerate(by_security):
        out.extend(rows)
        out.extend(
            (None, sec_ids[j], Decimal(0), Decimal(0), None) for _ in range(slots - len(rows))
        )
    return out


def rebalance_problem_build(
    *,
    account: Account,
    mode: str,
    parameters: dict[str, Any],
    shared: SharedInputs | None = None,
    today: date | None = None,
) -> ProblemContext:
    """The account's problem from the database (see the module docstring), from ``shared``
    inputs when the caller loaded them for many accounts at once.

    Raises ValidationFailed (model, mode, amounts) or StalePrice (naming the securities).
    """
    start = time.perf_counter()
    _account_checks(account, mode)
    if shared is None:
        shared = rebalance_inputs_load(
            accounts=[account], tlh=mode == RebalanceMode.TLH, today=today
        )
    today = shared.today
    version = shared.versions.get(account.model_id)
    if version is None:
        raise ValidationFailed(MSG_NO_VERSION.format(model=account.model.name))
    targets = shared.targets.get(version.pk, [])
    total = sum(float(t.weight) for t in targets) + float(version.cash_target)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValidationFailed(
            MSG_MODEL_NOT_100.format(model=version.model.name, version=version.version, total=total)
        )
    lots = shared.lots.get(account.pk, [])
    by_target = {t.security_id: t for t in targets}
    ids = set(by_target) | {row[1] for row in lots}
    substitutes: dict[int, int] = {}
    if mode == RebalanceMode.TLH:
        substitutes = {a: b for a, b in shared.substitutes.items() if a in {row[1] for row in lots}}
        ids |= set(substitutes.values())
    securities = sorted((shared.securities[i] for i in ids), key=lambda s: s.ticker)
    index = {s.pk: j for j, s in enumerate(securities)}
    n = len(securities)

    prices, cutoff = shared.prices, shared.cutoff
    stale = [
        f"{s.ticker} ({'no price' if s.pk not in prices else 'last ' + str(prices[s.pk][1])})"
        for s in securities
        if s.pk not in prices or prices[s.pk][1] < cutoff
    ]
    if stale:
        raise StalePrice(MSG_STALE.format(items=", ".join(stale)), {"securities": stale})
    price = np.array([float(prices[s.pk][0]) for s in securities])
    as_of = max((prices[s.pk][1] for s in securities), default=None) or shared.cutoff

    target = np.zeros(n)
    band = np.full(n, float(settings.DRIFT_DEFAULT_ABS_BAND))
    w_min = np.zeros(n)
    w_max = np.ones(n)
    for sec_id, t in by_target.items():
        j = index[sec_id]
        target[j] = float(t.weight)
        band[j] = _band(target[j], t.abs_band, t.rel_band)
        if t.min_weight is not None:
            w_min[j] = float(t.min_weight)
        if t.max_weight is not None:
            w_max[j] = float(t.max_weight)

    sectors = sorted({s.sector or "Unclassified" for s in securities})
    sector_index = {name: k for k, name in enumerate(sectors)}
    sector = np.array(
        [sector_index[s.sector or "Unclassified"] for s in securities], dtype=np.int64
    )
    sector_max = None
    if parameters.get("sector_max"):
        sector_max = np.ones(len(sectors))
        for name, limit in parameters["sector_max"].items():
            if name in sector_index:
                sector_max[sector_index[name]] = limit

    no_buy = np.zeros(n, dtype=bool)
    no_sell = np.zeros(n, dtype=bool)
    esg_excluded = np.zeros(n, dtype=bool)
    restriction_notes: list[str] = []
    for r in (r for r in shared.restrictions if _applies(r, account)):
        for j, s in enumerate(securities):
            hit = (
                (r.security_id and r.security_id == s.pk)
                or (r.sector and r.sector == s.sector)
                or (r.esg_tag and r.esg_tag in (s.esg_tags or []))
            )
            if not hit:
                continue
            if r.kind in (RestrictionKind.NO_BUY, RestrictionKind.NO_TRADE):
                no_buy[j] = True
            if r.kind in (RestrictionKind.NO_SELL, RestrictionKind.NO_TRADE):
                no_sell[j] = True
            if r.esg_tag:
                esg_excluded[j] = True
                no_buy[j] = True
            restriction_notes.append(f"{r.get_kind_display()} {s.ticker} ({r.reason})")

    wash_no_buy, wash_no_loss_sale, wash_notes = _wash_blocks(
        shared.wash.get(account.household_id, [])
    )
    group = [s.wash_sale_group or s.ticker for s in securities]
    wash_buy = np.array([g in wash_no_buy for g in group], dtype=bool)

    lots = _pad_lots(lots, index, n)
    real = [row for row in lots if row[0] is not None]
    lot_sec = np.array([index[row[1]] for row in lots], dtype=np.int64)
    lot_qty = np.array([float(row[2]) for row in lots])
    lot_basis = np.array([float(row[3]) for row in lots])
    lot_lt = np.array(
        [row[4] is not None and _is_long_term(row[4], today) for row in lots], dtype=bool
    )
    wash_sell = np.array([group[index[row[1]]] in wash_no_loss_sale for row in lots], dtype=bool)

    spread = float(settings.REBALANCE_HALF_SPREAD_BPS) / 1e4
    half_spread = np.array(
        [
            0.0 if s.security_type in CASH_LIKE else p * spread
            for s, p in zip(securities, price, strict=True)
        ]
    )
    risk = shared.risk
    exposures, factor_cov, specific = _risk_arrays(risk, [s.pk for s in securities])

    cash = float(account.cash_balance)
    value = cash + float(np.dot(price[lot_sec], lot_qty)) if len(real) else cash
    if value <= 0:
        raise ValidationFailed(MSG_EMPTY.format(account=_label(account)))
    reserve = float(account.cash_reserve)
    cash_amount = float(parameters.get("cash_amount", 0.0))
    if mode == RebalanceMode.CASH_RAISE and cash_amount > value - reserve:
        raise ValidationFailed(
            MSG_CASH_TOO_LARGE.format(
                amount=_money(cash_amount),
                account=_label(account),
                value=_money(value),
                reserve=_money(reserve),
            )
        )
    if mode == RebalanceMode.CASH_INVEST and cash <= reserve:
        raise ValidationFailed(
            MSG_CASH_INVEST_NOTHING.format(
                account=_label(account), cash=_money(cash), reserve=_money(reserve)
            )
        )

    sec_kwargs: dict[str, Any] = {}
    round_lot = np.array([float(max(1, s.round_lot)) for s in securities])
    if "round_lot" in Securities.__dataclass_fields__ and np.any(round_lot > 1):
        sec_kwargs["round_lot"] = round_lot
    if parameters.get("esg_sell_out") and "sell_out" in Securities.__dataclass_fields__:
        sec_kwargs["sell_out"] = esg_excluded.copy()

    problem = AccountProblem(
        securities=Securities(
            price=price,
            target=target,
            band_lower=band,
            band_upper=band.copy(),
            min_weight=w_min,
            max_weight=w_max,
            sector=sector,
            no_buy=no_buy,
            no_sell=no_sell,
            half_spread=half_spread,
            symbols=tuple(s.ticker for s in securities),
            **sec_kwargs,
        ),
        lots=Lots(
            security=lot_sec,
            quantity=lot_qty,
            basis=lot_basis,
            long_term=lot_lt,
            no_sell=np.zeros(len(lots), dtype=bool),
        ),
        cash=cash,
        reserve=reserve,
        commission_rate=float(settings.REBALANCE_COMMISSION_RATE),
        tax_rate_short=float(account.st_tax_rate),
        tax_rate_long=float(account.lt_tax_rate),
        taxable=account.taxable,
        exposures=exposures,
        factor_cov=factor_cov,
        specific_var=specific,
        sector_max=sector_max,
        turnover_limit=parameters.get("turnover_limit"),
        gains_budget=(
            max(0.0, float(account.gains_budget) - shared.gains_used.get(account.pk, 0.0))
            if account.taxable and account.gains_budget is not None
            else None
        ),
        wash_buy_blocked=wash_buy,
        wash_sell_blocked=wash_sell,
        mode=Mode(mode),
        cash_amount=cash_amount,
        tolerance_to_target=bool(parameters.get("tolerance_to_target", True)),
        tlh_loss_threshold=float(
            parameters.get("tlh_loss_threshold", settings.REBALANCE_TLH_LOSS_THRESHOLD)
        ),
        substitutes={index[a]: index[b] for a, b in substitutes.items()},
        tracking_weight=float(parameters.get("tracking_weight", 1.0)),
        drift_weight=float(parameters.get("drift_weight", 1.0)),
        fractional=account.allow_fractional,
        min_trade=float(account.min_trade_amount),
    )
    warnings = []
    if risk is None:
        warnings.append(
            "No risk model yet: tracking error is not in the objective (drift penalty only)."
        )
    if restriction_notes:
        warnings.append("Restrictions in effect: " + "; ".join(restriction_notes) + ".")
    if wash_notes:
        warnings.append("Wash-sale blocks: " + "; ".join(wash_notes) + ".")
    return ProblemContext(
        problem=problem,
        security_ids=[s.pk for s in securities],
        lot_ids=[row[0] for row in lots],
        lot_acquired=[row[4].isoformat() if row[4] else "" for row in lots],
        model_version_id=version.pk,
        risk_model_id=risk.pk if risk else None,
        prices_as_of=as_of.isoformat(),
        warnings=warnings,
        load_ms=1000 * (time.perf_counter() - start),
    )


def _context_from_snapshot(snapshot: dict[str, Any]) -> ProblemContext:
    return ProblemContext(
        problem=problem_from_json(snapshot["problem"]),
        security_ids=list(snapshot["security_ids"]),
        lot_ids=list(snapshot["lot_ids"]),
        lot_acquired=list(snapshot["lot_acquired"]),
        model_version_id=snapshot.get("model_version"),
        risk_model_id=snapshot.get("risk_model"),
        prices_as_of=snapshot.get("prices_as_of", ""),
    )


# ---------------------------------------------------------------------------
# Trades as stored (JSON) and metrics
# ---------------------------------------------------------------------------


def _num(x: float, places: int = 6) -> float:
    return round(float(x), places)


def _trades_json(
    ctx: ProblemContext, result: OptimizeResult, reason_override: str | None = None
) -> list[dict[str, Any]]:
    from portfolios.optimizer.explain import trades_explain

    problem = ctx.problem
    trades = []
    for ex in trades_explain(problem, result):
        j = ex.security
        trade: dict[str, Any] = {
            "security": ctx.security_ids[j],
            "ticker": ex.symbol,
            "side": ex.side,
            "quantity": _num(ex.shares),
            "price": _num(ex.price),
            "notional": _num(ex.notional, 2),
            "reason": reason_override or ex.reason,
            "drivers": list(ex.drivers),
            "explanation": ex.explanation,
            "weight_before": _num(ex.weight_before),
            "weight_after": _num(ex.weight_after),
            "target": _num(ex.target),
            "lots": [],
            "realized_st": 0.0,
            "realized_lt": 0.0,
            "tax": 0.0,
            "edited": False,
        }
        for relief in getattr(ex, "lots", ()) or ():
            i = relief.lot
            trade["lots"].append(_lot_json(ctx, i, relief.shares, relief.gain, relief.tax))
        _lot_totals(trade)
        trades.append(trade)
    return trades


def _lot_json(ctx: ProblemContext, i: int, shares: float, gain: float, tax: float) -> dict:
    lots = ctx.problem.lots
    return {
        "lot": ctx.lot_ids[i],
        "quantity": _num(shares),
        "acquired_on": ctx.lot_acquired[i],
        "basis": _num(lots.basis[i]),
        "long_term": bool(lots.long_term[i]),
        "gain": _num(gain, 2),
        "tax": _num(tax, 2),
    }


def _lot_totals(trade: dict[str, Any]) -> None:
    trade["realized_st"] = _num(sum(x["gain"] for x in trade["lots"] if not x["long_term"]), 2)
    trade["realized_lt"] = _num(sum(x["gain"] for x in trade["lots"] if x["long_term"]), 2)
    trade["tax"] = _num(sum(x["tax"] for x in trade["lots"]), 2)


def _shares_from_trades(
    ctx: ProblemContext, trades: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    problem = ctx.problem
    sell = np.zeros(problem.n_lots)
    buy = np.zeros(problem.n_securities)
    sec_index = {sid: j for j, sid in enumerate(ctx.security_ids)}
    lot_index = {lid: i for i, lid in enumerate(ctx.lot_ids)}
    for t in trades:
        if t["side"] == Side.BUY:
            buy[sec_index[t["security"]]] += t["quantity"]
        else:
            for relief in t["lots"]:
                sell[lot_index[relief["lot"]]] += relief["quantity"]
    return sell, buy


def _metrics_json(problem: AccountProblem, sell: np.ndarray, buy: np.ndarray) -> dict[str, Any]:
    from portfolios.optimizer.explain import portfolio_metrics

    m = portfolio_metrics(problem, sell, buy)
    return {
        "value_before": _num(m.value_before, 2),
        "value_after": _num(m.value_after, 2),
        "cash_before": _num(m.cash_before, 2),
        "cash_after": _num(m.cash_after, 2),
        "tracking_error_before": _num(m.tracking_error_before),
        "tracking_error_after": _num(m.tracking_error_after),
        "total_drift_before": _num(m.total_drift_before),
        "total_drift_after": _num(m.total_drift_after),
        "max_drift_before": _num(m.max_drift_before),
        "max_drift_after": _num(m.max_drift_after),
        "realized_st": _num(m.realized_st, 2),
        "realized_lt": _num(m.realized_lt, 2),
        "tax_estimate": _num(m.tax_estimate, 2),
        "cost_estimate": _num(m.cost_estimate, 2),
        "turnover": _num(m.turnover),
        "weights_before": [_num(w) for w in m.weights_before],
        "weights_after": [_num(w) for w in m.weights_after],
        "cash_weight_before": _num(m.cash_weight_before),
        "cash_weight_after": _num(m.cash_weight_after),
        "terms_before": _terms(m.terms_before),
        "terms_after": _terms(m.terms_after),
        "violations": list(m.violations),
    }


def _terms(terms: Any) -> dict[str, float]:
    if isinstance(terms, dict):
        return {k: _num(v, 10) for k, v in terms.items()}
    return {
        k: _num(getattr(terms, k), 10) for k in ("tracking", "drift", "cost", "tax", "objective")
    }


def _proposed(trades: list[dict[str, Any]]) -> list[list[Any]]:
    """The optimizer's trades in a compact form, kept as proposed (edits change ``trades``)."""
    out: list[list[Any]] = []
    for t in trades:
        lots = [[x["lot"], x["quantity"]] for x in t["lots"]]
        out.append([t["security"], t["side"], t["quantity"], lots])
    return out


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def _run_after(run: RebalanceRun) -> dict[str, Any]:
    return {
        "account": run.account_id,
        "mode": run.mode,
        "parameters": run.parameters,
        "trigger": run.trigger,
        "status": run.status,
        "batch": run.batch_id,
        "replay_of": run.replay_of_id,
    }


def rebalance_run_request(
    *,
    actor: AbstractBaseUser | str,
    account_id: Any,
    mode: str,
    parameters: dict[str, Any] | None = None,
    trigger: str = RebalanceTrigger.MANUAL,
    enqueue: bool = True,
) -> RebalanceRun:
    """Validate a proposal request for one account and enqueue its run (``enqueue=False``:
    the caller runs :func:`rebalance_run_execute` itself, as ``manage.py rebalance`` does).

    The problem is built once here, so a bad request (stale price, model not at 100%, cash
    raise larger than the account, a mode the account cannot use) is refused before any row
    exists. Raises NotFound, PermissionDenied, ValidationFailed, StalePrice or
    InvalidTransition (a run of the account is already queued or running).
    """
    mode = rebalance_mode_clean(mode)
    params = rebalance_parameters_clean(mode=mode, parameters=parameters)
    account = _account_for(actor=actor, account_id=account_id)
    rebalance_problem_build(account=account, mode=mode, parameters=params)
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=account.pk).first()
        running = _in_progress([account.pk])
        if running:
            raise InvalidTransition(
                MSG_IN_PROGRESS.format(account=_label(account), run=running[account.pk]),
                {"run": running[account.pk]},
            )
        run = RebalanceRun.objects.create(
            account=account,
            mode=mode,
            parameters=params,
            trigger=trigger,
            created_by=None if isinstance(actor, str) else actor,
        )
        audit_record(actor=actor, action=ACTION_REQUESTED, obj=run, after=_run_after(run))
        if enqueue:
            work_enqueue(item=run)
    return run


def rebalance_batch_request(
    *,
    actor: AbstractBaseUser | str,
    mode: str,
    parameters: dict[str, Any] | None = None,
    account_ids: Sequence[Any] | None = None,
    model_id: Any = None,
    breached_only: bool = True,
) -> RebalanceBatch:
    """One run per account, fanned out as one Celery task each (a chord whose callback closes
    the batch). Accounts are a list, or every account of ``model_id`` (breached ones only by
    default, by their latest drift scan). Accounts that cannot be run are skipped with their
    reason (recorded on the batch); the rest are checked again by their task.
    """
    mode = rebalance_mode_clean(mode)
    params = rebalance_parameters_clean(mode=mode, parameters=parameters)
    if (account_ids is None) == (model_id is None):
        raise ValidationFailed(MSG_BATCH_SELECTION)
    if isinstance(actor, str):
        visible = Account.objects.all()
        changeable = visible
    else:
        visible = accounts_visible_to(actor)
        changeable = accounts_visible_to(actor, perm="change_household")
    skipped: list[dict[str, Any]] = []
    if account_ids is not None:
        wanted = []
        for raw in account_ids:
            try:
                wanted.append(int(raw))
            except (TypeError, ValueError):
                skipped.append({"account": raw, "reason": MSG_ACCOUNT_NOT_FOUND.format(id=raw)})
        found = {a.pk: a for a in visible.filter(pk__in=wanted).select_related("model")}
        allowed = set(changeable.filter(pk__in=list(found)).values_list("pk", flat=True))
        accounts = []
        for pk in dict.fromkeys(wanted):
            if pk not in found:
                skipped.append({"account": pk, "reason": MSG_ACCOUNT_NOT_FOUND.format(id=pk)})
            elif pk not in allowed:
                skipped.append(
                    {"account": pk, "reason": MSG_NOT_ALLOWED.format(account=_label(found[pk]))}
                )
            else:
                accounts.append(found[pk])
        selection: dict[str, Any] = {"accounts": wanted}
        why = "none of the accounts given can be run"
    else:
        qs = changeable.filter(model_id=model_id).select_related("model")
        if breached_only:
            breached = DriftSnapshot.objects.filter(is_latest=True, breached=True).values(
                "account_id"
            )
            qs = qs.filter(pk__in=breached)
        accounts = list(qs.order_by("pk"))
        selection = {"model": model_id, "breached_only": breached_only}
        why = f"no {'breached ' if breached_only else ''}account of this model that you manage"
    runnable = []
    busy = _in_progress(a.pk for a in accounts)
    for account in accounts:
        try:
            _account_checks(account, mode)
        except ApplicationError as exc:
            skipped.append({"account": account.pk, "reason": exc.message})
            continue
        if account.pk in busy:
            skipped.append(
                {
                    "account": account.pk,
                    "reason": MSG_IN_PROGRESS.format(account=_label(account), run=busy[account.pk]),
                }
            )
            continue
        runnable.append(account)
    if not runnable:
        raise ValidationFailed(MSG_BATCH_EMPTY.format(why=why), {"skipped": skipped})
    user = None if isinstance(actor, str) else actor
    with transaction.atomic():
        batch = RebalanceBatch.objects.create(
            mode=mode,
            parameters=params,
            selection=selection,
            skipped=skipped,
            runs_total=len(runnable),
            created_by=user,
        )
        RebalanceRun.objects.bulk_create(
            [
                RebalanceRun(account=a, mode=mode, parameters=params, batch=batch, created_by=user)
                for a in runnable
            ],
            batch_size=2000,
        )
        run_ids = list(batch.runs.order_by("pk").values_list("pk", flat=True))
        audit_record(
            actor=actor,
            action=ACTION_BATCH_REQUESTED,
            obj=batch,
            after={
                "mode": mode,
                "parameters": params,
                "selection": selection,
                "runs": len(run_ids),
                "first_run": run_ids[0],
                "last_run": run_ids[-1],
                "accounts": [a.pk for a in runnable],
                "skipped": skipped,
            },
        )
        transaction.on_commit(lambda: _batch_dispatch(batch.pk, run_ids), robust=True)
    return batch


def _batch_dispatch(batch_id: int, run_ids: list[int]) -> None:
    """One task per chunk of ``REBALANCE_BATCH_CHUNK_SIZE`` runs (each run still its own row,
    claimed, stored and audited on its own), in a chord whose callback closes the batch.

    DESIGN 2 says one task per account; measured, the per-task cost of Celery (message,
    result, chord counter) and of reading the shared inputs again is larger than the solve
    itself, so chunks read their inputs once and share the task (docs/performance.md). With
    a chunk size of 1 it is one task per account."""
    from celery import chord

    from portfolios.tasks_rebalance import rebalance_batch_finish, rebalance_chunk

    size = settings.REBALANCE_BATCH_CHUNK_SIZE
    chunks = [run_ids[k : k + size] for k in range(0, len(run_ids), size)]
    header = [rebalance_chunk.si(batch_id, chunk) for chunk in chunks]
    result = chord(header)(rebalance_batch_finish.si(batch_id))
    RebalanceBatch.objects.filter(pk=batch_id).update(task_id=result.id)


def rebalance_batch_finish(*, batch_id: int) -> dict[str, Any]:
    """Close a batch once none of its runs is queued or running (idempotent)."""
    with transaction.atomic():
        batch = RebalanceBatch.objects.select_for_update().get(pk=batch_id)
        counts = rebalance_batch_counts(batch_id=batch_id)
        pending = counts.get(WorkStatus.QUEUED, 0) + counts.get(WorkStatus.RUNNING, 0)
        if batch.finished_at is not None or pending:
            return {"batch": batch_id, "finished": batch.finished_at is not None, **counts}
        batch.finished_at = timezone.now()
        batch.save(update_fields=["finished_at"])
        audit_record(actor=TASK_ACTOR, action=ACTION_BATCH_FINISHED, obj=batch, after=counts)
    return {"batch": batch_id, "finished": True, **counts}


def rebalance_batch_counts(*, batch_id: int) -> dict[str, int]:
    from django.db.models import Count

    rows = (
        RebalanceRun.objects.filter(batch_id=batch_id)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return dict(rows)


def rebalance_auto_propose(*, account_ids: Sequence[int]) -> list[int]:
    """Propose for newly breached accounts that asked for it (drift alert), in the firm's
    auto mode. An account that cannot be run (or already has a run) is skipped, and the skip
    is audited with its reason. Returns the ids of the runs created."""
    created: list[int] = []
    mode = settings.REBALANCE_AUTO_MODE
    accounts = Account.objects.filter(pk__in=list(account_ids), auto_propose=True)
    for account in accounts:
        try:
            run = rebalance_run_request(
                actor=AUTO_ACTOR, account_id=account.pk, mode=mode, trigger=RebalanceTrigger.AUTO
            )
        except ApplicationError as exc:
            audit_record(
                actor=AUTO_ACTOR,
                action="rebalance_run.auto_skipped",
                obj=account,
                after={"mode": mode},
                reason=exc.message,
            )
            continue
        created.append(run.pk)
    return created


# ---------------------------------------------------------------------------
# Execution (the task)
# ---------------------------------------------------------------------------


def _fail(
    run_id: int, status: str, message: str, diagnostics: dict[str, Any], detail: str = ""
) -> None:
    with transaction.atomic():
        updated = RebalanceRun.objects.filter(pk=run_id, status=WorkStatus.RUNNING).update(
            status=status,
            finished_at=timezone.now(),
            error=message[:500],
            error_detail=detail,
            diagnostics=diagnostics,
        )
        if updated:
            run = RebalanceRun.objects.get(pk=run_id)
            action = ACTION_INFEASIBLE if status == RunStatus.INFEASIBLE else ACTION_FAILED
            audit_record(
                actor=TASK_ACTOR,
                action=action,
                obj=run,
                before={"status": WorkStatus.RUNNING},
                after={"status": status, "error": message[:500]},
            )


def rebalance_run_execute(*, run_id: int) -> dict[str, Any]:
    """Claim the run, build (or, for a replay, load) its problem, solve, store. Idempotent:
    a run that is not claimable (done, or held by another worker) is left alone."""
    return rebalance_runs_execute(run_ids=[run_id])[0]


def rebalance_runs_execute(*, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Execute several runs (a chunk of a batch) with their inputs read once for all of them;
    each run is still claimed, solved, stored and audited on its own (a run that is not
    claimable is left alone), so a failure of one does not touch the others."""
    claimed = [pk for pk in run_ids if work_claim(model=RebalanceRun, pk=pk)]
    results = {pk: {"run": pk, "claimed": False} for pk in run_ids}
    if not claimed:
        return [results[pk] for pk in run_ids]
    runs = list(
        RebalanceRun.objects.select_related("account", "account__model", "replay_of").filter(
            pk__in=claimed
        )
    )
    fresh = [r for r in runs if not r.replay_of_id]
    shared = None
    if fresh:
        shared = rebalance_inputs_load(
            accounts=[r.account for r in fresh],
            tlh=any(r.mode == RebalanceMode.TLH for r in fresh),
        )
    for run in runs:
        share_ms = shared.load_ms / len(fresh) if shared and not run.replay_of_id else 0.0
        try:
            results[run.pk] = _execute_claimed(run, shared, share_ms)
        except Exception as exc:  # a bug must not leave the chunk's other runs running
            logger.exception("rebalance_run.crashed", run=run.pk)
            _fail(
                run.pk,
                RunStatus.FAILED,
                MSG_CRASHED.format(error=type(exc).__name__),
                {"stage": "unexpected"},
                detail=traceback.format_exc(),
            )
            results[run.pk] = {"run": run.pk, "status": RunStatus.FAILED}
    return [results[pk] for pk in run_ids]


def _execute_claimed(
    run: RebalanceRun, shared: SharedInputs | None, share_ms: float
) -> dict[str, Any]:
    run_id = run.pk
    diagnostics: dict[str, Any] = {}
    try:
        if run.replay_of_id:
            ctx = _context_from_snapshot(run.input_snapshot)
        else:
            ctx = rebalance_problem_build(
                account=run.account, mode=run.mode, parameters=run.parameters, shared=shared
            )
            ctx.load_ms += share_ms
    except ApplicationError as exc:
        _fail(run_id, RunStatus.FAILED, exc.message, {"stage": "load", **exc.extra})
        return {"run": run_id, "status": RunStatus.FAILED}
    except ProblemInvalid as exc:
        _fail(run_id, RunStatus.FAILED, exc.message, {"stage": "load"})
        return {"run": run_id, "status": RunStatus.FAILED}
    snapshot = ctx.as_snapshot()
    diagnostics["warnings"] = list(ctx.warnings)
    solve_start = time.perf_counter()
    try:
        result = optimize(ctx.problem)
    except Infeasible as exc:
        diagnostics["conflicts"] = exc.extra.get("conflicts", [])
        diagnostics["input_hash"] = problem_hash(snapshot["problem"])
        _store_inputs(run_id, snapshot, ctx)
        _fail(run_id, RunStatus.INFEASIBLE, exc.message, diagnostics)
        return {"run": run_id, "status": RunStatus.INFEASIBLE}
    except OptimizerError as exc:
        message = MSG_SOLVER.format(account=_label(run.account), error=exc.message)
        _store_inputs(run_id, snapshot, ctx)
        _fail(run_id, RunStatus.FAILED, message, diagnostics)
        return {"run": run_id, "status": RunStatus.FAILED}
    solve_ms = 1000 * (time.perf_counter() - solve_start)
    store_start = time.perf_counter()
    input_hash = problem_hash(snapshot["problem"])
    trades = _trades_json(ctx, result)
    sell, buy = _shares_from_trades(ctx, trades)
    metrics = _metrics_json(ctx.problem, sell, buy)
    diagnostics.update(
        {
            "discrete": result.discrete,
            "objective_relaxed": _terms(result.terms_relaxed),
            "objective_gap": _num(result.objective_gap, 10),
            "dropped_small_trades": result.dropped,
            "cache_hit": result.cache_hit,
            "solver_status": result.status,
            "metrics": metrics,
            "proposed": _proposed(trades),
            "security_ids": ctx.security_ids,
        }
    )
    diagnostics["warnings"] += list(result.warnings)
    if run.replay_of_id:
        diagnostics["replay"] = _replay_compare(run.replay_of, diagnostics["proposed"])
    with transaction.atomic():
        updated = RebalanceRun.objects.filter(pk=run_id, status=WorkStatus.RUNNING).update(
            status=RunStatus.SUCCEEDED,
            finished_at=timezone.now(),
            solver=result.solver,
            solve_ms=round(solve_ms, 3),
            model_version_id=ctx.model_version_id,
            risk_model_id=ctx.risk_model_id,
            objective_before=_terms(result.terms_before),
            objective_after=_terms(result.terms_after),
            input_snapshot=snapshot,
            input_hash=input_hash,
            trades=trades,
            diagnostics=diagnostics,
            error="",
        )
        if not updated:
            return {"run": run_id, "claimed": False}
        summary = {
            "status": RunStatus.SUCCEEDED,
            "trades": len(trades),
            "bought": _num(sum(t["notional"] for t in trades if t["side"] == Side.BUY), 2),
            "sold": _num(sum(t["notional"] for t in trades if t["side"] == Side.SELL), 2),
            "tax_estimate": metrics["tax_estimate"],
            "input_hash": input_hash,
        }
        if run.replay_of_id:
            summary["replay_matches"] = diagnostics["replay"]["matches"]
        audit_record(
            actor=TASK_ACTOR,
            action=ACTION_SUCCEEDED,
            obj=run,
            before={"status": WorkStatus.RUNNING},
            after=summary,
        )
        # Store time covers preparing, writing and auditing the proposal (not the commit,
        # which this small update shares).
        store_ms = 1000 * (time.perf_counter() - store_start)
        timings = {
            "load": round(ctx.load_ms, 3),
            "solve": round(solve_ms, 3),
            "store": round(store_ms, 3),
        }
        RebalanceRun.objects.filter(pk=run_id).update(timings_ms=timings)
    return {"run": run_id, "status": RunStatus.SUCCEEDED, "timings_ms": timings}


def _store_inputs(run_id: int, snapshot: dict[str, Any], ctx: ProblemContext) -> None:
    RebalanceRun.objects.filter(pk=run_id).update(
        input_snapshot=snapshot,
        input_hash=problem_hash(snapshot["problem"]),
        model_version_id=ctx.model_version_id,
        risk_model_id=ctx.risk_model_id,
    )


def _replay_compare(original: RebalanceRun, proposed: list[list[Any]]) -> dict[str, Any]:
    before = {(t[0], t[1]): t[2] for t in original.diagnostics.get("proposed", [])}
    after = {(t[0], t[1]): t[2] for t in proposed}
    differences = [
        {"security": k[0], "side": k[1], "original": before.get(k), "replay": after.get(k)}
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k)
    ]
    return {"original": original.pk, "matches": not differences, "differences": differences}


def rebalance_run_replay(*, actor: AbstractBaseUser | str, run_id: Any) -> RebalanceRun:
    """A new run solving the stored inputs of ``run_id`` again (same hash): its trades are
    compared with the original proposal and the result is recorded on the new run."""
    original = rebalance_run_get_for(actor=actor, run_id=run_id, change=True)
    if not original.input_snapshot:
        raise InvalidTransition(
            MSG_REPLAY_NO_SNAPSHOT.format(run=original.pk, status=original.status)
        )
    with transaction.atomic():
        run = RebalanceRun.objects.create(
            account_id=original.account_id,
            mode=original.mode,
            parameters=original.parameters,
            trigger=RebalanceTrigger.REPLAY,
            replay_of=original,
            input_snapshot=original.input_snapshot,
            input_hash=original.input_hash,
            created_by=None if isinstance(actor, str) else actor,
        )
        audit_record(actor=actor, action=ACTION_REQUESTED, obj=run, after=_run_after(run))
        work_enqueue(item=run)
    return run


def rebalance_run_get_for(
    *, actor: AbstractBaseUser | str, run_id: Any, change: bool = False
) -> RebalanceRun:
    """A run ``actor`` may see (or, with ``change``, act on); NotFound otherwise."""
    qs = RebalanceRun.objects.select_related("account", "account__household")
    if not isinstance(actor, str):
        qs = qs.filter(account__in=accounts_visible_to(actor).values("pk"))
    try:
        run = qs.get(pk=run_id)
    except (RebalanceRun.DoesNotExist, ValueError, TypeError):
        raise NotFound(MSG_RUN_NOT_FOUND.format(id=run_id)) from None
    if change:
        _account_for(actor=actor, account_id=run.account_id)
    return run


# ---------------------------------------------------------------------------
# Editing a proposal
# ---------------------------------------------------------------------------


def _locking_basket(run: RebalanceRun) -> Any:
    """The live basket made from this run, if any. Its orders were copied from the trades, so
    the run is locked from then on, even while the basket is a draft: editing the run would
    leave the basket's orders different from the proposal (cancel the basket to edit again)."""
    from orders.models import BasketState

    return run.baskets.exclude(state__in=[BasketState.CANCELLED, BasketState.REJECTED]).first()


def _relieve(
    ctx: ProblemContext, trade: dict[str, Any], quantity: float, fractional: bool
) -> list[dict[str, Any]]:
    """Lots relieved by a sell of ``quantity``: the optimizer's own lots first (in the order
    of lowest tax per share), then the account's other lots of the security, same order."""
    problem = ctx.problem
    j = ctx.security_ids.index(trade["security"])
    lot_index = {lid: i for i, lid in enumerate(ctx.lot_ids)}
    chosen = [lot_index[x["lot"]] for x in trade["lots"]]
    price = float(problem.securities.price[j])
    rate = np.where(problem.lots.long_term, problem.tax_rate_long, problem.tax_rate_short)
    per_share = (price - problem.lots.basis) * (rate if problem.taxable else 0.0)
    others = [i for i in np.flatnonzero(problem.lots.security == j).tolist() if i not in chosen]
    order = sorted(chosen, key=lambda i: per_share[i]) + sorted(others, key=lambda i: per_share[i])
    left = quantity
    out = []
    for i in order:
        if left <= 1e-9:
            break
        take = min(float(problem.lots.quantity[i]), left)
        if not fractional:
            take = float(np.floor(take + 1e-9))
        if take <= 0:
            continue
        gain = (price - float(problem.lots.basis[i])) * take
        tax = gain * float(rate[i]) if problem.taxable else 0.0
        out.append(_lot_json(ctx, i, take, gain, tax))
        left -= take
    return out


def rebalance_run_trade_edit(
    *, actor: AbstractBaseUser, run_id: Any, security_id: Any, quantity: Any, note: str = ""
) -> RebalanceRun:
    """Set one trade's quantity (0 removes it); metrics are recomputed from the edited trades
    and the edit is recorded on the run and in the audit trail. A run in a submitted basket
    is locked."""
    run = rebalance_run_get_for(actor=actor, run_id=run_id, change=True)
    with transaction.atomic():
        run = RebalanceRun.objects.select_for_update().select_related("account").get(pk=run.pk)
        if run.status != RunStatus.SUCCEEDED:
            raise InvalidTransition(MSG_RUN_NOT_EDITABLE.format(run=run.pk, status=run.status))
        basket = _locking_basket(run)
        if basket is not None:
            raise InvalidTransition(
                MSG_RUN_LOCKED.format(
                    run=run.pk, basket=basket.pk, state=basket.get_state_display()
                )
            )
        try:
            sec = int(security_id)
        except (TypeError, ValueError):
            sec = None
        trades = [dict(t) for t in run.trades]
        found = [k for k, t in enumerate(trades) if t["security"] == sec]
        if not found:
            ticker = Security.objects.filter(pk=sec).values_list("ticker", flat=True).first()
            raise ValidationFailed(
                MSG_NO_SUCH_TRADE.format(run=run.pk, ticker=ticker or security_id)
            )
        k = found[0]
        trade = trades[k]
        ctx = _context_from_snapshot(run.input_snapshot)
        problem = ctx.problem
        j = ctx.security_ids.index(sec)
        if trade["side"] == Side.SELL:
            limit = float(problem.lots.quantity[problem.lots.security == j].sum())
        else:
            limit = max(float(trade["quantity"]) * 10, float(trade["quantity"]))
        try:
            new_qty = float(quantity)
        except (TypeError, ValueError):
            new_qty = float("nan")
        if not (np.isfinite(new_qty) and 0 <= new_qty <= limit + 1e-9):
            raise ValidationFailed(
                MSG_EDIT_QUANTITY.format(ticker=trade["ticker"], limit=_num(limit), got=quantity)
            )
        if not problem.fractional and new_qty != int(new_qty):
            raise ValidationFailed(MSG_EDIT_WHOLE.format(account=_label(run.account), got=quantity))
        before = {k2: trade[k2] for k2 in ("security", "ticker", "side", "quantity")}
        if new_qty == 0:
            trades.pop(k)
        else:
            price = float(problem.securities.price[j])
            trade.update(quantity=_num(new_qty), notional=_num(new_qty * price, 2), edited=True)
            if trade["side"] == Side.SELL:
                trade["lots"] = _relieve(ctx, trade, new_qty, problem.fractional)
                _lot_totals(trade)
        sell, buy = _shares_from_trades(ctx, trades)
        metrics = _metrics_json(problem, sell, buy)
        weights_after = metrics["weights_after"]
        for t in trades:
            t["weight_after"] = weights_after[ctx.security_ids.index(t["security"])]
        edit = {
            "at": timezone.now().isoformat(),
            "by": getattr(actor, "username", str(actor)),
            "security": sec,
            "ticker": trade["ticker"],
            "before": before["quantity"],
            "after": _num(new_qty),
            "note": note,
        }
        run.trades = trades
        run.edits = [*run.edits, edit]
        run.objective_after = metrics["terms_after"]
        run.diagnostics = {**run.diagnostics, "metrics": metrics}
        run.save(update_fields=["trades", "edits", "objective_after", "diagnostics"])
        audit_record(
            actor=actor,
            action=ACTION_TRADE_EDITED,
            obj=run,
            before=before,
            after={**before, "quantity": _num(new_qty), "violations": metrics["violations"]},
            reason=note,
        )
    return run


def rebalance_run_lots_of(run: RebalanceRun) -> dict[int, list[dict[str, Any]]]:
    """Lots per sell trade's security (for pages): security id to its lot reliefs."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in run.trades:
        if t["side"] == Side.SELL:
            out[t["security"]].extend(t["lots"])
    return dict(out)
