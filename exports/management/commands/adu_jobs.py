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
        # The counts of a running job as the portal shows them (the stored totals are
        # written when a job ends).
        jobs = list(jobs.with_progress()[: options["limit"]])
        rows = []
        for job in jobs:
            counts = job.progress()
            rows.append(
                {
                    "job_id": job.pk,
                    "status": job.status,
                    "connection": job.connection.name,
                    "tables_total": counts["tables_total"],
                    "tables_complete": counts["tables_complete"],
                    "tables_failed": counts["tables_failed"],
                    "rows": counts["rows_written"],
                    "bytes": counts["bytes_written"],
                    "created_at": job.created_at.isoformat(),
                    "output_dir": str(job.folder()),
                }
            )
        lines = [f"{'JOB':>6} {'STATUS':22} {'CONNECTION':24} {'TABLES':>9} {'ROWS':>12} SIZE"]
        lines += [
            f"{r['job_id']:>6} {r['status']:22} {r['connection'][:24]:24} "
            f"{str(r['tables_complete']) + '/' + str(r['tables_total']):>9} {r['rows']:>12,} "
            f"{human_bytes(r['bytes'])}"
            for r in rows
        ]
        self.emit(options, rows, "\n".join(lines) if rows else "No jobs.")
