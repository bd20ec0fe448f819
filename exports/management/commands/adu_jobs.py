"""List export jobs."""

from adu_site.commands import AduCommand, human_bytes
from exports.models import ExportJob


class Command(AduCommand):
    help = "Lists your export jobs (staff: everyone's), newest first."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=ExportJob.Status.values, help="Only this status.")
        parser.add_argument("--limit", type=int, default=50, help="At most this many (50).")
        super().add_arguments(parser)

    def handle(self, *args, **options):
        jobs = ExportJob.objects.visible_to(self.user(options)).select_related("connection")
        if options["status"]:
            jobs = jobs.filter(status=options["status"])
        jobs = list(jobs[: options["limit"]])
        rows = [
            {
                "job_id": job.pk,
                "status": job.status,
                "connection": job.connection.name,
                "tables_total": job.tables_total,
                "tables_complete": job.tables_complete,
                "tables_failed": job.tables_failed,
                "rows": job.rows_written,
                "bytes": job.bytes_written,
                "created_at": job.created_at.isoformat(),
                "output_dir": str(job.folder()),
            }
            for job in jobs
        ]
        lines = [f"{'JOB':>6} {'STATUS':22} {'CONNECTION':24} {'TABLES':>9} {'ROWS':>12} SIZE"]
        lines += [
            f"{r['job_id']:>6} {r['status']:22} {r['connection'][:24]:24} "
            f"{str(r['tables_complete']) + '/' + str(r['tables_total']):>9} {r['rows']:>12,} "
            f"{human_bytes(r['bytes'])}"
            for r in rows
        ]
        self.emit(options, rows, "\n".join(lines) if rows else "No jobs.")
