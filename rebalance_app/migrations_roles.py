"""Shared body of the data migration that creates the role groups and their permissions."""

from __future__ import annotations

from typing import Any


def create_role_groups(apps: Any, schema_editor: Any) -> None:
    from django.contrib.auth.management import create_permissions

    from rebalance_app.roles import ROLE_PERMISSIONS

    # Permissions are normally created after all migrations (post_migrate); create them now so
    # the groups can be granted them in this migration.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.get(
                content_type__app_label=app_label, codename=codename
            )
            group.permissions.add(permission)
