"""A worker claims small tables a group at a time and records those that complete in one
commit (issue 20: a claim and a record cost a table of a few pages more than its rows).
A table that is not known to be small is claimed alone; a group's tables stay running and
beaten until recorded, so that a worker that dies mid-group leaves them to be queued again;
a cancel stops the rest of a group."""

import itertools
import time
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from connections.drivers import postgresql
from exports.engine import run as engine
from exports.engine.run import SessionPool, run_job, sweep_tables
from exports.jobs import create_job
from exports.models import ExportJob, StatusChange, TableRun
from tests.factories import calls_to

SMALL = [f"s{n:02}" for n in range(40)]


@pytest.fixture
def schema_of_small_tables(source_db):
    for name in SMALL:
        source_db.execute(f"CREATE TABLE {name} AS SELECT generate_series(1, 20) AS i")
    # 40,000 rows of int and text: about 220 pages, over SMALL_PAGES.
    source_db.execute(
        "CREATE TABLE s20_big AS SELECT i, repeat('x', 20) AS t FROM generate_series(1, 40000) i"
    )
    return source_db


def names_by_pk(job) -> dict[int, str]:
    return {run.pk: run.table for run in job.tables.all()}


@pytest.mark.django_db(transaction=True)
def test_small_tables_are_claimed_and_recorded_a_group_at_a_time(
    owner, schema_of_small_tables, monkeypatch
):
    claims = calls_to(monkeypatch, TableRun, "claim")
    records = calls_to(monkeypatch, TableRun, "finish_all")
    connection = schema_of_small_tables.connection(owner)
    job = create_job(owner, connection, schemas=["public"], options={"parallel": 1})
    job = run_job(job.pk)

    assert job.status == "complete"
    assert job.tables.count() == 41
    assert set(job.tables.values_list("status", flat=True)) == {"complete"}
    assert sorted(job.tables.values_list("rows_written", flat=True)) == [20] * 40 + [40000]
    for run in job.tables.all():
        [entry] = run.files
        assert pq.read_metadata(job.folder() / entry["path"]).num_rows == run.rows_written
        assert list(
            StatusChange.objects.filter(table_run=run).values_list("status", flat=True)
        ) == ["running", "complete"]
    names = names_by_pk(job)
    groups = [[names[pk] for pk in pks] for pks, _ in claims]
    # The first table is claimed alone (nothing is known of the sizes yet); the big table
    # is never in a group; each group is at most GROUP_TABLES.
    assert groups[0] == ["s00"]
    assert ["s20_big"] in groups
    assert all(len(g) == 1 for g in groups if "s20_big" in g)
    assert max(len(g) for g in groups) <= engine.GROUP_TABLES
    assert sorted(t for g in groups for t in g) == sorted(names.values())
    assert len(groups) <= 5  # 41 tables, not 41 claims
    # Each table's time is its own, not its group's: from its start to its end.
    spans = sorted(job.tables.values_list("started_at", "finished_at"))
    assert all(start < end for start, end in spans)
    assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))
    completed = [runs for runs, status in records if status == "complete"]
    assert sum(len(runs) for runs in completed) == 41 and len(completed) == len(groups)


@pytest.mark.django_db(transaction=True)
def test_a_group_its_worker_died_with_is_queued_again_and_exported_whole(
    owner, source_db, settings, monkeypatch
):
    for name in ("a", "b", "c"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT generate_series(1, 30) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=["public.a", "public.b", "public.c"])
    pks = list(job.tables.order_by("pk").values_list("pk", flat=True))
    leader, snapshot = postgresql.open_snapshot(connection)
    try:
        job.begin_attempt(snapshot, "start")
        job.set_status(ExportJob.Status.RUNNING)
        pool = SessionPool(job, snapshot)
        real_record = TableRun.finish_all

        def killed_before_the_record(runs, status, note=""):
            if status == TableRun.Status.COMPLETE:
                raise SystemExit("the worker's process was killed")
            return real_record(runs, status, note)

        monkeypatch.setattr(TableRun, "finish_all", killed_before_the_record)
        with pytest.raises(SystemExit):
            engine._run_claimed(TableRun.claim(pks, job.pk), pool)
        pool.close()
        monkeypatch.setattr(TableRun, "finish_all", real_record)
        # All three were written, none recorded: still running, as a dead worker leaves them.
        assert set(job.tables.values_list("status", flat=True)) == {"running"}

        old = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 5)
        job.tables.update(heartbeat_at=old)
        sweep_tables(job.pk)
        assert set(job.tables.values_list("status", "requeues")) == {("queued", 1)}

        engine.work(job.pk, snapshot)
    finally:
        leader.close()
    for run in job.tables.all():
        assert (run.status, run.rows_written) == ("complete", 30)
        [entry] = run.files
        assert pq.read_table(job.folder() / entry["path"]).column("i").to_pylist() == list(
            range(1, 31)
        )
    assert not list(job.folder().rglob("*.part"))


