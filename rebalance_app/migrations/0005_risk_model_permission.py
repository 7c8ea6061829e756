"""Grant ``portfolios.view_riskmodel`` to the roles that list it (``REFERENCE_VIEW``: every
role), on databases whose role groups were created before the risk model existed. A fresh
database gets it from 0001 already; adding it again changes nothing."""

from django.db import migrations

PERMISSION = "portfolios.view_riskmodel"


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from rebalance_app.roles import ROLE_PERMISSIONS

    portfolios = apps.get_app_config("portfolios")
    portfolios.models_module = True
    create_permissions(portfolios, apps=apps, verbosity=0)
    portfolios.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    app_label, codename = PERMISSION.split(".")
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    for role, perms in ROLE_PERMISSIONS.items():
        if PERMISSION in perms:
            group, _ = Group.objects.get_or_create(name=role.value)
            group.permissions.add(permission)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    app_label, codename = PERMISSION.split(".")
    for permission in Permission.objects.filter(
        content_type__app_label=app_label, codename=codename
    ):
        permission.group_set.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("rebalance_app", "0004_risk_model_schedule"),
        ("portfolios", "0005_risk_models_runs"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
