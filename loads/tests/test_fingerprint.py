"""The fingerprint of a table computed by PostgreSQL equals the one computed from the Parquet
files ADU exported of it, for every type and edge value; and it changes when the content
does (a value, two values swapped, NULL for '', a row more), but not with the row order.

Each test exports a real table of the throwaway source database, then fingerprints the
source table (on a session with the export's settings) and the exported files. The rows'
canonical texts are compared too, one by one: the file side's quoting must be PostgreSQL's
own record output (ROW(...)::text), which the server computes.
"""

import decimal
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
from connections.models import ConnectionFailed
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


@pytest.fixture
def row_texts(session):
    """row_texts(table, columns): the canonical texts of the source table's rows, as the
    server writes them, sorted."""

    def run(table, columns):
        with session.cursor() as cur:
            cur.execute(
                psycopg2.sql.SQL("SELECT {} FROM public.{}").format(
                    fingerprint.row_text_sql(columns), psycopg2.sql.Identifier(table)
                )
            )
            return sorted(text for (text,) in cur.fetchall())

    return run


def file_row_texts(paths, columns):
    """The canonical texts of the files' rows, as the file side writes them, sorted."""
    names = [column["name"] for column in columns]
    return sorted(
        text
        for path in paths
        for batch in pq.ParquetFile(path).iter_batches(columns=names)
        for text in fingerprint.row_text(batch).to_pylist()
    )


