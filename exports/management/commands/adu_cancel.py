"""Cancel a queued or running export job."""

from exports.job_display import JobCommand
from exports.models import ExportJob
from exports.tasks import cancel_job


class Command(JobCommand):
    changes_job = True
    help = (
        "Cancels a job: queued tables never start, running tables stop between two batches "
        "(within seconds) and their partial files are removed; the job ends `cancelled`."
    )

    def act(self, job: ExportJob, options):
        job = cancel_job(job, by=self.user(options))
        self.emit(
            options,
            {"job_id": job.pk, "status": job.status, "cancel_requested": True},
            f"Cancelling job {job.pk}: queued tables will not start, running ones stop "
            "within seconds.",
        )
