"""Jobs on a real Django-Q2 cluster (`manage.py qcluster` subprocesses) against the test server."""

import json
import time

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django_q.models import Schedule

from exports.joblog import log_path
from exports.jobs import create_job
from exports.models import ExportJob, StatusChange
from exports.tasks import start_job
from tests.factories import diagnose, finished, slow_view, wait_until

PLANTED = "Planted-Pa55-Mark"


def claims_per_table(job):
    return {
        str(run): StatusChange.objects.filter(table_run=run, status="running").count()
        for run in job.tables.all()
    }


@pytest.mark.django_db(transaction=True)
def test_parallel_tables_overlap_and_each_is_exported_once(owner, source_db, clusters):
    for n in range(4):
        slow_view(source_db, f"v{n}", 20000, 20)
    connection = source_db.connection(owner)
    job = create_job(owner, connection, options={"parallel": 2})
    clusters()
    start_job(job)
    wait_until(finished(job), 120, "the job")
    job.refresh_from_db()
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    runs = list(job.tables.all())
    assert all(r.rows_written == 20000 for r in runs)
    spans = sorted((r.started_at, r.finished_at) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    # never more than two at once
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 2
    assert set(claims_per_table(job).values()) == {1}


@pytest.mark.django_db(transaction=True)
def test_cancel_mid_table_ends_cancelled_within_seconds(owner, source_db, clusters):
    slow_view(source_db, "slow", 100000, 200)
    source_db.execute("CREATE TABLE zz_later AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, options={"parallel": 1, "batch_rows": 1000})
    clusters()
    start_job(job)
    wait_until(lambda: job.tables.filter(status="running").exists(), 60, "the table to start")
    time.sleep(2)
    cancelled_at = time.monotonic()
    call_command("adu_cancel", str(job.pk), "--as", "owner")
    wait_until(finished(job), 10, ("the job to end after cancel", diagnose(job)))
    assert time.monotonic() - cancelled_at < 10
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert set(job.tables.values_list("status", flat=True)) == {"cancelled"}, diagnose(job)()
    leftovers = [p for p in job.folder().rglob("*") if p.suffix in (".parquet", ".part")]
    assert not leftovers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_a_stopped_cluster_is_recovered_after_a_restart(owner, source_db, clusters, stop):
    Schedule.objects.create(
        name="adu-sweep", func="exports.tasks.sweep", schedule_type="I", minutes=1
    )
    slow_view(source_db, "slow", 100000, 100)
    connection = source_db.connection(owner)
    job = create_job(owner, connection, options={"parallel": 1})
    first = clusters()
    start_job(job)
    wait_until(
        lambda: job.tables.filter(status="running").exists(),
        60,
        ("the table to start", diagnose(job)),
    )
    time.sleep(3)  # into its count or its read: both take seconds on the slow view
    if stop == "kill -9":
        first.kill()
        assert job.tables.get().status == "running"
        assert not (job.folder() / "public" / "slow.parquet").exists()
    else:
        first.stop()  # Django-Q2 lets the running task finish its table first
    clusters()
    wait_until(finished(job), 150, "the job to be recovered")
    job.refresh_from_db()
    run = job.tables.get()
    if job.status == "complete":
        [entry] = run.files
        assert pq.read_metadata(job.folder() / entry["path"]).num_rows == 100000
        if job.recoveries:
            assert [a["reason"] for a in job.attempts][-1].startswith("resumed")
    else:
        assert "stopped" in job.errors.first().message
    assert not list(job.folder().rglob("*.part"))


@pytest.mark.django_db(transaction=True)
def test_two_clusters_export_each_table_exactly_once(owner, source_db, clusters):
    for n in range(6):
        slow_view(source_db, f"v{n}", 5000, 5)
    connection = source_db.connection(owner)
    job = create_job(owner, connection, options={"parallel": 4})
    clusters()
    clusters()
    start_job(job)
    wait_until(finished(job), 120, "the job")
    job.refresh_from_db()
    assert job.status == "complete"
    assert set(claims_per_table(job).values()) == {1}
    assert sum(len(r.files) for r in job.tables.all()) == 6


@pytest.mark.django_db(transaction=True)
def test_retry_reruns_only_the_failed_table_and_no_log_has_the_password(
    owner, source_db, clusters, tmp_path
):
    source_db.execute("CREATE TABLE good AS SELECT generate_series(1, 100) AS i")
    source_db.execute("CREATE TABLE locked AS SELECT generate_series(1, 50) AS i")
    source_db.execute(f"CREATE ROLE planted LOGIN PASSWORD '{PLANTED}'")
    source_db.execute("GRANT SELECT ON good TO planted")
    try:
        connection = source_db.connection(owner, username="planted", password=PLANTED)
        job = create_job(owner, connection)
        clusters()
        start_job(job)
        wait_until(finished(job), 60, "the first attempt")
        job.refresh_from_db()
        assert job.status == "complete_with_errors"
        good = job.tables.get(table="good")
        good_file = good.files

        source_db.execute("GRANT SELECT ON locked TO planted")
        call_command("adu_retry", str(job.pk), "--as", "owner")
        wait_until(finished(job), 60, "the retry")
        job.refresh_from_db()
        assert job.status == "complete", list(job.errors.values_list("message", flat=True))
        assert job.attempt == 2 and len(job.attempts) == 2
        assert job.tables.get(table="good").files == good_file
        assert claims_per_table(job) == {"public.good": 1, "public.locked": 2}
        manifest = json.loads(job.manifest_path().read_text())
        assert [a["attempt"] for a in manifest["attempts"]] == [1, 2]
        assert {t["table"]: t["attempt"] for t in manifest["tables"]} == {
            "good": 1,
            "locked": 2,
        }
    finally:
        source_db.execute("DROP OWNED BY planted")
        source_db.execute("DROP ROLE planted")
    job_log = log_path(job).read_text()
    assert "public.locked" in job_log and "lacks permission" in job_log
    for path in [log_path(job), *tmp_path.glob("cluster-*.log")]:
        assert PLANTED not in path.read_text(), path


@pytest.mark.django_db(transaction=True)
def test_a_coordinator_task_lost_before_it_started_is_queued_again_and_runs_once(
    owner, source_db, clusters
):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.brokers import get_broker

    from exports import tasks

    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS i")
    job = create_job(owner, source_db.connection(owner))
    start_job(job)
    get_broker().purge_queue()  # as a worker that took the task and died would leave it
    tasks.sweep()
    assert get_broker().queue_size() == 0  # not yet late: nothing to do
    ExportJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    tasks.sweep()
    start_job(job)  # and a late duplicate of the task on top
    assert get_broker().queue_size() == 2
    clusters()
    wait_until(finished(job), 60, ("the job to finish", diagnose(job)))
    job.refresh_from_db()
    assert job.status == "complete" and len(job.attempts) == 1
    assert StatusChange.objects.filter(job=job, table_run=None, status="running").count() == 1
    assert "queued again in case a worker lost it" in log_path(job).read_text()
