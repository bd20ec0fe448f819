"""How each PostgreSQL column becomes an Arrow column, losslessly (the table is docs/types.md).

A column is read as the server's exact text output and parsed into its native Arrow type
where one holds every value. A value the native type cannot hold (`infinity`, a BC date,
`24:00:00`, numeric NaN, a year past 9999) makes the parser fail; the table is then read
again with that column as text (its "fallback"), recorded in the file and the manifest.
"""

import pyarrow as pa
from psycopg2 import sql

from connections.drivers.base import NATIVE, ColumnPlan, SourceColumn

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


def plan(column: SourceColumn, fallback: bool = False, money_scale: int = 2) -> ColumnPlan:
    """The plan of one column; `fallback` forces the lossless text form."""
    ident: sql.Composable = sql.Identifier(column.name)
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
    if base == "xml":
        # The cast hands over the stored document; xml's output function (what COPY sends)
        # drops an XML declaration such as <?xml version="1.0"?>.
        expression = sql.SQL("{}::text").format(ident)
        return ColumnPlan(column, expression, pa.string(), pa.string(), _TEXT_KINDS["xml"])
    if base in _SIMPLE:
        arrow = _SIMPLE[base]
        return ColumnPlan(column, ident, arrow, arrow, NATIVE, may_not_fit=base in _MAY_NOT_FIT)
    return ColumnPlan(column, ident, pa.string(), pa.string(), _describe_text(column))


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
