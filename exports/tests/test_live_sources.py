"""The live suite: the PostgreSQL suite's assertions against a real Vertica or Greenplum.

Runs when ADU_TEST_VERTICA_DSN (vertica://USER:PASSWORD@HOST:5433/DATABASE, a user that
may create a schema) or ADU_TEST_GREENPLUM_DSN (a PostgreSQL DSN of a Greenplum
superuser) is set, and is skipped with that reason otherwise. The README says how to
start a Vertica CE container for it.
"""

import json
import math
import os
import uuid
from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from exports.engine.run import run_job, run_table
from exports.jobs import create_job
from exports.models import ExportJob
from tests.factories import SourceServer, assert_file_equals_source, throwaway_database

VERTICA_DSN = os.environ.get("ADU_TEST_VERTICA_DSN")
GREENPLUM_DSN = os.environ.get("ADU_TEST_GREENPLUM_DSN")

vertica_only = pytest.mark.skipif(
    not VERTICA_DSN, reason="set ADU_TEST_VERTICA_DSN to run the live Vertica suite"
)
greenplum_only = pytest.mark.skipif(
    not GREENPLUM_DSN, reason="set ADU_TEST_GREENPLUM_DSN to run the live Greenplum suite"
)


# Vertica ---------------------------------------------------------------------------------

VERTICA_COLUMNS = """
  id INT, c_int INT, c_float FLOAT, c_bool BOOLEAN,
  c_num152 NUMERIC(15,2), c_num5010 NUMERIC(50,10), c_num1024 NUMERIC(1024,20),
  c_char CHAR(5), c_varchar VARCHAR(20), c_long LONG VARCHAR(100000),
  c_binary BINARY(4), c_varbinary VARBINARY(80), c_longvarbinary LONG VARBINARY(100000),
  c_date DATE, c_time TIME, c_timetz TIMETZ, c_ts TIMESTAMP, c_tstz TIMESTAMPTZ,
  c_interval INTERVAL DAY TO SECOND, c_ym INTERVAL YEAR TO MONTH, c_uuid UUID,
  c_ints ARRAY[INT], c_nums ARRAY[NUMERIC(10,2)], c_texts ARRAY[VARCHAR(10)],
  c_set SET[VARCHAR(10)], c_row ROW(a INT, b VARCHAR(10))
"""
VERTICA_ROWS = [
    """1, -9223372036854775807, 'NaN'::FLOAT, TRUE, -9999999999999.99,
    1234567890123456789012345678901234567890.0123456789, 1.00000000000000000007, 'ab',
    'x,y"z', REPEAT('long ', 10000), HEX_TO_BINARY('00ff1000'), HEX_TO_BINARY('00'),
    HEX_TO_BINARY('0102'), '0001-01-01', '23:59:59.999999', '10:30:00+02',
    '0001-01-01 00:00:00', '1999-12-31 23:59:59.999999+05:30', INTERVAL '1 02:03:04.5',
    INTERVAL '1-2' YEAR TO MONTH, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ARRAY[1, NULL, 3],
    ARRAY[1.50, 0.10], ARRAY['a,b', NULL, ''], SET['b', 'a'], ROW(1, 'x y')""",
    """2, 9223372036854775807, 'Infinity'::FLOAT, FALSE, 0.00, -1, 0, '', '', '',
    HEX_TO_BINARY('00000000'), HEX_TO_BINARY(''), HEX_TO_BINARY(''), '9999-12-31',
    '00:00:00', '00:00:00-15:59', '9999-12-31 23:59:59.999999', '2024-01-01 00:00:00+00',
    INTERVAL '-1 00:00:00.000001', INTERVAL '-0-1' YEAR TO MONTH,
    '00000000-0000-0000-0000-000000000000', ARRAY[]::ARRAY[INT], ARRAY[]::ARRAY[NUMERIC(10,2)],
    ARRAY[]::ARRAY[VARCHAR(10)], SET[]::SET[VARCHAR(10)], ROW(NULL, NULL)""",
    "3" + ", NULL" * 25,
]
VERTICA_SPECIAL = """
  CREATE TABLE {schema}.special (id INT, c_date DATE, c_ts TIMESTAMP, c_tstz TIMESTAMPTZ);
  INSERT INTO {schema}.special VALUES (1, '0044-03-15 BC', 'infinity', '-infinity');
  INSERT INTO {schema}.special VALUES (2, '2024-01-01', '2024-01-01 12:00', '2024-01-01 12:00+00');
"""


