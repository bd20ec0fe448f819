"""One folder, one job: no two jobs may have the same output_dir (see 0009)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("exports", "0009_jobs_sharing_a_folder")]

    operations = [
        migrations.AddConstraint(
            model_name="exportjob",
            constraint=models.UniqueConstraint(fields=["output_dir"], name="one_job_per_folder"),
        ),
    ]
