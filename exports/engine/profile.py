"""A per-table profile: null count, min and max, and a distinct count up to 1000 values.

Nulls, min and max come from the statistics the Parquet writer computes anyway (read back
from the footers: no extra pass, no extra work on the hot path). The distinct count comes
from each row group the writer encodes (row_group_distinct, on the writer's threads): a
dictionary-encoded column chunk already holds its distinct values in its dictionary page;
only the other chunks are hashed, in Arrow. Memory stays bounded: at most
DISTINCT_LIMIT + 1 remembered values per column, and only while under the limit.
"""

import datetime
import decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exports.engine import parquet_join

DISTINCT_LIMIT = 1000
# Below this many rows a row group's values are hashed (in C++, about 0.1 ms for 1,000
# rows) rather than its dictionary pages read back (in Python, about 1 µs a value): a
# small table's profile would otherwise cost more than its export.
DICTIONARY_MIN_ROWS = 32 * 1024


class Profiler:
    def __init__(self, schema: pa.Schema, ordered: set[str]):
        """`ordered`: the columns whose min and max mean something (not bytes, not text
        standing for another type, where the order of strings would mislead)."""
        self.names = schema.names
        self.distinct: dict[str, pa.Array | None] = dict.fromkeys(schema.names)
        self.many: set[str] = set()
        # Lists and structs (Vertica's ARRAY, SET, ROW) have no distinct kernel and one
        # Parquet leaf per field: their nulls are counted here, the rest is not profiled.
        self.nested = {f.name: 0 for f in schema if pa.types.is_nested(f.type)}
        self.leaf = _first_leaves(schema)
        self.nulls = dict.fromkeys(self.names, 0)
        self.bounds: dict[str, tuple] = {}  # (min, max) of the row groups so far
        self.known = set(ordered) - set(self.nested)  # columns whose bounds are all known

    def update(self, batch: pa.RecordBatch):
        for name in self.nested:
            self.nested[name] += batch.column(name).null_count

    def counting(self) -> dict[str, int]:
        """The columns whose distinct values are still counted, with their Parquet leaf."""
        return {
            name: self.leaf[name]
            for name in self.names
            if name not in self.many and name not in self.nested
        }

    def add_distinct(self, name: str, values: pa.Array | None):
        """One row group's distinct values of a column (None: more than the limit)."""
        if name in self.many:
            return
        known = self.distinct[name]
        if values is not None and known is not None:
            if pc.all(pc.is_in(values, value_set=known)).as_py():
                return  # nothing new: the usual case
            values = pc.unique(pa.concat_arrays([known, values]))
        if values is None or _count(values) > DISTINCT_LIMIT:
            self.many.add(name)
            values = None
        self.distinct[name] = values

    def add_file(self, metadata: pq.FileMetaData):
        """A file of the table, as its footer tells (the writer gives it each file it
        seals): nulls, and min and max of each row group."""
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for name in self.names:
                if name in self.nested:
                    continue
                stats = row_group.column(self.leaf[name]).statistics
                if stats is None:
                    self.known.discard(name)
                    continue
                self.nulls[name] += stats.null_count
                if stats.has_min_max and name in self.known:
                    low, high = self.bounds.get(name, (stats.min, stats.max))
                    self.bounds[name] = (min(low, stats.min), max(high, stats.max))
                elif not stats.has_min_max and stats.null_count < row_group.num_rows:
                    self.known.discard(name)  # values without statistics: bounds unknown

    def result(self) -> list[dict]:
        nulls = {**self.nulls, **self.nested}
        bounds = {name: self.bounds[name] for name in self.known if name in self.bounds}
        return [
            {
                "name": name,
                "nulls": nulls[name],
                "min": _plain(bounds[name][0]) if name in bounds else None,
                "max": _plain(bounds[name][1]) if name in bounds else None,
                "distinct": (
                    None
                    if name in self.nested
                    else f"more than {DISTINCT_LIMIT}"
                    if name in self.many
                    else _count(self.distinct[name])
                ),
            }
            for name in self.names
        ]


def row_group_distinct(
    table: pa.Table,
    encoded: memoryview | None,
    group: parquet_join.Struct | None,
    columns: dict[str, int],
) -> dict[str, pa.Array | None]:
    """The distinct values of `columns` (name: Parquet leaf) in one row group: `table`,
    encoded as the Parquet file `encoded` whose only row group is `group` (None: not at
    hand, the rows are hashed). None for a column with more than DISTINCT_LIMIT."""
    found: dict[str, pa.Array | None] = {}
    for name, leaf in columns.items():
        array = table.column(name)
        if isinstance(array.type, pa.BaseExtensionType):
            array = pa.chunked_array([c.storage for c in array.chunks], array.type.storage_type)
        if (
            encoded is not None
            and group is not None
            and table.num_rows >= DICTIONARY_MIN_ROWS
            and parquet_join.dictionary_only(group, leaf)
        ):
            stored = parquet_join.chunk_dictionary(encoded, group, leaf, DISTINCT_LIMIT)
            if stored is None:
                found[name] = None
                continue
            values = _as_arrow(stored, array.type)
            if values is not None:
                found[name] = values
                continue
        # The first rows settle most columns with many values, before the whole chunk
        # is hashed (its hash table held, for a text column, the size of the text).
        values = pc.unique(array.slice(0, 2 * DISTINCT_LIMIT))
        if len(array) > 2 * DISTINCT_LIMIT and _count(values) <= DISTINCT_LIMIT:
            values = pc.unique(array)  # a null, if any, is one of them: not counted
        found[name] = values if _count(values) <= DISTINCT_LIMIT else None
    return found


def _as_arrow(stored: pa.Array, kind: pa.DataType) -> pa.Array | None:
    """A dictionary's values (as Parquet stores them) as the column's Arrow type, so that
    row groups read from their dictionary and row groups hashed compare alike; None for
    a type stored otherwise (decimals as bytes, seconds stored as milliseconds)."""
    if stored.type == kind:
        return stored
    if pa.types.is_decimal128(kind) and pa.types.is_integer(stored.type):
        unscaled = stored.cast(pa.decimal128(38, 0))  # the same 16-byte integers
        return pa.Array.from_buffers(kind, len(stored), [None, unscaled.buffers()[1]])
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        return stored.cast(kind)
    if getattr(kind, "unit", None) == "s":
        return None
    fixed = pa.types.is_temporal(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if fixed and kind.bit_width == stored.type.bit_width:  # the same bits (uint32 as int32)
        return pa.Array.from_buffers(kind, len(stored), [None, stored.buffers()[1]])
    if pa.types.is_integer(kind) and pa.types.is_integer(stored.type):
        return stored.cast(kind)  # 8 and 16 bits are stored as 32
    return None


def _first_leaves(schema: pa.Schema) -> dict[str, int]:
    """Each top-level column's first leaf column in the Parquet file."""
    first, index = {}, 0
    for field in schema:
        first[field.name] = index
        index += _leaves(field.type)
    return first


def _leaves(kind: pa.DataType) -> int:
    if isinstance(kind, pa.BaseExtensionType):
        kind = kind.storage_type
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    return 1


def _count(values: pa.Array | None) -> int:
    return 0 if values is None else len(values) - values.null_count


def _plain(value):
    """A JSON value that keeps the exact value (decimals and times as text)."""
    if isinstance(value, (decimal.Decimal, datetime.date, datetime.time, datetime.datetime)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value
