"""Writes Arrow batches into ZSTD Parquet files that appear at their final path only when complete.

Each file is written as `NAME.parquet.part`, hashed (SHA-256) while it is written,
fsynced, its footer read back to check the row count, and renamed. The folders are synced
once per job, before its manifest is written (sync_folders).
"""

import hashlib
import io
import os
from collections import deque
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adu_site.durable import DurableFile
from exports.engine import memory, parquet_join, profile

# 96k rows: lineitem's row groups hold about 2.9 MB each; 128k rows made the file 0.4%
# smaller and the export's peak memory 30 MB larger (two groups are encoded at once).
ROW_GROUP_ROWS = 96 * 1024
ROW_GROUP_BYTES = 64 << 20
# Row groups encoded at once (each holds one in memory until it is written out).
ENCODERS = 2
# Dictionary encoding pays only for columns with few distinct values, and only when values
# repeat (half as many distinct values as rows, at most); on the others it costs CPU and
# makes the file larger (a table of 1,000 unique keys and texts: 13.3 kB and 0.41 ms to
# encode with it, 8.2 kB and 0.27 ms without).
DICTIONARY_MAX_DISTINCT = 50_000


@dataclass
class WrittenFile:
    path: Path
    rows: int
    bytes: int
    sha256: str


class IncompleteFile(Exception):
    pass


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what passes through it, on the disk once closed."""

    def __init__(self, path: Path):
        self._file = DurableFile(path)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        view = memoryview(data)
        self.sha256.update(view)
        self._file.write(view)
        self.size += len(view)
        return len(view)

    def tell(self):
        return self.size

    def close(self):
        self._file.close()
        super().close()


class TableWriter:
    """Parquet output of one table: one file, or numbered parts of about `max_file_bytes`.

    Row groups are encoded and compressed (most of an export's CPU) by ENCODERS threads at
    once, each as a small file of its own, and joined in order into the table's file
    (exports/engine/parquet_join.py): the bytes are what one writer would have written.
    """

    def __init__(
        self,
        schema: pa.Schema,
        target: Path,
        compression_level: int = 3,
        max_file_bytes: int | None = None,
        distinct: dict[str, int] | None = None,
        profiler: profile.Profiler | None = None,
        rows_estimate: int | None = None,
    ):
        self.schema = schema
        self.target = target  # .../schema/table: gets ".parquet" or "/part-NNNNN.parquet"
        self.compression_level = compression_level
        self.max_file_bytes = max_file_bytes
        self.dictionary = dictionary_columns(schema, distinct or {}, rows_estimate)
        self.profiler = profiler  # given each row group's distinct values
        self.files: list[WrittenFile] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._encoding: deque[futures.Future] = deque()  # row groups, in file order
        self._pool: futures.ThreadPoolExecutor | None = None
        self._sink: _HashingFile | None = None
        self._path: Path | None = None
        self._footer: parquet_join.Struct | None = None  # a group's own footer: schema, metadata
        self._groups: list[parquet_join.Struct] = []  # of the current file, at their offsets in it
        self._rows = 0  # in the current file
        self.rows = 0  # accepted so far, all files

    @property
    def bytes_written(self) -> int:
        done = sum(f.bytes for f in self.files)
        return done + (self._sink.size if self._sink else 0)

    def write(self, batch: pa.RecordBatch):
        self.rows += batch.num_rows
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._hand_over()

    def close(self) -> list[WrittenFile]:
        if self._sink is None and not self._encoding and not self.files:
            self._write_small()
            return self.files
        self._hand_over()
        while self._encoding:
            self._append(*self._encoding.popleft().result())
        self._stop()
        self._finish_file()
        return self.files

    def _write_small(self):
        """A table that fits in one row group (most tables of a schema; an empty one gets
        a file with its schema) is encoded straight into its file, here: a thread to
        encode in and a footer to join would cost more than the rows."""
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self.profiler:
            counting = self.profiler.counting()
            for name, values in profile.row_group_distinct(table, None, None, counting).items():
                self.profiler.add_distinct(name, values)
        encoded = pa.BufferOutputStream()  # then written at once, not in pyarrow's pieces
        with pq.ParquetWriter(encoded, self.schema, **self._properties()) as writer:
            if table.num_rows:
                writer.write_table(table, row_group_size=table.num_rows)
        self._open(magic=False)
        assert self._sink is not None
        data = encoded.getvalue()
        self._sink.write(data)
        self._rows = table.num_rows
        # The footer of the bytes written, read from memory: opening the file again to
        # read it cost a small table a quarter of a millisecond.
        self._seal(pq.read_metadata(pa.BufferReader(data)))

    def abort(self):
        """Remove every file of this table, finished or not."""
        self._pending = []
        self._stop()
        if self._sink is not None:
            self._sink.close()
        for path in [self._path, *(f.path for f in self.files)]:
            if path is not None:
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".part").unlink(missing_ok=True)
        self.files = []

    def _hand_over(self):
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(ENCODERS, thread_name_prefix="adu-parquet")
        counting = self.profiler.counting() if self.profiler else {}
        self._encoding.append(self._pool.submit(self._encode, table, counting))
        while len(self._encoding) > ENCODERS:  # memory stays bounded: wait for the oldest
            self._append(*self._encoding.popleft().result())

    def _encode(self, table: pa.Table, counting: dict[str, int]):
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, self.schema, **self._properties()) as writer:
            writer.write_table(table, row_group_size=len(table))
        encoded = memoryview(sink.getvalue())
        body, group_footer = parquet_join.split(encoded)
        [group] = parquet_join.row_groups(group_footer)
        distinct = profile.row_group_distinct(table, encoded, group, counting)
        return body, group_footer, len(table), distinct

    def _append(
        self, body: memoryview, group_footer: parquet_join.Struct, rows: int, distinct: dict
    ):
        for name, values in distinct.items():
            assert self.profiler is not None  # distinct values are counted for a profiler only
            self.profiler.add_distinct(name, values)
        if self._sink is None:
            self._open()
        assert self._sink is not None
        [group] = parquet_join.row_groups(group_footer)
        # The group's bytes start after its file's 4-byte magic; here, at the sink's end.
        self._groups.append(parquet_join.moved(group, self._sink.size - 4, len(self._groups)))
        self._footer = group_footer
        self._sink.write(body)
        self._rows += rows
        del body
        memory.trim()
        if self.max_file_bytes and self._sink.size >= self.max_file_bytes:
            self._finish_file()

    def _stop(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._encoding.clear()

    def _properties(self) -> dict:
        return {
            "compression": "zstd",
            "compression_level": self.compression_level,
            "use_dictionary": self.dictionary,
            "write_statistics": True,
            "store_decimal_as_integer": True,
        }

    def _open(self, magic: bool = True):
        if self.max_file_bytes:
            if not self.files:
                # Parts of an attempt whose worker died (this one owns the table): a
                # reader of the folder's part-*.parquet must not find them beside the new.
                for stale in self.target.glob("part-*.parquet*"):
                    stale.unlink(missing_ok=True)
            self._path = self.target / f"part-{len(self.files):05d}.parquet"
        else:
            self._path = self.target.with_name(self.target.name + ".parquet")
        part = self._path.with_name(self._path.name + ".part")
        # One system call in the usual case: a schema of small tables opens thousands.
        try:
            self._sink = _HashingFile(part)
        except FileNotFoundError:  # the table's folder is not there yet
            part.parent.mkdir(parents=True, exist_ok=True)
            self._sink = _HashingFile(part)
        except FileExistsError:  # left by a worker that died; this one owns the table
            part.unlink()
            self._sink = _HashingFile(part)
        if magic:  # row groups are joined after it
            self._sink.write(parquet_join.MAGIC)
        self._groups, self._footer, self._rows = [], None, 0

    def _finish_file(self):
        if self._sink is None:
            return
        assert self._path is not None and self._footer is not None  # an open file has both
        self._sink.write(parquet_join.footer_bytes(self._footer, self._groups, self._rows))
        self._seal()

    def _seal(self, footer: pq.FileMetaData | None = None):
        """Put the open file, whole, at its final path and check its footer's row count
        (`footer`: the footer of the bytes written, when at hand; else read from the file)."""
        assert self._sink is not None and self._path is not None
        self._sink.close()
        part = self._path.with_name(self._path.name + ".part")
        if footer is None:
            footer = pq.read_metadata(part)
        if footer.num_rows != self._rows:
            raise IncompleteFile(
                f"{self._path.name} holds {footer.num_rows} rows in its footer, "
                f"{self._rows} written."
            )
        # The rename reaches the disk when the job's folders are synced, before its
        # manifest (sync_folders): a folder synced per file cost more than a small file.
        os.replace(part, self._path)
        if self.profiler:
            self.profiler.add_file(footer)
        self.files.append(
            WrittenFile(self._path, self._rows, self._sink.size, self._sink.sha256.hexdigest())
        )
        self._sink = self._path = self._footer = None
        self._groups = []


def dictionary_columns(
    schema: pa.Schema, distinct: dict[str, int], rows: int | None = None
) -> list[str]:
    """Columns to dictionary-encode: few distinct values that repeat, or unknown (no
    statistics). `distinct` and `rows` are the server's estimates."""
    most = DICTIONARY_MAX_DISTINCT if rows is None else min(DICTIONARY_MAX_DISTINCT, rows // 2)
    return [name for name in schema.names if distinct.get(name, 0) <= most]
