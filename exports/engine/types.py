"""How each source column becomes an Arrow column, losslessly (the table is docs/types.md).

A column is read as the server's exact text output and parsed into its native Arrow type
where one holds every value. A value the native type cannot hold (`infinity`, a BC date,
`24:00:00`, numeric NaN, a year past 9999) makes the parser fail; the table is then read
again with that column as text (its "fallback"), recorded in the file and the manifest.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from connections.drivers import SourceColumn

NATIVE = "native"
TEXT = "text"  # the server's text output, unchanged

_SIMPLE = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "char": pa.string(),
    "citext": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
}
# Types whose native parse can meet a value Arrow cannot hold: these get a text fallback.
_MAY_NOT_FIT = {"date", "timestamp", "timestamptz", "time", "numeric"}
_TEXT_KINDS = {
    "interval": "ISO 8601 duration (IntervalStyle iso_8601)",
    "timetz": "time with UTC offset, e.g. 10:30:00+02",
    "json": "JSON text",
    "jsonb": "JSON text (jsonb normal form)",
    "xml": "XML text",
    "inet": "address/prefix text",
    "cidr": "network text",
    "macaddr": "MAC address text",
    "macaddr8": "MAC address text",
    "bit": "string of 0 and 1",
    "varbit": "string of 0 and 1",
    "numeric": "decimal text, every digit kept",
    "money": "decimal text",
}
_NUMERIC_MAX_PRECISION = 76


class DoesNotFit(Exception):
    """A value of this column cannot be held by the column's native Arrow type."""

    def __init__(self, column: str, reason: str):
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


@dataclass
class ColumnPlan:
    source: SourceColumn
    expression: sql.Composable  # what the SELECT reads
    read_type: pa.DataType  # what the CSV parser produces
    arrow_type: pa.DataType  # what the file holds
    representation: str  # NATIVE, TEXT, or a short description of the text form
    fallback: bool = False
    may_not_fit: bool = False  # a value may not fit the native type: a text fallback exists

    @property
    def name(self) -> str:
        return self.source.name

    def field(self) -> pa.Field:
        metadata = {
            "adu.source_type": self.source.source_type,
            "adu.representation": self.representation,
        }
        if self.source.base_type != self.source.extra.get("base_declared"):
            metadata["adu.base_type"] = self.source.extra.get("base_declared") or ""
        if self.fallback:
            metadata["adu.fallback"] = "true"
        return pa.field(self.name, self.arrow_type, self.source.nullable, metadata)

    def finish(self, array: pa.Array) -> pa.Array:
        """The read array in its final type (from CSV, bytea and uuid arrive as hex text)."""
        if array.type == self.arrow_type:
            return array
        if pa.types.is_decimal(self.arrow_type):
            try:
                return pc.cast(array, self.arrow_type, safe=True)
            except pa.ArrowInvalid as error:
                raise DoesNotFit(self.name, str(error)) from None
        if pa.types.is_binary(self.arrow_type):
            return hex_to_binary(array, prefix=2)
        if self.arrow_type == pa.uuid():
            return pa.ExtensionArray.from_storage(
                pa.uuid(), hex_to_binary(array, prefix=0, drop=b"-", width=16)
            )
        raise AssertionError(f"no conversion from {self.read_type} to {self.arrow_type}")


def plan(column: SourceColumn, fallback: bool = False, money_scale: int = 2) -> ColumnPlan:
    """The plan of one column; `fallback` forces the lossless text form."""
    ident = sql.Identifier(column.name)
    base = column.base_type
    if fallback:
        if base == "money":
            ident = sql.SQL("{}::numeric").format(ident)
        return ColumnPlan(column, ident, pa.string(), pa.string(), _describe_text(column), True)
    if column.category == "A":
        return ColumnPlan(
            column, ident, pa.string(), pa.string(), "PostgreSQL array literal, e.g. {1,2,NULL}"
        )
    if column.type_kind == "e":
        return ColumnPlan(column, ident, pa.string(), pa.string(), "enum label")
    if base == "numeric":
        precision, scale = numeric_precision_scale(column.typmod)
        if precision is None or scale < 0 or scale > precision:
            return ColumnPlan(column, ident, pa.string(), pa.string(), _TEXT_KINDS["numeric"])
        if precision <= 38:
            arrow = pa.decimal128(precision, scale)
            return ColumnPlan(column, ident, arrow, arrow, NATIVE, may_not_fit=True)
        # The CSV reader has no decimal256 parser: read text, cast per batch.
        arrow = pa.decimal256(precision, scale)
        return ColumnPlan(column, ident, pa.string(), arrow, NATIVE, may_not_fit=True)
    if base == "money":
        arrow = pa.decimal128(19, money_scale)
        return ColumnPlan(column, sql.SQL("{}::numeric").format(ident), arrow, arrow, NATIVE)
    if base == "bytea":
        return ColumnPlan(column, ident, pa.string(), pa.binary(), NATIVE)
    if base == "uuid":
        return ColumnPlan(column, ident, pa.string(), pa.uuid(), NATIVE)
    if base in _SIMPLE:
        arrow = _SIMPLE[base]
        return ColumnPlan(column, ident, arrow, arrow, NATIVE, may_not_fit=base in _MAY_NOT_FIT)
    return ColumnPlan(column, ident, pa.string(), pa.string(), _describe_text(column))


