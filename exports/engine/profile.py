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

    def update(self, batch: pa.RecordBatch):
        # All in Arrow: the distinct values seen so far stay an Arrow array, and a batch
        # that brings nothing new (the usual case) costs one hash and one lookup.
        for name, array in zip(self.names, batch.columns, strict=True):
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
                for index, name in enumerate(self.names):
                    stats = row_group.column(index).statistics
                    if stats is None:
                        known.discard(name)
                        continue
                    nulls[name] += stats.null_count
                    if stats.has_min_max:
                        bounds[name].append((stats.min, stats.max))
                    elif stats.null_count < row_group.num_rows:
                        known.discard(name)  # values without statistics: bounds unknown
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
                    f"more than {DISTINCT_LIMIT}"
                    if name in self.many
                    else _count(self.distinct[name])
                ),
            }
            for name in self.names
        ]


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
