"""The portfolios app. ``ready`` registers the drift scan, imports and rebalance runs as work
models (so the sweep re-enqueues lost ones) and wires the drift event scan to
``holdings_changed``."""

from __future__ import annotations

from django.apps import AppConfig


class PortfoliosConfig(AppConfig):
    name = "portfolios"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portfolios import services
        from portfolios.models import DriftScan
        from portfolios.services.drift import SCAN_TASK, drift_event_scan
        from rebalance_app.work import register_work_model

        register_work_model(DriftScan, SCAN_TASK)
        register_work_model(self.get_model("ImportBatch"), "portfolios.import_process")
        register_work_model(self.get_model("RebalanceRun"), "portfolios.rebalance_run")
        if drift_event_scan not in services._holdings_changed_hooks:
            services.on_holdings_changed(drift_event_scan)
