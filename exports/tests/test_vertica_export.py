"""Vertica values round-trip exactly through the batch builder and the Parquet writer.

No Vertica server can run here: connections.tests.fake_vertica stands in for one. Every
value below is produced by vertica-python's own deserializers from Vertica's binary wire
format (with the converters the driver registers), so the batch builder sees exactly the
Python values vertica-python's cursor returns: Decimal, datetime with tzinfo, date, time,
relativedelta, UUID, bytes, lists, dicts for ROW, float nan and inf.
"""

import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import vertica_python
from vertica_python.datatypes import VerticaType as V

from connections.drivers import vertica
from connections.drivers.vertica import reads as vertica_reads
from connections.drivers.vertica import types as vertica_types
from connections.tests import fake_vertica as fv
from connections.tests.fake_vertica import FakeColumn, FakeTable, FakeVertica
from exports.engine.parquet import TableWriter
from exports.models import ExportJob
from tests.factories import calls_to

BIG = 2**63 - 1
NUM1024 = Decimal((0, tuple(int(c) for c in str(10**1023 + 7)), -20))
LONG_TEXT = "long ✓ " * 20000
LONG_BYTES = bytes(range(256)) * 400
U1 = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
U0 = uuid.UUID(int=0)


def _col(name, declared, oid, values, encode, modifier=-1, **extra):
    wire = [None if v is None else encode(v) for v in values]
    return FakeColumn(name, declared, oid, modifier, values=wire, **extra), values


