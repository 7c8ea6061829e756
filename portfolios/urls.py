"""Pages of the portfolios app."""

from django.urls import path

from portfolios import views

app_name = "portfolios"
urlpatterns = [
    path("accounts/", views.account_list_view, name="account_list"),
    path("accounts/<int:pk>/", views.account_detail_view, name="account_detail"),
]
