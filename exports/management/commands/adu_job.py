"""Show one export job: its tables, errors and log."""

from exports.joblog import log_path
from exports.models import ExportJob
from exports.reports import JobCommand, job_data, job_text


class Command(JobCommand):
    help = (
        "Shows one job with its tables and errors; --log adds its log. The --json object has "
        "the keys of `adu_export --json` (plus `log` with --log)."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--log", action="store_true", help="Also print the job's log.")

    def act(self, job: ExportJob, options):
        data = job_data(job)
        text = job_text(job, self.style)
        if options["log"]:
            path = log_path(job.pk)
            data["log"] = path.read_text() if path.exists() else ""
            text += "\n\nLog:\n" + (data["log"] or "(empty)")
        self.emit(options, data, text)
