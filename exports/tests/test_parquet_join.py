"""Row groups encoded apart and joined (exports/engine/parquet_join.py) make the very file one
pyarrow writer makes of the same row groups, byte for byte."""

import hashlib
import uuid
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exports.engine import parquet, parquet_join
from exports.engine.parquet import TableWriter


def sample_table(rows: int) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), False, {"adu.source_type": "bigint"}),
            pa.field("price", pa.decimal128(15, 2)),
            pa.field("flag", pa.string()),
            pa.field("note", pa.string()),
            pa.field("day", pa.date32()),
            pa.field("at", pa.timestamp("us", tz="UTC")),
            pa.field("raw", pa.binary()),
            pa.field("key", pa.uuid()),
            pa.field("ratio", pa.float64()),
            pa.field("ok", pa.bool_()),
        ],
        metadata={"adu.table": "public.sample"},
    )
    keys = pa.array([uuid.UUID(int=i * 7919).bytes for i in range(rows)], pa.binary(16))
    return pa.table(
        [
            ids,
            pa.array(
                [
                    None if i % 11 == 0 else (Decimal(i * 3) / 200).quantize(Decimal("0.01"))
                    for i in range(rows)
                ],
                pa.decimal128(15, 2),
            ),
            pa.array([None if i % 13 == 0 else "ARN"[i % 3] for i in range(rows)]),
            pa.array([f"comment {i * 2654435761 % 1000003}" for i in range(rows)]),
            pa.array([i % 3000 for i in range(rows)], pa.int32()).cast(pa.date32()),
            pa.array([i * 1_000_003 for i in range(rows)], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            pa.array([i.to_bytes(3, "big") if i % 5 else None for i in range(rows)]),
            pa.ExtensionArray.from_storage(pa.uuid(), keys),
            pa.array([float("-inf") if i % 17 == 0 else i / 7 for i in range(rows)]),
            pa.array([i % 2 == 0 if i % 19 else None for i in range(rows)]),
        ],
        schema=schema,
    )


def write_with(writer: TableWriter, table: pa.Table, batch_rows: int):
    for batch in table.to_batches(max_chunksize=batch_rows):
        writer.write(batch)
    return writer.close()


def test_the_joined_file_is_what_one_writer_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 40_000)
    table = sample_table(130_000)
    writer = TableWriter(table.schema, tmp_path / "joined", distinct={"note": 10**6})
    [written] = write_with(writer, table, 10_000)

    # One pyarrow writer, the same row groups and properties.
    single = tmp_path / "single.parquet"
    with pq.ParquetWriter(single, table.schema, **writer._properties()) as one:
        for offset in range(0, 130_000, 40_000):
            group = table.slice(offset, 40_000)
            one.write_table(group, row_group_size=len(group))

    joined = written.path.read_bytes()
    assert joined == single.read_bytes()
    assert written.sha256 == hashlib.sha256(joined).hexdigest()
    assert written.rows == 130_000 and written.bytes == len(joined)
    data = pq.read_table(written.path)
    assert data.equals(table)
    assert data.schema.field("id").metadata == {b"adu.source_type": b"bigint"}
    metadata = pq.read_metadata(written.path)
    assert metadata.num_row_groups == 4
    assert [metadata.row_group(i).num_rows for i in range(4)] == [40_000] * 3 + [10_000]
    assert metadata.row_group(3).column(0).statistics.max == 129_999


def test_parts_and_an_empty_table_are_joined_files_too(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 20_000)
    table = sample_table(100_000)
    files = write_with(
        TableWriter(table.schema, tmp_path / "parts", max_file_bytes=1), table, 20_000
    )
    assert [f.rows for f in files] == [20_000] * 5
    assert pa.concat_tables(pq.read_table(f.path) for f in files).equals(table)

    [empty] = TableWriter(table.schema, tmp_path / "empty").close()
    assert pq.read_table(empty.path).equals(table.slice(0, 0))


