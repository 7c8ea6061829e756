"""Routing through the API and the pages: who may route (Ops, Admin), who sees what (another
team 404, the firm-wide executions and FIX log only for Ops, Compliance and Admin), 202 and
409 on a second request, the routing panel with blocks and fills, the trade file download
with its digest, marking it sent and loading confirmations, and cancelling at the broker."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from orders.models import (
    BasketState,
    BlockOrder,
    Execution,
    FixMessage,
    Route,
    RouteState,
    RoutingJob,
)
from orders.services_routing import routing_job_execute, routing_request
from tests.orders.routing_support import approved_basket

pytestmark = pytest.mark.django_db
D = Decimal


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("who", "status"),
    [("ops", 202), ("admin_user", 202), ("pm", 403), ("compliance", 403), ("other_pm", 404)],
)
def test_route_action_answers_each_persona(request, routable, who, status):
    user = request.getfixturevalue(who)
    response = api(user).post(f"/api/v1/baskets/{routable.pk}/route/", {}, format="json")
    assert response.status_code == status, response.content
    if status == 202:
        body = response.json()
        assert body["baskets"] == [routable.pk]
        assert body["destination"] == "fix"
        assert body["status"] == "queued"
    else:
        assert "message" in response.json()
        assert not RoutingJob.objects.exists()


def test_a_second_route_request_answers_409_with_the_job(routable, ops):
    first = api(ops).post(f"/api/v1/baskets/{routable.pk}/route/", {}, format="json")
    second = api(ops).post(f"/api/v1/baskets/{routable.pk}/route/", {}, format="json")
    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["extra"]["job"] == first.json()["id"]
    assert RoutingJob.objects.count() == 1


def test_routing_several_baskets_and_reading_the_job_with_blocks(
    routable, ops, pm, account_a2, xyz, route_checks, broker
):
    other = approved_basket(creator=pm, approver=ops, lines=[(account_a2, xyz, "buy", "50", [])])
    response = api(ops).post(
        "/api/v1/routing-jobs/", {"baskets": [routable.pk, other.pk]}, format="json"
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    routing_job_execute(job_id=job_id)
    detail = api(pm).get(f"/api/v1/routing-jobs/{job_id}/").json()
    assert detail["status"] == "succeeded"
    blocks = {b["ticker"]: b for b in detail["blocks"]}
    assert blocks["XYZ"]["quantity"] == "450.000000"
    assert blocks["XYZ"]["routes"][0]["state"] == "filled"
    assert [a["filled_quantity"] for a in blocks["XYZ"]["allocations"]] == [
        "100.000000",
        "300.000000",
        "50.000000",
    ]
    # executions and the FIX log: the desk only
    assert api(pm).get("/api/v1/executions/").status_code == 403
    fills = api(ops).get("/api/v1/executions/?ticker=XYZ").json()
    assert fills["count"] == 1
    assert fills["results"][0]["quantity"] == "450.000000"
    assert api(pm).get("/api/v1/fix-messages/").status_code == 403
    log = api(ops).get("/api/v1/fix-messages/?msg_type=D").json()
    assert log["count"] == FixMessage.objects.filter(msg_type="D").count() == 2


def test_cancel_at_the_broker_through_the_api(routable, ops, pm, route_checks, broker):
    broker.respond = lambda cid, qty, sym: []
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    routing_job_execute(job_id=job.pk)
    route = Route.objects.filter(block__job=job).first()
    assert api(pm).post(f"/api/v1/routes/{route.pk}/cancel/").status_code == 403
    response = api(ops).post(f"/api/v1/routes/{route.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["state"] == RouteState.CANCEL_REQUESTED
    again = api(ops).post(f"/api/v1/routes/{route.pk}/cancel/")
    assert again.status_code == 409
    assert "only an open order can be cancelled" in again.json()["message"]


def test_trade_file_download_sent_and_confirmations_by_api(routable, ops, route_checks):
    job = routing_request(
        actor=ops, basket_ids=[routable.pk], destination="trade_file", enqueue=False
    )
    routing_job_execute(job_id=job.pk)
    response = api(ops).get(f"/api/v1/routing-jobs/{job.pk}/trade-file/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["X-Content-SHA256"] == hashlib.sha256(response.content).hexdigest()
    assert api(ops).post(f"/api/v1/routing-jobs/{job.pk}/trade-file/sent/").status_code == 200
    assert api(ops).post(f"/api/v1/routing-jobs/{job.pk}/trade-file/sent/").status_code == 409
    routes = {r.block.security.ticker: r.cl_ord_id for r in Route.objects.filter(block__job=job)}
    csv = (
        f"client_order_id,exec_id,quantity,price\n{routes['XYZ']},C1,400,99\n"
        f"{routes['AAPL']},C2,4,151\n"
    ).encode()
    upload = SimpleUploadedFile("conf.csv", csv, content_type="text/csv")
    response = api(ops).post(
        f"/api/v1/routing-jobs/{job.pk}/confirmations/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"rows": 2, "applied": 2, "duplicates": 0}
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------


def test_the_route_form_shows_only_to_ops_and_routing_from_the_page(
    client, routable, pm, ops, route_checks, broker
):
    url = reverse("orders:basket_detail", args=[routable.pk])
    client.force_login(pm)
    page = client.get(url).content.decode()
    assert 'id="basket-routing"' in page
    assert 'id="route-form"' not in page
    refused = client.post(
        reverse("orders:basket_route", args=[routable.pk]), {"destination": "fix"}
    )
    assert refused.status_code == 403
    assert "Only Operations may route" in refused.content.decode()
    client.force_login(ops)
    assert 'id="route-form"' in client.get(url).content.decode()
    response = client.post(
        reverse("orders:basket_route", args=[routable.pk]), {"destination": "fix"}
    )
    assert response.status_code == 302
    job = RoutingJob.objects.get()
    routing_job_execute(job_id=job.pk)
    panel = client.get(reverse("orders:basket_routing", args=[routable.pk])).content.decode()
    assert 'data-state="filled"' in panel
    assert "hx-trigger" not in panel  # done: no more polling
    assert "101.5" in panel
    assert 'id="route-form"' not in client.get(url).content.decode()


def test_the_routing_panel_polls_while_orders_are_open(client, routable, ops, route_checks, broker):
    broker.respond = lambda cid, qty, sym: []
    job = routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False)
    routing_job_execute(job_id=job.pk)
    client.force_login(ops)
    panel = client.get(reverse("orders:basket_routing", args=[routable.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in panel
    assert "Cancel rest" in panel


@pytest.mark.parametrize(("who", "status"), [("ops", 200), ("compliance", 200), ("pm", 403)])
def test_executions_and_fix_log_pages(
    client, request, routable, ops, route_checks, broker, who, status
):
    routing_job_execute(
        job_id=routing_request(actor=ops, basket_ids=[routable.pk], enqueue=False).pk
    )
    client.force_login(request.getfixturevalue(who))
    executions = client.get(reverse("orders:execution_list"))
    log = client.get(reverse("orders:fix_messages"))
    assert executions.status_code == status
    assert log.status_code == status
    if status == 200:
        body = executions.content.decode()
        assert body.count("data-execution=") == Execution.objects.count() == 2
        assert "35=D" in log.content.decode()


def test_trade_file_pages(client, routable, ops, route_checks):
    job = routing_request(
        actor=ops, basket_ids=[routable.pk], destination="trade_file", enqueue=False
    )
    routing_job_execute(job_id=job.pk)
    client.force_login(ops)
    page = client.get(reverse("orders:basket_detail", args=[routable.pk])).content.decode()
    assert job.trade_file.sha256 in page
    download = client.get(reverse("orders:trade_file_download", args=[job.pk]))
    assert download["X-Content-SHA256"] == job.trade_file.sha256
    sent = client.post(reverse("orders:trade_file_sent", args=[job.pk]), {"basket": routable.pk})
    assert sent.status_code == 302
    bad = SimpleUploadedFile("c.csv", b"wrong,header\n1,2\n")
    refused = client.post(
        reverse("orders:trade_confirmations", args=[job.pk]), {"basket": routable.pk, "file": bad}
    )
    assert refused.status_code == 400
    assert "The confirmation file needs the columns" in refused.content.decode()
    assert not Execution.objects.exists()


def test_ops_routes_several_ticked_baskets_from_the_list(
    client, routable, ops, pm, account_a2, xyz, route_checks, broker
):
    other = approved_basket(creator=pm, approver=ops, lines=[(account_a2, xyz, "buy", "50", [])])
    client.force_login(pm)
    assert (
        'id="route-selected-form"' not in client.get(reverse("orders:basket_list")).content.decode()
    )
    client.force_login(ops)
    page = client.get(reverse("orders:basket_list")).content.decode()
    assert f'id="route-{routable.pk}"' in page
    assert f'id="route-{other.pk}"' in page
    none = client.post(reverse("orders:route_selected"), {"destination": "fix"}, follow=True)
    assert "Choose at least one approved basket to route." in none.content.decode()
    response = client.post(
        reverse("orders:route_selected"),
        {"baskets": [routable.pk, other.pk], "destination": "fix"},
    )
    assert response.status_code == 302
    job = RoutingJob.objects.get()
    assert sorted(job.baskets.values_list("pk", flat=True)) == sorted([routable.pk, other.pk])
    routing_job_execute(job_id=job.pk)
    assert BlockOrder.objects.filter(job=job, security=xyz).get().quantity == D("450")
