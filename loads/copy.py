"""Rows of a Parquet file into a COPY ... FROM STDIN (FORMAT csv), a row group at a time.

Arrow's CSV writer renders each value in a form PostgreSQL's input functions read back
to the same value: shortest round-trip floats (nan, inf, -0), decimals with their scale,
ISO dates and times, UTC timestamps with a Z, strings always quoted (so "" is an empty
string and an unquoted empty field is NULL). The text the export kept (arrays, enums,
intervals, ranges, values a native type could not hold) is PostgreSQL's own output and
goes back as it is. Bytes go as \\x hex, which Arrow cannot write: see hex_text.
"""

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent import futures

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

_HEX = (
    np.array([f"{b:02x}".encode() for b in range(256)], dtype="S2").view(np.uint8).reshape(256, 2)
)
_WRITE = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


def hex_text(array: pa.Array, prefix: bytes = b"\\x") -> pa.Array:
    """Binary (or fixed-size binary) values as `prefix` + lowercase hex text, in numpy."""
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([hex_text(c, prefix) for c in array.chunks], pa.string())
    n = len(array)
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        data = np.frombuffer(array.buffers()[1], np.uint8)[
            array.offset * width : (array.offset + n) * width
        ]
        offsets = np.arange(n + 1, dtype=np.int64) * width
    else:
        array = array.cast(pa.large_binary())
        offsets = np.frombuffer(array.buffers()[1], np.int64)[array.offset : array.offset + n + 1]
        data = (
            np.frombuffer(array.buffers()[2], np.uint8)
            if array.buffers()[2]
            else np.empty(0, np.uint8)
        )
        data = data[offsets[0] : offsets[-1]]
        offsets = offsets - offsets[0]
    plen = len(prefix)
    hexed = _HEX[data].reshape(-1)  # two digits a byte, every row's one after the other
    out_offsets = offsets * 2 + np.arange(n + 1, dtype=np.int64) * plen
    if plen:  # each row's prefix before its digits; memory a few times the batch's bytes
        where = np.repeat(offsets[:-1] * 2, plen)
        out = np.insert(hexed, where, np.tile(np.frombuffer(prefix, np.uint8), n))
    else:
        out = hexed
    validity = array.buffers()[0]
    if validity is not None and array.offset:
        validity = pa.array(array.is_valid()).buffers()[1]
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(out_offsets), pa.py_buffer(out), validity, array.null_count
    ).cast(pa.string())


RENDERERS = 2


def _csv(batch: pa.RecordBatch) -> memoryview:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(csv_ready(batch), sink, _WRITE)
    return memoryview(sink.getvalue())


def csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every column in a type Arrow's CSV writer renders as PostgreSQL
    reads it: bytes and UUIDs as hex text."""
    arrays, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        if isinstance(kind, pa.BaseExtensionType):
            kind = kind.storage_type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            column = hex_text(column)
        elif pa.types.is_fixed_size_binary(kind):  # a uuid: 32 hex digits, which uuid_in reads
            column = hex_text(column, prefix=b"")
        arrays.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


class CsvStream:
    """A file-like object psycopg2's copy_expert reads: the batches as CSV, rendered by
    RENDERERS threads ahead of the COPY (Arrow's writer lets go of the GIL), so that the
    server parses one batch while the next ones are rendered; memory holds a few
    batches' text at a time."""

    def __init__(self, batches: Iterable[pa.RecordBatch]):
        self._chunks = self._render(batches)
        self._buffer = memoryview(b"")

    @staticmethod
    def _render(batches: Iterable[pa.RecordBatch]) -> Iterator[memoryview]:
        with futures.ThreadPoolExecutor(RENDERERS, thread_name_prefix="adu-csv") as pool:
            ahead: deque[futures.Future] = deque()
            for batch in batches:
                if batch.num_rows:
                    ahead.append(pool.submit(_csv, batch))
                while len(ahead) > RENDERERS:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return b""
        size = len(self._buffer) if size is None or size < 0 else size
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(piece)

    readline = read
