"""Tables of plain types go into the target as COPY ... (FORMAT binary), encoded from the
Parquet files' Arrow buffers by adu_pgcopy.encode (native/): the values at the edges of
each type arrive exact, proven apart from ADU's fingerprints (rows as text, as multisets).
"""

import adu_pgcopy
import pyarrow as pa
import pytest

from exports.models import ExportJob
from loads import copy as load_copy
from loads.creation import create_load
from loads.engine import run_load
from loads.models import Load, TableLoad
from tests.factories import rows_as_text

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN = """
CREATE TABLE plain (
    b bool, s smallint, i integer, l bigint, o oid, r real, d double precision,
    n numeric(38,10), n0 numeric(20,0), n38 numeric(38,38), n4 numeric(5,4),
    dt date, ts timestamp, tz timestamptz, tm time,
    t text, v varchar(10), c char(3), nm name, by bytea, u uuid
);
INSERT INTO plain VALUES
 (true, 32767, 2147483647, 9223372036854775807, 4294967295, 'NaN', 'Infinity',
  9999999999999999999999999999.9999999999, 99999999999999999999,
  0.99999999999999999999999999999999999999, 9.9999,
  '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00',
  '23:59:59.999999', E'quote " comma , back \\\\ tab \t nl \n', 'ünïcødé', 'a', 'n',
  '\\x00ff', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
 (false, -32768, -2147483648, -9223372036854775808, 0, '-Infinity', 'NaN',
  -9999999999999999999999999999.9999999999, -99999999999999999999,
  -0.00000000000000000000000000000000000001, -0.0001,
  '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '00:00:00', '', '', '',
  '', '\\x', '00000000-0000-0000-0000-000000000000'),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL),
 (true, 0, 0, 0, 1, '-0', '-0', 0, 0, 0, 0, '1999-12-31', '1999-12-31 23:59:59.999999',
  '1969-12-31 23:59:59.999999+00', '00:00:00.000001', 'x', 'y', 'abc', 'z', '\\x00',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (false, 1, 1, 1, 2, 1e-45, 5e-324, 0.5, 10000, 0.00000000000000000000000000000000000001,
  0.5, '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '12:00',
  'a', 'b', 'c', 'd', '\\x01', NULL),
 (true, 2, 3, 4, 5, 3.4028235e38, 1.7976931348623157e308, 0.0000000001, 10001,
  0.1, 1.2345, '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '06:30',
  repeat('long ', 2000), '0123456789', 'xyz', repeat('n', 63), decode(repeat('ab', 5000), 'hex'),
  NULL);
-- Enough rows for several batches, with NULLs at places no byte boundary lines up with.
INSERT INTO plain
SELECT mod(g, 3) = 0, mod(g, 32767), g * 7919, g::bigint * 1000003, g,
    g / 7.0, g / 3.0, (g / 7.0)::numeric(38,10), g::bigint * 1234567, (g / 1e6)::numeric(38,38),
    mod(g, 9999) / 10000.0, date '1990-01-01' + mod(g, 20000),
    timestamp '1960-01-01' + g * interval '1.000001 seconds',
    timestamptz '2030-01-01 00:00+00' - g * interval '17.5 seconds',
    time '00:00' + g * interval '1.000001 seconds', 't' || g, left('v' || g, 10),
    left(g::text, 3), 'n' || g, decode(lpad(to_hex(g), 8, '0'), 'hex'),
    md5(g::text)::uuid
FROM generate_series(1, 70000) AS g;
UPDATE plain SET t = NULL, n = NULL, b = NULL, ts = NULL WHERE mod(i, 11) = 3;
"""


@pytest.fixture
def forms(monkeypatch):
    """The COPY form each table of a load went in."""
    chosen = []
    real = load_copy.CopyStream

    def spy(batches, form):
        chosen.append(form.name)
        return real(batches, form)

    monkeypatch.setattr(load_copy, "CopyStream", spy)
    return chosen


def test_plain_types_go_in_binary_and_arrive_exact(
    source_db, target_db, target, owner, export, forms
):
    source_db.execute(PLAIN)
    job = export(source_db.connection(owner), tables=["public.plain"])
    assert job.status == ExportJob.Status.COMPLETE
    load = run_load(create_load(owner, job.folder(), target).pk)
    [run] = load.tables.all()
    assert run.status == TableLoad.Status.LOADED, run.error
    assert forms == ["binary"]
    assert run.rows == 70006
    assert rows_as_text(source_db, "public", "plain") == rows_as_text(target_db, "public", "plain")


def test_a_column_of_another_type_in_the_target_sends_the_table_as_csv(
    source_db, target_db, target, owner, export, forms
):
    """Appending into a table whose column has another type than the file's: binary
    input would read the file's bytes as that type; as text the server converts them, or
    refuses them in one sentence."""
    source_db.execute("CREATE TABLE log (at int, what text); INSERT INTO log VALUES (1, 'a')")
    job = export(source_db.connection(owner), tables=["public.log"])
    target_db.execute("CREATE TABLE log (at bigint, what varchar(5))")
    load = run_load(create_load(owner, job.folder(), target, if_exists="append").pk)
    [run] = load.tables.all()
    assert forms == ["csv"]
    assert run.status == TableLoad.Status.LOADED, run.error
    assert target_db.execute("SELECT at, what FROM log") == [(1, "a")]