@pytest.mark.django_db(transaction=True)
def test_a_cancel_during_a_group_cancels_the_tables_it_had_not_started(
    owner, source_db, monkeypatch
):
    for name in ("a", "b", "c", "d"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=[f"public.{n}" for n in "abcd"])
    pks = list(job.tables.order_by("pk").values_list("pk", flat=True))
    real_export = engine._export

    def cancelled_while_b_starts(run, sessions, pool):
        if run.table == "b":
            ExportJob.objects.filter(pk=run.job_id).update(cancel_requested=True)
            time.sleep(1.5)  # the group's heartbeat looks every second
        return real_export(run, sessions, pool)

    monkeypatch.setattr(engine, "_export", cancelled_while_b_starts)
    leader, snapshot = postgresql.open_snapshot(connection)
    try:
        job.begin_attempt(snapshot, "start")
        job.set_status(ExportJob.Status.RUNNING)
        pool = SessionPool(job, snapshot)
        engine._run_claimed(TableRun.claim(pks, job.pk), pool)
        pool.close()
    finally:
        leader.close()
    states = dict(job.tables.values_list("table", "status"))
    # a ended before the cancel and b while it was seen (b had no query running to stop:
    # it was between its steps); c and d were never started.
    assert states == {"a": "complete", "b": "complete", "c": "cancelled", "d": "cancelled"}
    files = {p.name for p in job.folder().rglob("*") if p.is_file()}
    assert files == {"a.parquet", "b.parquet"}
    assert job.changes.filter(table_run__table="c", status="running").exists()


@pytest.mark.django_db(transaction=True)
def test_a_group_is_beaten_until_each_table_is_recorded(owner, source_db):
    for name in ("a", "b", "c"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT 1 AS i")
    job = create_job(
        owner, source_db.connection(owner), tables=["public.a", "public.b", "public.c"]
    )
    a, b, c = job.tables.order_by("pk")
    assert TableRun.claim([a.pk, b.pk, c.pk], job.pk) == [a.pk, b.pk, c.pk]
    assert TableRun.claim([a.pk, b.pk], job.pk) == []  # each goes to one claimant
    old = timezone.now() - timedelta(hours=1)
    job.tables.update(heartbeat_at=old)
    TableRun.finish_all([TableRun.objects.get(pk=c.pk)], TableRun.Status.FAILED)
    TableRun.beat([a.pk, b.pk, c.pk])
    beaten = {r.table: r.heartbeat_at > old for r in job.tables.all()}
    assert beaten == {"a": True, "b": True, "c": False}


@pytest.mark.django_db(transaction=True)
def test_a_group_is_recorded_as_save_would_have_recorded_each_table(owner, source_db):
    """finish_all writes the group in one statement: what each table's export set, and
    nothing of what it did not read (the fields the worker deferred keep their values)."""
    for name in ("a", "b", "c"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT 1 AS i")
    job = create_job(
        owner, source_db.connection(owner), tables=["public.a", "public.b", "public.c"]
    )
    job.tables.update(validation={"kept": "as it was"}, rows_expected=7)
    runs = list(job.tables.order_by("pk").defer(*engine.WRITTEN_ANEW))
    for n, run in enumerate(runs):
        run.files = [{"path": f"public/{run.table}.parquet", "rows": n, "sha256": "é" * 3}]
        run.profile, run.columns, run.warnings = [{"name": "i", "nulls": n}], [], []
        run.rows_written, run.bytes_written = n, 100 + n
    TableRun.finish_all(runs[::2], TableRun.Status.COMPLETE)
    TableRun.finish_all(runs[1:2], TableRun.Status.FAILED)
    stored = {r.table: r for r in job.tables.all()}
    assert [stored[t].status for t in "abc"] == ["complete", "failed", "complete"]
    assert stored["a"].files == [{"path": "public/a.parquet", "rows": 0, "sha256": "ééé"}]
    assert stored["c"].files[0]["rows"] == 2 and stored["c"].bytes_written == 102
    assert stored["b"].files == [] and stored["b"].profile == []  # a failure clears them
    assert [stored[t].profile for t in "ac"] == [
        [{"name": "i", "nulls": 0}],
        [{"name": "i", "nulls": 2}],
    ]
    assert {stored[t].validation["kept"] for t in "abc"} == {"as it was"}  # deferred: kept
    assert {stored[t].rows_expected for t in "abc"} == {7}
    assert all(stored[t].finished_at is not None for t in "abc")
    assert list(job.changes.filter(table_run__isnull=False).values_list("status", flat=True)) == [
        "complete",
        "complete",
        "failed",
    ]
