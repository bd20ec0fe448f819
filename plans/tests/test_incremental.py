"""Exact incremental exports by xmin, on the real test server: a chain of a plan's exports
over a table that receives inserts and updates from concurrent transactions, one of them
committing after a snapshot was taken, some in subtransactions. Applied in order by key,
the chain's rows equal the table's final content, and no row version is taken twice."""

import json
import random
import threading
import time

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from exports.engine.run import run_job
from exports.models import ExportJob
from plans import runs
from plans.models import ExportPlan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.jobs]


def in_process(job):
    run_job(job.pk)


@pytest.fixture
def plan(source_db, owner):
    source_db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, version int NOT NULL, note text);"
        "INSERT INTO t SELECT i, 0, 'n' || i FROM generate_series(1, 200) i;"
        "CREATE TABLE whole (id int);"
        "INSERT INTO whole SELECT generate_series(1, 10);"
    )
    return ExportPlan.create(
        name="nightly",
        owner=owner,
        connection=source_db.connection(owner),
        definition={"tables": ["public.t", "public.whole"]},
        incremental=["public.t"],
        cron="0 2 * * *",
        timezone="Europe/Paris",
    )


def session(source_db):
    db = source_db.server.connect(source_db.name)
    return db, db.cursor()


def rows_of(job: ExportJob, table="t") -> list[tuple]:
    files = [job.folder() / f["path"] for f in manifest_table(job, table)["files"]]
    found = [r for path in files for r in pq.read_table(path).to_pylist()]
    return [(r["id"], r["version"], r["note"]) for r in found]


def manifest_table(job: ExportJob, table="t") -> dict:
    manifest = json.loads((job.folder() / "manifest.json").read_text())
    return next(t for t in manifest["tables"] if t["table"] == table)


def export(plan) -> ExportJob:
    run = runs.run_plan(plan, start=in_process)
    assert run.outcome == "started", run.note
    job = ExportJob.objects.get(pk=run.job_id)
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    return job


def test_a_chain_of_incremental_exports_holds_each_row_version_once(plan, source_db):
    late, late_cur = session(source_db)
    late.autocommit = False
    # A transaction that writes before the base export's snapshot and commits after it.
    late_cur.execute(
        "INSERT INTO t VALUES (1001, 0, 'late'); UPDATE t SET version = 1 WHERE id = 5"
    )
    early, early_cur = session(source_db)
    early.autocommit = True
    # Committed after the late one began: visible to the base, written above its xmin.
    early_cur.execute(
        "INSERT INTO t VALUES (1002, 0, 'early'); UPDATE t SET version = 1 WHERE id = 6"
    )

    chain = [export(plan)]
    base = manifest_table(chain[0])["incremental"]
    assert base["mode"] == "base" and "first export" in base["reason"]
    assert manifest_table(chain[0], "whole")["incremental"] is None  # exported whole
    assert {1001, 1002} & {r[0] for r in rows_of(chain[0])} == set()
    late.commit()

    # A writer beside the exports: small transactions, some with savepoints, some rolled back.
    stop = threading.Event()
    last_xid = []

    def write():
        db, cur = session(source_db)
        random.seed(7)
        n = 0
        while not stop.is_set():
            n += 1
            cur.execute("BEGIN")
            cur.execute(
                "UPDATE t SET version = version + 1 WHERE id = %s", [random.randint(1, 200)]
            )
            cur.execute("SAVEPOINT s")
            cur.execute("INSERT INTO t VALUES (%s, 0, 'w')", [5000 + n])
            cur.execute("RELEASE SAVEPOINT s" if n % 3 else "ROLLBACK TO SAVEPOINT s")
            cur.execute("SELECT txid_current()")
            xid = cur.fetchone()[0]
            cur.execute("COMMIT" if n % 5 else "ROLLBACK")
            if n % 5:
                last_xid.append(xid)
            time.sleep(0.002)
        db.close()

    writer = threading.Thread(target=write)
    writer.start()
    held, held_cur = session(source_db)
    held.autocommit = False
    held_cur.execute("UPDATE t SET note = 'held' WHERE id = 9")
    try:
        chain.append(export(plan))
        chain.append(export(plan))
    finally:
        stop.set()
        writer.join()
        held.commit()
    # Until a snapshot's window passes every write, the newest rows wait for the next one.
    for _ in range(20):
        chain.append(export(plan))
        if manifest_table(chain[-1])["incremental"]["before"] > max(last_xid):
            break
        time.sleep(0.5)
    else:
        pytest.fail("no snapshot passed the last write (a transaction held elsewhere?)")

    windows = [manifest_table(job)["incremental"] for job in chain]
    assert [w["mode"] for w in windows] == ["base"] + ["incremental"] * (len(chain) - 1)
    for before, after in zip(windows, windows[1:], strict=False):
        assert after["after"] == before["before"]  # no gap, no overlap

    applied: dict[int, tuple] = {}
    seen: set[tuple] = set()
    for job in chain:
        rows = rows_of(job)
        assert len({r[0] for r in rows}) == len(rows), "a key twice in one export"
        for row in rows:
            assert row not in seen, f"row version {row} taken twice"
            seen.add(row)
            applied[row[0]] = row
    db, cur = session(source_db)
    cur.execute("SELECT id, version, note FROM t")
    final = {r[0]: r for r in cur.fetchall()}
    db.close()
    assert applied == final
    assert applied[1001] == (1001, 0, "late") and applied[5] == (5, 1, "n5")
    assert applied[9][2] == "held"
    assert {1001, 1002} <= {r[0] for r in rows_of(chain[1])}  # the late commit: next export
    assert len(last_xid) > 20 and sum(r[2] == "w" for r in seen) > 10  # the writer's rows
    print(
        f"chain of {len(chain)}: rows {[len(rows_of(job)) for job in chain]}, writes {len(last_xid)}"
    )
    assert len(chain[1].folder().name) and chain[1].predecessor_id == chain[0].pk

    folders = [str(job.folder()) for job in chain]
    with pytest.raises(SystemExit) as ended:
        call_command("adu_verify", "--chain", *folders)
    assert ended.value.code == 0
    with pytest.raises(SystemExit) as ended:
        call_command("adu_verify", "--chain", folders[0], *folders[2:])
    assert ended.value.code == 1


