"""Export jobs, the tables they export and the errors they meet."""

from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from adu_site.redaction import redact


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

    @classmethod
    def create_with_tables(cls, owner, connection, tables, options: dict, output_dir: str = ""):
        """One job and one queued TableRun per (schema, table), in one transaction."""
        with transaction.atomic():
            job = cls.objects.create(
                owner=owner,
                connection=connection,
                config=options,
                output_dir=output_dir,
                tables_total=len(tables),
            )
            if not output_dir:
                job.output_dir = f"job-{job.pk}"
                job.save(update_fields=["output_dir"])
            TableRun.objects.bulk_create(
                TableRun(job=job, schema=schema, table=table) for schema, table in tables
            )
        return job

    def option(self, name: str):
        from exports.engine.run import DEFAULT_OPTIONS

        value = self.config.get(name)
        return DEFAULT_OPTIONS[name] if value is None else value

    def folder(self) -> Path:
        return Path(settings.EXPORT_ROOT) / self.output_dir

    def cancel_requested_now(self) -> bool:
        """Read from the database: another process may have asked since we loaded the job."""
        return ExportJob.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def mark_running(self):
        self.status = self.Status.RUNNING
        self.started_at = timezone.now()
        self.save(update_fields=["status", "started_at"])

    def fail_all(self, message: str, phase: str):
        """The job could not start: every queued table fails with the same reason."""
        self.tables.filter(status=TableRun.Status.QUEUED).update(
            status=TableRun.Status.FAILED, finished_at=timezone.now()
        )
        JobError.record(self, None, message, phase=phase)

    def update_totals(self):
        totals = self.tables.aggregate(
            total=Count("id"),
            complete=Count("id", filter=Q(status=TableRun.Status.COMPLETE)),
            failed=Count("id", filter=Q(status=TableRun.Status.FAILED)),
            rows=Sum("rows_written", filter=Q(status=TableRun.Status.COMPLETE)),
            bytes=Sum("bytes_written", filter=Q(status=TableRun.Status.COMPLETE)),
        )
        self.tables_total = totals["total"]
        self.tables_complete = totals["complete"]
        self.tables_failed = totals["failed"]
        self.rows_written = totals["rows"] or 0
        self.bytes_written = totals["bytes"] or 0

    def derived_status(self) -> str:
        statuses = set(self.tables.values_list("status", flat=True))
        if statuses & {TableRun.Status.QUEUED, TableRun.Status.RUNNING}:
            return self.Status.RUNNING
        if TableRun.Status.CANCELLED in statuses or (self.cancel_requested and statuses):
            return self.Status.CANCELLED
        if statuses == {TableRun.Status.COMPLETE} or not statuses:
            return self.Status.COMPLETE if not self.errors.exists() else self.Status.FAILED
        if TableRun.Status.COMPLETE in statuses:
            return self.Status.COMPLETE_WITH_ERRORS
        return self.Status.FAILED


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

    def report_progress(self, rows: int, bytes_written: int):
        now = timezone.now()
        TableRun.objects.filter(pk=self.pk).update(
            rows_written=rows, bytes_written=bytes_written, heartbeat_at=now
        )

    def finish(self, status: str):
        self.status = status
        self.finished_at = timezone.now()
        if status != self.Status.COMPLETE:
            self.files = []
        self.save()


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

    @classmethod
    def record(cls, job, table_run, message: str, phase: str, trace: str = ""):
        secrets = (job.connection.password or "",)
        context = {"phase": phase}
        if table_run is not None:
            context |= {"table": str(table_run), "rows_done": table_run.rows_written}
        return cls.objects.create(
            job=job,
            table_run=table_run,
            message=redact(message, secrets),
            traceback=redact(trace, secrets),
            context=context,
        )
