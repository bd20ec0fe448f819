"""Every value comes back from the Parquet file equal to the source value.

Each value read from the file is sent back to the source server, cast to the column's
declared type, and compared there with the stored value in its text form (which, unlike
`=`, tells 1.50 from 1.5 and -0 from 0).
"""

import json
import uuid

import psycopg2.extras
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exports.models import ExportJob

TYPES_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a integer, b text);
CREATE DOMAIN price AS numeric(7,2) CHECK (VALUE >= 0);
CREATE DOMAIN label AS text;
"""

COLUMNS = """
  id integer PRIMARY KEY,
  c_int2 smallint, c_int4 integer, c_int8 bigint, c_oid oid,
  c_num152 numeric(15,2), c_num5010 numeric(50,10), c_num numeric,
  c_float4 real, c_float8 double precision, c_money money, c_bool boolean,
  c_char char(5), c_varchar varchar(10), c_text text, c_name name, c_bytea bytea,
  c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz,
  c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_xml xml,
  c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
  c_bit bit(4), c_varbit varbit, c_int4range int4range, c_tstzrange tstzrange,
  c_numrange numrange, c_multirange int4multirange, c_enum mood, c_price price,
  c_label label, c_ints integer[], c_grid integer[][], c_texts text[], c_pair pair,
  c_point point, c_tsvector tsvector, c_lsn pg_lsn
"""

ORDINARY_ROWS = """
INSERT INTO {table} VALUES
 (1, -32768, -2147483648, -9223372036854775808, 4294967295,
  -1234567890123.45, 12345678901234567890123456789012345678.0123456789, 1e-30,
  1.1, 1.7976931348623157e308, -92233720368547758.08, true,
  'ab', 'x,y"z', E'line1\\nline2, "quoted", back\\\\slash', 'name', '\\x00ff10',
  '2024-02-29', '2024-01-01 12:34:56.789012', '1999-12-31 23:59:59.999999+05:30',
  '23:59:59.999999', '12:00+05:30', '1 year 2 mons 3 days 04:05:06.789012',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50]}', '{"b": {"c": null}}',
  '<a x="1">t</a>', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '08:00:2b:01:02:03:04:05', B'1010', B'10101', '[1,10)',
  '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '(1.5,2.25]', '{[1,3), [5,7)}',
  'happy', 12.50, 'lbl', '{1,NULL,3}', '{{1,2},{3,4}}', '{"a,b", NULL, "q\\"uote", ""}',
  ROW(1, 'x y'), '(1.5,2)', 'a fat cat', '16/B374D848'),
 (2, 32767, 2147483647, 9223372036854775807, 0,
  0.00, -1, 123456789012345678901234567890.123456789012345678901234567890,
  -0, 5e-324, 92233720368547758.07, false,
  '', '', '', '', '\\x',
  '0001-01-01', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00',
  '00:00:00', '00:00:00-15:59', '-1 days +02:00:00', '00000000-0000-0000-0000-000000000000',
  '[]', '[]', '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff',
  B'0000', B'', 'empty', 'empty', 'empty', '{}', 'sad', 0, '',
  '{}', '{}', '{}', ROW(NULL, NULL), '(0,0)', '', '0/0'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL)
"""

# Values no native Arrow type holds: each column must fall back to text, exactly.
SPECIAL_ROWS = """
INSERT INTO {table} (id, c_num152, c_num, c_float8, c_date, c_ts, c_tstz, c_time, c_ints) VALUES
 (10, 'NaN', 'NaN', 'NaN', 'infinity', 'infinity', 'infinity', '24:00:00', '[0:1]={7,8}'),
 (11, 1.5, 'Infinity', 'Infinity', '-infinity', '-infinity', '-infinity', '12:00', '{}'),
 (12, 2.5, '-Infinity', '-Infinity', '0044-03-15 BC', '4713-01-01 00:00 BC',
  '294276-12-31 23:59:59.999999+00', '00:00', '{1}'),
 (13, NULL, 1, 1, '5874897-12-31', '10000-01-01 00:00', '4713-01-01 00:00+00 BC', NULL, NULL)
