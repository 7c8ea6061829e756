"""Pages of routing and execution: the Route button and the live routing panel of a basket's
page (blocks, allocation statements, routes at the broker, fills), the custodian trade file
(download, mark sent, load confirmations), cancel at the broker, the firm's executions and
the FIX message log.

Views parse, call one service or selector, render. A refused action shows the service's own
message, with its status, and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from orders.models import ROUTE_CANCELLABLE_STATES, BasketState, Destination, TradeFile
from orders.selectors import basket_get
from orders.selectors_routing import (
    basket_routing,
    execution_list,
    fix_message_list,
    fix_sessions,
    routing_job_get,
    sees_desk,
)
from rebalance_app.exceptions import ApplicationError, NotFound, ValidationFailed
from rebalance_app.roles import Role, user_has_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from orders.models import TradeBasket

POLL_SECONDS = 2
PER_PAGE = 50
ROUTED = "Basket #{basket} queued for routing to the {destination} (job {job})."
ROUTED_MANY = "{count} basket(s) queued for routing to the {destination} together (job {job})."
BOOKED = "Block {block} allocated and booked."
RESUMED = "Routing job {job} resumed: only orders never sent will be sent."
FILE_SENT = "Trade file {name} marked sent to the custodian."
CANCEL_ASKED = "Cancel of {cl_ord_id} sent to the broker."
CONFIRMED = "{rows} confirmation row(s) loaded: {applied} applied, {duplicates} already known."
NO_FILE = "Choose the custodian's confirmation CSV to upload."


def may_route(user: AbstractBaseUser) -> bool:
    return bool(user.is_superuser or user_has_role(user, Role.OPS))


def routing_context(*, user: AbstractBaseUser, basket: TradeBasket) -> dict[str, Any]:
    """What the routing panel of a basket's page shows, and whether it keeps polling."""
    view = basket_routing(basket=basket)
    ops = may_route(user)
    live = view.live and basket.state not in (BasketState.FILLED,)
    return {
        "basket": basket,
        "routing": view,
        "may_route": ops and basket.state == BasketState.APPROVED and not view.live,
        "may_work": ops,
        "cancellable": ROUTE_CANCELLABLE_STATES,
        "destinations": Destination.choices,
        "poll_seconds": POLL_SECONDS if live else 0,
    }


def _basket(request: HttpRequest, pk: int) -> TradeBasket:
    try:
        return basket_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _back(pk: int) -> HttpResponse:
    return redirect(reverse("orders:basket_detail", args=[pk]) + "#basket-routing")


def _refused(request: HttpRequest, pk: int, exc: ApplicationError) -> HttpResponse:
    if isinstance(exc, NotFound):
        raise Http404(exc.message)
    from orders.views import _detail_context

    context = _detail_context(request, pk, error=exc.message, error_action="route")
    return render(request, "orders/basket_detail.html", context, status=exc.http_status)