def wide_columns():
    """(FakeColumn, the values the file must hold) for every type Vertica exports natively."""
    n = fv.numeric_modifier
    cols = [
        _col("c_int", "int", V.INT8, [-BIG, BIG, 0, 42, -1, None], fv.int8),
        _col("c_float", "float", V.FLOAT8,
             [math.nan, math.inf, -math.inf, -0.0, 5e-324, None], fv.float8),
        _col("c_bool", "boolean", V.BOOL, [True, False, True, False, True, None], fv.boolean),
        _col("c_char", "char(5)", V.CHAR, ["ab   ", "     ", 'x,y"z', "é😀   ", "\n    ", None],
             str.encode),
        _col("c_varchar", "varchar(20)", V.VARCHAR, ["", "a\tb", "NULL", "\\x00", "ü", None],
             str.encode),
        _col("c_long", "long varchar(32000000)", V.LONGVARCHAR, [LONG_TEXT, "", "x", "y", "z", None],
             str.encode),
        _col("c_binary", "binary(4)", V.BINARY,
             [b"\x00\xff\x10\x00", b"\x00" * 4, b"abcd", b"\\\\\\\\", b"\x01\x02\x03\x04", None],
             bytes),
        _col("c_varbinary", "varbinary(80)", V.VARBINARY, [b"", b"\x00", b"\xff" * 80, b"a", b"b", None],
             bytes),
        _col("c_longvarbinary", "long varbinary(32000000)", V.LONGVARBINARY,
             [LONG_BYTES, b"", b"\x00", b"1", b"2", None], bytes),
    ]  # fmt: skip
    cols += [
        _col("c_num152", "numeric(15,2)", V.NUMERIC,
             [Decimal("-9999999999999.99"), Decimal("0.00"), Decimal("1.50"),
              Decimal("9999999999999.99"), Decimal("-0.01"), None],
             lambda d: fv.numeric(fv.unscaled(d, 2)), n(15, 2)),
        _col("c_num5010", "numeric(50,10)", V.NUMERIC,
             [Decimal("1234567890123456789012345678901234567890.0123456789"), Decimal("-1.0000000000"),
              Decimal("0E-10"), Decimal("0.0000000001"), Decimal("-" + "9" * 40 + "." + "9" * 10), None],
             lambda d: fv.numeric(fv.unscaled(d, 10)), n(50, 10)),
        _col("c_num1024", "numeric(1024,20)", V.NUMERIC,
             [NUM1024, NUM1024.copy_negate(), Decimal("0E-20"), Decimal("1.00000000000000000000"),
              Decimal("1E-20"), None],
             lambda d: fv.numeric(fv.unscaled(d, 20)), n(1024, 20)),
        _col("c_date", "date", V.DATE,
             [date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29), date(1970, 1, 1), date(2000, 1, 1), None],
             fv.julian),
        _col("c_time", "time(6)", V.TIME,
             [time(0), time(23, 59, 59, 999999), time(12, 0, 0, 1), time(1, 2, 3), time(9), None],
             fv.micros_of_day),
        _col("c_ts", "timestamp", V.TIMESTAMP,
             [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2024, 1, 1, 12, 34, 56, 789012),
              datetime(1999, 12, 31, 23, 59, 59), datetime(2000, 1, 1), None],
             fv.timestamp),
        _col("c_tstz", "timestamptz", V.TIMESTAMPTZ,
             [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
              datetime(1999, 12, 31, 18, 29, 59, 999999, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC),
              datetime(1970, 1, 1, tzinfo=UTC), None],
             fv.timestamp),
        _col("c_uuid", "uuid", V.UUID, [U1, U0, uuid.UUID(int=2**128 - 1), U1, U0, None], fv.uuid_bytes),
    ]  # fmt: skip
    timetz_values = [
        (time(10, 30), 7200), (time(0, 0), -57540), (time(23, 59, 59, 999999), 0),
        (time(12, 0, 0, 5), 50400), (time(6, 15), -3600), None,
    ]  # fmt: skip
    column, _ = _col("c_timetz", "timetz", V.TIMETZ, timetz_values, lambda v: fv.timetz(*v))
    cols.append(
        (
            column,
            ["10:30:00+02:00", "00:00:00-15:59", "23:59:59.999999+00:00",
             "12:00:00.000005+14:00", "06:15:00-01:00", None],
        )
    )  # fmt: skip
    micros = [BIG, -BIG, 0, 1, -86_400_000_001, None]
    column, _ = _col("c_interval", "interval day to second", V.INTERVAL, micros, fv.interval)
    cols.append((column, [None if m is None else timedelta(microseconds=m) for m in micros]))
    months = [14, -1, 0, 12 * 9999, -(2**40), None]
    cols.append(_col("c_ym", "interval year to month", V.INTERVALYM, months, fv.int8))
    cols += [
        _col("c_ints", "Array[int]", V.ARRAY1D_INT8, [[1, None, 3], [], [-BIG, BIG], [0], [None], None],
             fv.json_text),
        _col("c_floats", "Array[float]", V.ARRAY1D_FLOAT8,
             [[1.5, -0.25], [], [1e308], [0.1], [-2.5], None], fv.json_text),
        _col("c_nums", "Array[numeric(10,2)]", V.ARRAY1D_NUMERIC,
             [[Decimal("1.50"), Decimal("0.10")], [], [Decimal("-99999999.99")], [None], [Decimal("0.01")], None],
             lambda v: ("[" + ",".join("null" if d is None else str(d) for d in v) + "]").encode(),
             n(10, 2)),
        _col("c_texts", "Array[varchar(10)]", V.ARRAY1D_VARCHAR,
             [["a,b", None, 'q"uote', ""], [], ["é"], ["x"], ["y"], None], fv.json_text),
        _col("c_dates", "Array[date]", V.ARRAY1D_DATE,
             [[date(2024, 1, 1), date(1, 1, 1)], [], [date(9999, 12, 31)], [None], [date(2000, 2, 29)], None],
             lambda v: fv.json_text([None if d is None else d.isoformat() for d in v])),
        _col("c_set", "Set[varchar(10)]", V.SET_VARCHAR, [["b", "a"], [], ["z"], ["y", "x"], ["w"], None],
             fv.json_text),
    ]  # fmt: skip
    row_fields = [
        FakeColumn("a", "", V.INT8),
        FakeColumn("b", "", V.VARCHAR),
        FakeColumn("c", "", V.NUMERIC, fv.numeric_modifier(5, 2)),
        FakeColumn("d", "", V.TIMESTAMP),
    ]
    rows = [
        {"a": 1, "b": "x y", "c": Decimal("1.25"), "d": datetime(2024, 1, 2, 3, 4, 5, 6)},
        {"a": None, "b": None, "c": None, "d": None},
        {"a": -BIG, "b": "", "c": Decimal("-999.99"), "d": datetime(1, 1, 1)},
        {"a": 0, "b": "é", "c": Decimal("0.00"), "d": datetime(9999, 12, 31)},
        {"a": 7, "b": "q", "c": Decimal("0.10"), "d": datetime(2000, 1, 1)},
        None,
    ]

    def row_json(row):
        text = json.dumps(
            {
                "a": row["a"],
                "b": row["b"],
                "c": None if row["c"] is None else f"__{row['c']}__",
                "d": None if row["d"] is None else row["d"].isoformat(" "),
            }
        )
        return text.replace('"__', "").replace('__"', "").encode()

    column, _ = _col("c_row", "Row(a int, b varchar, c numeric(5,2), d timestamp)", V.ROW, rows,
                     row_json, children=row_fields)  # fmt: skip
    cols.append((column, rows))
    return cols


