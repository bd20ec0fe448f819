"""The fingerprint of a table computed by PostgreSQL equals the one computed from the Parquet
files ADU exported of it, for every type and edge value; and it changes when the content
does (a value, two values swapped, NULL for '', a row more), but not with the row order.

Each test exports a real table of the throwaway source database, then fingerprints the
source table (on a session with the export's settings) and the exported files.
"""

import hashlib
import json
import random

import numpy as np
import psycopg2.sql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connections.drivers.base import SourceColumn
from connections.drivers.postgresql import types
from connections.drivers.postgresql.session import SESSION_SETTINGS
from exports.models import ExportJob
from loads import fingerprint
from tests.factories import COLUMNS, ORDINARY_ROWS, SPECIAL_ROWS, TYPES_SQL

pytestmark = pytest.mark.django_db(transaction=True)

# Many rows over several batches: every native kind, edge values, NULLs, pre-1970 times.
MANY_ROWS = 200_000
MANY_SQL = """
CREATE TABLE many (
    id integer, label text, amount numeric(12,2), wide numeric(30,8), whole numeric(10,0),
    micro numeric(18,8),
    at timestamptz, local timestamp, ratio float8, small real, blob bytea, key uuid,
    day date, moment time, flag boolean, big bigint, tiny smallint
);
INSERT INTO many
SELECT i,
    CASE WHEN i % 11 = 0 THEN NULL WHEN i % 13 = 0 THEN '' ELSE 'row ' || i || ' é' END,
    CASE WHEN i % 7 = 0 THEN NULL ELSE (i - 100000) * 0.05 END,
    CASE WHEN i % 9 = 0 THEN NULL WHEN i % 10 = 0 THEN 0 ELSE (i - 100000) * 1234567.00000001 END,
    i - 100000,
    (i % 1000 - 500) * 0.00000001,  -- 0 and tiny values: Arrow's own text has an exponent
    CASE WHEN i % 17 = 0 THEN NULL
         ELSE timestamptz '1970-01-01 00:00:00+00' + (i - 100000) * interval '1234.567891 s' END,
    timestamp '1900-01-01 00:00:00.000001' + i * interval '17 minutes 0.000003 s',
    CASE i % 19 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN '-0'::float8 WHEN 2 THEN 'Infinity'
                WHEN 3 THEN '-Infinity' WHEN 4 THEN NULL ELSE i / 7.0 END,
    CASE i % 23 WHEN 0 THEN 'NaN'::real WHEN 1 THEN '-0'::real WHEN 2 THEN NULL
                ELSE (i / 3.0)::real END,
    CASE WHEN i % 29 = 0 THEN NULL WHEN i % 31 = 0 THEN '\\x'::bytea
         ELSE decode(md5(i::text), 'hex') END,
    CASE WHEN i % 37 = 0 THEN NULL ELSE md5(i::text)::uuid END,
    CASE WHEN i % 41 = 0 THEN NULL ELSE date '1970-01-01' + (i - 100000) END,
    CASE WHEN i % 43 = 0 THEN NULL ELSE time '00:00' + i * interval '0.431 s' END,
    CASE WHEN i % 47 = 0 THEN NULL ELSE i % 2 = 0 END,
    CASE WHEN i % 2 = 0 THEN -9223372036854775808 + i ELSE 9223372036854775807 - i END,
    (i % 65536) - 32768
FROM generate_series(1, {rows}) AS i
"""


@pytest.fixture
def wide_source(source_db):
    source_db.execute(TYPES_SQL)
    for table in ("ordinary", "special"):
        source_db.execute(f"CREATE TABLE {table} ({COLUMNS})")
    source_db.execute(ORDINARY_ROWS.replace("{table}", "ordinary"))
    source_db.execute(SPECIAL_ROWS.replace("{table}", "special"))
    return source_db


@pytest.fixture
def session(source_db):
    """A session on the source database with the export's settings."""
    options = " ".join(f"-c {n}={v.replace(' ', '')}" for n, v in SESSION_SETTINGS.items())
    db = source_db.server.connect(source_db.name, options=options)
    yield db
    db.close()


@pytest.fixture
def of_table(session):
    """of_table(table, columns): the source table's fingerprint."""

    def run(table, columns):
        with session.cursor() as cur:
            return fingerprint.of_table(cur, "public", table, columns)

    return run


def exported(job, table):
    """The manifest's columns of `table` and the paths of its files."""
    assert job.status == ExportJob.Status.COMPLETE, list(job.errors.values_list("message"))
    manifest = json.loads(job.manifest_path().read_text())
    [entry] = [t for t in manifest["tables"] if t["table"] == table]
    return entry["columns"], [job.folder() / f["path"] for f in entry["files"]]


def export_one(source_db, owner, export, table):
    job = export(source_db.connection(owner), tables=[f"public.{table}"])
    return exported(job, table)