@login_required
@require_GET
def basket_routing_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The routing panel alone, for htmx polling."""
    basket = _basket(request, pk)
    context = routing_context(user=request.user, basket=basket)
    return render(request, "orders/partials/_basket_routing.html", context)


@login_required
@require_POST
def basket_route_view(request: HttpRequest, pk: int) -> HttpResponse:
    from orders.services_routing import routing_request

    destination = request.POST.get("destination") or Destination.FIX
    try:
        job = routing_request(actor=request.user, basket_ids=[pk], destination=destination)
    except ApplicationError as exc:
        return _refused(request, pk, exc)
    label = dict(Destination.choices).get(destination, destination)
    messages.success(request, ROUTED.format(basket=pk, destination=label, job=job.pk))
    return _back(pk)


@login_required
@require_POST
def route_selected_view(request: HttpRequest) -> HttpResponse:
    """Route several approved baskets from the basket list as one routing job."""
    from orders.services_routing import routing_request

    ids = request.POST.getlist("baskets")
    destination = request.POST.get("destination") or Destination.FIX
    try:
        job = routing_request(actor=request.user, basket_ids=ids, destination=destination)
    except ApplicationError as exc:
        if isinstance(exc, NotFound):
            raise Http404(exc.message) from None
        messages.error(request, exc.message)
        return redirect("orders:basket_list")
    first = job.baskets.order_by("pk").values_list("pk", flat=True).first()
    label = dict(Destination.choices).get(destination, destination)
    messages.success(
        request,
        ROUTED_MANY.format(count=job.baskets.count(), destination=label, job=job.pk),
    )
    return _back(first)


def _job_basket(request: HttpRequest, job_id: int) -> int:
    try:
        job = routing_job_get(user=request.user, pk=job_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    first = job.baskets.order_by("pk").values_list("pk", flat=True).first()
    if first is None:
        raise Http404("Routing job has no basket.")
    return int(request.POST.get("basket") or request.GET.get("basket") or first)


@login_required
@require_POST
def routing_resume_view(request: HttpRequest, job_id: int) -> HttpResponse:
    from orders.services_routing import routing_resume

    pk = _job_basket(request, job_id)
    try:
        routing_resume(actor=request.user, job_id=job_id)
    except ApplicationError as exc:
        return _refused(request, pk, exc)
    messages.success(request, RESUMED.format(job=job_id))
    return _back(pk)


@login_required
@require_GET
def trade_file_download_view(request: HttpRequest, job_id: int) -> HttpResponse:
    try:
        job = routing_job_get(user=request.user, pk=job_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    tf = TradeFile.objects.filter(job=job).first()
    if tf is None:
        raise Http404(f"Routing job {job_id} has no trade file.")
    return trade_file_response(tf)


def trade_file_response(tf: TradeFile) -> HttpResponse:
    """The trade file as a CSV download, its SHA-256 in ``X-Content-SHA256`` (page and API)."""
    response = HttpResponse(tf.content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{tf.filename}"'
    response["X-Content-SHA256"] = tf.sha256
    return response


@login_required
@require_POST
def trade_file_sent_view(request: HttpRequest, job_id: int) -> HttpResponse:
    from orders.services_routing import trade_file_mark_sent

    pk = _job_basket(request, job_id)
    try:
        tf = trade_file_mark_sent(actor=request.user, job_id=job_id)
    except ApplicationError as exc:
        return _refused(request, pk, exc)
    messages.success(request, FILE_SENT.format(name=tf.filename))
    return _back(pk)


@login_required
@require_POST
def trade_confirmations_view(request: HttpRequest, job_id: int) -> HttpResponse:
    from orders.services_routing import trade_confirmations_import

    pk = _job_basket(request, job_id)
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ValidationFailed(NO_FILE)
        result = trade_confirmations_import(
            actor=request.user, job_id=job_id, content=upload.read()
        )
    except ApplicationError as exc:
        return _refused(request, pk, exc)
    messages.success(request, CONFIRMED.format(**result))
    return _back(pk)


@login_required
@require_POST
def block_allocate_retry_view(request: HttpRequest, block_id: int) -> HttpResponse:
    from orders.services_routing import block_allocate_retry

    pk = int(request.POST.get("basket") or 0)
    try:
        block_allocate_retry(actor=request.user, block_id=block_id)
    except ApplicationError as exc:
        if isinstance(exc, NotFound) or not pk:
            raise Http404(exc.message) from None
        return _refused(request, pk, exc)
    messages.success(request, BOOKED.format(block=block_id))
    return _back(pk)


@login_required
@require_POST
def route_cancel_view(request: HttpRequest, route_id: int) -> HttpResponse:
    from orders.selectors_routing import routes_visible_to
    from orders.services_routing import route_cancel_request

    route = routes_visible_to(request.user).filter(pk=route_id).first()
    if route is None:
        raise Http404(f"Route {route_id} not found.")
    pk = int(request.POST.get("basket") or 0)
    try:
        route = route_cancel_request(actor=request.user, route_id=route_id)
    except ApplicationError as exc:
        if not pk:
            raise Http404(exc.message) from None
        return _refused(request, pk, exc)
    messages.success(request, CANCEL_ASKED.format(cl_ord_id=route.cl_ord_id))
    return _back(pk) if pk else redirect("orders:execution_list")


def _desk(request: HttpRequest) -> None:
    if not sees_desk(request.user):
        raise DjangoPermissionDenied("Only Operations, Compliance and Admin see this page.")


@login_required
@require_GET
def execution_list_view(request: HttpRequest) -> HttpResponse:
    _desk(request)
    keys = ("ticker", "cl_ord_id", "basket", "date_from", "date_to")
    filters = {k: request.GET.get(k, "").strip() for k in keys}
    if filters["basket"] and not filters["basket"].isdigit():
        filters["basket"] = ""
    page = Paginator(execution_list(user=request.user, filters=filters), PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(request, "orders/execution_list.html", {"page": page, "filters": filters})


@login_required
@require_GET
def fix_message_list_view(request: HttpRequest) -> HttpResponse:
    _desk(request)
    keys = ("direction", "msg_type", "cl_ord_id", "route")
    filters = {k: request.GET.get(k, "").strip() for k in keys}
    if filters["route"] and not filters["route"].isdigit():
        filters["route"] = ""
    page = Paginator(fix_message_list(user=request.user, filters=filters), PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "filters": filters,
        "sessions": fix_sessions(user=request.user),
        "broker": f"{settings.FIX_HOST}:{settings.FIX_PORT}",
    }
    return render(request, "orders/fix_messages.html", context)
