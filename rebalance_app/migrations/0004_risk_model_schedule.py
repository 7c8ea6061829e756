"""Seed the beat schedule of the risk model rebuild: 16:45 New York time, Monday to Friday,
after the drift scan (16:30).

The task builds a new version only when the latest prices are newer than the current model
(price imports also request a rebuild), so a holiday run changes nothing. It is a row of
django-celery-beat, editable or pausable in the admin (Periodic tasks); this migration only
creates it when it is missing."""

from django.db import migrations
from django.utils import timezone

NAME = "Risk model rebuild"
TASK = "portfolios.risk_model_rebuild"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="45",
        hour="16",
        day_of_week="1-5",
        day_of_month="*",
        month_of_year="*",
        timezone="America/New_York",
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "crontab": crontab,
            "enabled": True,
            # A run still waiting after two hours is stale: tomorrow's run will do.
            "expire_seconds": 2 * 3600,
            "description": (
                "Rebuild the factor risk model from the price history when the latest prices "
                "are newer than the current model (at most one new version per price date)."
            ),
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("rebalance_app", "0003_drift_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
