"""Django-Q2 tasks: the coordinator and helpers of a job, and the sweep that recovers dead workers.

Tasks get ids, never objects or credentials: the broker pickles their arguments. The engine
(pyarrow, polars) is imported by the tasks that run it, not by the pages that start them.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from audit.models import AuditEvent, record
from exports.joblog import job_log
from exports.models import ExportJob, JobError, TableRun
from loads.tasks import sweep_loads
from transfer.tasks import sweep_bundles

MAX_RECOVERIES = 1
# A coordinator task not started this many heartbeat timeouts after it was queued is
# queued again (a late duplicate costs nothing: it finds the job claimed).
LOST_AFTER_HEARTBEATS = 3


def start_job(job: ExportJob, reason: str = "start"):
    """Queue the job's coordinator on the cluster (what the portal and adu_export call)."""
    ExportJob.objects.filter(pk=job.pk).update(queued_at=timezone.now())
    async_task(
        "exports.tasks.coordinate",
        job.pk,
        reason,
        task_name=f"job-{job.pk}-coordinator",
        group=f"job-{job.pk}",
    )


def cancel_job(job: ExportJob, by=None) -> ExportJob:
    """Cancel a job (JobStateError if it has finished); finish it now if nothing runs."""
    from exports.engine import run as engine

    job.request_cancel()
    record(AuditEvent.Action.JOB_CANCEL, user=by, obj=job)
    if not job.tables.filter(status=TableRun.Status.RUNNING).exists():
        return engine.finish_job(job.pk)
    return job


def retry_job(job: ExportJob, by=None) -> ExportJob:
    """Queue the failed and cancelled tables again as a new attempt (JobStateError if not allowed)."""
    job.prepare_retry()
    record(AuditEvent.Action.JOB_RETRY, user=by, obj=job, attempt=job.attempt)
    start_job(job, reason=f"retry (attempt {job.attempt})")
    return job


def coordinate(job_id: int, reason: str = "start"):
    from exports.engine import run as engine

    engine.coordinate(job_id, spawn=_spawn_helper, reason=reason)


def work(job_id: int, snapshot_id: str):
    from exports.engine import run as engine

    engine.work(job_id, snapshot_id)


def _spawn_helper(job_id: int, snapshot_id: str):
    async_task(
        "exports.tasks.work",
        job_id,
        snapshot_id,
        task_name=f"job-{job_id}-helper",
        group=f"job-{job_id}",
    )
    return None  # the coordinator waits on the tables, not on the task


def sweep():
    """Run every minute by the cluster's scheduler: no table or job stays `running` forever.

    A table whose worker stopped beating is queued again once (its coordinator takes it),
    then failed. A job whose coordinator stopped beating (its cluster was killed) is
    resumed once under a new snapshot, keeping the tables already exported; then failed.
    Loads whose worker stopped are resumed likewise (loads.tasks.sweep_loads); bundles
    whose worker stopped fail (transfer.tasks.sweep_bundles).
    """
    from exports.engine import run as engine

    engine.sweep_tables()
    stale = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    for job in ExportJob.objects.filter(status=ExportJob.Status.RUNNING, heartbeat_at__lt=stale):
        log = job_log(job)
        if not job.tables.filter(status__in=engine.ACTIVE).exists():
            engine.finish_job(job.pk)
            continue
        if job.recoveries < MAX_RECOVERIES:
            taken = ExportJob.objects.filter(pk=job.pk, heartbeat_at__lt=stale).update(
                recoveries=F("recoveries") + 1,
                heartbeat_at=timezone.now(),
                status=ExportJob.Status.QUEUED,  # for the new coordinator to claim
            )
            if taken:
                # Its tables that were running died with it: back to the queue.
                job.tables.filter(status=TableRun.Status.RUNNING).update(
                    status=TableRun.Status.QUEUED, rows_written=0
                )
                log.warning("its coordinator stopped; resuming under a new snapshot")
                start_job(job, reason="resumed after its coordinator stopped")
            continue
        message = "The job's coordinator stopped twice (cluster killed or machine restarted)."
        for run in job.tables.filter(status__in=engine.ACTIVE):
            run.finish(TableRun.Status.FAILED, note="coordinator stopped", only_if=run.status)
        JobError.record(job, None, message, phase="coordinate")
        log.error("%s", message)
        engine.finish_job(job.pk)
    requeue_lost_coordinators()
    sweep_loads()
    sweep_bundles()


def requeue_lost_coordinators():
    """A broker without acknowledgements (Redis) loses a task that a worker took and died
    with before starting it: a job still queued long after its coordinator task was put
    on the broker gets the task again. If the first one was only late, one of the two
    claims the job and the other does nothing (ExportJob.claim)."""
    late = timezone.now() - timedelta(seconds=LOST_AFTER_HEARTBEATS * settings.HEARTBEAT_TIMEOUT)
    for job in ExportJob.objects.filter(status=ExportJob.Status.QUEUED, queued_at__lt=late):
        if ExportJob.objects.filter(pk=job.pk, queued_at__lt=late).update(queued_at=timezone.now()):
            job_log(job).warning(
                "still queued %s s after its coordinator task was queued; queued again in "
                "case a worker lost it",
                LOST_AFTER_HEARTBEATS * settings.HEARTBEAT_TIMEOUT,
            )
            start_job(job, reason="queued again: its coordinator had not started")
