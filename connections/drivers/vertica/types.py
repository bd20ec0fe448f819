"""How each Vertica column becomes an Arrow column, losslessly (the table is docs/types.md).

vertica-python turns each value into a Python object (int, Decimal, datetime, relativedelta,
UUID, bytes, list, dict...); a batch of rows becomes one Arrow array per column here. A
value Python's datetime cannot hold (a BC date, a year past 9999, `infinity`, `24:00`)
makes vertica-python fail: the guarded converters turn that into DoesNotFit for the
column, and the table is read again with that column as Vertica's own text (its
"fallback"), as the PostgreSQL path does.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from vertica_python import errors as vertica_errors
from vertica_python.datatypes import VerticaType as V
from vertica_python.vertica import deserializer

from connections.drivers.base import NATIVE, ColumnPlan, DoesNotFit, SourceColumn
from connections.models import ConnectionFailed

MAX_DECIMAL_PRECISION = 76  # decimal256; Vertica allows 1024 digits
TEXT_CAST = "CAST({} AS VARCHAR(65000))"  # every date/time text is far shorter

_ARRAY_1D = {code for code in vars(V).values() if isinstance(code, int) and 1500 < code < 1600}
_SET = {code for code in vars(V).values() if isinstance(code, int) and 2700 < code < 2800}
COMPLEX = {V.ARRAY, V.ROW} | _ARRAY_1D | _SET
# The types whose values vertica-python may fail to turn into Python objects.
GUARDED = {V.DATE, V.TIME, V.TIMETZ, V.TIMESTAMP, V.TIMESTAMPTZ}

_SIMPLE = {
    V.INT8: pa.int64(),
    V.FLOAT8: pa.float64(),
    V.BOOL: pa.bool_(),
    V.CHAR: pa.string(),
    V.VARCHAR: pa.string(),
    V.LONGVARCHAR: pa.string(),
    V.BINARY: pa.binary(),
    V.VARBINARY: pa.binary(),
    V.LONGVARBINARY: pa.binary(),
    V.DATE: pa.date32(),
    V.TIME: pa.time64("us"),
    V.TIMESTAMP: pa.timestamp("us"),
    V.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    V.UUID: pa.uuid(),
}
_US_PER_DAY = 86_400_000_000


class UnsupportedType(ConnectionFailed):
    """A column of a type ADU cannot export from Vertica: its table fails with this sentence."""


@dataclass(frozen=True)
class Read:
    """What the SELECT reads for one column, and how its Python values become Arrow values."""

    sql: str
    prepare: Callable[[Any], Any] | None = None  # applied to each non-null value


@dataclass(frozen=True)
class Mapping:
    arrow_type: pa.DataType
    prepare: Callable[[Any], Any] | None
    representation: str
    may_not_fit: bool


def describe(column) -> dict:
    """A plain, JSON-ready description of a vertica-python result column (with its children)."""
    return {
        "name": column.name,
        "code": column.type_code,
        "type": column.type_name,
        "precision": column.precision,
        "scale": column.scale,
        "children": [describe(child) for child in column.child_columns or []] or None,
    }


def plan(column: SourceColumn, fallback: bool = False, **_ignored) -> ColumnPlan:
    """The plan of one Vertica column; `fallback` reads it as Vertica's exact text."""
    node = column.extra["vertica"]
    ident = quote(column.name)
    if fallback:
        if node["code"] in COMPLEX:
            read, representation = Read(f"TO_JSON({ident})"), "JSON text (Vertica TO_JSON)"
        else:
            read = Read(TEXT_CAST.format(ident))
            representation = "Vertica text output (DateStyle ISO, time zone UTC)"
        return ColumnPlan(column, read, pa.string(), pa.string(), representation, True)
    mapped = mapping(node, column.name, column.source_type)
    return ColumnPlan(
        column,
        Read(ident, mapped.prepare),
        mapped.arrow_type,
        mapped.arrow_type,
        mapped.representation,
        may_not_fit=mapped.may_not_fit,
    )


def mapping(node: dict, column: str, declared: str = "") -> Mapping:
    """The Arrow type of a described Vertica type, and what each Python value needs first."""
    code = node["code"]
    declared = declared or node["type"]
    standard = node["type"] == _standard_name(code, node["type"])
    if code in _SIMPLE and standard:
        return Mapping(_SIMPLE[code], None, NATIVE, code in GUARDED)
    if code == V.NUMERIC:
        precision, scale = node["precision"], node["scale"]
        if precision <= 38:
            return Mapping(pa.decimal128(precision, scale), None, NATIVE, False)
        if precision <= MAX_DECIMAL_PRECISION:
            return Mapping(pa.decimal256(precision, scale), None, NATIVE, False)
        return Mapping(
            pa.string(), decimal_text, "decimal text, every digit kept, e.g. 12.3400", False
        )
    if code == V.TIMETZ:
        return Mapping(
            pa.string(), timetz_text, "time with UTC offset, ISO 8601: 10:30:00+02:00", True
        )
    if code == V.INTERVAL:
        return Mapping(pa.duration("us"), interval_microseconds, NATIVE, False)
    if code == V.INTERVALYM:
        return Mapping(pa.int64(), interval_months, "number of months (year-month interval)", False)
    if code in COMPLEX:
        return _complex(node, column, declared)
    raise UnsupportedType(
        f"Column {column} has type {declared}, which ADU cannot export from Vertica: "
        "export a view that casts it (e.g. ST_AsText for spatial types, MAPTOSTRING for maps)."
    )


