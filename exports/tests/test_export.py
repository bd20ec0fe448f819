"""adu_export --sync end to end: files, manifest, options, one snapshot, the row-count proof."""

import hashlib
import io
import json
import os

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from connections.drivers import postgresql
from connections.drivers.postgresql import copy as postgresql_copy
from connections.models import SavedQuery
from exports.engine.run import run_job, run_table
from exports.jobs import create_job
from exports.models import ExportJob, TableRun
from tests.factories import calls_to


@pytest.fixture
def shop(source_db):
    source_db.execute("CREATE SCHEMA sales")
    source_db.execute(
        "CREATE TABLE sales.orders AS SELECT i AS id, 'order ' || i AS label, "
        "(i * 1.25)::numeric(12,2) AS amount FROM generate_series(1, 20000) i"
    )
    source_db.execute("CREATE TABLE sales.empty (id int, note text)")
    source_db.execute('CREATE TABLE public."Odd/Name ../x" (id int)')
    source_db.execute('INSERT INTO public."Odd/Name ../x" VALUES (1)')
    return source_db


def export_command(*args):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_export", *args, "--sync", "--as", "owner", stdout=out)
    return exit_info.value.code, out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_it_exports_every_table_with_a_manifest(owner, shop, export_root):
    connection = shop.connection(owner, name="shop")
    code, output = export_command("shop", "--json", "--out", "first")
    result = json.loads(output)
    assert code == 0, result["tables"]
    assert set(result) >= {"job_id", "status", "output_dir", "manifest", "tables"}
    assert result["status"] == "complete"
    assert result["output_dir"] == str(export_root / "first")
    tables = {(t["schema"], t["table"]): t for t in result["tables"]}
    assert set(tables) == {("public", "Odd/Name ../x"), ("sales", "empty"), ("sales", "orders")}
    assert tables[("sales", "orders")]["rows"] == 20000

    manifest = json.loads((export_root / "first" / "manifest.json").read_text())
    assert manifest["job_id"] == result["job_id"]
    assert manifest["source"] == {
        "kind": "postgresql", "host": connection.host, "port": connection.port,
        "database": shop.name,
    }  # fmt: skip
    assert "password" not in json.dumps(manifest) and "username" not in manifest["source"]
    assert manifest["snapshot_id"]
    for table in manifest["tables"]:
        assert table["source_rows"] == table["rows_written"]
        for entry in table["files"]:
            path = export_root / "first" / entry["path"]
            assert path.resolve().is_relative_to(export_root / "first")
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert len(data) == entry["bytes"]
            assert pq.read_metadata(path).num_rows == entry["rows"]
    odd = next(t for t in manifest["tables"] if t["table"] == "Odd/Name ../x")
    assert odd["files"][0]["path"] == "public/Odd%2FName%20..%2Fx.parquet"
    empty = pq.read_table(export_root / "first" / "sales" / "empty.parquet")
    assert empty.num_rows == 0 and empty.schema.names == ["id", "note"]
    assert not [p for p in (export_root / "first").rglob("*.part")]


@pytest.mark.django_db(transaction=True)
def test_it_prints_a_summary_for_people(owner, shop):
    shop.connection(owner, name="shop")
    code, output = export_command("shop", "--schema", "sales", "--exclude", "sales.empty")
    assert code == 0
    assert "sales.orders: complete, 20,000 rows" in output
    assert "sales.empty" not in output
    assert "complete: 1 of 1 table(s), 20,000 rows" in output


@pytest.mark.django_db(transaction=True)
def test_it_splits_files_by_size(owner, source_db, export_root):
    source_db.execute(
        "CREATE TABLE noise AS SELECT i, md5(i::text) || md5((-i)::text) AS hex "
        "FROM generate_series(1, 400000) i"
    )
    connection = source_db.connection(owner)
    job = create_job(
        owner, connection, tables=["public.noise"], options={"max_file_mb": 1, "batch_rows": 50000}
    )
    job = run_job(job.pk)
    run = job.tables.get()
    assert run.status == "complete"
    assert len(run.files) > 1
    assert [f["path"] for f in run.files][:2] == [
        "public/noise/part-00000.parquet",
        "public/noise/part-00001.parquet",
    ]
    assert sum(f["rows"] for f in run.files) == 400000
    total = sum(pq.read_metadata(job.folder() / f["path"]).num_rows for f in run.files)
    assert total == 400000


