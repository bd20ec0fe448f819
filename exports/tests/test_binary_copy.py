"""Tables of plain types are read as binary COPY, decoded by adu_pgcopy (native/).

Each test checks the path taken, then the file value by value against the source, as
test_fidelity does for the CSV path.
"""

import errno

import pyarrow as pa
import pytest

from connections.drivers.postgresql import copy as postgresql_copy
from exports.engine import parquet
from exports.models import ExportJob
from tests.factories import (
    COLUMNS,
    ORDINARY_ROWS,
    SPECIAL_ROWS,
    TYPES_SQL,
    assert_file_equals_source,
)

# Every column of the wide table whose type has a binary decoder.
PLAIN = (
    "id, c_int2, c_int4, c_int8, c_oid, c_num152, c_float4, c_float8, c_money, c_bool, "
    "c_char, c_varchar, c_text, c_name, c_bytea, c_date, c_ts, c_tstz, c_time, c_uuid, "
    "c_price, c_label"
)


@pytest.fixture
def forms(monkeypatch):
    """The form (binary or csv) of each COPY the exports run."""
    seen = []
    binary, csv = postgresql_copy._read_binary, postgresql_copy._read_csv
    monkeypatch.setattr(
        postgresql_copy, "_read_binary", lambda *a: seen.append("binary") or binary(*a)
    )
    monkeypatch.setattr(postgresql_copy, "_read_csv", lambda *a: seen.append("csv") or csv(*a))
    return seen


@pytest.fixture
def plain_source(source_db):
    source_db.execute(TYPES_SQL)
    for table, rows in (("ordinary", ORDINARY_ROWS), ("special", SPECIAL_ROWS)):
        source_db.execute(f"CREATE TABLE wide_{table} ({COLUMNS})")
        source_db.execute(rows.replace("{table}", f"wide_{table}"))
        source_db.execute(f"CREATE TABLE {table} AS SELECT {PLAIN} FROM wide_{table}")
    return source_db


@pytest.mark.django_db(transaction=True)
def test_plain_types_round_trip_exactly_through_binary_copy(plain_source, owner, export, forms):
    job = export(plain_source.connection(owner), tables=["public.ordinary"])
    assert job.status == ExportJob.Status.COMPLETE
    assert forms == ["binary"]
    data, run = assert_file_equals_source(plain_source, job, "ordinary")
    types = {f.name: f.type for f in data.schema}
    assert types["c_num152"] == pa.decimal128(15, 2)
    assert types["c_money"] == pa.decimal128(19, 2)
    assert types["c_oid"] == pa.int64()
    assert types["c_uuid"] == pa.uuid()
    assert types["c_bytea"] == pa.binary()
    assert data.column("c_char").to_pylist()[:2] == ["ab   ", "     "]  # char(5) keeps its padding
    assert not any("fallback" in c for c in run.columns)


@pytest.mark.django_db(transaction=True)
def test_binary_values_beyond_arrow_fall_back_to_exact_text(plain_source, owner, export, forms):
    job = export(plain_source.connection(owner), tables=["public.special"])
    data, run = assert_file_equals_source(plain_source, job, "special")
    # Each column that met such a value was found while reading binary; the last read,
    # with text columns, is CSV.
    assert forms[0] == "binary" and forms[-1] == "csv"
    fell_back = {c["name"] for c in run.columns if "fallback" in c}
    assert fell_back == {"c_num152", "c_date", "c_ts", "c_tstz", "c_time"}
    assert data.schema.field("c_float8").type == pa.float64()  # NaN and ±inf are native


