"""Every value comes back from the Parquet file equal to the source value.

Each value read from the file is sent back to the source server, cast to the column's
declared type, and compared there with the stored value in its text form (which, unlike
`=`, tells 1.50 from 1.5 and -0 from 0).
"""

import json

import pyarrow as pa
import pytest

from exports.models import ExportJob
from tests.factories import (
    COLUMNS,
    ORDINARY_ROWS,
    SPECIAL_ROWS,
    TYPES_SQL,
    assert_file_equals_source,
    throwaway_database,
)


@pytest.fixture
def wide_source(source_db):
    source_db.execute(TYPES_SQL)
    for table in ("ordinary", "special"):
        source_db.execute(f"CREATE TABLE {table} ({COLUMNS})")
    source_db.execute(ORDINARY_ROWS.replace("{table}", "ordinary"))
    source_db.execute(SPECIAL_ROWS.replace("{table}", "special"))
    return source_db


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