def test_wraparound_or_a_restored_source_exports_the_table_whole_with_the_reason():
    from connections.drivers.postgresql import incremental

    gone_far = incremental.window("5000000000:5000000010:", 5000000000 - (1 << 31) - 1)
    assert gone_far["mode"] == "base" and "2^31" in gone_far["reason"]
    from_the_future = incremental.window("100:110:", 500)
    assert (
        from_the_future["mode"] == "base" and "not the database it was" in from_the_future["reason"]
    )
    normal = incremental.window("100:110:104,105", 90)
    assert normal == {"mode": "incremental", "after": 90, "before": 100, "xmax": 110, "reason": ""}


def test_the_xmin_arithmetic_places_rows_across_an_epoch(source_db):
    """The 32-bit xmin of a row written just before an epoch's end, read from a snapshot
    just after it, is placed in the right window (the condition, run by the server)."""
    from psycopg2 import sql

    from connections.drivers.postgresql.selection import xid_condition

    wrap = 1 << 32
    xmax = 3 * wrap + 50  # epoch 3; rows written at epoch 2's end have xmin near 2^32
    window = {"mode": "incremental", "after": 3 * wrap - 100, "before": 3 * wrap + 40, "xmax": xmax}
    db, cur = session(source_db)
    cases = {
        wrap - 150: False,
        wrap - 100: True,
        wrap - 1: True,
        3: True,
        39: True,
        40: False,
        2: False,
    }
    for xmin, inside in cases.items():
        condition = xid_condition(window).as_string(db).replace("xmin::text::bigint", str(xmin))
        cur.execute(sql.SQL("SELECT " + condition))
        assert cur.fetchone()[0] is inside, xmin
    db.close()


