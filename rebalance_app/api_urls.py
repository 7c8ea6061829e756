"""The /api/v1/ routes: one router per app, plus token auth."""

from django.urls import include, path

from rebalance_app.api import ObtainTokenView

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("", include("portfolios.api.urls")),
    path("", include("compliance.api.urls")),
    path("", include("orders.api.urls")),
]