@pytest.mark.django_db(transaction=True)
def test_nulls_and_rows_across_many_batches_keep_their_place(
    source_db, owner, export, forms, monkeypatch
):
    # 997 rows a batch: validity bitmaps that end mid-byte, and rows left over in the
    # decoder between batches.
    monkeypatch.setattr(postgresql_copy, "BINARY_BATCH_ROWS", 997)
    source_db.execute(
        """
        CREATE TABLE many (id integer, flag boolean, big bigint, note varchar(50),
                           amount numeric(12, 3), day date, raw bytea);
        INSERT INTO many
        SELECT i AS id,
               CASE WHEN i % 7 <> 0 THEN i % 2 = 0 END AS flag,
               CASE WHEN i % 5 <> 0 THEN i::bigint * 1000000007 END AS big,
               CASE WHEN i % 3 <> 0 THEN repeat('x', i % 50) END AS note,
               CASE WHEN i % 11 <> 0 THEN (i / 7.0)::numeric(12, 3) END AS amount,
               CASE WHEN i % 13 <> 0 THEN date '2000-01-01' + i END AS day,
               CASE WHEN i % 4 <> 0 THEN decode(lpad(to_hex(i), 8, '0'), 'hex') END AS raw
        FROM generate_series(1, 3000) AS i
        """
    )
    job = export(source_db.connection(owner), tables=["public.many"])
    assert forms == ["binary"]
    data, run = assert_file_equals_source(source_db, job, "many")
    heap_order = [id for (id,) in source_db.execute("SELECT id FROM many")]
    assert data.column("id").to_pylist() == heap_order
    assert data.column("flag").null_count == 3000 // 7
    assert data.column("note").null_count == 3000 // 3


@pytest.mark.django_db(transaction=True)
def test_a_table_with_a_text_only_type_is_read_as_csv(plain_source, owner, export, forms):
    plain_source.execute("CREATE TABLE mixed AS SELECT id, c_interval FROM wide_ordinary")
    job = export(plain_source.connection(owner), tables=["public.mixed"])
    assert forms == ["csv"]
    assert_file_equals_source(plain_source, job, "mixed")


@pytest.mark.django_db(transaction=True)
def test_numerics_at_the_edges_of_their_precision_and_scale(source_db, owner, export, forms):
    source_db.execute(
        """
        CREATE TABLE edges (id integer, n38 numeric(38, 0), n3810 numeric(38, 10),
                            n44 numeric(4, 4), n180 numeric(18, 0), n192 numeric(19, 2),
                            n12 numeric(1, 0), n2010 numeric(20, 10));
        INSERT INTO edges VALUES
          (1, 99999999999999999999999999999999999999, 9999999999999999999999999999.9999999999,
           0.9999, 999999999999999999, 99999999999999999.99, 9, 9999999999.9999999999),
          (2, -99999999999999999999999999999999999999, -0.0000000001,
           -0.0001, -999999999999999999, -0.01, -9, -0.0000000001),
          (3, 0, 0, 0, 0, 0, 0, 0),
          (4, 10000000000000000000000000000000000000, 1.5, 0.5, 100000000, 10000, 1, 12345.6789),
          (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
        """
    )
    job = export(source_db.connection(owner), tables=["public.edges"])
    assert forms == ["binary"]
    data, run = assert_file_equals_source(source_db, job, "edges")
    assert not any("fallback" in c for c in run.columns)
    assert data.schema.field("n38").type == pa.decimal128(38, 0)


@pytest.mark.django_db(transaction=True)
def test_a_table_failing_mid_stream_stops_its_readers_before_closing_their_sessions(
    source_db, owner, export, forms, monkeypatch
):
    # The readers decode with the GIL released, on their session's connection: closing
    # a session under a reader would crash the process, not fail the table.
    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    monkeypatch.setattr(postgresql_copy, "BINARY_BATCH_ROWS", 1000)
    source_db.execute(
        "CREATE TABLE wide AS SELECT i AS id, repeat('x', 200) AS pad "
        "FROM generate_series(1, 200000) AS i"
    )

    def disk_full(self, batch):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parquet.TableWriter, "write", disk_full)
    connection = source_db.connection(owner)
    for _ in range(10):  # it crashed one time in three, before
        job = export(connection, tables=["public.wide"], readers=3)
        [run] = job.tables.all()
        assert run.status == "failed"
        assert job.errors.get().message == "The disk of the export folder is full."
    assert set(forms) == {"binary"}