@pytest.mark.parametrize("table", ["ordinary", "special"])
def test_every_type_and_edge_value_agrees(wide_source, owner, export, of_table, table):
    columns, paths = export_one(wide_source, owner, export, table)
    if table == "special":  # what the file holds as text because Arrow cannot hold it
        assert {c["name"] for c in columns if "fallback" in c} >= {"c_date", "c_tstz", "c_time"}

    from_file = fingerprint.of_files(paths, columns)

    assert from_file == of_table(table, columns)
    assert from_file.rows == {"ordinary": 3, "special": 4}[table]


def test_text_forms_read_as_the_export_read_them(source_db, owner, export, of_table):
    # xml: exported as col::text, which keeps the declaration its output function drops;
    # a composite of NULL fields IS NULL in SQL but is "(,)" in the file; char(n) keeps its
    # padding, inet its prefix only where the output function prints it.
    source_db.execute(
        "CREATE TYPE duo AS (a integer, b text); CREATE DOMAIN duet AS duo;"
        "CREATE TABLE forms (id integer, doc xml, pair duo, duet duet, code char(4),"
        " host inet, flags boolean[], spent money);"
        "INSERT INTO forms VALUES"
        " (1, '<?xml version=\"1.0\"?><a>t</a>', ROW(NULL, NULL), ROW(NULL, NULL), 'ab',"
        "  '10.0.0.1', '{t,f,NULL}', -12.34),"
        " (2, '<b/>', ROW(1, ''), ROW(2, 'x'), '', '10.0.0.0/8', '{}', 0),"
        " (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    columns, paths = export_one(source_db, owner, export, "forms")

    assert fingerprint.of_files(paths, columns) == of_table("forms", columns)


def test_many_rows_over_several_batches_agree(source_db, owner, export, of_table):
    source_db.execute(MANY_SQL.format(rows=MANY_ROWS))
    columns, paths = export_one(source_db, owner, export, "many")
    assert sum(1 for p in paths for _ in pq.ParquetFile(p).iter_batches()) > 1
    assert not any("fallback" in c for c in columns)

    from_file = fingerprint.of_files(paths, columns)

    assert from_file == of_table("many", columns)
    assert from_file.rows == MANY_ROWS


@pytest.fixture
def small(source_db, owner, export):
    """A small table, exported: (its columns, its files)."""
    source_db.execute(
        "CREATE TABLE small (id integer, name text, amount numeric(8,2), at timestamptz);"
        "INSERT INTO small VALUES (1, 'one', 1.50, '2024-01-01 10:00+00'),"
        " (2, 'two', -2.25, '1969-07-20 20:17:40+00'), (3, NULL, NULL, NULL),"
        " (4, 'four', 4.00, '2000-02-29 00:00:00.000001+00')"
    )
    return export_one(source_db, owner, export, "small")


def test_a_changed_value_changes_the_fingerprint(source_db, small, of_table):
    columns, paths = small
    assert fingerprint.of_files(paths, columns) == of_table("small", columns)

    source_db.execute("UPDATE small SET amount = 1.51 WHERE id = 1")

    changed = of_table("small", columns)
    assert changed.rows == 4
    assert changed.digest != fingerprint.of_files(paths, columns).digest


def test_two_values_swapped_between_rows_change_the_fingerprint(source_db, small, of_table):
    columns, paths = small
    assert fingerprint.of_files(paths, columns) == of_table("small", columns)

    source_db.execute(
        "UPDATE small SET name = CASE id WHEN 1 THEN 'two' ELSE 'one' END WHERE id IN (1, 2)"
    )

    assert of_table("small", columns).digest != fingerprint.of_files(paths, columns).digest


def test_null_and_empty_text_differ(source_db, owner, export, of_table):
    source_db.execute(
        "CREATE TABLE blanks (id integer, note text); INSERT INTO blanks VALUES (1, NULL)"
    )
    columns, paths = export_one(source_db, owner, export, "blanks")
    assert fingerprint.of_files(paths, columns) == of_table("blanks", columns)

    source_db.execute("UPDATE blanks SET note = ''")

    assert of_table("blanks", columns).digest != fingerprint.of_files(paths, columns).digest
    assert digest_of([None], pa.string()) != digest_of([""], pa.string())
    assert digest_of([None], pa.binary()) != digest_of([b""], pa.binary())


def test_the_row_order_does_not_matter(source_db, small, of_table):
    columns, paths = small
    source_db.execute("CREATE TABLE reordered AS SELECT * FROM small ORDER BY id DESC")
    assert source_db.execute("SELECT id FROM reordered") == [(4,), (3,), (2,), (1,)]

    assert of_table("reordered", columns) == fingerprint.of_files(paths, columns)

    table = pq.read_table(paths)
    rows = table.to_batches()[0].to_pylist()
    random.Random(7).shuffle(rows)
    shuffled = fingerprint.Accumulator(columns)
    shuffled.add(pa.RecordBatch.from_pylist(rows, schema=table.schema))
    assert shuffled.result() == fingerprint.of_files(paths, columns)


def test_duplicate_rows_count(source_db, small, of_table):
    columns, paths = small
    # Row 2 two more times: a XOR of the hashes would cancel the pair out, a sum does not.
    source_db.execute("INSERT INTO small SELECT * FROM small WHERE id = 2")
    source_db.execute("INSERT INTO small SELECT * FROM small WHERE id = 2 LIMIT 1")

    twice = of_table("small", columns)
    once = fingerprint.of_files(paths, columns)
    assert (twice.rows, once.rows) == (6, 4)
    assert twice.digest != once.digest


def test_a_condition_fingerprints_the_rows_it_keeps(session, small):
    columns, paths = small
    table = pq.read_table(paths)
    kept = fingerprint.Accumulator(columns)
    kept.add(
        table.filter(pc.is_in(table["id"], pa.array([1, 3], pa.int32())))
        .combine_chunks()
        .to_batches()[0]
    )
    query = fingerprint.sql("public", "small", columns, where=psycopg2.sql.SQL("id IN (1, 3)"))

    with session.cursor() as cur:
        cur.execute(query)
        rows, digest = cur.fetchone()

    assert fingerprint.Fingerprint(rows, digest) == kept.result()
    assert kept.result() != fingerprint.of_files(paths, columns)


def test_the_files_of_a_table_add_up(small):
    columns, paths = small
    one = fingerprint.of_files(paths, columns)

    two = fingerprint.of_files(paths * 2, columns)

    assert two.rows == 2 * one.rows
    assert int(two.digest, 16) == 2 * int(one.digest, 16) % 2**64


def test_batches_of_any_size_and_offset_agree(source_db, owner, export):
    source_db.execute(MANY_SQL.format(rows=600))
    columns, paths = export_one(source_db, owner, export, "many")
    table = pq.read_table(paths)
    whole = fingerprint.of_files(paths, columns)

    for size in (1, 7, 250):
        sliced = fingerprint.Accumulator(columns)
        for start in range(0, table.num_rows, size):  # slices: arrays with an offset
            for batch in table.slice(start, size).to_batches():
                sliced.add(batch)
        assert sliced.result() == whole


def test_the_digest_is_the_sum_of_the_hash_prefixes():
    columns = [{"name": "n", "arrow_type": "int32", "representation": "native"}]
    rows = [b"V1:1", b"V2:-5", b"N"]
    expected = sum(int.from_bytes(hashlib.sha256(r).digest()[:8], "big") for r in rows) % 2**64
    accumulator = fingerprint.Accumulator(columns)
    accumulator.add(pa.record_batch([pa.array([1, -5, None], pa.int32())], names=["n"]))
    assert accumulator.result().as_dict() == {"rows": 3, "digest": f"{expected:016x}"}


def test_a_session_without_the_export_settings_is_refused(source_db):
    source_db.execute("CREATE TABLE t (i interval)")
    columns = [{"name": "i", "arrow_type": "string", "representation": "ISO 8601 duration"}]
    db = source_db.server.connect(source_db.name, options="-c IntervalStyle=postgres")
    try:
        with db.cursor() as cur, pytest.raises(ValueError, match="IntervalStyle"):
            fingerprint.of_table(cur, "public", "t", columns)
    finally:
        db.close()


def test_the_representations_read_through_a_cast_are_the_drivers():
    def column(base):
        return SourceColumn(base, base, base, "U", "b", -1, True)

    assert types.plan(column("xml")).representation == fingerprint.XML_TEXT
    assert types.plan(column("money"), fallback=True).representation == fingerprint.MONEY_TEXT
    assert types.plan(column("numeric")).representation != fingerprint.MONEY_TEXT


def test_every_nan_counts_as_one_and_negative_zero_as_itself():
    patterns = [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0x7FF8DEADBEEF0000]
    nans = pa.array(np.array(patterns, np.uint64).view(np.float64))
    assert digest_of(nans) == digest_of([float("nan")] * 4, pa.float64())
    assert digest_of([-0.0], pa.float64()) != digest_of([0.0], pa.float64())
    assert digest_of([-0.0], pa.float32()) != digest_of([0.0], pa.float32())


def digest_of(values, kind=None):
    array = values if isinstance(values, pa.Array) else pa.array(values, kind)
    columns = [{"name": "v", "arrow_type": str(array.type), "representation": "native"}]
    accumulator = fingerprint.Accumulator(columns)
    accumulator.add(pa.record_batch([array], names=["v"]))
    return accumulator.result().digest
