"""Django-Q2 task of a load: it gets the load's id, never an object or a credential."""

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from audit.models import AuditEvent, record
from exports.joblog import job_log
from loads.models import Load, TableLoad

MAX_RECOVERIES = 1


def start_load(load: Load):
    """Queue the load on the cluster (what adu_load without --sync calls)."""
    async_task("loads.tasks.run", load.pk, task_name=f"load-{load.pk}", group=f"load-{load.pk}")


def run(load_id: int):
    from loads.engine import run_load  # the engine (pyarrow) in the worker, not the portal

    run_load(load_id)


def wait_for(load_id: int, interval: float = 1.0) -> Load:
    """Follow a queued load until it finishes."""
    while Load.objects.get(pk=load_id).status not in Load.FINISHED:
        time.sleep(interval)
    return Load.objects.get(pk=load_id)


def cancel_load(load: Load, by=None) -> Load:
    """Cancel a load that has not ended; a queued one ends now, a running one as soon as
    its tables notice (each rolls back what it had not committed)."""
    if load.request_cancel():
        record(AuditEvent.Action.LOAD_CANCEL, user=by, obj=load)
        if Load.objects.filter(pk=load.pk, status=Load.Status.QUEUED).exists():
            load.tables.filter(status=TableLoad.Status.QUEUED).update(
                status=TableLoad.Status.CANCELLED, error="Cancelled before it started."
            )
            Load.objects.get(pk=load.pk).finish()
    return Load.objects.get(pk=load.pk)


def sweep_loads():
    """(exports.tasks.sweep, every minute) A running load whose worker stopped beating is
    queued again once: it resumes with the tables that had not committed (the server
    rolled back what the dead worker's sessions had begun). Then it fails."""
    stale = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    for load in Load.objects.filter(status=Load.Status.RUNNING, heartbeat_at__lt=stale):
        stopped = load.tables.filter(status=TableLoad.Status.LOADING)
        if load.recoveries < MAX_RECOVERIES:
            taken = Load.objects.filter(pk=load.pk, heartbeat_at__lt=stale).update(
                recoveries=F("recoveries") + 1, status=Load.Status.QUEUED
            )
            if taken:
                stopped.update(status=TableLoad.Status.QUEUED, rows=0)
                job_log(load).warning("its worker stopped; resuming")
                start_load(load)
            continue
        stopped.update(
            status=TableLoad.Status.FAILED,
            error="The load's worker stopped twice (cluster killed or machine restarted).",
        )
        load.tables.filter(status=TableLoad.Status.QUEUED).update(
            status=TableLoad.Status.FAILED, error="Not loaded: the load's worker stopped twice."
        )
        load.finish()