@pytest.mark.django_db(transaction=True)
def test_several_readers_split_one_table_and_lose_nothing(owner, source_db, monkeypatch):
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    source_db.execute("CREATE TABLE t AS SELECT i FROM generate_series(1, 100000) i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=["public.t"], options={"readers": 3})
    job = run_job(job.pk)
    [entry] = job.tables.get().files
    values = pq.read_table(job.folder() / entry["path"]).column("i").to_pylist()
    assert sorted(values) == list(range(1, 100001))


@pytest.mark.django_db(transaction=True)
def test_all_tables_read_one_snapshot(owner, source_db):
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 100) AS i")
    source_db.execute("CREATE TABLE b AS SELECT generate_series(1, 100) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=["public.a", "public.b"])
    leader, snapshot = postgresql.open_snapshot(connection)
    try:
        first, second = job.tables.order_by("table")
        run_table(first.pk, snapshot)
        # Rows arriving mid-job must not show up in the second table.
        source_db.execute("INSERT INTO b SELECT generate_series(101, 150)")
        source_db.execute("DELETE FROM a")
        run_table(second.pk, snapshot)
    finally:
        leader.close()
    assert [r.rows_written for r in job.tables.order_by("table")] == [100, 100]


@pytest.mark.django_db(transaction=True)
def test_a_table_is_exported_once_even_if_two_workers_try(owner, source_db):
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=["public.a"])
    run = job.tables.get()
    leader, snapshot = postgresql.open_snapshot(connection)
    try:
        assert run_table(run.pk, snapshot) is True
        assert run_table(run.pk, snapshot) is False
    finally:
        leader.close()


@pytest.mark.django_db(transaction=True)
def test_a_row_count_mismatch_fails_the_table_and_keeps_no_file(owner, source_db, monkeypatch):
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    # A driver whose reads do not say what they sent proves a table by a count(*).
    monkeypatch.setattr(postgresql, "REPORTS_ROWS_SENT", False)
    real_count = postgresql.count_rows
    monkeypatch.setattr(postgresql, "count_rows", lambda *args: real_count(*args) + 1)
    job = run_job(create_job(owner, connection, tables=["public.a"]).pk)
    assert job.status == ExportJob.Status.FAILED
    assert job.errors.get().message == "Wrote 10 rows but the table holds 11 in the snapshot."
    assert job.tables.get().rows_proof == "count"
    assert not os.path.exists(job.folder() / "public" / "a.parquet")


def _no_count(*args, **kwargs):
    raise AssertionError("a table read by COPY needs no count(*)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["int", "jsonb"])  # binary COPY, and CSV
def test_one_copy_proves_the_rows_it_reports_sending(owner, source_db, monkeypatch, kind):
    source_db.execute(
        f"CREATE TABLE a AS SELECT i, to_jsonb(i)::{kind} AS v FROM generate_series(1, 10) i"
    )
    connection = source_db.connection(owner)
    monkeypatch.setattr(postgresql, "count_rows", _no_count)
    job = run_job(create_job(owner, connection, tables=["public.a"]).pk)
    assert job.status == ExportJob.Status.COMPLETE
    run = job.tables.get()
    assert (run.rows_expected, run.rows_written, run.rows_proof) == (10, 10, "sent")
    [entry] = json.loads(job.manifest_path().read_text())["tables"]
    assert (entry["source_rows"], entry["source_rows_proof"]) == (10, "sent")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["int", "jsonb"])
def test_a_row_lost_after_the_copy_sent_it_fails_the_table(owner, source_db, monkeypatch, kind):
    source_db.execute(
        f"CREATE TABLE a AS SELECT i, to_jsonb(i)::{kind} AS v FROM generate_series(1, 10) i"
    )
    connection = source_db.connection(owner)
    real_read = postgresql.read_batches

    def lose_the_first_row(*args, **kwargs):
        batches = real_read(*args, **kwargs)
        yield next(batches).slice(1)
        yield from batches

    monkeypatch.setattr(postgresql, "read_batches", lose_the_first_row)
    monkeypatch.setattr(postgresql, "count_rows", _no_count)
    job = run_job(create_job(owner, connection, tables=["public.a"]).pk)
    assert job.status == ExportJob.Status.FAILED
    assert job.errors.get().message == "Wrote 9 rows but the table holds 10 in the snapshot."
    assert not [p for p in job.folder().rglob("*") if p.suffix in (".parquet", ".part")]


