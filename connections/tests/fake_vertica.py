"""A stand-in for a Vertica server, which cannot run here (the tests mock only this edge).

FakeVertica is a DB-API connection whose cursor records every statement and answers from
canned rows: catalog rows laid out as Vertica documents v_catalog and v_monitor, and table
data kept as Vertica's binary wire values. Data rows go through vertica-python's own
deserializers (with the converters the driver registers), exactly as its cursor does, so
the Python values the driver sees are the ones vertica-python returns.
"""

import json
import re
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from vertica_python.datatypes import VerticaType as V
from vertica_python.datatypes import getComplexElementType, getTypeName
from vertica_python.vertica.column import Column
from vertica_python.vertica.deserializer import Deserializer

BINARY, TEXT = 1, 0


@dataclass
class FakeColumn:
    name: str
    declared: str  # v_catalog.columns.data_type
    oid: int
    modifier: int = -1
    nullable: bool = True
    children: list = field(default_factory=list)  # ROW fields (FakeColumn)
    values: list = field(default_factory=list)  # wire values, one per row (None: NULL)
    texts: list = field(default_factory=list)  # what CAST(... AS VARCHAR) / TO_JSON gives
    type_name: str = ""  # a user-defined type's own name (GEOMETRY...)

    def description(self, attribute: int = 1, name: str | None = None) -> Column:
        column = Column(
            {
                "name": name or self.name,
                "table_oid": 1,
                "schema_name": None,
                "table_name": None,
                "attribute_number": attribute,
                "data_type_oid": self.oid,
                "data_type_size": 8,
                "data_type_name": self.type_name or getTypeName(self.oid, self.modifier),
                "null_ok": self.nullable,
                "is_identity": False,
                "type_modifier": self.modifier,
                "format_code": TEXT if self.oid in COMPLEX_TEXT else BINARY,
            }
        )
        element = getComplexElementType(self.oid)
        if element is not None:  # as vertica-python's RowDescription adds it
            column.add_child_column(
                FakeColumn("elements", "", element, self.modifier).description(attribute)
            )
        for child in self.children:
            column.add_child_column(child.description(attribute))
        return column


COMPLEX_TEXT = {V.ROW, V.ARRAY} | set(range(1500, 1600)) | set(range(2700, 2800))


@dataclass
class FakeTable:
    schema: str
    name: str
    columns: list
    constraints: list = field(default_factory=list)  # (name, 'p'|'u', column, enabled)
    view: bool = False

    @property
    def rows(self) -> int:
        return len(self.columns[0].values) if self.columns else 0


class FakeVertica:
    """One fake server: its tables, its epoch, and every statement any session sent."""

    def __init__(self, tables=(), epoch=41, catalog_tables=(), schemas=("public",)):
        self.tls_state = "None"  # v_monitor.sessions.ssl_state
        self.superuser = False
        self.tables = {(t.schema, t.name): t for t in tables}
        self.epoch = epoch
        self.catalog_tables = list(catalog_tables)
        self.schemas = list(schemas)
        self.statements: list[str] = []
        self.fetch_sizes: list[int] = []
        self.sessions: list = []
        self.connect_options: list[dict] = []
        self.fetchall_on_data = 0

    def connect(self, **options):
        self.connect_options.append(options)
        session = FakeSession(self)
        self.sessions.append(session)
        return session


class FakeSocket:
    def __init__(self):
        self.timeouts = []

    def settimeout(self, value):
        self.timeouts.append(value)


class FakeSession:
    def __init__(self, server: FakeVertica):
        self.server = server
        self.closed = False
        self.cancels = 0
        self.socket = FakeSocket()
        self._cursor = FakeCursor(self)

    def cursor(self):
        return self._cursor

    def close(self):
        self.closed = True

    def cancel(self):
        self.cancels += 1

    def rollback(self):
        self.server.statements.append("ROLLBACK")


