"""The orders app. ``ready`` registers routing jobs as work rows (the sweep re-enqueues a job
whose task message was lost)."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orders.tasks import ROUTE_TASK
        from rebalance_app.work import register_work_model

        register_work_model(self.get_model("RoutingJob"), ROUTE_TASK)