EXPECTED_TYPES = {
    "c_int": pa.int64(),
    "c_float": pa.float64(),
    "c_bool": pa.bool_(),
    "c_long": pa.string(),
    "c_longvarbinary": pa.binary(),
    "c_num152": pa.decimal128(15, 2),
    "c_num5010": pa.decimal256(50, 10),
    "c_num1024": pa.string(),
    "c_date": pa.date32(),
    "c_time": pa.time64("us"),
    "c_timetz": pa.string(),
    "c_ts": pa.timestamp("us"),
    "c_tstz": pa.timestamp("us", tz="UTC"),
    "c_interval": pa.duration("us"),
    "c_ym": pa.int64(),
    "c_uuid": pa.uuid(),
    "c_ints": pa.list_(pa.int64()),
    "c_nums": pa.list_(pa.decimal128(10, 2)),
    "c_dates": pa.list_(pa.date32()),
    "c_set": pa.list_(pa.string()),
    "c_row": pa.struct(
        [
            ("a", pa.int64()),
            ("b", pa.string()),
            ("c", pa.decimal128(5, 2)),
            ("d", pa.timestamp("us")),
        ]
    ),
}


def expected(name, value):
    """The value the file must give back for a source value."""
    if value is None:
        return None
    if name == "c_num1024":
        return format(value, "f")
    return value


def assert_same(name, got, want):
    if isinstance(want, float):
        assert isinstance(got, float), (name, got, want)
        assert (math.isnan(got) and math.isnan(want)) or (
            got == want and math.copysign(1, got) == math.copysign(1, want)
        ), (name, got, want)
        return
    if isinstance(want, Decimal):
        assert isinstance(got, Decimal) and str(got) == str(want), (name, got, want)
        return
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (name, got, want)
        for g, w in zip(got, want, strict=True):
            assert_same(name, g, w)
        return
    if isinstance(want, dict):
        assert set(got) == set(want), (name, got, want)
        for key in want:
            assert_same(f"{name}.{key}", got[key], want[key])
        return
    assert type(got) is type(want) and got == want, (name, got, want)


def wide_table():
    columns = wide_columns()
    table = FakeTable("sales", "wide", [c for c, _ in columns])
    for column, values in columns:
        column.texts = [None if v is None else str(v) for v in values]
    return table, {c.name: values for c, values in columns}


def read_all(server, table):
    """What the driver reads: its plans, and its batches at the job's epoch."""
    session = vertica.Session(server.connect(), epoch=server.epoch)
    source = vertica.columns(session, table.schema, table.name)
    plans = [vertica.plan(c) for c in source]
    schema = pa.schema([p.field() for p in plans])
    batches = list(vertica.read_batches(lambda: session, table.schema, table.name, plans))
    return plans, schema, batches


def test_every_type_round_trips_through_the_batch_builder_and_parquet(tmp_path):
    table, values = wide_table()
    server = FakeVertica([table])
    plans, schema, batches = read_all(server, table)

    writer = TableWriter(schema, tmp_path / "wide")
    for batch in batches:
        writer.write(batch)
    [written] = writer.close()
    data = pq.read_table(written.path)

    for name, arrow in EXPECTED_TYPES.items():
        assert data.schema.field(name).type == arrow, name
    assert data.schema.field("c_num152").metadata[b"adu.source_type"] == b"numeric(15,2)"
    assert data.schema.field("c_ym").metadata[b"adu.representation"].startswith(b"number of months")
    rows = data.to_pylist()
    assert len(rows) == table.rows
    for name, column_values in values.items():
        for row, value in zip(rows, column_values, strict=True):
            assert_same(name, row[name], expected(name, value))
    assert not server.fetchall_on_data


