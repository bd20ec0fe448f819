"""Drivers: one module per database kind behind one small interface.

Each driver module offers:
    connect(connection, **settings) -> DB-API connection, read-only for its whole life;
        raises ConnectionFailed
    test(connection) -> LinkReport: server version, encryption, verification, write access
    schemas(connection) -> [schema names, system schemas left out]
    tables(connection, schema=None) -> [TableInfo]
    columns(db, schema, table) -> [SourceColumn]
    plan(column, fallback=False, money_scale=2) -> exports.engine.types.ColumnPlan
    open_snapshot(connection, lock_timeout=None) -> (leader session, snapshot id:
        pg_export_snapshot()'s, or an epoch)
    join_snapshot(connection, snapshot_id, lock_timeout=None) -> a session that reads what
        the snapshot shows
    read_batches(...) -> iterator of Arrow record batches (see exports.engine)
    count_rows(db, schema, table, row_filter="", query="") -> int
    check_filter(db, schema, table, expression) -> user_sql.CheckedFilter (what runs, the
        columns it reads) / check_query(db, query) -> user_sql.CheckedQuery (what runs, the
        table columns it reads); BadSelection if not one allowed condition / SELECT
    query_columns(db, query) -> [SourceColumn] of a query's result
    preview(db, query, limit) -> the first rows of a checked query, as text
    constraints(db, schema, table) -> [{name, kind, columns, definition}] rows must satisfy
    explain(error, connection) -> one sentence for the user, never a secret or source data
"""

from dataclasses import dataclass, field


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


def for_kind(kind: str):
    if kind in ("postgresql", "greenplum"):
        from connections.drivers import postgresql

        return postgresql
    if kind == "vertica":
        from connections.drivers import vertica

        return vertica
    raise NotImplementedError(f"There is no driver for '{kind}' connections yet.")


# A snapshot id of this form means the source could not export a snapshot (Greenplum
# without pg_export_snapshot()): each table was read in its own transaction.
PER_TABLE = "per-table:"
PER_TABLE_REASON = (
    "the server cannot export a snapshot (pg_export_snapshot() is unavailable), so each "
    "table was read in its own transaction: the tables were not read at one instant"
)


def consistency(snapshot_id: str | None) -> dict:
    """How the tables of a job were read, for the manifest."""
    if (snapshot_id or "").startswith(PER_TABLE):
        return {"consistency": "per table", "consistency_reason": PER_TABLE_REASON}
    return {"consistency": "snapshot"}


def interrupt(sessions):
    """Cancel whatever the sessions run now (a COPY, a count); each ends with an error."""
    for session in list(sessions):
        try:
            session.cancel()
        except Exception:
            pass  # closed meanwhile, or nothing to cancel
