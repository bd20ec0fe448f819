"""Django-Q2 task of a load: it gets the load's id, never an object or a credential."""

import time

from django_q.tasks import async_task

from loads.models import Load


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
