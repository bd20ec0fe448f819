"""The cluster's scheduler runs exports.tasks.sweep every minute (dead workers, stuck jobs)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="adu-sweep",
        defaults={
            "func": "exports.tasks.sweep",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="adu-sweep").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0002_jobs_on_the_cluster"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
