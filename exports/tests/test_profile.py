"""The per-table profile: stored on the TableRun, in the manifest and on the job page."""

import datetime
import decimal
import json
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exports.engine import parquet, parquet_join
from exports.engine import profile as profile_module
from exports.engine.profile import Profiler
from exports.engine.run import run_job
from exports.jobs import create_job


def profile_of(tmp_path, batches, schema, ordered, group_rows=None, distinct=None):
    """The profile as an export makes it: the distinct values come from the writer."""
    profiler = Profiler(schema, ordered)
    writer = parquet.TableWriter(schema, tmp_path / "t", distinct=distinct, profiler=profiler)
    for batch in batches:
        profiler.update(batch)
        if group_rows:  # each batch its own row group
            writer.write(batch)
            writer._hand_over()
        else:
            writer.write(batch)
    writer.close()
    return profiler, profiler.result()


def test_it_counts_nulls_min_max_and_distinct_across_batches(tmp_path):
    schema = pa.schema([("n", pa.int64()), ("s", pa.string()), ("b", pa.binary())])
    batches = [
        pa.record_batch([[3, None, 1], ["b", "a", None], [b"x", None, b"y"]], schema=schema),
        pa.record_batch([[7, 3, None], ["c", "a", "a"], [None, None, b"x"]], schema=schema),
    ]
    _, (n, s, b) = profile_of(tmp_path, batches, schema, {"n", "s"})
    assert n == {"name": "n", "nulls": 2, "min": 1, "max": 7, "distinct": 3}
    assert s == {"name": "s", "nulls": 1, "min": "a", "max": "c", "distinct": 3}
    assert b == {"name": "b", "nulls": 3, "min": None, "max": None, "distinct": 2}


def test_nan_counts_once(tmp_path):
    schema = pa.schema([("f", pa.float64())])
    batches = [pa.record_batch([[float("nan"), 1.0]], schema=schema)] * 3
    _, [f] = profile_of(tmp_path, batches, schema, {"f"})
    assert f["distinct"] == 2


def test_the_distinct_count_stops_remembering_past_the_limit(tmp_path):
    schema = pa.schema([("n", pa.int64())])
    batches = [
        pa.record_batch([list(range(start, start + 500))], schema=schema)
        for start in range(0, 3000, 500)
    ]
    profiler, [n] = profile_of(tmp_path, batches, schema, {"n"})
    assert n["distinct"] == "more than 1000"
    assert (n["min"], n["max"]) == (0, 2999)
    assert profiler.distinct["n"] is None  # nothing kept past the limit


def _column_of_every_type(rows: int) -> pa.Table:
    """Columns of the types ADU writes, each with a few distinct values and nulls."""
    k = [i % 7 for i in range(rows)]
    nulls = [None if i % 11 == 0 else v for i, v in enumerate(k)]
    day = datetime.date(2020, 1, 1)
    moment = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    ids = [uuid.UUID(int=v) for v in range(7)]
    return pa.table(
        {
            "i16": pa.array(nulls, pa.int16()),
            "i32": pa.array(nulls, pa.int32()),
            "u32": pa.array([v and 2**32 - v for v in k], pa.uint32()),
            "i64": pa.array([v and -(2**62) + v for v in k], pa.int64()),
            "f64": pa.array([[0.0, -0.0, float("nan"), 1.5, None, -2.0, 3.0][v] for v in k]),
            "f32": pa.array([float(v) / 3 for v in k], pa.float32()),
            "d9": pa.array([decimal.Decimal(v) / 4 for v in k], pa.decimal128(9, 2)),
            "d18": pa.array([decimal.Decimal(-v) * 10**14 for v in k], pa.decimal128(18, 0)),
            "d38": pa.array([decimal.Decimal(v) * 10**30 for v in k], pa.decimal128(38, 1)),
            "text": pa.array([f"t{v}" if v else "" for v in k]),
            "bytes": pa.array([bytes([v]) * v for v in k], pa.binary()),
            "date": pa.array([day + datetime.timedelta(days=v) for v in k], pa.date32()),
            "ts": pa.array(
                [moment + datetime.timedelta(microseconds=v) for v in k], pa.timestamp("us", "UTC")
            ),
            "ts_s": pa.array(
                [moment + datetime.timedelta(seconds=v) for v in k], pa.timestamp("s")
            ),
            "time": pa.array([datetime.time(0, 0, v) for v in k], pa.time64("us")),
            "bool": pa.array([v % 2 == 0 for v in k]),
            "no_values": pa.array([None] * rows, pa.decimal128(30, 2)),
            "uuid": pa.ExtensionArray.from_storage(
                pa.uuid(), pa.array([ids[v].bytes for v in k], pa.binary(16))
            ),
        }
    )