@pytest.mark.parametrize(
    "kind, lag, late_mark, second_takes",
    [
        ("bigint", "5", "48", set(range(46, 56)) | {61}),
        ("timestamptz", "10 minutes", "now() - interval '1 day'", {50, 61}),
    ],
)
def test_a_watermark_chain_takes_what_fell_behind_its_lag_once(
    source_db, owner, kind, lag, late_mark, second_takes
):
    """By a column that only grows, less a lag: rows within the lag of the highest value
    wait for the next export, and so does a row committed late with a value inside the
    lag: taken once, by the next export."""
    default = "nextval('seq')" if kind == "bigint" else "now()"
    source_db.execute(
        "CREATE SEQUENCE seq;"
        f"CREATE TABLE m (id int PRIMARY KEY, mark {kind} NOT NULL DEFAULT {default}, note text);"
        "INSERT INTO m (id, note) SELECT i, 'base' FROM generate_series(1, 50) i;"
    )
    if kind == "timestamptz":
        source_db.execute("UPDATE m SET mark = now() - interval '1 day' * (51 - id)")
    plan = ExportPlan.create(
        name=f"by-{kind}", owner=owner, connection=source_db.connection(owner),
        definition={"tables": ["public.m"]}, every_minutes=60,
        watermarks={"public.m": {"column": "mark", "lag": lag}},
    )  # fmt: skip
    base = export(plan)
    window = manifest_table(base, "m")["incremental"]
    assert window["by"] == "watermark" and window["mode"] == "base" and window["column"] == "mark"
    assert {r[0] for r in rows_of_m(base)} == set(range(1, 50 if kind != "bigint" else 46))
    source_db.execute("INSERT INTO m (id, note) SELECT i, 'new' FROM generate_series(51, 60) i")
    source_db.execute(f"INSERT INTO m VALUES (61, {late_mark}, 'late')")
    second = export(plan)
    after = manifest_table(second, "m")["incremental"]
    assert after["mode"] == "incremental" and after["after"] == window["before"]
    assert {r[0] for r in rows_of_m(second)} == second_takes
    third = export(plan)  # nothing new fell behind the lag, or the rest did: never twice
    both = [r[0] for job in (base, second, third) for r in rows_of_m(job)]
    assert len(both) == len(set(both))


def rows_of_m(job: ExportJob) -> list[tuple]:
    files = [job.folder() / f["path"] for f in manifest_table(job, "m")["files"]]
    return [(r["id"], r["note"]) for path in files for r in pq.read_table(path).to_pylist()]


def test_a_watermark_that_cannot_work_fails_its_table_with_a_sentence(source_db, owner):
    source_db.execute("CREATE TABLE w (id int, note text); INSERT INTO w VALUES (1, 'a');")
    for mark, says in [
        ({"column": "note", "lag": "0"}, "is not a number, a date or a timestamp"),
        ({"column": "gone", "lag": "0"}, "is not a column of this table"),
        ({"column": "id", "lag": "5 minutes"}, "does not fit column id"),
    ]:
        ExportPlan.objects.all().delete()
        plan = ExportPlan.create(
            name="w", owner=owner, connection=source_db.connection(owner, name=f"c-{mark['column']}"),
            definition={"tables": ["public.w"]}, every_minutes=60, watermarks={"public.w": mark},
        )  # fmt: skip
        run = runs.run_plan(plan, start=in_process)
        job = ExportJob.objects.get(pk=run.job_id)
        assert job.status == "failed"
        assert says in job.errors.get().message


def test_a_view_goes_whole_under_star_and_fails_with_a_sentence_when_named(source_db, owner):
    source_db.execute(
        "CREATE TABLE base (id int); INSERT INTO base VALUES (1), (2);"
        "CREATE VIEW seen AS SELECT id FROM base;"
        "CREATE TABLE parted (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);"
        "INSERT INTO parted VALUES (5), (6);"
    )
    connection = source_db.connection(owner)
    star = ExportPlan.create(
        name="star", owner=owner, connection=connection, every_minutes=60,
        definition={"tables": ["public.base", "public.seen", "public.parted"]}, incremental=["*"],
    )  # fmt: skip
    job = export(star)
    assert manifest_table(job, "seen")["incremental"] is None and len(rows_of_view(job)) == 2
    assert manifest_table(job, "parted")["incremental"]["mode"] == "base"
    source_db.execute("INSERT INTO parted VALUES (7)")
    again = export(star)
    assert [r["id"] for r in read_rows(again, "parted")] == [7]
    named = ExportPlan.create(
        name="named", owner=owner, connection=connection, every_minutes=60,
        definition={"tables": ["public.seen"]}, incremental=["public.seen"],
    )  # fmt: skip
    run = runs.run_plan(named, start=in_process)
    failed = ExportJob.objects.get(pk=run.job_id)
    assert failed.status == "failed"
    assert "public.seen is a view: its rows carry no transaction" in failed.errors.get().message


def read_rows(job: ExportJob, table: str) -> list[dict]:
    files = [job.folder() / f["path"] for f in manifest_table(job, table)["files"]]
    return [r for path in files for r in pq.read_table(path).to_pylist()]


def rows_of_view(job: ExportJob) -> list[dict]:
    return read_rows(job, "seen")
