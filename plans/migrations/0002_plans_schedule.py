"""The cluster's schedule that runs due export plans every minute (plans.tasks.run_due)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="adu-plans",
        defaults={"func": "plans.tasks.run_due", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="adu-plans").delete()


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_plans"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
