"""A per-table profile computed on the batches as they stream: nulls, min, max, distinct count.

Work is per batch and per column in Arrow; memory is bounded (at most DISTINCT_LIMIT + 1
remembered values per column, and only while a column stays under that limit).
"""

import datetime
import decimal

import pyarrow as pa
import pyarrow.compute as pc

DISTINCT_LIMIT = 1000


class Profiler:
    def __init__(self, schema: pa.Schema):
        self.columns = [_Column(field) for field in schema]

    def update(self, batch: pa.RecordBatch):
        for column, array in zip(self.columns, batch.columns, strict=True):
            column.update(array)

    def result(self) -> list[dict]:
        return [column.result() for column in self.columns]


class _Column:
    def __init__(self, field: pa.Field):
        self.name = field.name
        self.nulls = 0
        self.min = self.max = None
        kind = field.type
        # Bytes, uuids (an extension type) and booleans have no min and max worth showing.
        self.ordered = not (
            isinstance(kind, pa.BaseExtensionType)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
            or pa.types.is_boolean(kind)
        )
        self.distinct = set()
        self.many = False  # more than DISTINCT_LIMIT distinct values

    def update(self, array: pa.Array):
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        self.nulls += array.null_count
        if self.ordered and array.null_count < len(array):
            low, high = pc.min_max(array).values()
            low, high = low.as_py(), high.as_py()
            self.min = low if self.min is None or low < self.min else self.min
            self.max = high if self.max is None or high > self.max else self.max
        if not self.many:
            values = pc.unique(array.drop_null()).to_pylist()
            # NaN != NaN: without this every batch's NaN would count as a new value.
            self.distinct.update("NaN" if v != v else v for v in values)
            if len(self.distinct) > DISTINCT_LIMIT:
                self.many, self.distinct = True, set()

    def result(self) -> dict:
        return {
            "name": self.name,
            "nulls": self.nulls,
            "min": _plain(self.min),
            "max": _plain(self.max),
            "distinct": f"more than {DISTINCT_LIMIT}" if self.many else len(self.distinct),
        }


def _plain(value):
    """A JSON value that keeps the exact value (decimals and times as text)."""
    if isinstance(value, (decimal.Decimal, datetime.date, datetime.time, datetime.datetime)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value
