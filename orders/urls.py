"""Pages of the orders app: the basket list, the Ops approval queue, a basket's page and its
workflow actions (mounted at the site root: ``/baskets/...``)."""

from __future__ import annotations

from django.urls import path

from orders import views

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
]