class FakeCursor:
    def __init__(self, session: FakeSession):
        self.session = session
        self.server = session.server
        self.converters = {}
        self.description = None
        self._rows = iter(())
        self._is_data = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def register_sqldata_converter(self, oid, converter):
        self.converters[oid] = converter

    def execute(self, statement, params=None):
        if params:
            statement = statement.replace("%s", "{}").format(*[_literal(p) for p in params])
        self.server.statements.append(statement)
        self.description, self._is_data = None, False
        self._rows = iter(self._answer(statement))
        return self

    def fetchone(self):
        return next(self._rows, None)

    def fetchmany(self, size=1):
        self.server.fetch_sizes.append(size)
        rows = []
        for row in self._rows:
            rows.append(row)
            if len(rows) >= size:
                break
        return rows

    def fetchall(self):
        if self._is_data:
            self.server.fetchall_on_data += 1
        return list(self._rows)

    def _answer(self, sql):
        server = self.server
        if sql.startswith("SET ") or sql == "SELECT version()":
            return [["Vertica Analytic Database v24.1.0-0"]] if "version" in sql else []
        if "FROM v_monitor.sessions" in sql:
            return [[server.tls_state]]
        if "is_super_user" in sql:
            return [[server.superuser, 0]]
        if "GET_CURRENT_EPOCH()" in sql:
            return [[server.epoch]]
        if "FROM v_catalog.schemata" in sql:
            return [[s] for s in server.schemas]
        if "FROM v_catalog.tables" in sql:
            return [list(row) for row in server.catalog_tables]
        if "FROM v_catalog.columns" in sql:
            table = self._table_of_literals(sql)
            if table is None:
                return []
            return [
                [i + 1, c.name, c.declared, None, None, None, None, None, c.nullable]
                for i, c in enumerate(table.columns)
            ]
        if "FROM v_catalog.constraint_columns" in sql:
            table = self._table_of_literals(sql)
            return [
                [name, kind, column]
                for name, kind, column, enabled in (table.constraints if table else [])
                if enabled
            ]
        match = re.fullmatch(
            r'(?:AT EPOCH (\d+) )?SELECT (.*) FROM "((?:[^"]|"")+)"\."((?:[^"]|"")+)"( LIMIT 0)?',
            sql,
            re.S,
        )
        if not match:
            raise AssertionError(f"the fake Vertica does not know: {sql}")
        table = server.tables.get((match[3].replace('""', '"'), match[4].replace('""', '"')))
        if table is None:
            raise AssertionError(f"no such table in the fake: {sql}")
        if match[2] == "COUNT(*)":
            return [[table.rows]]
        reads = (
            [(c, c.description(i + 1)) for i, c in enumerate(table.columns)]
            if match[2] == "*"
            else [self._read(table, item) for item in _split(match[2])]
        )
        self.description = [column for _, column in reads]
        if match[5]:
            return []
        self._is_data = True
        deserializers = Deserializer().get_row_deserializers(
            self.description,
            self.converters,
            {"unicode_error": "strict", "session_tz": "UTC", "complex_types_enabled": True},
        )
        return self._rows_of(table, reads, deserializers)

    def _rows_of(self, table, reads, deserializers):
        for i in range(table.rows):
            raw = [value_of(column, read, i) for column, read in reads]
            yield [convert(value) for convert, value in zip(deserializers, raw, strict=True)]

    def _read(self, table, item):
        found = re.fullmatch(
            r'(?:(CAST|TO_JSON)\()?"((?:[^"]|"")+)"(?: AS VARCHAR\(65000\))?\)?', item
        )
        column = next(c for c in table.columns if c.name == found[2].replace('""', '"'))
        if found[1] is None:
            return column, column.description()
        text = FakeColumn(column.name, "", V.VARCHAR if found[1] == "CAST" else V.LONGVARCHAR)
        return ("text", column), text.description(name=column.name)

    def _table_of_literals(self, sql):
        schema, table = re.findall(r"'((?:[^']|'')*)'", sql)[:2]
        return self.server.tables.get((schema, table))


def value_of(column, read, i):
    if isinstance(column, tuple):  # read as text
        text = column[1].texts[i]
        return None if text is None else text.encode()
    return column.values[i]


def _split(select_list: str) -> list[str]:
    return [item.strip() for item in select_list.split(", ")]


def _literal(value):
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


# Vertica's binary wire format, as vertica-python's deserializer reads it -----------------

_EPOCH_2000 = datetime(2000, 1, 1)


def int8(value: int) -> bytes:
    return struct.pack("!q", value)


def float8(value: float) -> bytes:
    return struct.pack("!d", value)


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def numeric(unscaled: int) -> bytes:
    return unscaled.to_bytes(max(8, (unscaled.bit_length() + 8) // 8 + 1), "big", signed=True)


def unscaled(value, scale: int) -> int:
    """The integer Vertica sends for a NUMERIC of this scale (no rounding context)."""
    sign, digits, exponent = value.as_tuple()
    number = int("".join(map(str, digits))) * 10 ** (exponent + scale)
    return -number if sign else number


def julian(day: date) -> bytes:
    return int8(day.toordinal() + 1721425)


def julian_days(jdn: int) -> bytes:
    return int8(jdn)


def micros_of_day(value: time) -> bytes:
    return int8(((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + value.microsecond)


def timestamp(value: datetime) -> bytes:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return int8((value - _EPOCH_2000) // timedelta(microseconds=1))


def timetz(value: time, offset_seconds: int) -> bytes:
    utc = (
        ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6
        + value.microsecond
        - offset_seconds * 10**6
    ) % (86400 * 10**6)
    return int8((utc << 24) | (86400 - offset_seconds))


def interval(micros: int) -> bytes:
    return int8(micros)


def uuid_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


def json_text(value) -> bytes:
    return json.dumps(value).encode()


def numeric_modifier(precision: int, scale: int) -> int:
    return (precision << 16) + scale + 4