def digest_of_texts(texts):
    """The digest of rows whose canonical texts are these, computed here from the definition."""
    total = sum(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big") for t in texts)
    return f"{total % 2**64:016x}"


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
def test_every_type_and_edge_value_agrees(wide_source, owner, export, of_table, row_texts, table):
    columns, paths = export_one(wide_source, owner, export, table)
    if table == "special":  # what the file holds as text because Arrow cannot hold it
        assert {c["name"] for c in columns if "fallback" in c} >= {"c_date", "c_tstz", "c_time"}

    from_file = fingerprint.of_files(paths, columns)

    assert file_row_texts(paths, columns) == row_texts(table, columns)
    assert from_file == of_table(table, columns)
    assert from_file.rows == {"ordinary": 3, "special": 4}[table]
    if table == "ordinary":  # row 3 is NULL but for its id: nothing between the commas
        assert "(3" + "," * (len(columns) - 1) + ")" in row_texts(table, columns)


def test_text_forms_read_as_the_export_read_them(source_db, owner, export, of_table, row_texts):
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

    assert file_row_texts(paths, columns) == row_texts("forms", columns)
    assert fingerprint.of_files(paths, columns) == of_table("forms", columns)
    # The composite of NULL fields is its text "(,)" (quoted: it has parentheses), not NULL.
    assert any('"(,)"' in text for text in row_texts("forms", columns))


def test_many_rows_over_several_batches_agree(
    source_db, owner, export, session, of_table, row_texts
):
    source_db.execute(MANY_SQL.format(rows=MANY_ROWS))
    columns, paths = export_one(source_db, owner, export, "many")
    assert sum(1 for p in paths for _ in pq.ParquetFile(p).iter_batches()) > 1
    assert not any("fallback" in c for c in columns)

    from_file = fingerprint.of_files(paths, columns)

    assert from_file == of_table("many", columns)
    assert from_file.rows == MANY_ROWS
    texts = row_texts("many", columns)
    assert file_row_texts(paths, columns) == texts
    assert from_file.digest == digest_of_texts(texts)

    # The same with parallel workers: each builds and prints the ROW itself.
    with session.cursor() as cur:
        for setting in PARALLEL:
            cur.execute(f"SET {setting}")
        cur.execute(psycopg2.sql.SQL("EXPLAIN ") + fingerprint.sql("public", "many", columns))
        assert "Gather" in "\n".join(line for (line,) in cur.fetchall())
    assert of_table("many", columns) == from_file


PARALLEL = [
    "max_parallel_workers_per_gather = 2",
    "parallel_setup_cost = 0",
    "parallel_tuple_cost = 0",
    "min_parallel_table_scan_size = 0",
]

# Text that record_out quotes (or not): each ASCII character alone and inside a word, the
# C whitespace (\v too, which RE2's \s lacks), quotes and backslashes doubled inside,
# parentheses, commas, empty strings, and non-ASCII text and spaces, which it leaves bare.
QUOTING_SQL = r"""
CREATE TABLE quoting (id integer, note text, code char(3), notes text[], doc json);
INSERT INTO quoting
SELECT i, chr(i), chr(i), ARRAY[chr(i), 'a' || chr(i) || 'b'], to_json(chr(i))
FROM generate_series(1, 127) AS i;
INSERT INTO quoting (id, note) SELECT 1000 + i, 'a' || chr(i) || 'b'
FROM generate_series(1, 127) AS i;
INSERT INTO quoting VALUES
 (2001, '', '', '{}', '""'), (2002, NULL, NULL, NULL, NULL), (2003, '', NULL, '{""}', NULL),
 (2004, '"', '\', '{"\"","\\"}', '"\""'), (2005, '""', '\\', NULL, NULL),
 (2006, '\"x"\', '(,)', NULL, NULL), (2007, '(x)', ' ', NULL, NULL),
 (2008, 'a,b', 'a b', NULL, NULL), (2009, ' lead', NULL, NULL, NULL),
 (2010, 'trail ', NULL, NULL, NULL), (2011, E'\t\n\v\f\r', E'\v', NULL, NULL),
 (2012, 'é à ß', 'ü', '{"日本 語"}', '{"k": "v w"}'),
 (2013, E'no\u00a0break\u0085next\u2028line\u3000wide\u1680ogham', E'\u00a0', NULL, NULL),
 (2014, '😀 (smile)', '😀', NULL, NULL), (2015, 'plain', 'ok', NULL, NULL),
 (2016, 'NULL', 'N', NULL, 'null'), (2017, '()', ',', NULL, NULL),
 (NULL, 'first', NULL, NULL, NULL), (NULL, NULL, NULL, NULL, NULL)
"""


def test_record_output_quoting_is_postgresqls(source_db, owner, export, of_table, row_texts):
    source_db.execute(QUOTING_SQL)
    columns, paths = export_one(source_db, owner, export, "quoting")

    texts = row_texts("quoting", columns)

    assert file_row_texts(paths, columns) == texts
    assert fingerprint.of_files(paths, columns) == of_table("quoting", columns)
    assert of_table("quoting", columns).digest == digest_of_texts(texts)
    # The rules as PostgreSQL applies them (what the file side must copy).
    for expected in (
        '(2001,"","   ",{},"""""")',  # empty: quoted; char(3) keeps its padding
        "(2002,,,,)",  # NULL: nothing
        "(,first,,,)",
        "(,,,,)",  # a row of NULLs
        '(2003,"",,"{""""}",)',
        '(2006,"\\\\""x""\\\\","(,)",,)',  # " and \ doubled
        '(2012,"é à ß","ü  ","{""日本 語""}","{""k"": ""v w""}")',
        '(2013,no\u00a0break\u0085next\u2028line\u3000wide\u1680ogham,"\u00a0  ",,)',
        '(2016,NULL,"N  ",,null)',
    ):
        assert expected in texts, expected
    # Each C whitespace character is quoted, \v (11) too; no other control character is.
    for code in range(1, 128):
        bare = chr(code) not in ' \t\n\v\f\r"\\(),'
        assert (f"(1{code:03d},a{chr(code)}b,,,)" in texts) == bare, code
    assert '(11,"\x0b","\x0b  ","{""\x0b"",""a\x0bb""}","""\\\\u000b""")' in texts


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


def test_batches_of_any_size_and_offset_agree(source_db, owner, export, of_table, monkeypatch):
    source_db.execute(MANY_SQL.format(rows=600))
    columns, paths = export_one(source_db, owner, export, "many")
    table = pq.read_table(paths)
    whole = fingerprint.of_files(paths, columns)
    assert whole == of_table("many", columns)

    for size in (1, 7, 250):
        sliced = fingerprint.Accumulator(columns)
        for start in range(0, table.num_rows, size):  # slices: arrays with an offset
            for batch in table.slice(start, size).to_batches():
                sliced.add(batch)
        assert sliced.result() == whole

    # A big batch is taken in parts.
    monkeypatch.setattr(fingerprint, "_PART_BYTES", 5000)
    assert len(list(fingerprint._parts(table.combine_chunks().to_batches()[0]))) > 3
    assert fingerprint.of_files(paths, columns) == whole


def test_the_digest_is_the_sum_of_the_hash_prefixes():
    columns = [
        {"name": "n", "arrow_type": "int32", "representation": "native"},
        {"name": "s", "arrow_type": "string", "representation": "native"},
        {"name": "b", "arrow_type": "binary", "representation": "native"},
    ]
    rows = ['(1,"a "" \\\\",00ff)', "(-5,,)", '(,"","")', "(,é,)"]
    expected = (
        sum(int.from_bytes(hashlib.sha256(r.encode()).digest()[:8], "big") for r in rows) % 2**64
    )
    accumulator = fingerprint.Accumulator(columns)
    batch = pa.record_batch(
        [
            pa.array([1, -5, None, None], pa.int32()),
            pa.array(['a " \\', None, "", "é"]),
            pa.array([b"\x00\xff", None, b"", None]),
        ],
        names=["n", "s", "b"],
    )
    assert fingerprint.row_text(batch).to_pylist() == rows
    accumulator.add(batch)
    assert accumulator.result().as_dict() == {"rows": 4, "digest": f"{expected:016x}"}


def test_a_single_column_and_no_columns(source_db, owner, export, of_table, row_texts):
    # In "padded" every value is quoted (char(n) pads), with quotes and backslashes doubled.
    source_db.execute(
        "CREATE TABLE single (note text); INSERT INTO single VALUES (NULL), (''), ('x'), (' ');"
        "CREATE TABLE padded (code char(4));"
        " INSERT INTO padded VALUES ('a\"'), ('b\\'), (''), ('c'), ('d(e)')"
    )
    job = export(source_db.connection(owner), tables=["public.single", "public.padded"])
    expected = {
        "single": ['(" ")', '("")', "()", "(x)"],
        "padded": ['("    ")', '("a""  ")', '("b\\\\  ")', '("c   ")', '("d(e)")'],
    }
    for table, texts in expected.items():
        columns, paths = exported(job, table)
        assert row_texts(table, columns) == texts
        assert file_row_texts(paths, columns) == texts
        assert fingerprint.of_files(paths, columns) == of_table(table, columns)

    # A table of no columns: each row is "()".
    source_db.execute("CREATE TABLE bare (); INSERT INTO bare SELECT FROM generate_series(1, 2)")
    accumulator = fingerprint.Accumulator([])
    accumulator.add(pa.RecordBatch.from_struct_array(pa.array([{}, {}], pa.struct([]))))
    assert row_texts("bare", []) == ["()", "()"]
    assert of_table("bare", []) == accumulator.result()
    assert accumulator.result() == fingerprint.Fingerprint(2, digest_of_texts(["()", "()"]))


def test_a_session_without_the_export_settings_is_refused(source_db):
    source_db.execute("CREATE TABLE t (i interval)")
    columns = [{"name": "i", "arrow_type": "string", "representation": "ISO 8601 duration"}]
    db = source_db.server.connect(source_db.name, options="-c IntervalStyle=postgres")
    try:
        with db.cursor() as cur, pytest.raises(ConnectionFailed, match="IntervalStyle"):
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


@pytest.mark.parametrize("kind", [pa.decimal128, pa.decimal256])
def test_decimal_text_has_every_digit_of_its_scale(kind):
    # Arrow's own text turns exponential below 1E-6; each scale's smallest and largest
    # values, zero and the negatives print as numeric(p, s) does.
    for scale in range(0, 13):
        unscaled = [0, 1, -1, 10**18 - 1, -(10**18) + 1, 10**scale, 123456789]
        whole = pa.array([decimal.Decimal(v) for v in unscaled] + [None], kind(38, 0))
        array = pa.Array.from_buffers(kind(38, scale), len(whole), whole.buffers(), 1)
        expected = [f"{decimal.Decimal(v).scaleb(-scale):f}" for v in unscaled] + [None]
        assert fingerprint.row_text(pa.record_batch([array], ["d"])).to_pylist() == [
            f"({e})" if e is not None else "()" for e in expected
        ], scale
