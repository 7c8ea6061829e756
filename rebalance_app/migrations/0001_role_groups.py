"""Create the PM, Ops, Compliance and Admin groups with their model-level permissions."""

from django.db import migrations

from rebalance_app.migrations_roles import create_role_groups


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("portfolios", "0001_initial"),
        ("compliance", "0003_initial"),
        ("orders", "0002_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
