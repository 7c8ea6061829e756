"""Pages of trade baskets (DESIGN 7 and 10): the basket list (filters by state, team and date;
paginated, a constant number of queries), a basket's page (orders, the lots each sell relieves,
estimated tax and costs, the latest compliance check with its overrides, the history, and the
workflow actions), and the Ops approval queue.

Views only parse input, call one service or selector and render. Every read goes through
``orders.selectors``: another team's basket answers 404 like an unknown id. The action buttons
appear only for those who may use them (``basket_actions``), and the services refuse the rest
anyway: a refused POST shows the service's own message on the basket's page, with the status
of the error, and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from compliance.models import Severity
from compliance.selectors import user_can_read_audit
from orders.forms import ApproveForm, BasketFilterForm, CommentForm, OverrideForm
from orders.selectors import (
    basket_detail_get,
    basket_get,
    basket_latest_results,
    basket_list,
    basket_queue,
    basket_team_choices,
    basket_teams,
)
from rebalance_app.exceptions import ApplicationError, NotFound, ValidationFailed
from rebalance_app.roles import Role, user_has_role, user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from orders.models import TradeBasket

BASKETS_PER_PAGE = 50
QUEUE_SHOWN = 200
NO_ROLE = "Your account has no role: ask an administrator for one."
QUEUE_FORBIDDEN = "Only Ops, Compliance and Admin users may open the approval queue."
DONE = {
    "submit": "Basket #{basket} submitted: {state}.",
    "approve": "Basket #{basket} approved.",
    "reject": "Basket #{basket} rejected.",
    "cancel": "Basket #{basket} cancelled.",
    "override": "Result overridden: basket #{basket} is {state}.",
    "order_add": "Order added to basket #{basket}.",
    "order_update": "Order changed in basket #{basket}.",
    "order_remove": "Order removed from basket #{basket}.",
}
MSG_UNKNOWN_TICKER = "Unknown ticker '{ticker}'."


def _require_role(user: AbstractBaseUser) -> None:
    if not (user.is_superuser or user_roles(user)):
        raise DjangoPermissionDenied(NO_ROLE)


def _get_basket(request: HttpRequest, pk: int) -> TradeBasket:
    try:
        return basket_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _detail_url(pk: int) -> str:
    return reverse("orders:basket_detail", args=[pk])


# ---------------------------------------------------------------------------
# List and queue
# ---------------------------------------------------------------------------


def _with_teams(baskets: list[TradeBasket]) -> list[TradeBasket]:
    teams = basket_teams(basket_ids=[b.pk for b in baskets])
    for b in baskets:
        b.teams = teams.get(b.pk, [])  # type: ignore[attr-defined]
    return baskets


@login_required
@require_GET
def basket_list_view(request: HttpRequest) -> HttpResponse:
    _require_role(request.user)
    form = BasketFilterForm(request.GET, teams=basket_team_choices(user=request.user))
    filters = form.filters()
    paginator = Paginator(basket_list(user=request.user, filters=filters), BASKETS_PER_PAGE)
    page_obj = paginator.get_page(request.GET.get("page"))
    context = {
        "filter_form": form,
        "filtered": bool(filters),
        "page_obj": page_obj,
        "baskets": _with_teams(list(page_obj.object_list)),
        "list_url": reverse("orders:basket_list"),
    }
    from orders.models import Destination
    from orders.views_routing import may_route

    context["may_route"] = may_route(request.user) and any(
        b.state == "approved" for b in context["baskets"]
    )
    context["destinations"] = Destination.choices
    return render(request, "orders/basket_list.html", context)


def _may_open_queue(user: AbstractBaseUser) -> bool:
    return user.is_superuser or any(
        user_has_role(user, role) for role in (Role.OPS, Role.COMPLIANCE, Role.ADMIN)
    )


@login_required
@require_GET
def basket_queue_view(request: HttpRequest) -> HttpResponse:
    """Ops' approval queue: pending approval and compliance holds (marked), oldest first."""
    if not _may_open_queue(request.user):
        raise DjangoPermissionDenied(QUEUE_FORBIDDEN)
    baskets = _with_teams(list(basket_queue(user=request.user)[:QUEUE_SHOWN]))
    context = {"baskets": baskets, "shown": QUEUE_SHOWN}
    return render(request, "orders/basket_queue.html", context)


