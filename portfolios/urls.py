"""Pages of the portfolios app."""

from django.urls import path

from portfolios import import_views, views, views_rebalance

app_name = "portfolios"
urlpatterns = [
    path("accounts/", views.account_list_view, name="account_list"),
    path("accounts/<int:pk>/", views.account_detail_view, name="account_detail"),
    path("drift/", views.drift_dashboard_view, name="drift_dashboard"),
    path("drift/scan/", views.drift_scan_view, name="drift_scan"),
    path("drift/scans/<int:pk>/", views.drift_scan_status_view, name="drift_scan_status"),
    path("imports/", import_views.imports_view, name="imports"),
    path("imports/submit/", import_views.import_submit_view, name="import_submit"),
    path("imports/<int:pk>/", import_views.import_detail_view, name="import_detail"),
    path("imports/<int:pk>/status/", import_views.import_status_view, name="import_status"),
    path("reconciliations/", import_views.reconciliation_list_view, name="reconciliation_list"),
    path(
        "reconciliations/<int:pk>/",
        import_views.reconciliation_detail_view,
        name="reconciliation_detail",
    ),
    path(
        "reconciliation-breaks/<int:pk>/resolve/",
        import_views.reconciliation_break_resolve_view,
        name="reconciliation_break_resolve",
    ),
    path("data-quality/", import_views.data_quality_view, name="data_quality"),
    # Rebalance proposals
    path(
        "accounts/<int:pk>/rebalance/",
        views_rebalance.rebalance_propose_view,
        name="rebalance_propose",
    ),
    path("rebalance/runs/", views_rebalance.rebalance_run_list_view, name="rebalance_runs"),
    path(
        "rebalance/runs/basket/",
        views_rebalance.rebalance_runs_basket_view,
        name="rebalance_runs_basket",
    ),
    path("rebalance/runs/<int:pk>/", views_rebalance.rebalance_run_view, name="rebalance_run"),
    path(
        "rebalance/runs/<int:pk>/status/",
        views_rebalance.rebalance_run_status_view,
        name="rebalance_run_status",
    ),
    path(
        "rebalance/runs/<int:pk>/edit-trade/",
        views_rebalance.rebalance_run_trade_edit_view,
        name="rebalance_run_trade_edit",
    ),
    path(
        "rebalance/runs/<int:pk>/basket/",
        views_rebalance.rebalance_run_basket_view,
        name="rebalance_run_basket",
    ),
    path(
        "rebalance/runs/<int:pk>/replay/",
        views_rebalance.rebalance_run_replay_view,
        name="rebalance_run_replay",
    ),
    path(
        "rebalance/batches/new/",
        views_rebalance.rebalance_batch_create_view,
        name="rebalance_batch_create",
    ),
    path(
        "rebalance/batches/<int:pk>/",
        views_rebalance.rebalance_batch_view,
        name="rebalance_batch",
    ),
    path(
        "rebalance/batches/<int:pk>/status/",
        views_rebalance.rebalance_batch_status_view,
        name="rebalance_batch_status",
    ),
]
