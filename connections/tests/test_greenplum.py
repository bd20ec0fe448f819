"""Greenplum's differences, through the PostgreSQL driver.

No Greenplum server can run here. Its partition handling is tested on PostgreSQL's
declarative partitioning (the same idea in the catalog: leaves hidden, the root exported
once), its missing exported snapshots by revoking pg_export_snapshot() in the test
database, and its own catalog (legacy partitions, external tables) by the SQL the driver
builds for it.
"""

import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from connections.drivers import TableInfo, postgresql
from connections.drivers.postgresql import catalog as postgresql_catalog
from connections.drivers.postgresql import copy as postgresql_copy
from exports.engine.run import run_job
from exports.jobs import create_job
from exports.models import ExportJob
from tests.factories import calls_to


@pytest.fixture
def partitioned(source_db):
    source_db.execute(
        "CREATE TABLE events (id int, day date, note text) PARTITION BY RANGE (day);"
        "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');"
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        "CREATE TABLE events_rest PARTITION OF events DEFAULT;"
        "INSERT INTO events SELECT i, date '2023-01-01' + (i % 900), 'n' || i "
        "FROM generate_series(1, 30000) i;"
        "CREATE TABLE plain AS SELECT generate_series(1, 10) AS id;"
        "ANALYZE"
    )
    return source_db


def _discover(name):
    out = io.StringIO()
    call_command("adu_discover", name, "--json", "--as", "owner", stdout=out)
    return json.loads(out.getvalue())


def _ids(job, table):
    run = job.tables.get(table=table)
    assert run.status == "complete", list(job.errors.values_list("message", flat=True))
    return sorted(
        i
        for entry in run.files
        for i in pq.read_table(job.folder() / entry["path"]).column("id").to_pylist()
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["postgresql", "greenplum"])
def test_a_partitioned_table_is_discovered_once_through_its_root(owner, partitioned, kind):
    partitioned.connection(owner, name="src", kind=kind)
    rows = _discover("src")
    assert [(r["table"], r["kind"]) for r in rows] == [
        ("events", "partitioned table"),
        ("plain", "table"),
    ]
    events = rows[0]
    assert events["rows_estimate"] == 30000  # the three partitions' estimates together
    assert events["bytes"] > 0


@pytest.mark.django_db(transaction=True)
def test_an_all_tables_export_reads_each_row_of_a_partitioned_table_once(owner, partitioned):
    connection = partitioned.connection(owner)
    job = run_job(create_job(owner, connection).pk)
    assert sorted(job.tables.values_list("table", flat=True)) == ["events", "plain"]
    assert _ids(job, "events") == list(range(1, 30001))
    assert job.tables.get(table="events").rows_expected == 30000


@pytest.mark.django_db(transaction=True)
def test_several_readers_on_a_partitioned_parent_still_read_each_row_once(
    owner, partitioned, monkeypatch
):
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    merged = []
    real_merge = postgresql_copy._merge
    monkeypatch.setattr(
        postgresql_copy,
        "_merge",
        lambda read, jobs: merged.append(len(jobs)) or real_merge(read, jobs),
    )
    partitioned.execute("CREATE TABLE big AS SELECT generate_series(1, 50000) AS id")
    connection = partitioned.connection(owner)
    job = run_job(
        create_job(
            owner, connection, tables=["public.events", "public.big"], options={"readers": 3}
        ).pk
    )
    assert _ids(job, "events") == list(range(1, 30001))
    assert _ids(job, "big") == list(range(1, 50001))
    assert sorted(merged) == [1, 3]  # the parent in one read; the plain table in 3 ctid ranges


@pytest.fixture
def no_exported_snapshots(partitioned):
    """A role that may read the tables but not call pg_export_snapshot(), as on a Greenplum
    that cannot export snapshots."""
    partitioned.execute(
        "CREATE ROLE gp_reader LOGIN PASSWORD 'gp-reader-pass';"
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO gp_reader;"
        "REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC"
    )
    yield partitioned
    partitioned.execute("DROP OWNED BY gp_reader; DROP ROLE gp_reader")


@pytest.mark.django_db(transaction=True)
def test_greenplum_without_exported_snapshots_reads_each_table_in_its_own_transaction(
    owner, no_exported_snapshots, monkeypatch
):
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    described = calls_to(monkeypatch, postgresql, "describe")
    connection = no_exported_snapshots.connection(
        owner, kind="greenplum", username="gp_reader", password="gp-reader-pass"
    )
    job = run_job(create_job(owner, connection, options={"readers": 3}).pk)
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    # Each table's catalog is read in the table's own transaction, not ahead with others.
    assert [len(names) for _, names in described] == [1] * job.tables.count()
    assert _ids(job, "events") == list(range(1, 30001))
    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["consistency"] == "per table"
    assert "not read at one instant" in manifest["consistency_reason"]
    assert manifest["snapshot_id"].startswith("per-table:")


@pytest.mark.django_db(transaction=True)
def test_postgresql_jobs_say_they_read_one_snapshot_and_never_fall_back(
    owner, no_exported_snapshots
):
    good = no_exported_snapshots.connection(owner, name="good")
    job = run_job(create_job(owner, good, tables=["public.plain"]).pk)
    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["consistency"] == "snapshot"
    limited = no_exported_snapshots.connection(
        owner, name="limited", username="gp_reader", password="gp-reader-pass"
    )
    job = run_job(create_job(owner, limited, tables=["public.plain"]).pk)
    assert job.status == ExportJob.Status.FAILED
    assert job.errors.get().message.startswith("User 'gp_reader' lacks permission")


@pytest.mark.django_db
def test_external_tables_are_listed_but_exported_only_when_named(owner, source_db, monkeypatch):
    found = [
        TableInfo("public", "facts", "table", 10, 8192),
        TableInfo("public", "ext_feed", "external table", None, None),
    ]
    monkeypatch.setattr(postgresql, "tables", lambda connection, schema=None, sizes=True: found)
    connection = source_db.connection(owner, kind="greenplum")
    job = create_job(owner, connection)
    assert list(job.tables.values_list("table", flat=True)) == ["facts"]
    job = create_job(owner, connection, tables=["public.ext_feed"])
    assert list(job.tables.values_list("table", flat=True)) == ["ext_feed"]


def test_greenplum_catalogs_get_their_own_discovery_sql():
    greenplum6 = postgresql_catalog.tables_sql(
        {"relispartition": False, "relstorage": True, "partition_rule": True, "exttable": True}
    )
    assert "relispartition" not in greenplum6
    assert "pg_partition_rule pr WHERE pr.parchildrelid = c.oid" in greenplum6
    assert "c.relstorage = 'x'" in greenplum6
    assert "pg_exttable x WHERE x.reloid = c.oid" in greenplum6
    assert "pg_partition pp WHERE pp.parrelid = c.oid" in greenplum6
    greenplum7 = postgresql_catalog.tables_sql(
        {"relispartition": True, "relstorage": False, "partition_rule": False, "exttable": True}
    )
    assert "c.relispartition" in greenplum7 and "relstorage" not in greenplum7
    plain = postgresql_catalog.tables_sql(
        {"relispartition": True, "relstorage": False, "partition_rule": False, "exttable": False}
    )
    assert "pg_exttable" not in plain and "pg_partition" not in plain


def test_system_schemas_of_greenplum_are_hidden():
    for name in ("gp_toolkit", "pg_catalog", "pg_aoseg", "information_schema"):
        assert postgresql.is_system_schema(name)
    assert not postgresql.is_system_schema("gpx")