# ---------------------------------------------------------------------------
# One basket
# ---------------------------------------------------------------------------


def _detail_context(
    request: HttpRequest,
    pk: int,
    *,
    error: str = "",
    error_action: str = "",
) -> dict[str, Any]:
    try:
        detail = basket_detail_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    results = detail.results
    # A refused action keeps what was typed and ticked.
    posted = request.POST if error else None
    editable = "submit" in detail.actions and detail.basket.state == "draft"
    from orders.views_routing import routing_context

    return {
        **routing_context(user=request.user, basket=detail.basket),
        "editable": editable,
        "trade_accounts": _trade_accounts(request.user) if editable else [],
        "basket": detail.basket,
        "orders": detail.orders,
        "totals": detail.totals,
        "results": results,
        "check_run": results[0].check_run if results else None,
        "open_hard": detail.open_hard,
        "failed_warnings": detail.failed_warnings,
        "passed_count": sum(1 for r in results if r.passed),
        "history": detail.history,
        "can_read_audit": user_can_read_audit(request.user),
        "actions": detail.actions,
        "acknowledged": {
            int(v) for v in (posted.getlist("acknowledge") if posted else []) if v.isdigit()
        },
        "approve_comment": posted.get("comment", "")
        if posted and error_action == "approve"
        else "",
        "reject_comment": (
            posted.get("reject-comment", "") if posted and error_action == "reject" else ""
        ),
        "override_text": posted.get("justification", "") if posted else "",
        "override_result": (
            int(error_action.split("-", 1)[1]) if error_action.startswith("override-") else None
        ),
        "error": error,
        "error_action": error_action,
    }


def _trade_accounts(user: AbstractBaseUser) -> list[Any]:
    """Accounts ``user`` may add orders for (the first few hundred, by number)."""
    from portfolios.selectors import accounts_visible_to

    qs = accounts_visible_to(user, perm="change_household").filter(status="active")
    return list(qs.order_by("account_number").only("pk", "account_number", "name")[:500])


@login_required
@require_GET
def basket_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "orders/basket_detail.html", _detail_context(request, pk))


def _refused(request: HttpRequest, pk: int, exc: ApplicationError, action: str) -> HttpResponse:
    """The basket page again with the service's message, answering the error's status."""
    if isinstance(exc, NotFound):
        raise Http404(exc.message)
    context = _detail_context(request, pk, error=exc.message, error_action=action)
    return render(request, "orders/basket_detail.html", context, status=exc.http_status)


def _done(request: HttpRequest, action: str, basket: Any, pk: int) -> HttpResponse:
    state = basket.get_state_display().lower() if hasattr(basket, "get_state_display") else ""
    messages.success(request, DONE[action].format(basket=pk, state=state))
    return redirect(_detail_url(pk))


def _comment(request: HttpRequest, prefix: str | None = None) -> str:
    form = CommentForm(request.POST, prefix=prefix)
    if form.is_valid():
        return form.cleaned_data["comment"]
    key = f"{prefix}-comment" if prefix else "comment"
    return request.POST.get(key, "").strip()


@login_required
@require_POST
def basket_submit_view(request: HttpRequest, pk: int) -> HttpResponse:
    from orders.services import basket_submit

    try:
        basket = basket_submit(actor=request.user, basket_id=pk, comment=_comment(request))
    except ApplicationError as exc:
        return _refused(request, pk, exc, "submit")
    return _done(request, "submit", basket, pk)


@login_required
@require_POST
def basket_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    from orders.services import basket_cancel

    try:
        basket = basket_cancel(actor=request.user, basket_id=pk, comment=_comment(request))
    except ApplicationError as exc:
        return _refused(request, pk, exc, "cancel")
    return _done(request, "cancel", basket, pk)


