"""PostgreSQL (and Greenplum) driver: discovery, one snapshot per job, and streaming reads.

The engine calls `driver.<function>` on this module (connections.drivers.base.Driver lists
them); each lives in the module of its part: session (connect, test, snapshots), catalog
(schemas, tables, columns, keys, statistics), selection (the user's filters, queries and
views), copy (COPY reads), types (column plans) and errors (one sentence per error).
"""

from connections.drivers.postgresql.catalog import (
    TABLES_PER_DESCRIBE,
    columns,
    describe,
    is_system_schema,
    money_scale,
    schemas,
    tables,
)
from connections.drivers.postgresql.copy import CSV_BLOCK_BYTES, REPORTS_ROWS_SENT, read_batches
from connections.drivers.postgresql.errors import explain, explain_load
from connections.drivers.postgresql.incremental import window as xid_window
from connections.drivers.postgresql.selection import (
    WATERMARK_TYPES,
    check_filter,
    check_query,
    check_view,
    count_rows,
    fingerprint,
    preview,
    query_columns,
    relatives,
    views,
    watermark_upper,
)
from connections.drivers.postgresql.session import (
    connect,
    connect_target,
    join_snapshot,
    may_reuse,
    open_snapshot,
    snapshot_xids,
    test,
)
from connections.drivers.postgresql.types import plan

__all__ = [
    "WATERMARK_TYPES",
    "CSV_BLOCK_BYTES",
    "REPORTS_ROWS_SENT",
    "TABLES_PER_DESCRIBE",
    "check_filter",
    "check_query",
    "check_view",
    "columns",
    "connect",
    "connect_target",
    "count_rows",
    "describe",
    "explain",
    "explain_load",
    "fingerprint",
    "is_system_schema",
    "join_snapshot",
    "may_reuse",
    "money_scale",
    "open_snapshot",
    "plan",
    "preview",
    "query_columns",
    "read_batches",
    "snapshot_xids",
    "relatives",
    "schemas",
    "tables",
    "test",
    "views",
    "xid_window",
    "watermark_upper",
]