def test_a_domain_or_an_array_column_sends_the_table_as_csv(
    source_db, target_db, target, owner, export, forms
):
    source_db.execute(
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0);"
        "CREATE TABLE d (x positive, y int[]); INSERT INTO d VALUES (1, '{1,2}')"
    )
    job = export(source_db.connection(owner), tables=["public.d"])
    load = run_load(create_load(owner, job.folder(), target).pk)
    assert load.status == Load.Status.COMPLETE, load.tables.values_list("error", flat=True)
    assert forms == ["csv"]
    assert rows_as_text(source_db, "public", "d") == rows_as_text(target_db, "public", "d")


def test_a_value_the_target_refuses_in_binary_is_one_sentence(
    source_db, target_db, target, owner, export
):
    """char(3) in the file, char(1) in the target: the server's binary input checks the
    length as its text input does."""
    source_db.execute("CREATE TABLE c (x char(3)); INSERT INTO c VALUES ('abc')")
    job = export(source_db.connection(owner), tables=["public.c"])
    target_db.execute("CREATE TABLE c (x char(1))")
    load = run_load(create_load(owner, job.folder(), target, if_exists="append").pk)
    [run] = load.tables.all()
    assert run.status == TableLoad.Status.FAILED
    assert "public.c" in run.error and "Traceback" not in run.error
    assert target_db.execute("SELECT count(*) FROM c") == [(0,)]


def sources(array: pa.Array, kind: int, scale: int = 0):
    buffers = array.buffers()
    validity = buffers[0] if array.null_count else None
    if kind in (adu_pgcopy.STRING, adu_pgcopy.BINARY):
        return [(kind, scale, array.offset, validity, buffers[2], buffers[1], False)]
    return [(kind, scale, array.offset, validity, buffers[1], None, False)]


def test_encode_reads_a_slice_from_its_offset():
    whole = pa.array([1, None, 3, 4, None, 6, 7, 8, 9, 10], pa.int32())
    part = whole.slice(3, 5)  # 4, None, 6, 7, 8: the validity bits start mid-byte
    encoded = adu_pgcopy.encode(sources(part, adu_pgcopy.INT32), len(part))
    null = b"\x00\x01\xff\xff\xff\xff"
    value = lambda v: b"\x00\x01\x00\x00\x00\x04" + v.to_bytes(4, "big")  # noqa: E731
    assert encoded == value(4) + null + value(6) + value(7) + value(8)

    texts = pa.array(["a", "bc", None, "def"]).slice(1, 3)
    encoded = adu_pgcopy.encode(sources(texts, adu_pgcopy.STRING), 3)
    assert encoded == b"\x00\x01\x00\x00\x00\x02bc" + null + b"\x00\x01\x00\x00\x00\x03def"


@pytest.mark.parametrize(
    "value, expected",
    [
        # (ndigits, weight, sign, dscale, digits...)
        ("0.00", (0, 0, 0, 2)),
        ("1.50", (2, 0, 0, 2, 1, 5000)),
        ("-12345.6789", (3, 1, 0x4000, 4, 1, 2345, 6789)),
        ("10000.00", (1, 1, 0, 2, 1)),
        ("0.0001", (1, -1, 0, 4, 1)),
    ],
)
def test_encode_writes_numeric_as_the_server_reads_it(value, expected):
    from decimal import Decimal

    scale = expected[3]
    array = pa.array([Decimal(value)], pa.decimal128(20, scale))
    encoded = adu_pgcopy.encode(sources(array, adu_pgcopy.DECIMAL, scale), 1)
    body = encoded[6:]
    words = [int.from_bytes(body[i : i + 2], "big", signed=i == 2) for i in range(0, len(body), 2)]
    assert tuple(words) == expected


@pytest.mark.parametrize(
    "column",
    [
        (adu_pgcopy.INT64, 0, 0, None, pa.py_buffer(b"\0" * 7), None, False),
        (adu_pgcopy.STRING, 0, 0, None, pa.py_buffer(b"ab"), pa.py_buffer(b"\0" * 4), False),
        (
            adu_pgcopy.STRING, 0, 0, None, pa.py_buffer(b"ab"),
            pa.array([0, 9], pa.int32()).buffers()[1], False,
        ),
        (99, 0, 0, None, pa.py_buffer(b"\0" * 8), None, False),
        (adu_pgcopy.INT32, 0, 5, pa.py_buffer(b"\xff"), pa.py_buffer(b"\0" * 64), None, False),
    ],
)  # fmt: skip
def test_encode_refuses_buffers_too_short_for_the_rows(column):
    """A broken file must be a Python error, never a read past a buffer's end."""
    with pytest.raises(ValueError):
        adu_pgcopy.encode([column], 4)
