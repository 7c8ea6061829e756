from django.apps import AppConfig


class RebalanceAppConfig(AppConfig):
    name = "rebalance_app"
    verbose_name = "Rebalancing service"
    default_auto_field = "django.db.models.BigAutoField"