def test_the_footer_codec_reads_and_writes_pyarrows_footers_unchanged():
    sink = pa.BufferOutputStream()
    pq.write_table(sample_table(5_000), sink, row_group_size=1_000, compression="zstd")
    data = memoryview(sink.getvalue())
    body, parsed = parquet_join.split(data)
    assert len(parquet_join.row_groups(parsed)) == 5
    again = parquet_join.footer_bytes(parsed, parquet_join.row_groups(parsed), 5_000)
    assert again == bytes(data[4 + len(body) :])


def test_a_file_that_is_not_parquet_is_refused():
    with pytest.raises(ValueError, match="not a Parquet file"):
        parquet_join.split(memoryview(b"PAR1 but not really"))


@pytest.mark.parametrize("parts", [False, True])
def test_a_part_file_left_by_a_dead_worker_is_replaced_and_new_folders_are_made(tmp_path, parts):
    schema = pa.schema([("i", pa.int32())])
    target = tmp_path / "new" / "schema" / "t"
    writer = TableWriter(schema, target, max_file_bytes=1 << 20 if parts else None)
    final = target / "part-00000.parquet" if parts else target.with_name("t.parquet")
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(b"half a file")
    writer.write(pa.record_batch([pa.array([1, 2, 3], pa.int32())], schema=schema))
    [written] = writer.close()
    assert written.path == final
    assert pq.read_table(final).column("i").to_pylist() == [1, 2, 3]
    assert [p.name for p in final.parent.iterdir()] == [final.name]

    fresh = TableWriter(schema, tmp_path / "other" / "t", max_file_bytes=1 << 20 if parts else None)
    fresh.write(pa.record_batch([pa.array([4], pa.int32())], schema=schema))
    [written] = fresh.close()
    assert pq.read_table(written.path).num_rows == 1


def test_a_file_whose_footer_disagrees_never_reaches_its_final_path(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 1_000)
    real_footer = parquet_join.footer_bytes
    monkeypatch.setattr(
        parquet_join,
        "footer_bytes",
        lambda footer, groups, rows: real_footer(footer, groups, rows + 1),
    )
    table = sample_table(3_000)
    writer = TableWriter(table.schema, tmp_path / "t")
    with pytest.raises(parquet.IncompleteFile, match="3001 rows in its footer, 3000 written"):
        write_with(writer, table, 1_000)
    assert not (tmp_path / "t.parquet").exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_columns_are_dictionary_encoded_only_where_values_repeat():
    schema = pa.schema([("id", pa.int64()), ("flag", pa.string()), ("note", pa.string())])
    # The server's estimates: id unique, flag of 3 values, note never analyzed.
    distinct = {"id": 1_000, "flag": 3}
    assert parquet.dictionary_columns(schema, distinct, 1_000) == ["flag", "note"]
    assert parquet.dictionary_columns(schema, distinct, 2_000) == ["id", "flag", "note"]
    assert parquet.dictionary_columns(schema, distinct, None) == ["id", "flag", "note"]
    many = {"id": 6_000_000, "flag": 3, "note": 60_000}
    assert parquet.dictionary_columns(schema, many, 6_000_000) == ["flag"]


def test_parts_a_dead_worker_left_are_gone_when_the_table_is_written_again(tmp_path):
    schema = pa.schema([("i", pa.int32())])
    target = tmp_path / "schema" / "t"
    target.mkdir(parents=True)
    # An attempt that died after three parts (the table had more rows in its snapshot).
    for name in ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet.part"):
        (target / name).write_bytes(b"old rows")
    writer = TableWriter(schema, target, max_file_bytes=1 << 20)
    writer.write(pa.record_batch([pa.array([1, 2], pa.int32())], schema=schema))
    [written] = writer.close()
    assert sorted(p.name for p in target.iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(written.path).column("i").to_pylist() == [1, 2]
