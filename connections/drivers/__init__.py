"""Drivers: one module per database kind behind one small interface.

Each driver module offers:
    connect(connection, **settings) -> DB-API connection; raises ConnectionFailed
    test(connection) -> server version string
    schemas(connection) -> [schema names, system schemas left out]
    tables(connection, schema=None) -> [TableInfo]
    columns(db, schema, table) -> [SourceColumn]
    open_snapshot(connection) -> (leader DB-API connection, snapshot id)
    read_batches(...) -> iterator of Arrow record batches (see exports.engine)
    count_rows(db, schema, table) -> int
    constraints(db, schema, table) -> [{name, kind, columns, definition}] rows must satisfy
    explain(error, connection) -> one sentence for the user, never a secret
"""

from dataclasses import dataclass, field


@dataclass
class TableInfo:
    schema: str
    name: str
    kind: str  # "table", "view", "materialized view", "partitioned table", "foreign table"
    rows_estimate: int | None
    bytes: int | None


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
    raise NotImplementedError(f"There is no driver for '{kind}' connections yet.")
