"""Routes of the portfolios API, included under /api/v1/ by ``rebalance_app.api_urls``."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from portfolios.api import drift, rebalance, views
from portfolios.api import imports as imports_api
from portfolios.api import reconciliation as reconciliation_api
from portfolios.api import risk as risk_api

router = SimpleRouter()
router.register("accounts", views.AccountViewSet, basename="api-account")
router.register("households", views.HouseholdViewSet, basename="api-household")
router.register("securities", views.SecurityViewSet, basename="api-security")
router.register("prices", views.PriceViewSet, basename="api-price")
router.register("models", views.ModelPortfolioViewSet, basename="api-model")
router.register("risk-models", risk_api.RiskModelViewSet, basename="api-risk-model")
router.register("drift-snapshots", drift.DriftSnapshotViewSet, basename="api-drift-snapshot")
router.register("drift-scans", drift.DriftScanViewSet, basename="api-drift-scan")
router.register("rebalance-runs", rebalance.RebalanceRunViewSet, basename="api-rebalance-run")
router.register(
    "rebalance-batches", rebalance.RebalanceBatchViewSet, basename="api-rebalance-batch"
)
router.register("imports", imports_api.ImportBatchViewSet, basename="api-import")
router.register(
    "reconciliations", reconciliation_api.ReconciliationViewSet, basename="api-reconciliation"
)
router.register(
    "reconciliation-breaks",
    reconciliation_api.ReconciliationBreakViewSet,
    basename="api-reconciliation-break",
)

urlpatterns = router.urls
urlpatterns += [
    path("data-quality/", reconciliation_api.DataQualityView.as_view(), name="api-data-quality"),
]