def is_number(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    )


def is_date_or_timestamp(arrow_type: pa.DataType) -> bool:
    return pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type)


def is_ordered(column_plan: ColumnPlan) -> bool:
    """Whether min and max of the column in the file mean min and max at the source."""
    kind = column_plan.arrow_type
    if column_plan.representation != NATIVE or isinstance(kind, pa.BaseExtensionType):
        return False  # text standing for another type sorts as text, not as that type
    return not (pa.types.is_binary(kind) or pa.types.is_boolean(kind))


def read_schema(plans: list) -> pa.Schema:
    """The columns as a driver reads them, before ColumnPlan.finish."""
    return pa.schema([pa.field(p.name, p.read_type) for p in plans])


def can_fall_back(column_plan: ColumnPlan) -> bool:
    return not column_plan.fallback and column_plan.may_not_fit


def numeric_precision_scale(typmod: int) -> tuple[int | None, int]:
    if typmod < 4:
        return None, 0
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0x7FF
    if scale & 0x400:  # PostgreSQL 15 allows negative scales, stored in 11 bits
        scale -= 0x800
    if precision > _NUMERIC_MAX_PRECISION:
        return None, 0
    return precision, scale


def _describe_text(column: SourceColumn) -> str:
    if column.type_kind == "r" or column.category == "R":
        return "range literal, e.g. [1,10)"
    if column.type_kind == "c":
        return "composite literal, e.g. (1,abc)"
    if column.type_kind == "m":
        return "multirange literal"
    return _TEXT_KINDS.get(column.base_type, "PostgreSQL text output")


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def hex_to_binary(
    array: pa.Array, prefix: int, drop: bytes = b"", width: int | None = None
) -> pa.Array:
    """Hex text (`\\x0aff` for bytea, dashed for uuid) to bytes, for a whole batch at once.

    Works on the string array's buffers with numpy: no Python code per value.
    """
    if array.offset:
        array = pa.concat_arrays([array])  # buffers that start at the first value
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=n + 1)
    data = array.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data else None
    lengths = np.diff(offsets)
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    if chars is None or not len(chars):
        digits = np.zeros(0, dtype=np.uint8)
        keep_lengths = np.zeros(n, dtype=np.int64)
    else:
        keep = np.ones(len(chars), dtype=bool)
        starts = (offsets[:-1] - offsets[0])[valid & (lengths >= prefix)]
        for i in range(prefix):
            keep[starts + i] = False
        for byte in drop:
            keep &= chars != byte
        digits = _HEX[chars[keep]]
        # Per value: its length minus the prefix and the dropped characters.
        removed = np.zeros(len(chars) + 1, dtype=np.int64)
        np.cumsum(~keep, out=removed[1:])
        relative = offsets - offsets[0]
        keep_lengths = lengths - (removed[relative[1:]] - removed[relative[:-1]])
    if (digits == 255).any() or (keep_lengths % 2).any():
        raise ValueError("the server sent malformed hex data")
    raw = (digits[0::2] << 4) | digits[1::2]
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    if width is not None:
        return pa.Array.from_buffers(
            pa.binary(width), n, [validity, pa.py_buffer(_pad_nulls(raw, valid, width))]
        )
    new_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep_lengths // 2, out=new_offsets[1:])
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(new_offsets), pa.py_buffer(raw)]
    )


def _pad_nulls(raw: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width storage needs a slot for every value, nulls included."""
    if valid.all():
        return raw
    out = np.zeros((len(valid), width), dtype=np.uint8)
    out[valid] = raw.reshape(-1, width)
    return out.reshape(-1)
