"""Each job's log gets a name no other job can have: job-<id>-<token>.log (exports.joblog).

Existing jobs get a token each, and the log they had (job-<id>.log) is renamed to it, so
their logs stay readable; a new job never appends to an old job-<id>.log again.
"""

from pathlib import Path

from django.conf import settings
from django.db import migrations, models

import exports.models


def give_each_job_its_log(apps, schema_editor):
    ExportJob = apps.get_model("exports", "ExportJob")
    folder = Path(settings.JOB_LOG_DIR)
    for job in ExportJob.objects.only("pk").iterator():
        token = exports.models.new_log_token()
        ExportJob.objects.filter(pk=job.pk).update(log_token=token)
        old = folder / f"job-{job.pk}.log"
        # A link is left where it is: a rename would not make its target the job's.
        if old.is_file() and not old.is_symlink():
            old.rename(folder / f"job-{job.pk}-{token}.log")


class Migration(migrations.Migration):
    dependencies = [("exports", "0010_one_job_per_folder")]

    operations = [
        migrations.AddField(
            model_name="exportjob",
            name="log_token",
            field=models.CharField(
                default=exports.models.new_log_token, editable=False, max_length=16
            ),
        ),
        migrations.RunPython(give_each_job_its_log, migrations.RunPython.noop),
    ]
