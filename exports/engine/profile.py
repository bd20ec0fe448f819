"""A per-table profile: null count, min and max, and a distinct count up to 1000 values.

Nulls, min and max come from the statistics the Parquet writer computes anyway (read back
from the footers: no extra pass, no extra work on the hot path). Only the distinct count
is computed on the batches as they stream, per batch in Arrow, with bounded memory (at
most DISTINCT_LIMIT + 1 remembered values per column, and only while under the limit).
"""

import datetime
import decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DISTINCT_LIMIT = 1000


class Profiler:
    def __init__(self, schema: pa.Schema, ordered: set[str]):
        """`ordered`: the columns whose min and max mean something (not bytes, not text
        standing for another type, where the order of strings would mislead)."""
        self.names = schema.names
        self.ordered = ordered
        self.distinct: dict[str, pa.Array | None] = dict.fromkeys(schema.names)
        self.many: set[str] = set()
        # Lists and structs (Vertica's ARRAY, SET, ROW) have no distinct kernel and one
        # Parquet leaf per field: their nulls are counted here, the rest is not profiled.
        self.nested = {f.name: 0 for f in schema if pa.types.is_nested(f.type)}
        self.leaf = _first_leaves(schema)

    def update(self, batch: pa.RecordBatch):
        # All in Arrow: the distinct values seen so far stay an Arrow array, and a batch
        # that brings nothing new (the usual case) costs one hash and one lookup.
        for name, array in zip(self.names, batch.columns, strict=True):
            if name in self.nested:
                self.nested[name] += array.null_count
                continue
            if name in self.many:
                continue
            if isinstance(array.type, pa.BaseExtensionType):
                array = array.storage
            new = pc.unique(array)  # a null, if any, is one of them: not counted below
            known = self.distinct[name]
            if known is None:
                known = new
            elif not pc.all(pc.is_in(new, value_set=known)).as_py():
                known = pc.unique(pa.concat_arrays([known, new]))
            if _count(known) > DISTINCT_LIMIT:
                self.many.add(name)
                known = None
            self.distinct[name] = known

    def result(self, files: list[Path]) -> list[dict]:
        nulls = dict.fromkeys(self.names, 0)
        bounds: dict[str, list] = {name: [] for name in self.names}
        known = set(self.ordered)
        for path in files:
            metadata = pq.read_metadata(path)
            for group in range(metadata.num_row_groups):
                row_group = metadata.row_group(group)
                for name in self.names:
                    if name in self.nested:
                        continue
                    stats = row_group.column(self.leaf[name]).statistics
                    if stats is None:
                        known.discard(name)
                        continue
                    nulls[name] += stats.null_count
                    if stats.has_min_max:
                        bounds[name].append((stats.min, stats.max))
                    elif stats.null_count < row_group.num_rows:
                        known.discard(name)  # values without statistics: bounds unknown
        nulls.update(self.nested)
        known -= set(self.nested)
        return [
            {
                "name": name,
                "nulls": nulls[name],
                "min": _plain(min(b[0] for b in bounds[name]))
                if name in known and bounds[name]
                else None,
                "max": _plain(max(b[1] for b in bounds[name]))
                if name in known and bounds[name]
                else None,
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
