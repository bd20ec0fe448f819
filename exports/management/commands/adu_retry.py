"""Re-run the failed and cancelled tables of a finished job."""

from exports.job_display import JobCommand
from exports.models import ExportJob
from exports.tasks import retry_job


class Command(JobCommand):
    changes_job = True
    help = (
        "Re-runs only the failed and cancelled tables of a finished job as a new attempt, "
        "under a new snapshot, keeping the tables that succeeded and their files. The job "
        "is queued on the task cluster; the manifest records each attempt."
    )

    def act(self, job: ExportJob, options):
        job = retry_job(job, by=self.user(options))
        again = job.tables.filter(status="queued").count()
        self.emit(
            options,
            {"job_id": job.pk, "attempt": job.attempt, "tables": again},
            f"Job {job.pk}: attempt {job.attempt} queued for {again} table(s).",
        )
