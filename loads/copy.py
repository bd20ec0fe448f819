"""Rows of a Parquet file into a COPY ... FROM STDIN, a row group at a time, in one of two
forms (copy_form chooses).

Binary, where every column is a plain type held natively in the file (integers, floats,
numeric, text, bytes, dates, times, uuid) and the target's column is of that very type:
the rows are encoded from the Arrow buffers by ADU's C extension (native/adu_pgcopy.c),
and the server's binary input costs it less than parsing text.

CSV otherwise: Arrow's CSV writer renders each value in a form PostgreSQL's input
functions read back to the same value: shortest round-trip floats (nan, inf, -0), decimals
with their scale, ISO dates and times, UTC timestamps with a Z, strings always quoted (so
"" is an empty string and an unquoted empty field is NULL). The text the export kept
(arrays, enums, intervals, ranges, values a native type could not hold) is PostgreSQL's
own output and goes back as it is. Bytes go as \\x hex, which Arrow cannot write: see
hex_text.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass

import adu_pgcopy
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


@dataclass(frozen=True)
class CopyForm:
    """How a table's rows go into COPY: its FORMAT option, each batch's bytes, and what
    comes before the first batch and after the last."""

    name: str
    render: Callable[[pa.RecordBatch], memoryview | bytes]
    header: bytes = b""
    trailer: bytes = b""


# The target column types (pg_type.typname) whose binary input adu_pgcopy.encode writes,
# each with the file's Arrow types it writes them from.
_BINARY = {
    "bool": (adu_pgcopy.BOOL, (pa.bool_(),)),
    "int2": (adu_pgcopy.INT16, (pa.int16(),)),
    "int4": (adu_pgcopy.INT32, (pa.int32(),)),
    "int8": (adu_pgcopy.INT64, (pa.int64(),)),
    "oid": (adu_pgcopy.OID, (pa.int64(),)),
    "float4": (adu_pgcopy.FLOAT32, (pa.float32(),)),
    "float8": (adu_pgcopy.FLOAT64, (pa.float64(),)),
    "date": (adu_pgcopy.DATE, (pa.date32(),)),
    "timestamp": (adu_pgcopy.TIMESTAMP, (pa.timestamp("us"),)),
    "timestamptz": (adu_pgcopy.TIMESTAMP, (pa.timestamp("us", tz="UTC"),)),
    "time": (adu_pgcopy.TIME, (pa.time64("us"),)),
    "text": (adu_pgcopy.STRING, (pa.string(), pa.large_string())),
    "varchar": (adu_pgcopy.STRING, (pa.string(), pa.large_string())),
    "bpchar": (adu_pgcopy.STRING, (pa.string(), pa.large_string())),
    "name": (adu_pgcopy.STRING, (pa.string(), pa.large_string())),
    "bytea": (adu_pgcopy.BINARY, (pa.binary(), pa.large_binary())),
    "uuid": (adu_pgcopy.UUID, (pa.uuid(), pa.binary(16))),
}
_LARGE = (pa.large_string(), pa.large_binary())
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_BINARY_TRAILER = b"\xff\xff"


def binary_kind(target_type: str, arrow_type: pa.DataType) -> tuple[int, int] | None:
    """(adu_pgcopy kind, decimal scale) for a column of `target_type` (a base type's
    typname) held in the file as `arrow_type`, or None: it goes as CSV."""
    if target_type == "numeric":
        if pa.types.is_decimal128(arrow_type):
            return adu_pgcopy.DECIMAL, arrow_type.scale
        return None
    kind, held_as = _BINARY.get(target_type, (None, ()))
    return (kind, 0) if arrow_type in held_as else None


def copy_form(schema: pa.Schema, target_types: list[str | None]) -> CopyForm:
    """Binary if every column of the file (`schema`) can go so into its target column
    (`target_types`: a base type's typname, None for any other type), else CSV."""
    kinds = [
        binary_kind(t, f.type) if t else None for t, f in zip(target_types, schema, strict=True)
    ]
    if None in kinds or not kinds:
        return CopyForm("csv", _csv)
    return CopyForm(
        "binary", lambda batch: _binary(batch, schema, kinds), _BINARY_HEADER, _BINARY_TRAILER
    )


def _binary(batch: pa.RecordBatch, schema: pa.Schema, kinds: list) -> bytes:
    if not batch.schema.equals(schema):  # a later file of the table, written otherwise
        raise ValueError(f"a batch of columns {batch.schema}, not the first file's {schema}")
    sources = []
    for column, (kind, scale) in zip(batch.columns, kinds, strict=True):
        if isinstance(column, pa.ExtensionArray):
            column = column.storage  # uuid: its 16 bytes
        buffers = column.buffers()
        validity = buffers[0] if column.null_count else None
        if kind in (adu_pgcopy.STRING, adu_pgcopy.BINARY):
            offsets, values = buffers[1], buffers[2] or pa.py_buffer(b"")
        else:
            offsets, values = None, buffers[1]
        if values is None:  # no values at all: every one is NULL
            values = pa.py_buffer(bytes(16 * (len(column) + column.offset)))
        sources.append(
            (kind, scale, column.offset, validity, values, offsets, column.type in _LARGE)
        )
    return adu_pgcopy.encode(sources, batch.num_rows)


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


class CopyStream:
    """A file-like object psycopg2's copy_expert reads: the batches in the COPY form, each
    rendered by one of RENDERERS threads ahead of the COPY (Arrow's CSV writer and
    adu_pgcopy let go of the GIL), so that the server reads one batch while the next ones
    are rendered; memory holds a few batches' bytes at a time."""

    def __init__(self, batches: Iterable[pa.RecordBatch], form: CopyForm):
        self._chunks = self._render(batches, form)
        self._buffer = memoryview(form.header)
        # What failed in reading or rendering the files: psycopg2 reports it to the caller
        # as the server's "query canceled", which would blame the target.
        self.failure: Exception | None = None

    @staticmethod
    def _render(batches: Iterable[pa.RecordBatch], form: CopyForm) -> Iterator[memoryview]:
        with futures.ThreadPoolExecutor(RENDERERS, thread_name_prefix="adu-copy") as pool:
            ahead: deque[futures.Future] = deque()
            for batch in batches:
                if batch.num_rows:
                    ahead.append(pool.submit(form.render, batch))
                while len(ahead) > RENDERERS:
                    yield memoryview(ahead.popleft().result())
            while ahead:
                yield memoryview(ahead.popleft().result())
        if form.trailer:
            yield memoryview(form.trailer)

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return b""
            except Exception as error:
                self.failure = error
                raise
        size = len(self._buffer) if size is None or size < 0 else size
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(piece)

    readline = read
