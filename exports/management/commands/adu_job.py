"""Show one export job: its tables, errors and log."""

from exports.job_display import JobCommand, job_data, job_text
from exports.joblog import log_path
from exports.models import ExportJob


class Command(JobCommand):
    help = (
        "Shows one job with its tables and errors; --log adds its log. The --json object has "
        "the keys of `adu_export --json` (plus `log` with --log)."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--log", action="store_true", help="Also print the job's log.")

    def act(self, job: ExportJob, options):
        path = log_path(job)
        log = (path.read_text() if path.exists() else "") if options["log"] else None
        extra = {} if log is None else {"log": log}
        tail = "" if log is None else "\n\nLog:\n" + (log or "(empty)")
        self.emit(
            options,
            lambda: {**job_data(job), **extra},
            lambda: job_text(job, self.style) + tail,
        )