@pytest.mark.django_db(transaction=True)
def test_the_copy_proves_a_filtered_table_and_a_query(owner, source_db, monkeypatch):
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    monkeypatch.setattr(postgresql, "count_rows", _no_count)
    query = SavedQuery.objects.create(
        connection=connection, name="big", sql="SELECT i FROM a WHERE i > 5"
    )
    job = create_job(
        owner,
        connection,
        tables=["public.a"],
        selections={("public", "a"): {"filter": "i > 3"}},
        queries=[query],
    )
    job = run_job(job.pk)
    proofs = {r.table: (r.rows_expected, r.rows_written, r.rows_proof) for r in job.tables.all()}
    assert proofs == {"a": (7, 7, "sent"), "big": (5, 5, "sent")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("readers", [2, 3, 5])
def test_a_table_split_between_readers_is_proven_by_what_its_ranges_sent(
    owner, source_db, monkeypatch, readers
):
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    # The statistics see 1,000 rows; 20,000 more arrive after them, in pages past the
    # estimate, which the last range (it has no end) reads.
    source_db.execute("CREATE TABLE t AS SELECT i FROM generate_series(1, 1000) i")
    source_db.execute("ANALYZE t")
    source_db.execute("INSERT INTO t SELECT generate_series(1001, 21000)")
    connection = source_db.connection(owner)
    monkeypatch.setattr(postgresql, "count_rows", _no_count)
    statements = []
    real_merge = postgresql_copy._merge
    monkeypatch.setattr(
        postgresql_copy,
        "_merge",
        lambda read, jobs: statements.extend(s for _, s in jobs) or real_merge(read, jobs),
    )
    job = run_job(
        create_job(owner, connection, tables=["public.t"], options={"readers": readers}).pk
    )
    run = job.tables.get()
    assert (run.rows_expected, run.rows_written, run.rows_proof) == (21000, 21000, "sent")
    assert len(statements) == readers
    [entry] = run.files
    values = pq.read_table(job.folder() / entry["path"]).column("i").to_pylist()
    assert sorted(values) == list(range(1, 21001))


@pytest.mark.django_db(transaction=True)
def test_a_row_lost_from_one_range_fails_the_split_table(owner, source_db, monkeypatch):
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    source_db.execute("CREATE TABLE t AS SELECT i FROM generate_series(1, 20000) i")
    source_db.execute("ANALYZE t")
    connection = source_db.connection(owner)
    monkeypatch.setattr(postgresql, "count_rows", _no_count)
    real_merge = postgresql_copy._merge
    lost = []

    def lose_a_row_of_the_last_range(read, jobs):
        def read_one(session, statement):
            for batch in read(session, statement):
                if statement is jobs[-1][1] and not lost:
                    lost.append(batch.num_rows)
                    batch = batch.slice(1)
                yield batch

        return real_merge(read_one, jobs)

    monkeypatch.setattr(postgresql_copy, "_merge", lose_a_row_of_the_last_range)
    job = run_job(create_job(owner, connection, tables=["public.t"], options={"readers": 3}).pk)
    assert lost
    assert job.errors.get().message == "Wrote 19999 rows but the table holds 20000 in the snapshot."
    assert not [p for p in job.folder().rglob("*") if p.suffix in (".parquet", ".part")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("readers", [2, 3, 7])
@pytest.mark.parametrize("pages", ["the table's", "too few"])
def test_each_row_is_in_exactly_one_ctid_range(source_db, monkeypatch, readers, pages):
    """The ranges are a partition of the table, even where its page count is stale."""
    from psycopg2 import sql

    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    source_db.execute("CREATE TABLE t AS SELECT i FROM generate_series(1, 21000) i")
    [(relpages,)] = source_db.execute("SELECT pg_relation_size('t') / 8192")
    ranges = postgresql_copy.ctid_ranges(readers, relpages if pages == "the table's" else 9)
    assert len(ranges) == readers
    in_ranges = sql.SQL(" + ").join(
        sql.SQL("(CASE WHEN {} THEN 1 ELSE 0 END)").format(sql.SQL(" AND ").join(conditions))
        for conditions in ranges
    )
    [(outside_one,)] = source_db.execute(
        sql.SQL("SELECT count(*) FROM t WHERE {} <> 1").format(in_ranges)
    )
    assert outside_one == 0
    assert postgresql_copy.ctid_ranges(1, relpages) == []


@pytest.mark.django_db(transaction=True)
def test_a_cancel_request_stops_tables_and_removes_partial_files(owner, source_db, monkeypatch):
    from exports.engine import run as engine

    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 300000) AS i")
    connection = source_db.connection(owner)
    job = create_job(owner, connection, tables=["public.a"], options={"batch_rows": 1000})
    monkeypatch.setattr(engine, "PROGRESS_SECONDS", 0)
    real_progress = TableRun.report_progress

    def cancel_on_first_progress(self, rows, bytes_written):
        ExportJob.objects.filter(pk=self.job_id).update(cancel_requested=True)
        real_progress(self, rows, bytes_written)

    monkeypatch.setattr(TableRun, "report_progress", cancel_on_first_progress)
    job = run_job(job.pk)
    assert job.status == ExportJob.Status.CANCELLED
    assert job.tables.get().status == TableRun.Status.CANCELLED
    assert not [p for p in job.folder().rglob("*") if p.suffix in (".parquet", ".part")]


def test_schema_and_table_names_become_safe_file_names():
    from exports.engine.run import safe_name

    assert safe_name("orders") == "orders"
    assert safe_name("../etc") == "%2E.%2Fetc"
    assert safe_name("a/b c") == "a%2Fb%20c"
    assert safe_name("été") == "%C3%A9t%C3%A9"
    assert safe_name("") == "%00"


@pytest.mark.django_db(transaction=True)
def test_rows_longer_than_a_read_block_are_read_whole(owner, source_db):
    # 5 MB of bytea is 10 MB of hex text: far more than one CSV block.
    source_db.execute("CREATE TABLE blobs (id int, data bytea)")
    source_db.execute(
        "INSERT INTO blobs SELECT i, decode(repeat(md5(i::text), 5 * 1024 * 1024 / 16), 'hex') "
        "FROM generate_series(1, 2) i"
    )
    connection = source_db.connection(owner)
    job = run_job(create_job(owner, connection, tables=["public.blobs"]).pk)
    [entry] = job.tables.get().files
    data = pq.read_table(job.folder() / entry["path"]).to_pylist()
    [[expected]] = source_db.execute("SELECT md5(string_agg(data, '' ORDER BY id)) FROM blobs")
    assert (
        hashlib.md5(b"".join(r["data"] for r in sorted(data, key=lambda r: r["id"]))).hexdigest()
        == expected
    )


@pytest.mark.django_db(transaction=True)
def test_the_catalog_of_many_tables_is_read_in_one_go_and_a_missing_one_fails_alone(
    owner, source_db, monkeypatch
):
    for n in range(5):
        source_db.execute(
            f"CREATE TABLE t{n} (id int PRIMARY KEY, v numeric(6,2) CHECK (v > 0));"
            f"INSERT INTO t{n} SELECT i, i FROM generate_series(1, {n + 1}) i; ANALYZE t{n}"
        )
    connection = source_db.connection(owner)
    # A name that is SQL in quotes: the catalog is asked with names as values, never text.
    hostile = "t'); DROP TABLE t0; --\n\"x"
    source_db.execute(f'CREATE TABLE "{hostile.replace(chr(34), chr(34) * 2)}" (id int)')
    tables = [f"public.t{n}" for n in range(5)]
    job = create_job(owner, connection, tables=tables, options={"parallel": 1})
    job.tables.create(schema="public", table=hostile)
    source_db.execute("DROP TABLE t3")  # after the job was created
    described = calls_to(monkeypatch, postgresql, "describe")
    job = run_job(job.pk)
    assert [names for _, names in described] == [
        [("public", f"t{n}") for n in range(5)] + [("public", hostile)]
    ]
    runs = {r.table: r for r in job.tables.all()}
    assert {t: r.status for t, r in runs.items()} == {
        "t0": "complete", "t1": "complete", "t2": "complete", "t3": "failed", "t4": "complete",
        hostile: "complete",
    }  # fmt: skip
    assert job.errors.get().message == "Table public.t3 does not exist or has no columns."
    assert [runs[f"t{n}"].rows_written for n in (0, 1, 2, 4)] == [1, 2, 3, 5]
    # What each table's description carried: its own key and check, and its columns.
    checks = {c["origin"] for c in runs["t4"].validation["checks"]}
    assert {"source: PRIMARY KEY t4_pkey", "source: CHECK t4_v_check"} <= checks
    assert [c["source_type"] for c in runs["t4"].columns] == ["integer", "numeric(6,2)"]


@pytest.mark.django_db(transaction=True)
def test_a_copy_whose_server_does_not_say_what_it_sent_is_counted_after_all(
    owner, source_db, monkeypatch
):
    """A server or a pooler that leaves "COPY n" out: the count proves the table."""
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 10) AS i")
    connection = source_db.connection(owner)
    real_read = postgresql.read_batches

    def says_nothing(*args, sent, **kwargs):
        yield from real_read(*args, sent=sent, **kwargs)
        sent[:] = [None] * len(sent)  # what the driver appends for a COPY without its n

    monkeypatch.setattr(postgresql, "read_batches", says_nothing)
    real_count = postgresql.count_rows
    monkeypatch.setattr(postgresql, "count_rows", lambda *args, **kw: real_count(*args, **kw) + 1)
    job = run_job(create_job(owner, connection, tables=["public.a"]).pk)
    assert job.errors.get().message == "Wrote 10 rows but the table holds 11 in the snapshot."
    assert job.tables.get().rows_proof == "count"


