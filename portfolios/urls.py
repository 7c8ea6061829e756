"""Pages of the portfolios app."""

from django.urls import path

app_name = "portfolios"
urlpatterns: list = []
