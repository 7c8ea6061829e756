"""Pages of the orders app: the basket list, the Ops approval queue, a basket's page and its
workflow actions (mounted at the site root: ``/baskets/...``)."""

from __future__ import annotations

from django.urls import path

from orders import views, views_routing

app_name = "orders"
urlpatterns = [
    path("baskets/", views.basket_list_view, name="basket_list"),
    path("baskets/queue/", views.basket_queue_view, name="basket_queue"),
    path("baskets/<int:pk>/", views.basket_detail_view, name="basket_detail"),
    path("baskets/<int:pk>/submit/", views.basket_submit_view, name="basket_submit"),
    path("baskets/<int:pk>/cancel/", views.basket_cancel_view, name="basket_cancel"),
    path("baskets/<int:pk>/approve/", views.basket_approve_view, name="basket_approve"),
    path("baskets/<int:pk>/reject/", views.basket_reject_view, name="basket_reject"),
    path("baskets/<int:pk>/orders/", views.basket_order_add_view, name="basket_order_add"),
    path(
        "baskets/<int:pk>/orders/<int:order_id>/",
        views.basket_order_update_view,
        name="basket_order_update",
    ),
    path(
        "baskets/<int:pk>/orders/<int:order_id>/remove/",
        views.basket_order_remove_view,
        name="basket_order_remove",
    ),
    path(
        "baskets/<int:pk>/results/<int:result_id>/override/",
        views.basket_override_view,
        name="basket_override",
    ),
    path("baskets/route/", views_routing.route_selected_view, name="route_selected"),
    path("baskets/<int:pk>/route/", views_routing.basket_route_view, name="basket_route"),
    path("baskets/<int:pk>/routing/", views_routing.basket_routing_view, name="basket_routing"),
    path("routing/<int:job_id>/resume/", views_routing.routing_resume_view, name="routing_resume"),
    path(
        "routing/<int:job_id>/trade-file/",
        views_routing.trade_file_download_view,
        name="trade_file_download",
    ),
    path(
        "routing/<int:job_id>/trade-file/sent/",
        views_routing.trade_file_sent_view,
        name="trade_file_sent",
    ),
    path(
        "routing/<int:job_id>/confirmations/",
        views_routing.trade_confirmations_view,
        name="trade_confirmations",
    ),
    path("routes/<int:route_id>/cancel/", views_routing.route_cancel_view, name="route_cancel"),
    path(
        "blocks/<int:block_id>/allocate/",
        views_routing.block_allocate_retry_view,
        name="block_allocate_retry",
    ),
    path("executions/", views_routing.execution_list_view, name="execution_list"),
    path("fix/messages/", views_routing.fix_message_list_view, name="fix_messages"),
]
