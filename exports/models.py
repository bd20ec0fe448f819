"""Export jobs, the tables they export and the errors they meet."""

from django.conf import settings
from django.db import models


class ExportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETE = "complete"
        COMPLETE_WITH_ERRORS = "complete_with_errors", "Complete with errors"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = {Status.COMPLETE, Status.COMPLETE_WITH_ERRORS, Status.FAILED, Status.CANCELLED}

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="export_jobs"
    )
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.PROTECT, related_name="export_jobs"
    )
    status = models.CharField(max_length=24, choices=Status, default=Status.QUEUED)
    # Options as chosen (tables, parallel, compression...). Never holds a secret.
    config = models.JSONField(default=dict, blank=True)
    output_dir = models.CharField(max_length=500, help_text="Folder under the export root.")
    snapshot_id = models.CharField(max_length=100, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempt = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tables_total = models.PositiveIntegerField(default=0)
    tables_complete = models.PositiveIntegerField(default=0)
    tables_failed = models.PositiveIntegerField(default=0)
    rows_written = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.connection.name})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class TableRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETE = "complete"
        FAILED = "failed"
        CANCELLED = "cancelled"

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="tables")
    schema = models.CharField(max_length=255)
    table = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    rows_expected = models.BigIntegerField(null=True, blank=True)
    rows_written = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)
    # [{"path": relative to the job folder, "bytes": int, "rows": int, "sha256": hex}]
    files = models.JSONField(default=list, blank=True)
    # [{"name", "source_type", "arrow_type", "nullable", "representation"}]
    columns = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["schema", "table"]
        constraints = [
            models.UniqueConstraint(fields=["job", "schema", "table"], name="one_run_per_table")
        ]

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


class JobError(models.Model):
    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="errors")
    table_run = models.ForeignKey(
        TableRun, null=True, blank=True, on_delete=models.CASCADE, related_name="errors"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    # {"table": "s.t", "phase": "read", "rows_done": 123}: never a secret.
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.message[:80]