"""


@pytest.fixture
def wide_source(source_db):
    source_db.execute(TYPES_SQL)
    for table in ("ordinary", "special"):
        source_db.execute(f"CREATE TABLE {table} ({COLUMNS})")
    source_db.execute(ORDINARY_ROWS.replace("{table}", "ordinary"))
    source_db.execute(SPECIAL_ROWS.replace("{table}", "special"))
    return source_db


def assert_file_equals_source(source_db, job, table):
    run = job.tables.get(table=table)
    assert run.status == "complete", list(job.errors.values_list("message", flat=True))
    [entry] = run.files
    path = job.folder() / entry["path"]
    data = pq.read_table(path)
    declared = {c["name"]: c["source_type"] for c in run.columns}
    rows = data.to_pylist()
    assert len(rows) == run.rows_written == run.rows_expected
    mismatches = []
    for row in rows:
        names = [name for name in row if name != "id"]
        checks = ", ".join(
            f"({name})::text IS NOT DISTINCT FROM CAST(%s AS {declared[name]})::text"
            for name in names
        )
        values = [_adapt(row[name]) for name in names]
        [result] = source_db.execute(
            f"SELECT {checks} FROM {table} WHERE id = %s", [*values, row["id"]]
        )
        mismatches += [
            (row["id"], n, row[n]) for n, ok in zip(names, result, strict=True) if not ok
        ]
    assert not mismatches
    return data, run


def _adapt(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, bytes):
        return psycopg2.Binary(value)
    return value


@pytest.mark.django_db(transaction=True)
def test_ordinary_values_of_every_type_round_trip_exactly(wide_source, owner, export):
    connection = wide_source.connection(owner)
    job = export(connection, tables=["public.ordinary"])
    assert job.status == ExportJob.Status.COMPLETE
    data, run = assert_file_equals_source(wide_source, job, "ordinary")

    types = {f.name: f.type for f in data.schema}
    assert types["c_int8"] == pa.int64()
    assert types["c_num152"] == pa.decimal128(15, 2)
    assert types["c_num5010"] == pa.decimal256(50, 10)
    assert types["c_bytea"] == pa.binary()
    assert types["c_uuid"] == pa.uuid()
    assert types["c_tstz"] == pa.timestamp("us", tz="UTC")
    assert types["c_time"] == pa.time64("us")
    assert types["c_money"] == pa.decimal128(19, 2)
    assert types["c_price"] == pa.decimal128(7, 2)  # the domain's base type
    assert types["c_num"] == pa.string()  # unconstrained numeric keeps every digit as text
    field = data.schema.field("c_price")
    assert field.metadata[b"adu.source_type"] == b"price"
    assert data.schema.field("c_grid").metadata[b"adu.source_type"] == b"integer[]"
    assert not any("fallback" in c for c in run.columns)


@pytest.mark.django_db(transaction=True)
def test_values_beyond_arrow_fall_back_to_exact_text(wide_source, owner, export):
    connection = wide_source.connection(owner)
    job = export(connection, tables=["public.special"])
    data, run = assert_file_equals_source(wide_source, job, "special")

    fell_back = {c["name"] for c in run.columns if "fallback" in c}
    assert fell_back == {"c_num152", "c_date", "c_ts", "c_tstz", "c_time"}
    assert data.schema.field("c_date").metadata[b"adu.fallback"] == b"true"
    assert data.schema.field("c_float8").type == pa.float64()  # NaN and ±inf are native
    manifest = json.loads(job.manifest_path().read_text())
    [table] = manifest["tables"]
    columns = {c["name"]: c for c in table["columns"]}
    assert columns["c_date"]["arrow_type"] == "string"
    assert "does not fit" in columns["c_date"]["fallback"]
    assert "infinity" not in columns["c_date"]["fallback"]  # the reason carries no data


@pytest.fixture
def sql_ascii_db(source_server):
    """A database whose server checks no encoding: it hands out the bytes it stored."""
    from conftest import throwaway_database

    options = "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    with throwaway_database(source_server, options) as db:
        yield db


@pytest.mark.django_db(transaction=True)
def test_text_that_is_not_utf8_fails_its_table_with_a_clear_message(sql_ascii_db, owner, export):
    sql_ascii_db.execute(
        "CREATE TABLE latin (id integer, name text);"
        "INSERT INTO latin VALUES (1, 'plain'), (2, convert_from('\\x4dfc6c6c6572', 'SQL_ASCII'));"
        "CREATE TABLE clean (id integer, name text); INSERT INTO clean VALUES (1, 'ok');"
    )
    connection = sql_ascii_db.connection(owner)
    job = export(connection, tables=["public.latin", "public.clean"])
    runs = {run.table: run for run in job.tables.all()}
    assert runs["clean"].status == "complete"
    latin = runs["latin"]
    assert latin.status == "failed"
    assert not (job.folder() / "public" / "latin.parquet").exists()
    [error] = job.errors.filter(table_run=latin)
    assert error.message.startswith("The table holds text that is not valid UTF-8")
    assert "0xfc" not in error.message  # the failing bytes are source data: not quoted
