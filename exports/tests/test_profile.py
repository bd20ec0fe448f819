"""The per-table profile: stored on the TableRun, in the manifest and on the job page."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exports.engine.profile import Profiler
from exports.engine.run import create_job, run_job


def profile_of(tmp_path, batches, schema, ordered):
    profiler = Profiler(schema, ordered)
    path = tmp_path / "t.parquet"
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            profiler.update(batch)
            writer.write_batch(batch)
    return profiler, profiler.result([path])


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
    manifest = json.loads((job.folder() / "manifest.json").read_text())
    assert manifest["tables"][0]["profile"] == run.profile
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Profile of public.t" in page and "3000.00" in page
