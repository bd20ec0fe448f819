"""Before one folder may belong to one job only (0010): jobs that already share a folder.

The oldest job keeps the folder. Each later one is given a name no job can choose
("<folder>~shared-<id>"), a folder that does not exist: its files are not deleted, but
its downloads and its deletion no longer reach the files of the job that had the folder
first.
"""

from django.db import migrations
from django.db.models import Count


def separate(apps, schema_editor):
    ExportJob = apps.get_model("exports", "ExportJob")
    shared = (
        ExportJob.objects.values("output_dir")
        .annotate(jobs=Count("id"))
        .filter(jobs__gt=1)
        .values_list("output_dir", flat=True)
    )
    for folder in list(shared):
        for job in ExportJob.objects.filter(output_dir=folder).order_by("pk")[1:]:
            ExportJob.objects.filter(pk=job.pk).update(output_dir=f"{folder}~shared-{job.pk}")


class Migration(migrations.Migration):
    dependencies = [("exports", "0008_job_queued_at")]

    operations = [migrations.RunPython(separate, migrations.RunPython.noop)]