@pytest.fixture
def read_dictionaries(monkeypatch):
    """Row groups of the tests' size are hashed; these tests read their dictionaries."""
    monkeypatch.setattr(profile_module, "DICTIONARY_MIN_ROWS", 0)


def test_a_small_row_group_is_hashed_not_read_from_its_dictionary(tmp_path, monkeypatch):
    def no_reading(*args):
        raise AssertionError("the dictionary of a small row group was read")

    monkeypatch.setattr(parquet_join, "chunk_dictionary", no_reading)
    table = _column_of_every_type(1000)
    _, found = profile_of(tmp_path, table.to_batches(max_chunksize=500), table.schema, set(), 1)
    assert found[0] == {"name": "i16", "nulls": 91, "min": None, "max": None, "distinct": 7}


@pytest.mark.parametrize("dictionary", [True, False], ids=["from the dictionaries", "hashed"])
def test_distinct_counts_as_arrow_counts_them_for_every_type(tmp_path, dictionary, monkeypatch):
    if dictionary:
        monkeypatch.setattr(profile_module, "DICTIONARY_MIN_ROWS", 0)
    table = _column_of_every_type(5000)
    distinct = None if dictionary else dict.fromkeys(table.column_names, 10**9)
    _, profile = profile_of(
        tmp_path, table.to_batches(max_chunksize=1000), table.schema, set(), 1, distinct
    )
    for column in profile:
        values = table.column(column["name"])
        if isinstance(values.type, pa.BaseExtensionType):
            values = values.combine_chunks().storage
        expected = pc.count_distinct(values).as_py()  # nulls not counted
        assert column["distinct"] == expected, column["name"]


def test_row_groups_from_dictionaries_and_hashed_count_together(tmp_path, read_dictionaries):
    """A column chunk whose values outgrow the dictionary page (1 MB) falls back to plain
    values: that row group is hashed, the others read from their dictionaries, and a
    value seen both ways counts once."""
    schema = pa.schema([("s", pa.string()), ("d", pa.decimal128(12, 2))])
    small = pa.record_batch([["a", "b"] * 50, [decimal.Decimal("1.50")] * 100], schema=schema)
    # 1.5 MB of distinct values: the writer falls back after its first 1024 rows
    wide = [f"{i:04d}" + "x" * 3000 for i in range(500)] * 4 + ["a"]
    large = pa.record_batch(
        [wide, [decimal.Decimal(i % 3 + 1) / 2 for i in range(len(wide))]], schema=schema
    )
    _, (s, d) = profile_of(tmp_path, [small, large, small], schema, set(), 1)
    assert s["distinct"] == 502  # a, b and the 500 wide ones
    assert d["distinct"] == 3  # 0.50, 1.00 and 1.50, in every row group's dictionary


def test_a_dictionary_past_the_limit_is_not_read(tmp_path, read_dictionaries):
    schema = pa.schema([("n", pa.int64())])
    batches = [pa.record_batch([list(range(1500))], schema=schema)]
    profiler, [n] = profile_of(tmp_path, batches, schema, {"n"}, 1)
    assert n["distinct"] == "more than 1000"
    assert profiler.counting() == {}  # the column is no longer counted


@pytest.mark.django_db(transaction=True)
def test_the_profile_is_stored_and_written_in_the_manifest(owner, source_db, client):
    source_db.execute(
        "CREATE TABLE t AS SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE i % 4 END AS k, "
        "(i * 1.5)::numeric(10,2) AS amount, date '2024-01-01' + i AS day, "
        "(i * 7)::numeric AS free_numeric "
        "FROM generate_series(1, 2000) i"
    )
    job = run_job(create_job(owner, source_db.connection(owner), tables=["public.t"]).pk)
    run = job.tables.get()
    profile = {c["name"]: c for c in run.profile}
    assert profile["i"] == {
        "name": "i", "nulls": 0, "min": 1, "max": 2000, "distinct": "more than 1000"
    }  # fmt: skip
    assert profile["k"] == {"name": "k", "nulls": 200, "min": 0, "max": 3, "distinct": 4}
    assert (profile["amount"]["min"], profile["amount"]["max"]) == ("1.50", "3000.00")
    assert (profile["day"]["min"], profile["day"]["max"]) == ("2024-01-02", "2029-06-23")
    # numbers kept as text would sort as text ("9" > "14000"): no min and max for them
    assert (profile["free_numeric"]["min"], profile["free_numeric"]["max"]) == (None, None)
    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["tables"][0]["profile"] == run.profile
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Profile of public.t" in page and "3000.00" in page
