"""What every driver is: the functions the engine calls on a driver module, and the records
they exchange (tables, columns, column plans, link reports) and the errors they raise.

A driver is a module (connections/drivers/postgresql/, connections/drivers/vertica/); the
engine gets it from `Connection.driver()` and calls its functions, so the interface is a
`typing.Protocol` that a module satisfies by having these attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from connections.drivers import user_sql

# pyarrow is imported where a column is read (connections.drivers.arrays): the portal's
# pages and the commands' start-up import this module and go without it.

# ColumnPlan.representation of a column held in its native Arrow type; any other value
# describes the lossless text form the column is held in.
NATIVE = "native"


class Driver(Protocol):
    """The functions (and the one constant) the engine, discovery and the pages use.

    `db` is a session from `connect` or `join_snapshot`. A driver that cannot do a thing
    (Vertica: row filters, queries) still has the function and refuses with BadSelection,
    so its count_rows and read_batches are never asked for a filter or a query and take
    neither: `row_filter` and `query` are not part of this interface. A driver that has
    them (PostgreSQL) takes them as keywords, passed only when a table's spec asks.
    """

    # The read budget of one batch: a row longer than this cannot be read in one block.
    CSV_BLOCK_BYTES: int
    # How many tables describe() is best asked about at once (1: it reads them one by one).
    TABLES_PER_DESCRIBE: int
    # Whether read_batches appends to its `sent` the rows each of its statements reported
    # sending (None where one did not say): their sum then proves the export complete and
    # count_rows is not needed.
    REPORTS_ROWS_SENT: bool

    def connect(self, connection) -> Any:
        """A DB-API session, read-only for its whole life; ConnectionFailed otherwise."""

    def test(self, connection) -> LinkReport: ...

    def is_system_schema(self, name: str) -> bool: ...

    def schemas(self, connection) -> list[str]:
        """Schema names the login may use, system schemas left out."""

    def tables(self, connection, schema: str | None = None, sizes: bool = True) -> list[TableInfo]:
        """Tables and views with estimated rows, and their size on disk unless `sizes` is
        False (then size is None: a job's creation needs only the names)."""

    def columns(self, db, schema: str, table: str) -> list[SourceColumn]: ...

    def plan(
        self, column: SourceColumn, fallback: bool = False, *, money_scale: int = 2
    ) -> ColumnPlan:
        """How the column is read and held; `fallback` forces the lossless text form."""

    def open_snapshot(self, connection, lock_timeout: int | None = None) -> tuple[Any, str]:
        """The leader session and the snapshot id (pg_export_snapshot()'s, or an epoch)."""

    def join_snapshot(
        self, connection, snapshot_id: str | None, lock_timeout: int | None = None
    ) -> Any:
        """A session that reads what the snapshot shows."""

    def may_reuse(self, db) -> bool:
        """Whether a session of join_snapshot may serve the job's next table: it still
        sees the snapshot and nothing of the last table is left running on it."""

    def count_rows(self, db, schema: str, table: str) -> int: ...

    def fingerprint(
        self, db, schema: str, table: str, columns: list[dict], row_filter: str = ""
    ) -> tuple[int, str] | None:
        """(rows, digest) of the table's rows in the session's snapshot, as a load
        fingerprints its target (loads.fingerprint); None where the kind has none."""

    def check_filter(self, db, schema: str, table: str, expression: str) -> user_sql.CheckedFilter:
        """What runs and the columns it reads; BadSelection unless one allowed condition."""

    def check_query(self, db, query: str) -> user_sql.CheckedQuery:
        """What runs and the table columns it reads; BadSelection unless one allowed SELECT."""

    def check_view(self, db, schema: str, view: str) -> user_sql.CheckedQuery: ...

    def views(self, db, names) -> dict[tuple[str, str], str]:
        """Relations among `names` read through stored SQL: "view" or "table" (row security)."""

    def relatives(self, db, names) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """The parents, then the partitions and children, of each of `names`."""

    def query_columns(self, db, query: str) -> list[SourceColumn]: ...

    def preview(self, db, query: str, limit: int) -> list[tuple]:
        """The first rows of a checked query, as text."""

    def describe(self, db, names: list[tuple[str, str]]) -> dict[tuple[str, str], TableDescription]:
        """Each of `names` as the engine needs to know it before reading it, in a few
        queries for them all."""

    def money_scale(self, db) -> int: ...

    def read_batches(
        self,
        open_session: Callable[[], Any],
        schema: str,
        table: str,
        plans: list[ColumnPlan],
        readers: int = 1,
        pages: int | None = None,
        block_bytes: int = ...,
        sent: list[int | None] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Arrow record batches of bounded size, in the plans' read types; close() stops
        the reads."""

    def explain(self, error: BaseException, connection, table: str = "") -> str:
        """One sentence for the user, never a secret or source data."""


@dataclass
class TableInfo:
    schema: str
    name: str
    # "table", "view", "materialized view", "partitioned table", "foreign table",
    # "external table" (listed, not exported unless named)
    kind: str
    rows_estimate: int | None
    bytes: int | None


class BadSelection(Exception):
    """A row filter or a query the source would not run as asked; one sentence for the user."""


@dataclass
class LinkReport:
    """What "Test connection" found about the link to a source."""

    version: str  # the server's own words, e.g. PostgreSQL's version()
    encrypted: bool
    protocol: str = ""  # e.g. TLSv1.3
    verified: bool = False  # the server's certificate checked against the stored CA
    write_access: str = ""  # why this login could change the source; "" if it cannot
    product: str = ""  # the version in short, e.g. "PostgreSQL 15.18"; "": `version` is short

    def summary(self) -> str:
        """One line: "PostgreSQL 15.18 · TLS 1.3 · server certificate verified"."""
        parts = [self.product or self.version]
        if not self.encrypted:
            parts.append("not encrypted")
        else:
            parts.append(self.protocol.replace("TLSv", "TLS ") if self.protocol else "encrypted")
            parts.append(
                "server certificate verified"
                if self.verified
                else "server certificate not verified (sslmode verify-full checks it)"
            )
        return " · ".join(parts)

    def warning(self) -> str:
        if not self.write_access:
            return ""
        return (
            f"This login {self.write_access}; an export needs only read access: use a "
            "read-only role."
        )

    def as_dict(self) -> dict:
        return {
            "server_version": self.version,
            "encrypted": self.encrypted,
            "protocol": self.protocol,
            "verified": self.verified,
            "write_access": self.write_access,
        }


# 1 MB of pages (8 kB each): a table read in a few milliseconds, where what surrounds
# its read (a thread, a claim, a commit) costs as much as its rows.
SMALL_PAGES = 128


def is_small(pages: int | None) -> bool:
    return pages is not None and pages <= SMALL_PAGES


@dataclass
class TableDescription:
    """A table as the source's catalog shows it in the job's snapshot."""

    columns: list[SourceColumn] = field(default_factory=list)
    pages: int | None = None  # to split a read by (ctid ranges); None: one reader
    rows_estimate: int | None = None  # the server's statistics; None: never gathered
    distinct: dict[str, int] = field(default_factory=dict)  # the server's estimates
    constraints: list[dict] = field(default_factory=list)  # [{name, kind, columns, definition}]
    # The column types that are not the server's own, and their definitions: {"columns":
    # {name: {schema, name, array}}, "definitions": [...]} (postgresql.catalog.user_types)
    types: dict = field(default_factory=dict)
    # Columns' defaults, identities and owned sequences (postgresql.catalog.column_defaults)
    defaults: dict = field(default_factory=dict)
    problem: str = ""  # one sentence when the table cannot be read (then nothing else)

    @property
    def is_small(self) -> bool:
        return is_small(self.pages)


@dataclass
class SourceColumn:
    name: str
    source_type: str  # as declared, e.g. "numeric(15,2)", "my_domain", "integer[]"
    base_type: str  # domains resolved, e.g. "numeric", "_int4" for arrays
    category: str  # PostgreSQL typcategory: N numeric, S string, A array, E enum...
    type_kind: str  # PostgreSQL typtype: b base, c composite, d domain, e enum, r range
    typmod: int
    nullable: bool
    extra: dict = field(default_factory=dict)


class IncrementalDriver(Driver, Protocol):
    """What a driver that exports tables incrementally adds (PostgreSQL; see
    connections.drivers.postgresql.incremental): the snapshot's transaction ids, a table's
    window in them, and the end of a watermark column's window."""

    # The base types a watermark column may have: (SQL type, the type of its lag).
    WATERMARK_TYPES: dict[str, tuple[str, str]]

    def snapshot_xids(self, db) -> str: ...

    def xid_window(self, snapshot_xids: str, after: int | None, reason: str = "") -> dict: ...

    def watermark_upper(
        self, db, schema: str, table: str, column: str, base_type: str, lag: str, after
    ) -> str | None: ...


class DoesNotFit(Exception):
    """A value of this column cannot be held by the column's native Arrow type."""

    def __init__(self, column: str, reason: str):
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


@dataclass
class ColumnPlan:
    source: SourceColumn
    expression: Any  # what the SELECT reads: psycopg2 SQL, or a Vertica Read
    read_type: pa.DataType  # what the CSV parser produces
    arrow_type: pa.DataType  # what the file holds
    representation: str  # NATIVE, or a short description of the lossless text form
    fallback: bool = False
    may_not_fit: bool = False  # a value may not fit the native type: a text fallback exists

    @property
    def name(self) -> str:
        return self.source.name

    def field(self) -> pa.Field:
        import pyarrow as pa

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
        import pyarrow as pa
        import pyarrow.compute as pc

        from connections.drivers.arrays import hex_to_binary

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