def test_batches_stay_bounded_and_never_fetch_everything():
    many = FakeTable(
        "public",
        "many",
        [
            FakeColumn("id", "int", V.INT8, values=[fv.int8(i) for i in range(5000)]),
            FakeColumn("blob", "varbinary(8000)", V.VARBINARY, values=[b"x" * 8000] * 5000),
        ],
    )
    server = FakeVertica([many])
    _, _, batches = read_all(server, many)
    assert sum(b.num_rows for b in batches) == 5000
    assert len(batches) > 1  # ~8 kB rows: a batch holds about BATCH_BYTES, not the table
    assert max(b.nbytes for b in batches) <= vertica.BATCH_BYTES + 2 * 8016
    assert not server.fetchall_on_data
    [select] = [s for s in server.statements if '"blob" FROM' in s]
    assert select == 'AT EPOCH 41 SELECT "id", "blob" FROM "public"."many"'


def test_huge_values_come_one_row_per_batch_and_small_rows_in_bounded_counts(monkeypatch):
    monkeypatch.setattr(vertica_reads, "MAX_BATCH_ROWS", 1000)
    huge = b"\xab" * (vertica.BATCH_BYTES + 1)
    wide = FakeTable(
        "public",
        "wide",
        [FakeColumn("data", "long varbinary(32000000)", V.LONGVARBINARY, values=[huge] * 3)],
    )
    narrow = FakeTable(
        "public",
        "narrow",
        [FakeColumn("id", "int", V.INT8, values=[fv.int8(i) for i in range(2500)])],
    )
    server = FakeVertica([wide, narrow])
    assert [b.num_rows for b in read_all(server, wide)[2]] == [1, 1, 1]
    assert [b.num_rows for b in read_all(server, narrow)[2]] == [1000, 1000, 500]


def test_a_value_python_cannot_hold_names_its_column():
    bc = FakeTable(
        "public",
        "old",
        [
            FakeColumn("id", "int", V.INT8, values=[fv.int8(1), fv.int8(2)]),
            FakeColumn(
                "born", "date", V.DATE, values=[fv.julian(date(2000, 1, 1)), fv.julian_days(0)]
            ),
        ],
    )
    server = FakeVertica([bc])
    with pytest.raises(vertica_types.DoesNotFit) as error:
        read_all(server, bc)
    assert error.value.column == "born"
    assert "4713" not in str(error.value)  # the reason carries no value


def test_decimal_text_keeps_every_digit_and_no_exponent():
    assert vertica_types.decimal_text(Decimal("1E+3")) == "1000"
    assert vertica_types.decimal_text(Decimal("0E-4")) == "0.0000"
    assert vertica_types.decimal_text(Decimal("-1.50")) == "-1.50"


def test_intervals_from_text_transfer_are_exact_too():
    from dateutil.relativedelta import relativedelta

    assert vertica_types.interval_microseconds(
        relativedelta(days=-3, hours=-4, minutes=-5, seconds=-6, microseconds=-789012)
    ) == -((((3 * 24 + 4) * 60 + 5) * 60 + 6) * 10**6 + 789012)
    assert (
        vertica_types.interval_microseconds(timedelta(days=-1, microseconds=5)) == -86_399_999_995
    )
    assert vertica_types.interval_months(relativedelta(years=-1, months=-2)) == -14


# The engine, end to end, against the fake server ---------------------------------------


@pytest.fixture
def fake_server(monkeypatch):
    server = FakeVertica()
    monkeypatch.setattr(vertica_python, "connect", server.connect)
    return server


