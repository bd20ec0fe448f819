"""Export jobs as they are at the first release, and the cluster's schedule that sweeps
them every minute (exports.tasks.sweep: dead workers, stuck jobs).

Squashed from 0001_initial to 0011_job_log_token before the first release: a database
that had all eleven applied takes this one as applied (`replaces`); one part-way through
them (none was released) is made anew. Their data steps (separating jobs that shared a
folder, renaming job-<id>.log) had work only on databases older than they are.
"""

import django.db.models.deletion
import django.utils.timezone
import exports.models
from django.conf import settings
from django.db import migrations, models


def add_sweep_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="adu-sweep",
        defaults={"func": "exports.tasks.sweep", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_sweep_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="adu-sweep").delete()


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ("exports", "0001_initial"),
        ("exports", "0002_jobs_on_the_cluster"),
        ("exports", "0003_sweep_schedule"),
        ("exports", "0004_table_profile"),
        ("exports", "0005_table_warnings"),
        ("exports", "0006_table_validation"),
        ("exports", "0007_tablerun_spec"),
        ("exports", "0008_job_queued_at"),
        ("exports", "0009_jobs_sharing_a_folder"),
        ("exports", "0010_one_job_per_folder"),
        ("exports", "0011_job_log_token"),
    ]

    dependencies = [
        ('connections', '0001_squashed_0005_labels'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name='ExportJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('complete', 'Complete'), ('complete_with_errors', 'Complete with errors'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=24)),
                ('config', models.JSONField(blank=True, default=dict)),
                ('output_dir', models.CharField(help_text='Folder under the export root.', max_length=500)),
                ('log_token', models.CharField(default=exports.models.new_log_token, editable=False, max_length=16)),
                ('snapshot_id', models.CharField(blank=True, max_length=100)),
                ('cancel_requested', models.BooleanField(default=False)),
                ('attempt', models.PositiveIntegerField(default=1)),
                ('attempts', models.JSONField(blank=True, default=list)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('queued_at', models.DateTimeField(blank=True, null=True)),
                ('recoveries', models.PositiveIntegerField(default=0)),
                ('tables_total', models.PositiveIntegerField(default=0)),
                ('tables_complete', models.PositiveIntegerField(default=0)),
                ('tables_failed', models.PositiveIntegerField(default=0)),
                ('rows_written', models.BigIntegerField(default=0)),
                ('bytes_written', models.BigIntegerField(default=0)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='export_jobs', to='connections.connection')),
                ('owner', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='export_jobs', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='TableRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('schema', models.CharField(max_length=255)),
                ('table', models.CharField(max_length=255)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('complete', 'Complete'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16)),
                ('rows_expected', models.BigIntegerField(blank=True, null=True)),
                ('rows_written', models.BigIntegerField(default=0)),
                ('bytes_written', models.BigIntegerField(default=0)),
                ('files', models.JSONField(blank=True, default=list)),
                ('columns', models.JSONField(blank=True, default=list)),
                ('profile', models.JSONField(blank=True, default=list)),
                ('warnings', models.JSONField(blank=True, default=list)),
                ('validation', models.JSONField(blank=True, default=dict)),
                ('spec', models.JSONField(blank=True, default=dict)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('attempt', models.PositiveIntegerField(default=1)),
                ('requeues', models.PositiveIntegerField(default=0)),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='tables', to='exports.exportjob')),
            ],
            options={
                'ordering': ['schema', 'table'],
            },
        ),
        migrations.CreateModel(
            name='StatusChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(max_length=24)),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('note', models.CharField(blank=True, max_length=200)),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='exports.exportjob')),
                ('table_run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='exports.tablerun')),
            ],
            options={
                'ordering': ['at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='JobError',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('message', models.TextField()),
                ('traceback', models.TextField(blank=True)),
                ('context', models.JSONField(blank=True, default=dict)),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='errors', to='exports.exportjob')),
                ('table_run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='errors', to='exports.tablerun')),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.AddIndex(
            model_name='exportjob',
            index=models.Index(fields=['status'], name='exports_exp_status_739dd8_idx'),
        ),
        migrations.AddConstraint(
            model_name='exportjob',
            constraint=models.UniqueConstraint(fields=('output_dir',), name='one_job_per_folder'),
        ),
        migrations.AddConstraint(
            model_name='tablerun',
            constraint=models.UniqueConstraint(fields=('job', 'schema', 'table'), name='one_run_per_table'),
        ),
        migrations.RunPython(add_sweep_schedule, remove_sweep_schedule),
    ]