@pytest.fixture
def vertica_source(owner):
    import vertica_python
    from vertica_python.vertica.connection import parse_dsn

    from connections.models import Connection

    params = parse_dsn(VERTICA_DSN)
    admin = vertica_python.connect(**{**params, "autocommit": True, "binary_transfer": True})
    schema = f"adu_test_{uuid.uuid4().hex[:12]}"
    cur = admin.cursor()
    cur.execute(f"CREATE SCHEMA {schema}")
    connection = Connection.objects.create(
        owner=owner, name="live-vertica", kind="vertica", host=params.get("host", "localhost"),
        port=int(params.get("port", 5433)), database=params.get("database", ""),
        username=params.get("user", "dbadmin"), password=params.get("password", ""),
        sslmode="prefer", connect_timeout=10,
    )  # fmt: skip

    def run(statements):
        for statement in filter(str.strip, statements.format(schema=schema).split(";")):
            cur.execute(statement)
        return cur

    yield schema, connection, run, admin
    cur.execute(f"DROP SCHEMA {schema} CASCADE")
    admin.close()


def _normal(value):
    """A value as compared: NaN equal to itself, decimals by their digits."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, Decimal):
        return str(value)
    return value


@vertica_only
@pytest.mark.django_db(transaction=True)
def test_vertica_values_of_every_type_round_trip_exactly(vertica_source, export):
    from connections.drivers import vertica

    schema, connection, run, admin = vertica_source
    run("CREATE TABLE {schema}.wide (" + VERTICA_COLUMNS + ")")
    for row in VERTICA_ROWS:
        run("INSERT INTO {schema}.wide VALUES (" + row + ")")
    run("COMMIT")
    job = export(connection, tables=[f"{schema}.wide"])
    table_run = job.tables.get()
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    rows = pq.read_table(job.folder() / table_run.files[0]["path"]).to_pylist()

    cur = vertica.Session(admin).cursor()  # the driver's converters: sets as lists, exact decimals
    cur.execute(f"SELECT * FROM {schema}.wide ORDER BY id")
    names = [c.name for c in cur.description]
    source = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for got, want in zip(sorted(rows, key=lambda r: r["id"]), source, strict=True):
        for name in names:
            expected = want[name]
            if name == "c_interval" and expected is not None:
                expected = timedelta(microseconds=vertica_types_us(expected))
            if name == "c_ym" and expected is not None:
                expected = expected.years * 12 + expected.months
            if name == "c_num1024" and expected is not None:
                expected = format(expected, "f")
            if name == "c_timetz" and expected is not None:
                expected = expected.isoformat()
            assert _normal(got[name]) == _normal(expected), (name, got[name], expected)


def vertica_types_us(value):
    from connections.drivers.vertica.types import interval_microseconds

    return interval_microseconds(value)


@vertica_only
@pytest.mark.django_db(transaction=True)
def test_vertica_values_beyond_python_fall_back_to_exact_text(vertica_source, export):
    schema, connection, run, admin = vertica_source
    run(VERTICA_SPECIAL)
    run("COMMIT")
    job = export(connection, tables=[f"{schema}.special"])
    table_run = job.tables.get()
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    fell_back = {c["name"] for c in table_run.columns if "fallback" in c}
    assert fell_back == {"c_date", "c_ts", "c_tstz"}
    data = pq.read_table(job.folder() / table_run.files[0]["path"])
    cur = admin.cursor()
    cur.execute("SET TIME ZONE TO 'UTC'")
    for name in fell_back:
        cur.execute(f"SELECT CAST({name} AS VARCHAR(65000)) FROM {schema}.special ORDER BY id")
        ids, values = data.column("id").to_pylist(), data.column(name).to_pylist()
        assert [r[0] for r in cur.fetchall()] == [
            v for _, v in sorted(zip(ids, values, strict=True))
        ]


@vertica_only
@pytest.mark.django_db(transaction=True)
def test_vertica_tables_of_a_job_read_one_epoch(vertica_source, owner):
    from connections.drivers import vertica

    schema, connection, run, admin = vertica_source
    run("CREATE TABLE {schema}.a (i INT); CREATE TABLE {schema}.b (i INT)")
    run("INSERT INTO {schema}.a SELECT 1; INSERT INTO {schema}.b SELECT 1; COMMIT")
    job = create_job(owner, connection, tables=[f"{schema}.a", f"{schema}.b"])
    leader, epoch = vertica.open_snapshot(connection)
    try:
        first, second = job.tables.order_by("table")
        run_table(first.pk, epoch)
        run("INSERT INTO {schema}.b SELECT 2; DELETE FROM {schema}.a; COMMIT")
        run_table(second.pk, epoch)
    finally:
        leader.close()
    assert [r.rows_written for r in job.tables.order_by("table")] == [1, 1]


@vertica_only
@pytest.mark.django_db(transaction=True)
def test_vertica_discovery_and_faults(vertica_source, export):
    from connections.drivers import vertica

    schema, connection, run, admin = vertica_source
    run("CREATE TABLE {schema}.t (i INT); INSERT INTO {schema}.t SELECT 1; COMMIT")
    found = {t.name: t for t in vertica.tables(connection, schema)}
    assert found["t"].kind == "table"
    assert schema in vertica.schemas(connection)
    assert not any(s.startswith("v_") for s in vertica.schemas(connection))
    job = export(connection, tables=[f"{schema}.t", f"{schema}.nope"])
    assert job.status == ExportJob.Status.COMPLETE_WITH_ERRORS
    assert job.errors.get().message == f"Table {schema}.nope does not exist or has no columns."
    connection.password = "Wrong-Mark"
    connection.save()
    job = export(connection, tables=[f"{schema}.t"])
    assert job.errors.get().message.startswith("Wrong user name or password")
    assert "Wrong-Mark" not in job.errors.get().message


# Greenplum -------------------------------------------------------------------------------


@pytest.fixture
def greenplum_db():
    with throwaway_database(SourceServer(GREENPLUM_DSN), force_drop=False) as db:
        yield db


GREENPLUM_COLUMNS = """
  id integer, c_int2 smallint, c_int8 bigint, c_num152 numeric(15,2), c_num numeric,
  c_float8 double precision, c_bool boolean, c_text text, c_bytea bytea, c_date date,
  c_ts timestamp, c_tstz timestamptz, c_time time, c_interval interval, c_uuid uuid,
  c_json json, c_ints integer[]
