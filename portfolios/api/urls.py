"""Routes of the portfolios API, included under /api/v1/ by ``rebalance_app.api_urls``."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from portfolios.api import views

router = SimpleRouter()
router.register("accounts", views.AccountViewSet, basename="api-account")
router.register("households", views.HouseholdViewSet, basename="api-household")
router.register("securities", views.SecurityViewSet, basename="api-security")
router.register("prices", views.PriceViewSet, basename="api-price")
router.register("models", views.ModelPortfolioViewSet, basename="api-model")

urlpatterns = router.urls
