"""Routes of the compliance API, included under /api/v1/ by ``rebalance_app.api_urls``."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from compliance.api import views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="api-audit-event")

urlpatterns = router.urls