@login_required
@require_POST
def basket_approve_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve with a comment; the failed warnings count as acknowledged only when every one
    of them is ticked (otherwise the service refuses and says so)."""
    from orders.services import basket_approve

    basket = _get_basket(request, pk)
    warning_ids = [
        r.pk
        for r in basket_latest_results(basket=basket)
        if not r.passed and r.severity == Severity.WARNING
    ]
    form = ApproveForm(request.POST, warning_ids=warning_ids)
    if form.is_valid():
        comment, acknowledged = form.cleaned_data["comment"], form.all_acknowledged()
    else:
        comment, acknowledged = request.POST.get("comment", "").strip(), not warning_ids
    try:
        basket = basket_approve(
            actor=request.user,
            basket_id=pk,
            comment=comment,
            acknowledge_warnings=acknowledged,
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc, "approve")
    return _done(request, "approve", basket, pk)


@login_required
@require_POST
def basket_reject_view(request: HttpRequest, pk: int) -> HttpResponse:
    from orders.services import basket_reject

    try:
        basket = basket_reject(
            actor=request.user, basket_id=pk, comment=_comment(request, prefix="reject")
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc, "reject")
    return _done(request, "reject", basket, pk)


@login_required
@require_POST
def basket_override_view(request: HttpRequest, pk: int, result_id: int) -> HttpResponse:
    """A Compliance officer overrides one failed hard result of the basket's latest check."""
    from compliance.services.checks import compliance_override_create

    basket = _get_basket(request, pk)
    if result_id not in {r.pk for r in basket_latest_results(basket=basket)}:
        raise Http404(f"Result {result_id} is not in basket {pk}'s latest check.")
    form = OverrideForm(request.POST)
    justification = (
        form.cleaned_data["justification"]
        if form.is_valid()
        else request.POST.get("justification", "").strip()
    )
    try:
        compliance_override_create(
            actor=request.user, result_id=result_id, justification=justification
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc, f"override-{result_id}")
    return _done(request, "override", _get_basket(request, pk), pk)


# ---------------------------------------------------------------------------
# Manual orders of a draft (DESIGN 7: the basket is editable while it is a draft)
# ---------------------------------------------------------------------------


@login_required
@require_POST
def basket_order_add_view(request: HttpRequest, pk: int) -> HttpResponse:
    from orders.services import basket_order_add
    from portfolios.models import Security

    ticker = request.POST.get("ticker", "").strip().upper()
    security_id = Security.objects.filter(ticker=ticker).values_list("pk", flat=True).first()
    try:
        if security_id is None:
            raise ValidationFailed(MSG_UNKNOWN_TICKER.format(ticker=ticker))
        basket_order_add(
            actor=request.user,
            basket_id=pk,
            account_id=request.POST.get("account"),
            security_id=security_id,
            side=request.POST.get("side", ""),
            quantity=request.POST.get("quantity", ""),
            order_type=request.POST.get("order_type") or "market",
            limit_price=request.POST.get("limit_price") or None,
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc, "order_add")
    return _done(request, "order_add", None, pk)


@login_required
@require_POST
def basket_order_update_view(request: HttpRequest, pk: int, order_id: int) -> HttpResponse:
    from orders.services import basket_order_update

    try:
        basket_order_update(
            actor=request.user,
            basket_id=pk,
            order_id=order_id,
            quantity=request.POST.get("quantity", ""),
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc, f"order_update-{order_id}")
    return _done(request, "order_update", None, pk)


@login_required
@require_POST
def basket_order_remove_view(request: HttpRequest, pk: int, order_id: int) -> HttpResponse:
    from orders.services import basket_order_remove

    try:
        basket_order_remove(actor=request.user, basket_id=pk, order_id=order_id)
    except ApplicationError as exc:
        return _refused(request, pk, exc, f"order_remove-{order_id}")
    return _done(request, "order_remove", None, pk)
