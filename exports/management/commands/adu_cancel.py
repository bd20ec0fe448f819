"""Cancel a queued or running export job."""

from exports.engine.run import finish_job
from exports.models import ExportJob
from exports.reports import JobCommand


class Command(JobCommand):
    help = (
        "Cancels a job: queued tables never start, running tables stop between two batches "
        "(within seconds) and their partial files are removed; the job ends `cancelled`."
    )

    def act(self, job: ExportJob, options):
        job.request_cancel()
        if not job.tables.filter(status="running").exists():
            job = finish_job(job.pk)  # nothing left to stop: finish it now
        self.emit(
            options,
            {"job_id": job.pk, "status": job.status, "cancel_requested": True},
            f"Cancelling job {job.pk}: queued tables will not start, running ones stop "
            "within seconds.",
        )
