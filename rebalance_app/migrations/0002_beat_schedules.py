"""Seed the periodic tasks that Celery beat runs: the audit chain checkpoint and the work
sweep. They are rows of django-celery-beat, so an administrator can change or pause them in
the Django admin; this migration only creates them when they are missing."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

CHECKPOINT_NAME = "Audit chain checkpoint"
SWEEP_NAME = "Sweep stuck work"


def _schedule(apps, *, name, task, minutes, description):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=name,
        defaults={
            "task": task,
            "interval": interval,
            "enabled": True,
            # A run that waited longer than its own period is superseded by the next one.
            "expire_seconds": minutes * 60,
            "description": description,
        },
    )


def create_schedules(apps, schema_editor):
    _schedule(
        apps,
        name=CHECKPOINT_NAME,
        task="compliance.audit_checkpoint",
        minutes=getattr(settings, "AUDIT_CHECKPOINT_MINUTES", 5),
        description="Append the audit chain head (sequence, hash) to AUDIT_CHECKPOINT_PATH.",
    )
    _schedule(
        apps,
        name=SWEEP_NAME,
        task="rebalance_app.work_sweep",
        minutes=1,
        description="Re-enqueue work rows stuck in queued/running; fail those out of attempts.",
    )
    # Tell a running DatabaseScheduler that the schedule changed.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[CHECKPOINT_NAME, SWEEP_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("rebalance_app", "0001_role_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