@pytest.fixture
def vertica_connection(owner):
    from connections.models import Connection

    return Connection.objects.create(
        owner=owner, name="warehouse", kind="vertica", host="vertica.internal", port=5433,
        database="dw", username="etl", password="Vertica-Secret-Mark", sslmode="require",
        connect_timeout=7,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_vertica_job_exports_every_type_at_one_epoch(fake_server, vertica_connection, export):
    table, values = wide_table()
    fake_server.tables = {("sales", "wide"): table}
    job = export(vertica_connection, tables=["sales.wide"])
    run = job.tables.get()
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    assert run.rows_expected == run.rows_written == table.rows
    data = pq.read_table(job.folder() / run.files[0]["path"])
    for name, column_values in values.items():
        for row, value in zip(data.to_pylist(), column_values, strict=True):
            assert_same(name, row[name], expected(name, value))

    assert data.column("c_num1024")[0].as_py().endswith("0." + "0" * 19 + "7")
    profile = {p["name"]: p for p in run.profile}
    assert profile["c_int"]["nulls"] == 1 and profile["c_int"]["max"] == BIG
    assert profile["c_row"]["nulls"] == 1 and profile["c_row"]["distinct"] is None
    assert profile["c_uuid"]["distinct"] == 3

    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["snapshot_id"] == "41"
    assert manifest["consistency"] == "snapshot"
    assert manifest["source"]["kind"] == "vertica"
    reads = [s for s in fake_server.statements if 'FROM "sales"."wide"' in s]
    assert reads and all(s.startswith("AT EPOCH 41 SELECT") for s in reads)
    assert "Vertica-Secret-Mark" not in json.dumps(manifest)
    options = fake_server.connect_options[0]
    assert options["tlsmode"] == "require" and options["connection_timeout"] == 7
    assert options["binary_transfer"] is True
    assert all(s.socket.timeouts == [None] for s in fake_server.sessions)  # no read timeout
    assert all(s.closed for s in fake_server.sessions)


@pytest.mark.django_db(transaction=True)
def test_values_beyond_python_fall_back_to_vertica_text(fake_server, vertica_connection, export):
    special = FakeTable(
        "public",
        "special",
        [
            FakeColumn("id", "int", V.INT8, values=[fv.int8(i) for i in (1, 2, 3)]),
            FakeColumn("d", "date", V.DATE,
                       values=[fv.julian(date(2024, 1, 1)), fv.julian_days(1705426), None],
                       texts=["2024-01-01", "0044-03-15 BC", None]),
            FakeColumn("ts", "timestamp", V.TIMESTAMP,
                       values=[fv.int8(BIG), fv.timestamp(datetime(2000, 1, 1)), fv.int8(-BIG)],
                       texts=["infinity", "2000-01-01 00:00:00", "-infinity"]),
            FakeColumn("t", "time", V.TIME,
                       values=[fv.int8(86_400 * 10**6), fv.micros_of_day(time(12)), None],
                       texts=["24:00:00", "12:00:00", None]),
            FakeColumn("ds", "Array[date]", V.ARRAY1D_DATE,
                       values=[fv.json_text(["2024-01-01", "0044-03-15 BC"]), fv.json_text([]), None],
                       texts=['["2024-01-01","0044-03-15 BC"]', "[]", None]),
            FakeColumn("n", "int", V.INT8, values=[fv.int8(5), None, fv.int8(6)]),
        ],
    )  # fmt: skip
    fake_server.tables = {("public", "special"): special}
    job = export(vertica_connection, tables=["public.special"])
    run = job.tables.get()
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    data = pq.read_table(job.folder() / run.files[0]["path"])
    fell_back = {c["name"] for c in run.columns if "fallback" in c}
    assert fell_back == {"d", "ts", "t", "ds"}
    for name in fell_back:
        assert data.column(name).to_pylist() == next(
            c.texts for c in special.columns if c.name == name
        )
        assert data.schema.field(name).metadata[b"adu.fallback"] == b"true"
        assert "BC" not in run.columns[[c["name"] for c in run.columns].index(name)]["fallback"]
    assert data.column("n").to_pylist() == [5, None, 6]
    last_read = [s for s in fake_server.statements if 'FROM "public"."special"' in s][-1]
    assert 'CAST("d" AS VARCHAR(65000))' in last_read and 'TO_JSON("ds")' in last_read


@pytest.mark.django_db(transaction=True)
def test_an_unsupported_type_fails_its_table_alone(fake_server, vertica_connection, export):
    shapes = FakeTable(
        "public",
        "shapes",
        [
            FakeColumn(
                "g", "geometry(1000)", V.LONGVARBINARY, type_name="geometry", values=[b"\x01"]
            )
        ],
    )
    plain = FakeTable("public", "plain", [FakeColumn("id", "int", V.INT8, values=[fv.int8(1)])])
    fake_server.tables = {("public", "shapes"): shapes, ("public", "plain"): plain}
    job = export(vertica_connection, tables=["public.shapes", "public.plain"])
    assert job.status == ExportJob.Status.COMPLETE_WITH_ERRORS
    runs = {r.table: r for r in job.tables.all()}
    assert runs["plain"].status == "complete"
    [error] = job.errors.all()
    assert error.message == (
        "Column g has type geometry(1000), which ADU cannot export from Vertica: export a "
        "view that casts it (e.g. ST_AsText for spatial types, MAPTOSTRING for maps)."
    )
    assert not (job.folder() / "public" / "shapes.parquet").exists()


@pytest.mark.django_db(transaction=True)
def test_a_missing_vertica_table_fails_alone(fake_server, vertica_connection, export, monkeypatch):
    plain = FakeTable("public", "plain", [FakeColumn("id", "int", V.INT8, values=[fv.int8(1)])])
    fake_server.tables = {("public", "plain"): plain}
    described = calls_to(monkeypatch, vertica, "describe")
    job = export(vertica_connection, tables=["public.plain", "public.gone"])
    assert job.status == ExportJob.Status.COMPLETE_WITH_ERRORS
    assert job.errors.get().message == "Table public.gone does not exist or has no columns."
    # Vertica's catalog is read table by table: a worker asks only about its own.
    assert sorted(names for _, names in described) == [
        [("public", "gone")], [("public", "plain")]
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_enforced_keys_are_validated_and_unenforced_ones_are_not(
    fake_server, vertica_connection, export
):
    dup = FakeTable(
        "public",
        "dup",
        [FakeColumn("id", "int", V.INT8, values=[fv.int8(1), fv.int8(1)])],
        constraints=[("pk_loose", "p", "id", False)],
    )
    fake_server.tables = {("public", "dup"): dup}
    job = export(vertica_connection, tables=["public.dup"], validation="full")
    assert job.status == ExportJob.Status.COMPLETE  # Vertica does not promise that key
    dup.constraints = [("pk_enforced", "p", "id", True)]
    job = export(vertica_connection, tables=["public.dup"], validation="full")
    assert job.status == ExportJob.Status.FAILED
    assert "pk_enforced" in job.errors.get().message


@pytest.mark.django_db(transaction=True)
def test_chosen_columns_and_masks_work_on_vertica_and_a_filter_is_refused(
    fake_server, vertica_connection, owner
):
    from exports.engine.run import run_job
    from exports.jobs import BadRequest, create_job

    people = FakeTable(
        "public",
        "people",
        [
            FakeColumn("id", "int", V.INT8, values=[fv.int8(1), fv.int8(2)]),
            FakeColumn("email", "varchar(80)", V.VARCHAR, values=[b"a@x.org", b"b@x.org"]),
            FakeColumn("ssn", "varchar(11)", V.VARCHAR, values=[b"123-45-6789", None]),
        ],
    )
    fake_server.tables = {("public", "people"): people}
    job = run_job(
        create_job(
            owner,
            vertica_connection,
            tables=["public.people"],
            selections={
                ("public", "people"): {"exclude": ["ssn"], "masks": {"email": {"method": "null"}}}
            },
        ).pk
    )
    run = job.tables.get()
    assert job.status == ExportJob.Status.COMPLETE, list(
        job.errors.values_list("message", flat=True)
    )
    data = pq.read_table(job.folder() / run.files[0]["path"])
    assert data.column_names == ["id", "email"]
    assert data.column("email").to_pylist() == [None, None]
    reads = [s for s in fake_server.statements if s.startswith('AT EPOCH 41 SELECT "id"')]
    assert reads == ['AT EPOCH 41 SELECT "id", "email" FROM "public"."people"']  # ssn never read
    with pytest.raises(BadRequest, match="row filters are not available for Vertica sources yet"):
        create_job(
            owner,
            vertica_connection,
            tables=["public.people"],
            selections={("public", "people"): {"filter": "id > 1"}},
        )
