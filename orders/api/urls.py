"""Routes of the orders API, included under /api/v1/ by ``rebalance_app.api_urls``."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from orders.api import routing, views

router = SimpleRouter()
router.register("baskets", views.BasketViewSet, basename="api-basket")
router.register("orders", views.OrderViewSet, basename="api-order")
router.register(
    "compliance-results", views.ComplianceResultViewSet, basename="api-compliance-result"
)
router.register("compliance-rules", views.ComplianceRuleViewSet, basename="api-compliance-rule")
router.register("restrictions", views.RestrictionViewSet, basename="api-restriction")
router.register("routing-jobs", routing.RoutingJobViewSet, basename="api-routing-job")
router.register("routes", routing.RouteViewSet, basename="api-route")
router.register("executions", routing.ExecutionViewSet, basename="api-execution")
router.register("fix-messages", routing.FixMessageViewSet, basename="api-fix-message")

urlpatterns = router.urls