@pytest.mark.django_db(transaction=True)
def test_describe_tells_each_table_its_own_statistics_sizes_and_keys(owner, source_db):
    source_db.execute(
        "CREATE TABLE a (id int PRIMARY KEY, kind text);"
        "INSERT INTO a SELECT i, 'k' || (i % 3) FROM generate_series(1, 300) i;"
        "CREATE TABLE b (id int UNIQUE); INSERT INTO b SELECT generate_series(1, 7);"
        "CREATE VIEW v AS SELECT id FROM a; ANALYZE a; ANALYZE b"
    )
    db = postgresql.connect(source_db.connection(owner))
    try:
        found = postgresql.describe(db, [("public", "a"), ("public", "v"), ("public", "b")])
    finally:
        db.close()
    a, v, b = found[("public", "a")], found[("public", "v")], found[("public", "b")]
    assert (a.distinct, a.rows_estimate, a.pages) == ({"id": 300, "kind": 3}, 300, 2)
    assert [c["kind"] for c in a.constraints] == ["primary key"]
    assert (b.distinct, b.rows_estimate, [c["columns"] for c in b.constraints]) == (
        {"id": 7}, 7, [["id"]]
    )  # fmt: skip
    assert (v.pages, v.distinct, [c.name for c in v.columns]) == (None, {}, ["id"])


@pytest.mark.django_db(transaction=True)
def test_a_job_lists_its_tables_without_asking_their_sizes(owner, source_db, monkeypatch):
    """Sizes are for the connection's pages; a job needs the names (and asking every
    table's files for their size cost 80-190 ms for 2,000 tables)."""
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 100) AS i")
    source_db.execute("CREATE VIEW v AS SELECT i FROM a")
    connection = source_db.connection(owner)
    with_sizes = postgresql.tables(connection, "public")
    without = postgresql.tables(connection, "public", sizes=False)
    assert [(t.name, t.kind, t.bytes is not None) for t in with_sizes] == [
        ("a", "table", True),
        ("v", "view", False),
    ]
    assert [(t.name, t.kind, t.rows_estimate, t.bytes) for t in without] == [
        (t.name, t.kind, t.rows_estimate, None) for t in with_sizes
    ]
    listed = []
    real_tables = postgresql.tables
    monkeypatch.setattr(
        postgresql,
        "tables",
        lambda *args, **kwargs: listed.append(kwargs) or real_tables(*args, **kwargs),
    )
    job = create_job(owner, connection, schemas=["public"])
    assert listed == [{"sizes": False}]
    assert sorted(job.tables.values_list("table", flat=True)) == ["a", "v"]
