"""Export jobs, the tables they export and the errors they meet."""

import collections
import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connections, models, router, transaction
from django.http import Http404
from django.utils import timezone

from accounts import roles
from adu_site.redaction import redact
from exports import options as export_options


class JobStateError(Exception):
    """The job is not in a state that allows this; the message says why in one sentence."""


class FolderRefused(Exception):
    """The job's folder cannot be had (taken by another job or on disk, or a reserved
    name); the message names it in one sentence."""


def explain_os_error(error: OSError) -> str:
    """What went wrong writing into the export root, in one sentence for the user."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"The disk of the export folder is full{where}."
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"ADU may not write to the export folder{where}: check its permissions."
    return f"Writing the export failed: {error.strerror or error}{where}."


class NoSuchFile(Http404):
    """What a download asked for is not a regular file inside the job's folder (or the
    job's log), whatever the job's records say: a 404."""


# The file in a job's folder that lists and proves its files (exports.manifest writes it).
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = MANIFEST + ".sig"  # see transfer.signing
# Jobs without a folder name get job-<id> (job-<id>-<n> if a stray folder has that name):
# a custom name never starts like that, so it can never take the folder of a later job.
RESERVED_FOLDER = re.compile(r"job-[0-9]", re.IGNORECASE)


def reserved_folder_name(name: str) -> bool:
    return bool(RESERVED_FOLDER.match(name))


def new_log_token() -> str:
    return secrets.token_hex(8)


def file_inside(base: Path, relative: str) -> Path:
    """`base / relative` with every link followed, if it is a regular file inside `base`
    (itself resolved); NoSuchFile otherwise. Every download goes through here, so a path
    in a record ("../../../proc/self/environ", an absolute path, a symlink placed in the
    folder) can never serve a file from elsewhere."""
    try:
        base = Path(base).resolve(strict=True)
        path = (base / relative).resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, NUL byte, link loop
        raise NoSuchFile("No such file.") from None
    if path == base or not path.is_relative_to(base) or not path.is_file():
        raise NoSuchFile("No such file.")
    return path


class ExportJobQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Jobs the user may see and download: their own, and those of connections shared
        with one of their groups (an ADU Admin: all)."""
        return roles.visible(self, user, "connection")

    def actionable_by(self, user):
        """Jobs the user may cancel, retry or delete: an operator's own (an admin: all)."""
        return roles.actionable(self, user)

    def with_progress(self):
        """Jobs whose progress() costs no query of its own: the fields it counts, of every
        table, fetched in one query for the lot."""
        tables = TableRun.objects.only(
            "job_id", "status", "rows_expected", "rows_written", "bytes_written"
        )
        return self.prefetch_related(models.Prefetch("tables", queryset=tables))

    def for_user(self, user, job_id, act: bool = False) -> "ExportJob":
        """The job if this user may see it (or, with `act`, cancel or retry it); the same
        error whether it is missing or not theirs."""
        jobs = self.actionable_by(user) if act else self.visible_to(user)
        try:
            return jobs.select_related("connection").get(pk=int(job_id))
        except (ValueError, ExportJob.DoesNotExist):
            raise JobStateError(f"There is no job {job_id}.") from None


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
    # Part of the log file's name (exports.joblog.log_path): ids repeat across databases,
    # log files outlive them.
    log_token = models.CharField(max_length=16, default=new_log_token, editable=False)
    snapshot_id = models.CharField(max_length=100, blank=True)
    # The snapshot's transaction ids, "xmin:xmax:xip,...": incremental tables' windows
    # end at its xmin (connections.drivers.postgresql.incremental). PostgreSQL only.
    snapshot_xids = models.TextField(blank=True)
    # The export an incremental one follows (an export plan's last); its manifest's
    # checksum is named in this one's, so that adu_verify --chain can check the chain.
    predecessor = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="successors"
    )
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempt = models.PositiveIntegerField(default=1)
    # [{"attempt": 1, "snapshot_id": "...", "started_at": "...", "reason": "..."}]
    attempts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Kept fresh by the coordinator while it holds the job's snapshot.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its coordinator task was last put on the broker (see tasks.sweep).
    queued_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveIntegerField(default=0)
    tables_total = models.PositiveIntegerField(default=0)
    tables_complete = models.PositiveIntegerField(default=0)
    tables_failed = models.PositiveIntegerField(default=0)
    rows_written = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)

    objects = ExportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"])]
        constraints = [models.UniqueConstraint(fields=["output_dir"], name="one_job_per_folder")]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.connection.name})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @classmethod
    def create_with_tables(
        cls, owner, connection, tables, options: dict, output_dir: str = "", specs=None
    ):
        """One job and one queued TableRun per (schema, table), in one transaction, and the
        job's folder reserved: created (mode 0700) where nothing was, never reused.

        `output_dir` is a folder name checked by the caller (exports.jobs.create_job);
        empty: job-<id>. FolderRefused if the name is reserved or taken, by another job or
        on disk. If the transaction fails, the folder it created is removed again.
        """
        if output_dir and reserved_folder_name(output_dir):
            raise FolderRefused(
                f"'{output_dir}': names of the form job-<number> are reserved for jobs "
                "without a folder name; choose another name."
            )
        if output_dir and cls.objects.filter(output_dir=output_dir).exists():
            raise FolderRefused(
                f"The folder '{output_dir}' belongs to another job; choose another name."
            )
        reserved = None
        try:
            with transaction.atomic():
                job = cls.objects.create(
                    owner=owner,
                    connection=connection,
                    config=options,
                    # Unique until the id is known and job-<id> can be chosen.
                    output_dir=output_dir or f".new-{uuid.uuid4().hex}",
                    tables_total=len(tables),
                )
                TableRun.objects.bulk_create(
                    TableRun(
                        job=job,
                        schema=schema,
                        table=table,
                        spec=(specs or {}).get((schema, table), {}),
                    )
                    for schema, table in tables
                )
                reserved = job._reserve_folder(default=not output_dir)  # the last step
        except BaseException as error:
            if reserved is not None:
                with contextlib.suppress(OSError):
                    reserved.rmdir()  # created empty a moment ago, for a job that is not
            if (
                isinstance(error, IntegrityError)
                and output_dir
                and cls.objects.filter(output_dir=output_dir).exists()
            ):
                raise FolderRefused(  # another job took the name at the same moment
                    f"The folder '{output_dir}' belongs to another job; choose another name."
                ) from None
            raise
        return job

    def _reserve_folder(self, default: bool) -> Path:
        """Create the job's folder, which must not exist yet (mode 0700); its path. A job
        without a folder name takes job-<id>, or job-<id>-2... if a stray folder (left by
        an earlier database) has that name."""
        root = Path(settings.EXPORT_ROOT)
        root.mkdir(parents=True, exist_ok=True)
        names = [f"job-{self.pk}"] + [f"job-{self.pk}-{n}" for n in range(2, 10)]
        for name in names if default else [self.output_dir]:
            if ExportJob.objects.filter(output_dir=name).exclude(pk=self.pk).exists():
                continue
            if name != self.output_dir:
                self.output_dir = name
                self.save(update_fields=["output_dir"])
            folder = root / name
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            try:
                folder.chmod(0o700)  # whatever the umask
            except BaseException:
                folder.rmdir()
                raise
            return folder
        if default:
            raise FolderRefused(
                f"The folders {names[0]} to {names[-1]} already exist under the export root "
                "though no job has them; move them away."
            )
        raise FolderRefused(
            f"The folder '{self.output_dir}' already exists under the export root; "
            "choose another name."
        )

    def progress(self, runs: list["TableRun"] | None = None) -> dict:
        """The one account of a job's tables and rows, shown alike by the list, the
        dashboard, the job page, the API and the commands.

        Each table is in exactly one of complete, failed, cancelled, running and queued.
        Rows and bytes are those of complete tables and what running tables have written
        so far: a failed or cancelled table's files are removed, so its rows do not count.
        `rows_expected` is the source's count of every table that is not failed or
        cancelled, None while one of them is still being counted. The percentage weighs
        each table by its rows (a table not yet counted by the others' average) and stays
        below 100 until the job has finished.
        """
        runs = list(self.tables.all()) if runs is None else runs
        by_status = collections.Counter(run.status for run in runs)
        live = [run for run in runs if not run.is_stopped]
        rows_written = sum(run.rows_written for run in live)
        known = [run.rows_expected for run in live if run.rows_expected is not None]
        rows_expected = sum(known) if len(known) == len(live) else None
        elapsed = (
            ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
            if self.started_at
            else 0
        )
        rate = rows_written / elapsed if elapsed > 0 else 0
        eta = None
        if rows_expected is not None and rate and not self.is_finished:
            eta = max(0, rows_expected - rows_written) / rate
        return {
            "tables_total": len(runs),
            **{f"tables_{status}": by_status[status] for status in TableRun.Status.values},
            "rows_written": rows_written,
            "bytes_written": sum(run.bytes_written for run in live),
            "rows_expected": rows_expected,
            "percent": 100 if self.is_finished else min(99, _weighted_percent(runs)),
            "rows_per_second": rate,
            "eta_seconds": eta,
            "elapsed_seconds": elapsed,
        }

    def option(self, name: str):
        value = self.config.get(name)
        return export_options.default(name) if value is None else value

    def folder(self) -> Path:
        return Path(settings.EXPORT_ROOT) / self.output_dir

    def manifest_path(self) -> Path:
        return self.folder() / MANIFEST

    def listed_files(self) -> set[str]:
        """The paths a download may ask for: the files its tables list, and the manifest
        once the job has finished."""
        listed = {f["path"] for run in self.tables.all() for f in run.files}
        if self.is_finished:
            listed |= {MANIFEST, MANIFEST_SIGNATURE}
        return listed

    def file_path(self, relative: str) -> Path:
        """The file of the job to serve for `relative`: listed by the job, and a regular
        file inside the job's own folder under the export root once every link is
        followed. NoSuchFile (a 404) otherwise."""
        name = self.output_dir
        root = Path(settings.EXPORT_ROOT).resolve()
        folder = root / name
        # The folder itself is one plain name under the root, and not a link.
        if not name or Path(name).name != name or name in (".", "..") or folder.is_symlink():
            raise NoSuchFile("No such file in this job.")
        if relative not in self.listed_files():
            raise NoSuchFile("No such file in this job.")
        return file_inside(folder, relative)

    def log_file(self) -> Path:
        """The job's log file, resolved inside the log folder; NoSuchFile if there is none."""
        from exports.joblog import log_path

        path = log_path(self)
        try:
            return file_inside(path.parent, path.name)
        except NoSuchFile:
            raise NoSuchFile("This job has no log yet.") from None

    def disk_bytes(self) -> int:
        """What the job's folder and log hold on disk now."""
        from exports.joblog import log_path

        files = (
            [p for p in self.folder().rglob("*") if p.is_file()] if self.folder().is_dir() else []
        )
        log = log_path(self)
        return sum(p.stat().st_size for p in files) + (log.stat().st_size if log.exists() else 0)

    def delete_with_files(self, by) -> int:
        """Delete a finished job, its folder and its log, on the audit trail; the bytes freed.

        JobStateError for a job that has not finished: its workers still write there.
        """
        from audit.models import AuditEvent, record
        from exports.joblog import log_path

        if not ExportJob.objects.filter(pk=self.pk, status__in=self.FINISHED).exists():
            raise JobStateError(f"Job {self.pk} has not finished; cancel it first.")
        freed = self.disk_bytes()
        root = Path(settings.EXPORT_ROOT).resolve()
        folder = self.folder()
        # Never follow a link out of the export root, whatever the folder became.
        if folder.is_dir() and not folder.is_symlink() and folder.resolve().is_relative_to(root):
            shutil.rmtree(folder)
        log_path(self).unlink(missing_ok=True)
        record(
            AuditEvent.Action.JOB_DELETE,
            user=by,
            obj=self,
            connection=self.connection.name,
            status=self.status,
            bytes_freed=freed,
        )
        self.delete()
        return freed

    def cancel_requested_now(self) -> bool:
        """Read from the database: another process may have asked since we loaded the job."""
        return ExportJob.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def claim(self) -> bool:
        """Become this job's coordinator: only one claimant of a queued job gets True (a
        coordinator task queued twice, or a late one, then does nothing)."""
        return bool(
            ExportJob.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
                status=self.Status.RUNNING, heartbeat_at=timezone.now()
            )
        )

    def set_status(self, status: str, note: str = ""):
        self.status = status
        fields = ["status"]
        if status == self.Status.RUNNING and not self.started_at:
            self.started_at = timezone.now()
            fields.append("started_at")
        if status in self.FINISHED:
            self.finished_at = timezone.now()
            fields.append("finished_at")
        self.save(update_fields=fields)
        StatusChange.objects.create(job=self, status=status, note=note[:200])

    def begin_attempt(self, snapshot_id: str, reason: str, xids: str = ""):
        """The coordinator holds a new snapshot: record it for the manifest."""
        self.snapshot_id = snapshot_id
        self.snapshot_xids = xids
        self.heartbeat_at = timezone.now()
        self.attempts = [
            *self.attempts,
            {
                "attempt": self.attempt,
                "snapshot_id": snapshot_id,
                **({"snapshot_xids": xids} if xids else {}),
                "started_at": timezone.now().isoformat(),
                "reason": reason,
            },
        ]
        self.save(update_fields=["snapshot_id", "snapshot_xids", "heartbeat_at", "attempts"])

    def beat(self):
        ExportJob.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())

    def request_cancel(self):
        """Ask running tables to stop and cancel the queued ones; JobStateError if finished."""
        if self.is_finished:
            raise JobStateError(
                f"Job {self.pk} is already {self.get_status_display().lower()}; "
                "there is nothing to cancel."
            )
        ExportJob.objects.filter(pk=self.pk).update(cancel_requested=True)
        self.cancel_requested = True
        for run in self.tables.filter(status=TableRun.Status.QUEUED):
            run.finish(TableRun.Status.CANCELLED, only_if=TableRun.Status.QUEUED)

    def prepare_retry(self):
        """Queue the failed and cancelled tables again as a new attempt; JobStateError if not allowed."""
        if not self.is_finished:
            raise JobStateError(
                f"Job {self.pk} is still {self.get_status_display().lower()}; "
                "retry it when it has finished."
            )
        again = self.tables.filter(status__in=[TableRun.Status.FAILED, TableRun.Status.CANCELLED])
        if not again.exists():
            raise JobStateError(f"Job {self.pk} has no failed or cancelled tables to retry.")
        with transaction.atomic():
            self.attempt += 1
            self.cancel_requested = False
            self.finished_at = None
            self.recoveries = 0
            # Helpers of the last attempt that start late must not import its dead snapshot.
            self.snapshot_id = ""
            self.save(
                update_fields=[
                    "attempt",
                    "cancel_requested",
                    "finished_at",
                    "recoveries",
                    "snapshot_id",
                ]
            )
            for run in again:
                run.status = TableRun.Status.QUEUED
                run.attempt = self.attempt
                run.rows_written = run.bytes_written = run.requeues = 0
                run.files, run.profile, run.warnings, run.validation = [], [], [], {}
                run.started_at, run.finished_at = None, None
                run.save()
                StatusChange.objects.create(job=self, table_run=run, status=run.status)
            self.set_status(self.Status.QUEUED, note=f"retry: attempt {self.attempt}")

    def fail_all(self, message: str, phase: str):
        """The job could not start: every queued table fails with the same reason."""
        for run in self.tables.filter(status=TableRun.Status.QUEUED):
            run.finish(TableRun.Status.FAILED, only_if=TableRun.Status.QUEUED)
        JobError.record(self, None, message, phase=phase)

    def update_totals(self):
        """Store the counts of progress(), for the admin and for finished jobs' lists."""
        # The counts alone: the tables of a job of thousands hold much else. With job_id:
        # the related manager sets each table's job, and a deferred job_id is a query each.
        fields = ("job_id", "status", "rows_written", "rows_expected", "bytes_written")
        counts = self.progress(list(self.tables.only(*fields)))
        for name in ("tables_total", "tables_complete", "tables_failed"):
            setattr(self, name, counts[name])
        self.rows_written = counts["rows_written"]
        self.bytes_written = counts["bytes_written"]

    def derived_status(self) -> str:
        statuses = set(self.tables.values_list("status", flat=True))
        if statuses & {TableRun.Status.QUEUED, TableRun.Status.RUNNING}:
            return self.Status.RUNNING
        if TableRun.Status.CANCELLED in statuses:
            return self.Status.CANCELLED
        if not statuses:
            return self.Status.FAILED if self.errors.exists() else self.Status.COMPLETE
        if statuses == {TableRun.Status.COMPLETE}:
            return self.Status.COMPLETE
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

    FINISHED = {Status.COMPLETE, Status.FAILED, Status.CANCELLED}
    # Finished without a file: what such a table read is not counted anywhere.
    STOPPED = {Status.FAILED, Status.CANCELLED}

    class RowsProof(models.TextChoices):
        SENT = "sent", "the rows the COPYs reading the table reported sending"
        COUNT = "count", "a count(*) in the snapshot"

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="tables")
    schema = models.CharField(max_length=255)
    table = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    rows_expected = models.BigIntegerField(null=True, blank=True)
    # What rows_expected comes from: what proves no row was lost on the way.
    rows_proof = models.CharField(max_length=8, choices=RowsProof, blank=True)
    rows_written = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)
    # [{"path": relative to the job folder, "bytes": int, "rows": int, "sha256": hex}]
    files = models.JSONField(default=list, blank=True)
    # [{"name", "source_type", "arrow_type", "nullable", "representation"}]
    columns = models.JSONField(default=list, blank=True)
    # What a load on the far side recreates besides the columns (source catalog, in the
    # snapshot): {"constraints": [{"name", "kind", "columns", "definition"}], "types":
    # {"columns": {...}, "definitions": [...]}} (connections.drivers.base.TableDescription)
    catalog = models.JSONField(default=dict, blank=True)
    # {"rows", "digest"} of the table's rows in the snapshot (loads.fingerprint), with the
    # job's option "fingerprint"; or {"skipped": why}; empty when not asked for.
    fingerprint = models.JSONField(default=dict, blank=True)
    # [{"name", "nulls", "min", "max", "distinct"}], computed while streaming
    profile = models.JSONField(default=list, blank=True)
    # [{"check": "rows" | "nulls", "message"}]: against the table's last successful export
    warnings = models.JSONField(default=list, blank=True)
    # {"mode", "status", "rows_checked", "checks": [{"check", "column", "origin", "severity",
    # "status", "failures", "examples": [{"row", "value"}]}]}: see quality.validation
    validation = models.JSONField(default=dict, blank=True)
    # What of the table leaves: {"columns": [...] (empty: all), "exclude": [...],
    # "filter": "SQL condition", "masks": {column: {"method", "precision"}},
    # "query": "SELECT ..." (a saved query exported like a table), "sensitive": {...},
    # "left_out": [...] (source columns that do not leave)}
    spec = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    # Times the table was queued again because its worker died.
    requeues = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["schema", "table"]
        constraints = [
            models.UniqueConstraint(fields=["job", "schema", "table"], name="one_run_per_table")
        ]
        indexes = [
            # A table's earlier runs (the anomaly checks ask for the last one, for every
            # table exported): found by name, not by reading every run of every job.
            models.Index(fields=["schema", "table", "finished_at"], name="runs_of_a_table"),
            # A job's queued (or running) tables, in order: a worker looks for the next
            # ones after every group it exports, and scanning every run of the job each
            # time made a job of thousands of tables slower a table the more it had.
            models.Index(fields=["job", "status"], name="tables_of_a_job_by_status"),
        ]

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"

    def validation_summary(self) -> str:
        """'passed with warnings (sample: 65,536 of 6,000,000 rows; 21 checks, 1 failed)'."""
        report = self.validation
        if not report:
            return ""
        checks = report["checks"]
        counts = {}
        for check in checks:
            counts[check["status"]] = counts.get(check["status"], 0) + 1
        tally = [f"{len(checks)} check(s)"] + [
            f"{n} {status}" for status, n in counts.items() if status != "passed"
        ]
        seen = (
            "source constraints not checked"
            if report["mode"] == "off"
            else f"source constraints on {report['rows_checked']:,} of {report['rows']:,} rows"
        )
        return f"{report['status']} ({report['mode']}: {seen}; {', '.join(tally)})"

    def validation_checks(self) -> list[dict]:
        """The report's checks, each example written as people read it (by the row's
        primary key when the table has one): see quality.validation.example_text."""
        from quality.validation import example_text

        return [
            {**check, "examples": [example_text(e) for e in check["examples"]]}
            for check in self.validation.get("checks", [])
        ]

    def count_proof(self) -> str:
        """Rows counted at the source in the job's snapshot against rows written:
        'match', 'differ', or '' while either is not known."""
        if self.rows_expected is None or self.status != self.Status.COMPLETE:
            return ""
        return "match" if self.rows_expected == self.rows_written else "differ"

    def notable_checks(self) -> list[dict]:
        """The checks worth a line of their own: failed, not applicable or not checked."""
        return [c for c in self.validation.get("checks", []) if c["status"] != "passed"]

    def report_progress(self, rows: int, bytes_written: int):
        now = timezone.now()
        TableRun.objects.filter(pk=self.pk).update(
            rows_written=rows, bytes_written=bytes_written, heartbeat_at=now
        )

    @classmethod
    def claim(cls, pks: list[int], job_id: int) -> list[int]:
        """Take queued tables of the job for this worker, in one commit (a small table's
        export pays each): each table goes to one claimant only. The ones taken, in order."""
        now = timezone.now()
        with transaction.atomic():
            # SQLite's write lock is taken at BEGIN (IMMEDIATE); PostgreSQL locks the rows.
            free = list(
                cls.objects.select_for_update(skip_locked=True)
                .filter(pk__in=pks, job_id=job_id, status=cls.Status.QUEUED)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if free:
                cls.objects.filter(pk__in=free).update(
                    status=cls.Status.RUNNING, started_at=now, heartbeat_at=now, finished_at=None
                )
                note = worker_name()
                StatusChange.objects.bulk_create(
                    StatusChange(
                        job_id=job_id, table_run_id=pk, status=cls.Status.RUNNING, at=now, note=note
                    )
                    for pk in free
                )
        return free

    @classmethod
    def beat(cls, pks: list[int]):
        """Tell the sweep these tables' worker lives: the ones it still holds."""
        cls.objects.filter(pk__in=pks, status=cls.Status.RUNNING).update(
            heartbeat_at=timezone.now()
        )

    @property
    def is_stopped(self) -> bool:
        """Failed or cancelled: its files were removed, so the rows it read count nowhere."""
        return self.status in self.STOPPED

    @property
    def percent(self) -> int:
        """A full bar only for a table that is complete: one still writing, or stopped,
        is at most 99%."""
        if self.status == self.Status.COMPLETE:
            return 100
        if not self.rows_expected:
            return 0
        return min(99, int(100 * self.rows_written / self.rows_expected))

    @property
    def seconds(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    def finish(self, status: str, note: str = "", only_if: str | None = None) -> bool:
        """Record the table's outcome; with `only_if`, only if it is still in that state."""
        if not only_if:
            TableRun.finish_all([self], status, note)
            return True
        with transaction.atomic():  # the outcome and its history in one commit
            changed = TableRun.objects.filter(pk=self.pk, status=only_if).update(
                status=status, finished_at=timezone.now()
            )
            if not changed:
                return False
            self.refresh_from_db()
            StatusChange.objects.create(
                job_id=self.job_id, table_run=self, status=status, note=note
            )
        return True

    @classmethod
    def finish_all(cls, runs: list["TableRun"], status: str, note: str = ""):
        """Record the same outcome of tables of one job, and its history, in one commit."""
        if not runs:
            return
        now = timezone.now()
        for run in runs:
            # A table of a group may have ended before the group is recorded.
            run.status, run.finished_at = status, run.finished_at or now
            if status != cls.Status.COMPLETE:
                run.files, run.profile, run.warnings = [], [], []
        with transaction.atomic():
            _save_all(runs)
            StatusChange.objects.bulk_create(
                StatusChange(job_id=run.job_id, table_run=run, status=status, at=now, note=note)
                for run in runs
            )


def _save_all(instances: list[models.Model]):
    """What save() would write of each instance (the fields it loaded), as one statement run
    for them all: a group of small tables recorded by save() spent a tenth of its export
    building the same UPDATE again for each table. Call it in a transaction."""
    model = type(instances[0])
    db = router.db_for_write(model)
    connection = connections[db]
    quote = connection.ops.quote_name
    by_fields: dict[frozenset, list] = collections.defaultdict(list)
    for instance in instances:
        by_fields[frozenset(instance.get_deferred_fields())].append(instance)
    for deferred, group in by_fields.items():
        fields = [
            f
            for f in model._meta.concrete_fields
            if not f.primary_key and f.attname not in deferred
        ]
        statement = "UPDATE {} SET {} WHERE {} = %s".format(
            quote(model._meta.db_table),
            ", ".join(f"{quote(f.column)} = %s" for f in fields),
            quote(model._meta.pk.column),
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                statement,
                [
                    [f.get_db_prep_save(f.pre_save(i, False), connection) for f in fields] + [i.pk]
                    for i in group
                ],
            )


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
        context = {"phase": phase, "attempt": job.attempt}
        if table_run is not None:
            context |= {"table": str(table_run), "rows_done": table_run.rows_written}
        return cls.objects.create(
            job=job,
            table_run=table_run,
            message=redact(message, secrets),
            traceback=redact(trace, secrets),
            context=context,
        )


def worker_name() -> str:
    """Which host and process took a table: clusters on several hosts share one queue."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class StatusChange(models.Model):
    """One row per state transition of a job or one of its tables, with its time."""

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="changes")
    table_run = models.ForeignKey(
        TableRun, null=True, blank=True, on_delete=models.CASCADE, related_name="changes"
    )
    status = models.CharField(max_length=24)
    at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.table_run or self.job}: {self.status}"


def _weighted_percent(runs: list[TableRun]) -> int:
    """How much of the job's work is done, each table weighed by its rows: a finished
    table counts whole, a running one by its share; a table not counted yet weighs as the
    others do on average, so a large count arriving late does not move the bar back far."""
    known = [run.rows_expected for run in runs if run.rows_expected]
    usual = sum(known) / len(known) if known else 1
    total = done = 0.0
    for run in runs:
        weight = run.rows_expected or usual
        total += weight
        if run.status in TableRun.FINISHED:
            done += weight
        elif run.status == TableRun.Status.RUNNING and run.rows_expected:
            done += min(run.rows_written, run.rows_expected)
    return int(100 * done / total) if total else 0
