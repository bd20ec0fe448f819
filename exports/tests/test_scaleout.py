"""Scale-out on the Redis broker: two clusters, as if on two hosts, share one job, and one of
them is killed with SIGKILL in the middle of it.

Needs the Redis broker and PostgreSQL metadata: `make test` runs it in its second pass
(`-p tests.backends --backends postgres-redis`).
"""

from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from django.conf import settings

from exports.jobs import create_job
from exports.models import StatusChange
from exports.tasks import start_job
from tests.factories import diagnose, finished, slow_view, wait_until

pytestmark = pytest.mark.skipif(
    "redis" not in settings.Q_CLUSTER,
    reason="needs the Redis broker: run with -p tests.backends --backends postgres-redis",
)

TABLES = 8
ROWS = 4000


def wait_until_running(cluster):
    log = Path(cluster.log.name)
    wait_until(lambda: "running." in log.read_text(), 60, "the cluster to start")


def processes_of(cluster) -> set[int]:
    """The cluster's process and its workers, which are the processes that claim tables."""
    root = psutil.Process(cluster.process.pid)
    return {root.pid, *(child.pid for child in root.children(recursive=True))}


def claims(job) -> dict[str, list[int]]:
    """For each table, the pids of the workers that claimed it, in order."""
    found = {str(run): [] for run in job.tables.all()}
    for change in StatusChange.objects.filter(job=job, status="running").exclude(table_run=None):
        found[str(change.table_run)].append(int(change.note.rsplit(" ", 1)[1]))
    return found


@pytest.mark.django_db(transaction=True)
def test_two_clusters_share_a_job_and_it_survives_one_killed(owner, source_db, clusters):
    for n in range(TABLES):
        slow_view(source_db, f"t{n}", ROWS, 40)  # about 2 s to count and 2 s to read
    connection = source_db.connection(owner)
    # The coordinator and 5 helpers. The first cluster (one worker) runs the coordinator,
    # which exports tables itself, and can hold two helpers it cannot start (one queued,
    # one in its pusher's hand): the other three go to the second cluster (two workers).
    job = create_job(owner, connection, options={"parallel": 6})

    first = clusters(ADU_WORKERS="1")
    wait_until_running(first)
    first_pids = processes_of(first)
    start_job(job)  # only the first cluster runs: the coordinator is there
    wait_until(lambda: any(claims(job).values()), 60, ("a first claim", diagnose(job)))

    second = clusters(ADU_WORKERS="2")
    wait_until_running(second)
    second_pids = processes_of(second)

    def second_finished_one_and_exports_another():
        done = {str(run) for run in job.tables.filter(status="complete")}
        last = {table: pids[-1] for table, pids in claims(job).items() if pids}
        mine = {table for table, pid in last.items() if pid in second_pids}
        return mine & done and mine - done

    wait_until(
        lambda: second_finished_one_and_exports_another() or finished(job)(),
        90,
        ("the second cluster to export a table and start another", diagnose(job)),
    )
    assert not finished(job)(), diagnose(job)()
    second.kill()
    running = {str(run) for run in job.tables.filter(status="running")}
    # (A table just claimed is running a moment before its claim is recorded: no pid yet.)
    killed_mid_table = {
        table
        for table, pids in claims(job).items()
        if table in running and pids and pids[-1] in second_pids
    }
    assert killed_mid_table  # SIGKILL came while a table of the second cluster was running

    wait_until(finished(job), 120, ("the job after the kill", diagnose(job)))
    job.refresh_from_db()
    assert job.status == "complete", diagnose(job)()

    # Every table exported, each into exactly one file with every row.
    runs = list(job.tables.all())
    assert len(runs) == TABLES
    for run in runs:
        assert run.rows_written == run.rows_expected == ROWS
        [entry] = run.files
        assert pq.read_metadata(job.folder() / entry["path"]).num_rows == ROWS
    assert len(list(job.folder().rglob("*.parquet"))) == TABLES
    assert not list(job.folder().rglob("*.part"))

    # Both clusters exported tables of the job; every claim came from one of them.
    by_table = claims(job)
    assert {pid for pids in by_table.values() for pid in pids} <= first_pids | second_pids
    kept = {table: pids[-1] for table, pids in by_table.items()}
    assert any(pid in first_pids for pid in kept.values())
    assert any(pid in second_pids for pid in kept.values())

    # One claim per table, except the tables the killed cluster was exporting: those were
    # queued again by the heartbeat sweep and claimed once more, by the surviving cluster.
    for table, pids in by_table.items():
        if table in killed_mid_table:
            assert len(pids) == 2 and pids[1] in first_pids, (table, pids)
        else:
            assert len(pids) == 1, (table, pids)
    requeued = StatusChange.objects.filter(job=job, status="queued", note="worker stopped")
    assert {str(change.table_run) for change in requeued} == killed_mid_table
    completions = StatusChange.objects.filter(job=job, status="complete").exclude(table_run=None)
    assert completions.count() == TABLES
