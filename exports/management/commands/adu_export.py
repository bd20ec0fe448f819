"""Export tables of a connection to ZSTD Parquet files with a manifest."""

import sys
import threading

from django.core.management.base import CommandError
from django.db import connections

from adu_site.commands import AduCommand, human_bytes
from connections.models import Connection
from exports.engine.run import BadRequest, create_job, run_job
from exports.models import ExportJob, TableRun

EXIT_CODES = {
    ExportJob.Status.COMPLETE: 0,
    ExportJob.Status.COMPLETE_WITH_ERRORS: 1,
}


class Command(AduCommand):
    help = (
        "Exports tables of a connection to ZSTD Parquet files under the export root, all read "
        "from one snapshot, with manifest.json written last. With no table option it exports "
        "every table of the chosen schemas (all non-system schemas by default). --sync runs "
        "the job in this process. Exit status: 0 complete, 1 complete with errors, 2 failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The connection's name.")
        parser.add_argument("--schema", action="append", default=[], help="A schema (repeat).")
        parser.add_argument("--tables", default="", help="SCHEMA.TABLE,SCHEMA.TABLE,...")
        parser.add_argument("--exclude", action="append", default=[], help="SCHEMA.TABLE.")
        parser.add_argument("--out", default="", help="Folder name under the export root.")
        parser.add_argument("--parallel", type=int, help="Tables exported at once (2).")
        parser.add_argument("--readers", type=int, help="Connections reading one table (2).")
        parser.add_argument("--compression-level", type=int, help="ZSTD level, 1-22 (3).")
        parser.add_argument("--batch-rows", type=int, help="Rows per batch (100000).")
        parser.add_argument("--max-file-mb", type=int, help="Split tables into parts of ~N MB.")
        parser.add_argument("--sync", action="store_true", help="Run in this process.")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        if not options["sync"]:
            raise CommandError("Only --sync is available in this version: add --sync.")
        user = self.user(options)
        connection = Connection.objects.named(user, options["name"])
        try:
            job = create_job(
                user,
                connection,
                schemas=options["schema"],
                tables=[t for t in options["tables"].split(",") if t.strip()],
                exclude=[t for name in options["exclude"] for t in name.split(",") if t.strip()],
                options={
                    "parallel": options["parallel"],
                    "readers": options["readers"],
                    "compression_level": options["compression_level"],
                    "batch_rows": options["batch_rows"],
                    "max_file_mb": options["max_file_mb"],
                },
                out=options["out"],
            )
        except BadRequest as error:
            raise CommandError(str(error)) from None
        if not options["json"]:
            self.stdout.write(
                f"Job {job.pk}: {job.tables_total} table(s) from '{connection.name}' "
                f"into {job.folder()}"
            )
        progress = Progress(self.stdout, job.pk) if not options["json"] else None
        if progress:
            progress.start()
        try:
            job = run_job(job.pk)
        finally:
            if progress:
                progress.stop()
        self.report(job, options)
        sys.exit(EXIT_CODES.get(job.status, 2))

    def report(self, job: ExportJob, options):
        errors = {e.table_run_id: e.message for e in job.errors.all()}
        runs = list(job.tables.all())
        tables = [
            {
                "schema": run.schema,
                "table": run.table,
                "status": run.status,
                "rows": run.rows_written,
                "files": run.files,
                "error": errors.get(run.pk),
            }
            for run in runs
        ]
        manifest = job.folder() / "manifest.json"
        data = {
            "job_id": job.pk,
            "status": job.status,
            "output_dir": str(job.folder()),
            "manifest": str(manifest) if manifest.exists() else None,
            "tables": tables,
            "errors": [e for pk, e in errors.items() if pk is None],
        }
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
        lines += [f"error: {message}" for message in data["errors"]]
        style = self.style.SUCCESS if job.status == ExportJob.Status.COMPLETE else self.style.ERROR
        lines.append(
            style(
                f"Job {job.pk} {job.get_status_display().lower()}: {job.tables_complete} of "
                f"{job.tables_total} table(s), {job.rows_written:,} rows, "
                f"{human_bytes(job.bytes_written)} in {job.folder()}"
            )
        )
        self.emit(options, data, "\n".join(lines))


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