"""
GREENPLUM_ROWS = """
INSERT INTO {table} VALUES
 (1, -32768, -9223372036854775808, -1234567890123.45, 1e-30, 'NaN', true,
  E'line1\\nline2, "q"', '\\x00ff', '2024-02-29', '2024-01-01 12:34:56.789012',
  '1999-12-31 23:59:59.999999+05:30', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{1,NULL,3}'),
 (2, NULL, NULL, 'NaN', 'Infinity', 'Infinity', NULL, '', '\\x', 'infinity', '-infinity',
  '0044-03-15 00:00+00 BC', '24:00:00', NULL, NULL, NULL, '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL)
"""


@greenplum_only
@pytest.mark.django_db(transaction=True)
def test_greenplum_values_round_trip_exactly(greenplum_db, owner, export):
    greenplum_db.execute(f"CREATE TABLE wide ({GREENPLUM_COLUMNS}) DISTRIBUTED BY (id)")
    greenplum_db.execute(GREENPLUM_ROWS.replace("{table}", "wide"))
    connection = greenplum_db.connection(owner, kind="greenplum")
    job = export(connection, tables=["public.wide"])
    assert_file_equals_source(greenplum_db, job, "wide")
    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["consistency"] in ("snapshot", "per table")


@greenplum_only
@pytest.mark.django_db(transaction=True)
def test_greenplum_partitions_are_exported_once_through_their_root(greenplum_db, owner):
    greenplum_db.execute(
        "CREATE TABLE events (id int, day date) DISTRIBUTED BY (id) PARTITION BY RANGE (day) "
        "(START (date '2023-01-01') END (date '2026-01-01') EVERY (INTERVAL '1 year'))"
    )
    greenplum_db.execute(
        "INSERT INTO events SELECT i, date '2023-01-01' + (i % 1000) FROM generate_series(1, 30000) i"
    )
    greenplum_db.execute("ANALYZE events")
    connection = greenplum_db.connection(owner, kind="greenplum")
    job = run_job(create_job(owner, connection).pk)
    [run] = job.tables.all()
    assert run.table == "events" and run.status == "complete"
    ids = sorted(
        i
        for f in run.files
        for i in pq.read_table(job.folder() / f["path"]).column("id").to_pylist()
    )
    assert ids == list(range(1, 30001))
    assert not any(s.startswith(("gp_", "pg_")) for s in connection.driver().schemas(connection))
