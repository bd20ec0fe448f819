"""How a job is shown on a terminal and in JSON, the same for adu_export, adu_job and adu_jobs."""

import threading
import time

from django.core.management.base import CommandError
from django.db import connections

from adu_site.commands import AduCommand, human_bytes
from exports.models import ExportJob, JobStateError, TableRun

EXIT_CODES = {ExportJob.Status.COMPLETE: 0, ExportJob.Status.COMPLETE_WITH_ERRORS: 1}


def exit_code(job: ExportJob) -> int:
    """0 complete, 1 complete with errors, 2 failed or cancelled."""
    return EXIT_CODES.get(job.status, 2)


def job_data(job: ExportJob) -> dict:
    errors = list(job.errors.all())
    by_table = current_errors(job)
    manifest = job.manifest_path()
    return {
        "job_id": job.pk,
        "status": job.status,
        "progress": progress_data(job.progress()),
        "output_dir": str(job.folder()),
        "manifest": str(manifest) if job.is_finished and manifest.exists() else None,
        "tables": [
            {
                "schema": run.schema,
                "table": run.table,
                "status": run.status,
                "rows": run.rows_written,
                "files": run.files,
                "warnings": [w["message"] for w in run.warnings],
                "validation": run.validation or None,
                "error": by_table.get(run.pk),
            }
            for run in job.tables.all()
        ],
        "errors": [
            e.message
            for e in errors
            if e.table_run_id is None and e.context.get("attempt", job.attempt) == job.attempt
        ],
    }


PROGRESS_FIELDS = (
    "tables_total", "tables_complete", "tables_failed", "tables_cancelled", "tables_running",
    "tables_queued", "rows_written", "bytes_written", "rows_expected", "percent",
)  # fmt: skip


def progress_data(progress: dict) -> dict:
    """The counts of ExportJob.progress() that machines get (the API, --json)."""
    return {name: progress[name] for name in PROGRESS_FIELDS}


def current_errors(job: ExportJob) -> dict:
    """The last error of each table that is not complete (a retried table's old error is
    history), and the job's own errors of this attempt under the key None."""
    errors = {}
    for error in job.errors.select_related("table_run"):
        run = error.table_run
        if run is None:
            if error.context.get("attempt", job.attempt) == job.attempt:
                errors[None] = error.message
        elif run.status != TableRun.Status.COMPLETE:
            errors[run.pk] = error.message
    return errors


def job_text(job: ExportJob, style) -> str:
    from quality.validation import example_text  # polars and pandera: not at start-up

    errors = current_errors(job)
    runs = list(job.tables.all())
    lines = [f"{'TABLE':40} {'STATUS':10} {'ROWS':>12} {'SIZE':>10} {'SECONDS':>8}"]
    for run in runs:
        seconds = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f}"
            if run.started_at and run.finished_at
            else "-"
        )
        size = human_bytes(sum(f["bytes"] for f in run.files))
        lines.append(
            f"{str(run):40} {run.status:10} {run.rows_written:>12,} {size:>10} {seconds:>8}"
        )
        if run.pk in errors:
            lines.append(f"    error: {errors[run.pk]}")
        lines += [f"    warning: {w['message']}" for w in run.warnings]
        if run.validation:
            lines.append(f"    validation: {run.validation_summary()}")
            lines += [
                f"      {c['status']}: {c['description']} ({c['origin']}, {c['severity']})"
                + (f": {c['failures']:,} failure(s)" if c["failures"] else "")
                + (f" — {c['note']}" if c["note"] else "")
                + (
                    "\n        e.g. " + "; ".join(example_text(e) for e in c["examples"])
                    if c["examples"]
                    else ""
                )
                for c in run.notable_checks()
            ]
    if None in errors:
        lines.append(f"error: {errors[None]}")
    good = job.status == ExportJob.Status.COMPLETE
    paint = style.SUCCESS if good else (style.WARNING if not job.is_finished else style.ERROR)
    warned = sum(1 for run in runs if run.warnings)
    counts = job.progress(runs)
    lines.append(
        paint(
            f"Job {job.pk} {job.get_status_display().lower()}"
            + (f" with warnings on {warned} table(s)" if warned else "")
            + f": {counts['tables_complete']} of "
            f"{counts['tables_total']} table(s), {counts['rows_written']:,} rows, "
            f"{human_bytes(counts['bytes_written'])} in {job.folder()}"
        )
    )
    return "\n".join(lines)


def wait_for(job_id: int, out=None, interval: float = 1.0) -> ExportJob:
    """Follow a queued job until it finishes, showing progress on `out` if given."""
    progress = Progress(out, job_id, interval) if out else None
    if progress:
        progress.start()
    try:
        while not ExportJob.objects.get(pk=job_id).is_finished:
            time.sleep(interval)
    finally:
        if progress:
            progress.stop()
    return ExportJob.objects.get(pk=job_id)


class Progress:
    """Shows running tables with rows and rows/s: redrawn on a terminal, a line per table if not."""

    def __init__(self, out, job_id: int, interval: float = 1.0):
        self.out = out
        self.job_id = job_id
        self.interval = interval
        self.terminal = out.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="adu-progress")
        self._drawn = 0
        self._reported: set[int] = set()

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._show()

    def _run(self):
        try:
            while not self._stop.wait(self.interval):
                self._show()
        finally:
            connections.close_all()

    def _show(self):
        runs = list(TableRun.objects.filter(job_id=self.job_id))
        if self.terminal:
            lines = [_bar(run) for run in runs if run.status == TableRun.Status.RUNNING]
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F\x1b[J", ending="")
            for line in lines:
                self.out.write(line)
            self._drawn = len(lines)
        for run in runs:
            if run.finished_at and run.pk not in self._reported:
                self._reported.add(run.pk)
                if not self.terminal:
                    self.out.write(f"{run}: {run.status}, {run.rows_written:,} rows")


def _bar(run: TableRun, width: int = 24) -> str:
    expected = run.rows_expected or 0
    done = min(run.rows_written / expected, 1.0) if expected else 0.0
    filled = int(done * width)
    rate = 0.0
    if run.heartbeat_at and run.started_at:
        rate = run.rows_written / max((run.heartbeat_at - run.started_at).total_seconds(), 0.001)
    return (
        f"{str(run)[:36]:36} [{'#' * filled}{'.' * (width - filled)}] "
        f"{run.rows_written:>12,} / {expected:,} rows  {rate:,.0f} rows/s"
    )


class JobCommand(AduCommand):
    """A command about one job: finds it for the acting user, then `act(job, options)`."""

    changes_job = False  # True: only its owner (or an ADU Admin) may run it

    def add_arguments(self, parser):
        parser.add_argument("job", help="The job's id.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        try:
            job = ExportJob.objects.for_user(
                self.user(options), options["job"], act=self.changes_job
            )
            self.act(job, options)
        except JobStateError as error:
            raise CommandError(str(error)) from None

    def act(self, job: ExportJob, options):
        raise NotImplementedError
