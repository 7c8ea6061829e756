"""Seed the periodic FIX sync: while FIX orders are open, log on every FIX_SYNC_SECONDS and
take in the broker's execution reports (a row of django-celery-beat, editable in the admin)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

NAME = "FIX sync of open orders"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    seconds = getattr(settings, "FIX_SYNC_SECONDS", 30)
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "orders.fix_sync",
            "interval": interval,
            "enabled": True,
            "expire_seconds": seconds,
            "description": "While FIX routes are open, log on and take in execution reports.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("rebalance_app", "0006_idempotency_key"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