def _complex(node: dict, column: str, declared: str) -> Mapping:
    children = node["children"]
    if not children:
        # An old server that sends no element metadata: its JSON text is exact.
        return Mapping(pa.string(), None, "JSON text", False)
    if node["code"] == V.ROW:
        fields = [(child["name"], mapping(child, column, declared)) for child in children]
        struct = pa.struct([pa.field(name, m.arrow_type) for name, m in fields])
        converters = [(name, m.prepare) for name, m in fields if m.prepare]
        prepare: Callable[[Any], Any] | None = (
            (lambda row: _prepare_row(row, converters)) if converters else None
        )
        return Mapping(struct, prepare, NATIVE, any(m.may_not_fit for _, m in fields))
    element = mapping(children[0], column, declared)
    inner = element.prepare
    if inner is not None:

        def prepare(values):
            return [None if v is None else inner(v) for v in values]

    else:
        prepare = list if node["code"] in _SET else None  # a set arrives in server order
    kind = "set, in Vertica's order" if node["code"] in _SET else NATIVE
    return Mapping(pa.list_(element.arrow_type), prepare, kind, element.may_not_fit)


def _prepare_row(row: dict, converters) -> dict:
    row = dict(row)
    for name, prepare in converters:
        if row.get(name) is not None:
            row[name] = prepare(row[name])
    return row


def _standard_name(code: int, name: str) -> str:
    # A user-defined type (GEOMETRY, GEOGRAPHY) arrives as its base type's code with its
    # own name: only the base types' own names are exported natively.
    from vertica_python.datatypes import TYPENAME

    return TYPENAME.get(code, name)


def build_batch(rows: list, reads: list[Read], schema: pa.Schema) -> pa.RecordBatch:
    """One Arrow batch from rows as vertica-python returns them (lists of Python values)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(reads)
    arrays = [
        to_array(values, read.prepare, field)
        for values, read, field in zip(columns, reads, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def to_array(values, prepare, field: pa.Field) -> pa.Array:
    try:
        if prepare is not None:
            values = [None if v is None else prepare(v) for v in values]
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        # pyarrow's message can quote the value: the manifest must not carry data.
        raise DoesNotFit(field.name, f"a value does not fit {field.type}") from None


def decimal_text(value: Decimal) -> str:
    """Every digit, never an exponent: Decimal('1E+3') is '1000', Decimal('0E-4') '0.0000'."""
    return format(value, "f")


def timetz_text(value) -> str:
    return value.isoformat()


def interval_microseconds(value) -> int:
    """A day-time interval (relativedelta or timedelta) as whole microseconds, exactly."""
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if value.years or value.months:
        raise ValueError("a day-time interval holds years or months")
    seconds = ((value.days * 24 + value.hours) * 60 + value.minutes) * 60 + value.seconds
    return seconds * 1_000_000 + value.microseconds


def interval_months(value) -> int:
    """A year-month interval (relativedelta) as its number of months."""
    return value.years * 12 + value.months


def quote(name: str) -> str:
    """A Vertica identifier, quoted: names are never pasted into SQL as they are."""
    return '"' + name.replace('"', '""') + '"'


# vertica-python converters ------------------------------------------------------------


def register_converters(cursor):
    """Guard the date/time converters and parse complex types exactly, on one cursor."""
    for code in GUARDED:
        cursor.register_sqldata_converter(code, _guarded(code))
    for code in COMPLEX:
        cursor.register_sqldata_converter(code, load_complex)


_DOES_NOT_FIT = (
    "a value outside what Python's datetime holds (before year 1, after 9999, "
    "infinity, or a time of 24:00)"
)


def _guarded(code: int):
    def convert(data, ctx):
        column = ctx["column"]
        default = deserializer.DEFAULTS[column.format_code][code]
        try:
            return default(data, ctx)
        except (vertica_errors.NotSupportedError, ValueError, OverflowError):
            raise DoesNotFit(column.name, _DOES_NOT_FIT) from None

    return convert


def load_complex(data, ctx):
    """ARRAY, SET and ROW from their JSON text, with decimals parsed as Decimal.

    vertica-python's own loader parses JSON numbers as floats first, which rounds a
    NUMERIC element; a SET comes back as a list in the server's order, not a Python set.
    """
    column = ctx["column"]
    text = bytes(data).decode("utf-8", ctx["unicode_error"])
    if not ctx["complex_types_enabled"]:
        return text
    value = json.loads(text, parse_float=Decimal)
    try:
        if column.type_code == V.ROW:
            return deserializer.parse_row(value, ctx)
        return deserializer.parse_array(value, ctx)
    except (vertica_errors.NotSupportedError, ValueError, OverflowError):
        raise DoesNotFit(column.name, _DOES_NOT_FIT) from None
