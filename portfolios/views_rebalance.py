"""Pages of rebalance proposals (DESIGN 5 and 10): the propose form of one account, a run's
review page (progress polled by htmx while the run is queued or running; then metrics before
and after, the weights chart, the trades with their lots, reasons and explanations, inline
edit and remove, the edit history, "Create draft basket" and "Re-run from stored inputs"),
the runs list (filters, pagination, a basket from the selected runs) and a batch's page
("every breached account of a model": progress polled by htmx, skipped accounts, runs).

Views only parse input, call one service or selector and render. Every read goes through the
visibility selectors: another team's run or account answers 404 like an unknown id. Who may
change an account (its team's PMs, Admin) sees the controls; Ops and Compliance read only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orders.models import BasketState, TradeBasket
from orders.services import ACTIVE_STATES, basket_create_from_runs
from portfolios.charts import rebalance_weights_figure
from portfolios.forms_rebalance import (
    BatchProposeForm,
    RebalanceProposeForm,
    RunFilterForm,
    TradeEditForm,
)
from portfolios.models import ModelPortfolio, RebalanceMode, RunStatus, Side
from portfolios.selectors import account_get, accounts_visible_to
from portfolios.selectors.rebalance import (
    rebalance_batch_get,
    rebalance_batch_progress,
    rebalance_run_get,
    rebalance_run_list,
    rebalance_run_live_baskets,
)
from portfolios.services.rebalance import (
    rebalance_batch_request,
    rebalance_run_replay,
    rebalance_run_request,
    rebalance_run_trade_edit,
)
from rebalance_app.exceptions import ApplicationError, NotFound, PermissionDenied
from rebalance_app.roles import user_roles
from rebalance_app.work import WorkStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from portfolios.models import Account, RebalanceBatch, RebalanceRun

RUNS_PER_PAGE = 50
ACCOUNT_PROPOSALS = 10
BATCH_RUNS_SHOWN = 200
POLL_SECONDS = 1
NO_ROLE = "Your account has no role: ask an administrator for one."
PROPOSE_NOT_ALLOWED = "You may view account {account} but not propose trades for it."
BASKET_CREATED = "Draft basket #{basket} created with {orders} order{plural}."
REPLAY_STARTED = "Re-running the stored inputs of run {run}."
BATCH_NO_MODELS = "You manage no account with a model: there is nothing to propose."
EDIT_SAVED = "{ticker}: quantity {before:g} → {after:g}."
TRADE_REMOVED = "{ticker}: trade removed."
_PENDING = (WorkStatus.QUEUED, WorkStatus.RUNNING)
# Baskets in these states leave a run editable (DESIGN 7: editable until submitted).
_UNLOCKING_STATES = (BasketState.CANCELLED, BasketState.REJECTED)
# A run in a basket of one of these states cannot go into another basket.
_HOLDING_STATES = tuple(ACTIVE_STATES)

# The optimizer's driver codes (portfolios.optimizer.explain.DRIVERS), in words.
DRIVER_WORDS: dict[str, str] = {
    "drift": "drift from target",
    "tracking": "tracking error to the model",
    "tax": "tax effect of the sale",
    "cost": "trading costs",
    "cash_reserve": "cash reserve",
    "cash_raise": "cash to raise",
    "cash_invest": "cash to invest",
    "max_weight": "maximum weight",
    "min_weight": "minimum weight",
    "sector": "sector limit",
    "turnover": "turnover limit",
    "gains_budget": "realized-gains budget",
    "sell_out": "ESG sell-out",
    "substitute": "tax-loss harvest substitute",
    "band": "tolerance band",
}
REASON_WORDS: dict[str, str] = {
    "drift": "Drift",
    "tlh": "Tax-loss harvest",
    "cash_raise": "Cash raise",
    "cash_invest": "Cash invest",
    "restriction": "Restriction",
}


def driver_words(code: str) -> str:
    """A driver code in words; an unknown code is shown with its underscores as spaces."""
    return DRIVER_WORDS.get(code, code.replace("_", " "))


def _wants_partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _require_role(user: AbstractBaseUser) -> None:
    if not (user.is_superuser or user_roles(user)):
        raise DjangoPermissionDenied(NO_ROLE)


def _may_change(user: AbstractBaseUser, account_id: int) -> bool:
    """Whether ``user`` may propose and edit trades for the account (its team's PMs, Admin)."""
    return accounts_visible_to(user, perm="change_household").filter(pk=account_id).exists()


def _raise_for(exc: ApplicationError) -> None:
    """Visibility and permission errors answer 404 and 403; others are for the caller."""
    if isinstance(exc, NotFound):
        raise Http404(exc.message) from None
    if isinstance(exc, PermissionDenied):
        raise DjangoPermissionDenied(exc.message) from None


def _run_url(pk: int) -> str:
    return reverse("portfolios:rebalance_run", args=[pk])


# ---------------------------------------------------------------------------
# Propose
# ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def rebalance_propose_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET the form; POST creates a run (nothing is created when the service refuses)."""
    try:
        account = account_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    if not _may_change(request.user, account.pk):
        raise DjangoPermissionDenied(PROPOSE_NOT_ALLOWED.format(account=account.account_number))
    error, busy_run = "", None
    if request.method == "POST":
        form = RebalanceProposeForm(request.POST, account=account)
        if form.is_valid():
            try:
                run = rebalance_run_request(
                    actor=request.user,
                    account_id=account.pk,
                    mode=form.cleaned_data["mode"],
                    parameters=form.parameters(),
                )
            except ApplicationError as exc:
                _raise_for(exc)
                error, busy_run = exc.message, exc.extra.get("run")
            else:
                return redirect(_run_url(run.pk))
    else:
        mode = request.GET.get("mode", RebalanceMode.FULL)
        form = RebalanceProposeForm(
            initial={"mode": mode if mode in RebalanceMode.values else RebalanceMode.FULL},
            account=account,
        )
    context = {
        "account": account,
        "form": form,
        "service_error": error,
        "busy_run": busy_run,
        "tlh_reason": form.tlh_reason,
    }
    return render(request, "portfolios/rebalance/propose.html", context)


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricCard:
    key: str
    label: str
    before: float | None
    after: float | None
    kind: str  # "pct" or "money"

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(frozen=True)
class TradeRow:
    trade: dict[str, Any]
    drivers: list[str]
    error: str

    @property
    def realized(self) -> float:
        return float(self.trade.get("realized_st", 0)) + float(self.trade.get("realized_lt", 0))

    @property
    def reason_label(self) -> str:
        reason = self.trade.get("reason", "")
        return REASON_WORDS.get(reason, reason.replace("_", " ").capitalize())


def _metric_cards(metrics: dict[str, Any]) -> list[MetricCard]:
    def card(key: str, label: str, kind: str) -> MetricCard:
        return MetricCard(
            key, label, metrics.get(f"{key}_before"), metrics.get(f"{key}_after"), kind
        )

    return [
        card("total_drift", "Total drift", "pct"),
        card("max_drift", "Max drift", "pct"),
        card("tracking_error", "Tracking error (annualised)", "pct"),
        card("cash", "Cash", "money"),
    ]


def _snapshot_securities(run: RebalanceRun) -> tuple[list[int], list[str], list[float]]:
    """The run's security ids, tickers and targets, in the order of its weights."""
    problem = (run.input_snapshot or {}).get("problem", {})
    securities = problem.get("securities", {})
    ids = (run.diagnostics or {}).get("security_ids") or (run.input_snapshot or {}).get(
        "security_ids", []
    )
    symbols = list(securities.get("symbols") or [])
    target = list((securities.get("target") or {}).get("data") or [])
    return list(ids), symbols, target


def _weights_chart(run: RebalanceRun, metrics: dict[str, Any]) -> dict[str, Any] | None:
    _ids, symbols, target = _snapshot_securities(run)
    before = metrics.get("weights_before") or []
    after = metrics.get("weights_after") or []
    if not symbols or not (len(symbols) == len(before) == len(after) == len(target)):
        return None
    return rebalance_weights_figure(
        tickers=symbols,
        before=before,
        after=after,
        target=target,
        cash_before=metrics.get("cash_weight_before"),
        cash_after=metrics.get("cash_weight_after"),
        cash_target=max(0.0, 1.0 - sum(target)),
    )


def _replay_context(run: RebalanceRun) -> dict[str, Any] | None:
    replay = (run.diagnostics or {}).get("replay")
    if not replay:
        return None
    ids, symbols, _ = _snapshot_securities(run)
    ticker = dict(zip(ids, symbols, strict=False))
    differences = [
        {**d, "ticker": ticker.get(d.get("security"), str(d.get("security")))}
        for d in replay.get("differences", [])
    ]
    return {**replay, "differences": differences}


def _locking_basket(baskets: list[TradeBasket]) -> TradeBasket | None:
    return next((b for b in baskets if b.state not in _UNLOCKING_STATES), None)


def _parameter_items(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """A run's parameters in words, for its page."""
    items = []
    for name, value in (parameters or {}).items():
        if name == "cash_amount":
            items.append(("cash to raise", f"${float(value):,.2f}"))
        elif name == "tolerance_to_target":
            items.append(("trade breached positions to", "target" if value else "the band edge"))
        elif name == "tlh_loss_threshold":
            items.append(("harvest losses from", f"{100 * float(value):.2f}% of cost"))
        elif name == "turnover_limit":
            items.append(("turnover limit", f"{100 * float(value):.2f}%"))
        elif name == "esg_sell_out":
            items.append(("ESG sell-out", "on" if value else "off"))
        else:
            items.append((name.replace("_", " "), str(value)))
    return items


def _edits(run: RebalanceRun) -> list[dict[str, Any]]:
    """The edit history, newest first, with each time parsed for display."""
    out = []
    for edit in reversed(run.edits or []):
        try:
            when = timezone.localtime(datetime.fromisoformat(edit.get("at", "")))
        except (TypeError, ValueError):
            when = None
        out.append({**edit, "when": when})
    return out


def _run_context(
    request: HttpRequest,
    run: RebalanceRun,
    *,
    errors: dict[int, str] | None = None,
    notice: str = "",
) -> dict[str, Any]:
    """Everything the run page and its partials show."""
    changeable = _may_change(request.user, run.account_id)
    baskets = list(run.baskets.order_by("-pk")) if run.status == RunStatus.SUCCEEDED else []
    locked_by = _locking_basket(baskets)
    in_basket = any(b.state in _HOLDING_STATES for b in baskets)
    diagnostics = run.diagnostics or {}
    metrics = diagnostics.get("metrics") or {}
    errors = errors or {}
    trades = [
        TradeRow(
            trade=t,
            drivers=[driver_words(c) for c in t.get("drivers", [])],
            error=errors.get(t.get("security"), ""),
        )
        for t in run.trades
    ]
    can_edit = changeable and run.status == RunStatus.SUCCEEDED and locked_by is None
    return {
        "run": run,
        "account": run.account,
        "pending": run.status in _PENDING,
        "poll_seconds": POLL_SECONDS,
        "changeable": changeable,
        "can_edit": can_edit,
        "can_basket": can_edit and bool(run.trades) and not in_basket,
        "parameters": _parameter_items(run.parameters),
        "can_replay": changeable and bool(run.input_snapshot),
        "baskets": baskets,
        "locked_by": locked_by,
        "metrics": metrics,
        "cards": _metric_cards(metrics) if metrics else [],
        "no_risk_model": run.status == RunStatus.SUCCEEDED and run.risk_model_id is None,
        "chart": _weights_chart(run, metrics) if metrics else None,
        "trades": trades,
        "bought": sum(t["notional"] for t in run.trades if t["side"] == Side.BUY),
        "sold": sum(t["notional"] for t in run.trades if t["side"] == Side.SELL),
        "warnings": diagnostics.get("warnings") or [],
        "violations": metrics.get("violations") or [],
        "conflicts": diagnostics.get("conflicts") or [],
        "replay": _replay_context(run),
        "edits": _edits(run),
        "edit_errors": [e for e in errors.values() if e],
        "notice": notice,
        "timings": run.timings_ms or {},
        "discrete": diagnostics.get("discrete"),
        "objective_gap": diagnostics.get("objective_gap"),
    }


def _get_run(request: HttpRequest, pk: int) -> RebalanceRun:
    try:
        return rebalance_run_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None


@login_required
@require_GET
def rebalance_run_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = _get_run(request, pk)
    return render(request, "portfolios/rebalance/run_detail.html", _run_context(request, run))


@login_required
@require_GET
def rebalance_run_status_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Polled by htmx every second while the run is queued or running; once it is done the
    answer is the whole result, swapped in place of the progress."""
    run = _get_run(request, pk)
    response = render(request, "portfolios/partials/_run_body.html", _run_context(request, run))
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def rebalance_run_trade_edit_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Change one trade's quantity (0 removes it); htmx gets the re-rendered result (metrics,
    chart, trades, explanation, edits) with any error next to the trade."""
    form = TradeEditForm(request.POST)
    errors: dict[int, str] = {}
    notice = ""
    security = None
    if form.is_valid():
        security = form.cleaned_data["security"]
        try:
            run = rebalance_run_trade_edit(
                actor=request.user,
                run_id=pk,
                security_id=security,
                quantity=form.cleaned_data["quantity"],
                note=form.cleaned_data["note"],
            )
        except ApplicationError as exc:
            _raise_for(exc)
            errors[security] = exc.message
            run = _get_run(request, pk)
        else:
            edit = run.edits[-1]
            notice = (
                TRADE_REMOVED.format(ticker=edit["ticker"])
                if not edit["after"]
                else EDIT_SAVED.format(
                    ticker=edit["ticker"], before=edit["before"], after=edit["after"]
                )
            )
    else:
        run = _get_run(request, pk)
        raw = request.POST.get("security", "")
        security = int(raw) if raw.isdigit() else 0
        errors[security] = " ".join(e for field in form.errors.values() for e in field)
    if _wants_partial(request):
        context = _run_context(request, run, errors=errors, notice=notice)
        return render(request, "portfolios/partials/_run_result.html", context)
    for message in errors.values():
        messages.error(request, message)
    if notice:
        messages.success(request, notice)
    return redirect(_run_url(run.pk))


@login_required
@require_POST
def rebalance_run_basket_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A draft basket from this run's trades."""
    try:
        basket = basket_create_from_runs(actor=request.user, run_ids=[pk])
    except ApplicationError as exc:
        _raise_for(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, _basket_created(basket))
    return redirect(_run_url(pk))


def _basket_created(basket: TradeBasket) -> str:
    orders = basket.orders.count()
    return BASKET_CREATED.format(basket=basket.pk, orders=orders, plural="" if orders == 1 else "s")


@login_required
@require_POST
def rebalance_run_replay_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A new run solving this run's stored inputs again; its page says whether they match."""
    try:
        run = rebalance_run_replay(actor=request.user, run_id=pk)
    except ApplicationError as exc:
        _raise_for(exc)
        messages.error(request, exc.message)
        return redirect(_run_url(pk))
    messages.success(request, REPLAY_STARTED.format(run=pk))
    return redirect(_run_url(run.pk))


# ---------------------------------------------------------------------------
# Runs list
# ---------------------------------------------------------------------------


@login_required
@require_GET
def rebalance_run_list_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    filter_form = RunFilterForm(request.GET)
    filters = filter_form.filters()
    page = Paginator(rebalance_run_list(user=request.user, filters=filters), RUNS_PER_PAGE)
    page_obj = page.get_page(request.GET.get("page"))
    runs = list(page_obj.object_list)
    baskets = rebalance_run_live_baskets(run_ids=[r.pk for r in runs])
    for r in runs:
        r.live_basket = baskets.get(r.pk)  # type: ignore[attr-defined]
    changeable = (
        set(
            accounts_visible_to(request.user, perm="change_household")
            .filter(pk__in={r.account_id for r in runs})
            .values_list("pk", flat=True)
        )
        if runs
        else set()
    )
    context = {
        "filter_form": filter_form,
        "filtered": bool(filters),
        "page_obj": page_obj,
        "runs": runs,
        "selectable": {
            r.pk
            for r in runs
            if r.status == RunStatus.SUCCEEDED
            and r.account_id in changeable
            and r.live_basket is None  # type: ignore[attr-defined]
        },
        "list_url": reverse("portfolios:rebalance_runs"),
    }
    return render(request, "portfolios/rebalance/run_list.html", context)


@login_required
@require_POST
def rebalance_runs_basket_view(request: HttpRequest) -> HttpResponse:
    """One draft basket from the runs selected in the list."""
    back = request.POST.get("next", "")
    if not back.startswith(reverse("portfolios:rebalance_runs")):
        back = reverse("portfolios:rebalance_runs")
    try:
        basket = basket_create_from_runs(actor=request.user, run_ids=request.POST.getlist("runs"))
    except ApplicationError as exc:
        _raise_for(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, _basket_created(basket))
    return redirect(back)


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


def batch_models(user: AbstractBaseUser) -> list[tuple[int, str]]:
    """Models of the accounts ``user`` may propose for (the batch form's choices)."""
    return list(
        accounts_visible_to(user, perm="change_household")
        .exclude(model=None)
        .order_by("model__name")
        .values_list("model_id", "model__name")
        .distinct()
    )


@login_required
@require_POST
def rebalance_batch_create_view(request: HttpRequest) -> HttpResponse:
    """Propose for every breached account of a model (one run per account, fanned out)."""
    dashboard = reverse("portfolios:drift_dashboard")
    models = batch_models(request.user)
    if not models:
        raise DjangoPermissionDenied(BATCH_NO_MODELS)
    form = BatchProposeForm(request.POST, models=models)
    if not form.is_valid():
        for field_errors in form.errors.values():
            for message in field_errors:
                messages.error(request, message)
        return redirect(dashboard)
    try:
        batch = rebalance_batch_request(
            actor=request.user,
            mode=form.cleaned_data["mode"],
            model_id=form.cleaned_data["model"],
            breached_only=True,
        )
    except ApplicationError as exc:
        _raise_for(exc)
        messages.error(request, exc.message)
        return redirect(dashboard)
    return redirect(reverse("portfolios:rebalance_batch", args=[batch.pk]))


def _batch_context(request: HttpRequest, batch: RebalanceBatch) -> dict[str, Any]:
    progress = rebalance_batch_progress(batch=batch)
    runs = list(
        rebalance_run_list(user=request.user, filters={"batch": batch.pk}).order_by("pk")[
            :BATCH_RUNS_SHOWN
        ]
    )
    skipped_ids = [s["account"] for s in batch.skipped if isinstance(s.get("account"), int)]
    numbers = (
        dict(
            accounts_visible_to(request.user)
            .filter(pk__in=skipped_ids)
            .values_list("pk", "account_number")
        )
        if skipped_ids
        else {}
    )
    skipped = [
        {**s, "number": numbers.get(s.get("account")), "visible": s.get("account") in numbers}
        for s in batch.skipped
    ]
    model_id = (batch.selection or {}).get("model")
    return {
        "batch": batch,
        "model_name": _model_name(model_id),
        "progress": progress,
        "polling": not progress["finished"],
        "poll_seconds": POLL_SECONDS,
        "runs": runs,
        "runs_shown": BATCH_RUNS_SHOWN,
        "skipped": skipped,
    }


def _model_name(pk: Any) -> str:
    """A model portfolio's name (reference data every role may read)."""
    if not pk:
        return ""
    return ModelPortfolio.objects.filter(pk=pk).values_list("name", flat=True).first() or ""


def _get_batch(request: HttpRequest, pk: int) -> RebalanceBatch:
    try:
        return rebalance_batch_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None


@login_required
@require_GET
def rebalance_batch_view(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _get_batch(request, pk)
    return render(request, "portfolios/rebalance/batch_detail.html", _batch_context(request, batch))


@login_required
@require_GET
def rebalance_batch_status_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The batch's progress and runs, polled by htmx every second until every run is done."""
    batch = _get_batch(request, pk)
    return render(
        request, "portfolios/partials/_batch_progress.html", _batch_context(request, batch)
    )


def account_rebalance_context(user: AbstractBaseUser, account: Account) -> dict[str, Any]:
    """What the account page shows of proposals: may the user propose, and the recent runs."""
    return {
        "may_propose": _may_change(user, account.pk),
        "proposals": list(
            rebalance_run_list(user=user, filters={"account": account.pk})[:ACCOUNT_PROPOSALS]
        ),
        "proposals_shown": ACCOUNT_PROPOSALS,
    }
