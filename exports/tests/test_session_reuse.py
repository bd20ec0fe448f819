"""A worker joins the job's snapshot once and exports table after table on those sessions
(issue 20: a new connection per table was most of a small table's cost); a session that
failed, or was cancelled, is closed, never handed to the next table."""

import pytest

from connections.drivers import postgresql
from exports.engine.run import SessionPool, run_job, run_table
from exports.jobs import create_job


@pytest.fixture
def joins(monkeypatch):
    """The sessions joined to a snapshot, counted around the real driver function."""
    joined = []
    real = postgresql.join_snapshot

    def counted(*args, **kwargs):
        joined.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(postgresql, "join_snapshot", counted)
    return joined


@pytest.mark.django_db(transaction=True)
def test_twelve_tables_are_read_on_the_two_sessions_of_one_worker(owner, source_db, joins):
    names = [f"t{n:02}" for n in range(12)]
    for name in names:
        source_db.execute(f"CREATE TABLE {name} AS SELECT generate_series(1, 50) AS i")
    connection = source_db.connection(owner)
    job = create_job(
        owner, connection, tables=[f"public.{n}" for n in names], options={"parallel": 1}
    )
    job = run_job(job.pk)
    assert job.status == "complete"
    assert [r.rows_written for r in job.tables.order_by("table")] == [50] * 12
    # One session for the catalog and the count, one for the rows: for every table.
    assert len(joins) == 2 and set(joins) == {job.snapshot_id}


@pytest.mark.django_db(transaction=True)
def test_a_failed_tables_sessions_are_closed_and_the_next_table_still_sees_the_snapshot(
    owner, source_db, joins
):
    for name in ("a", "b", "c"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT generate_series(1, 100) AS i")
    connection = source_db.connection(owner)
    job = create_job(
        owner, connection, tables=["public.a", "public.b", "public.c"], options={"lock_timeout": 1}
    )
    a, b, c = job.tables.order_by("table")
    leader, snapshot = postgresql.open_snapshot(connection)
    pool = SessionPool(job, snapshot)
    holder = source_db.server.connect(source_db.name)
    holder.autocommit = False
    try:
        assert run_table(a.pk, snapshot, pool)
        assert len(joins) == 2
        # Rows that arrive after the snapshot, and a lock that makes b's reads fail.
        source_db.execute("INSERT INTO c SELECT generate_series(101, 150)")
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        assert run_table(b.pk, snapshot, pool)
        assert len(joins) == 2  # b was given a's two sessions, and its read failed...
        holder.rollback()
        assert run_table(c.pk, snapshot, pool)
        # ...and both were closed: c joined the snapshot twice more, and still saw it.
        assert len(joins) == 4
    finally:
        pool.close()
        leader.close()
        holder.close()
    runs = {run.table: run for run in job.tables.all()}
    assert runs["a"].status == "complete" and runs["a"].rows_written == 100
    assert runs["b"].status == "failed"
    assert "lock" in job.errors.get().message
    assert runs["c"].status == "complete" and runs["c"].rows_written == 100
