"""Pages of the orders app (baskets and approvals arrive with the order-management issue)."""

app_name = "orders"
urlpatterns: list = []
