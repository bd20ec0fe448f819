"""Vertica driver: discovery from v_catalog, one epoch per job, and streaming reads.

Every read of a job runs `AT EPOCH n SELECT ...` with the epoch pinned when the job
started, so all its tables show the database at one instant (Vertica keeps history back
to its Ancient History Mark). The engine calls `driver.<function>` on this module
(connections.drivers.base.Driver lists them); each lives in the module of its part:
session, catalog, selection (refused for now), reads, types and errors.
"""

from connections.drivers.vertica.catalog import (
    TABLES_PER_DESCRIBE,
    columns,
    constraints,
    describe,
    is_system_schema,
    money_scale,
    schemas,
    tables,
)
from connections.drivers.vertica.errors import explain
from connections.drivers.vertica.reads import (
    BATCH_BYTES,
    CSV_BLOCK_BYTES,
    REPORTS_ROWS_SENT,
    count_rows,
    read_batches,
)
from connections.drivers.vertica.selection import (
    check_filter,
    check_query,
    check_view,
    fingerprint,
    preview,
    query_columns,
    relatives,
    views,
)
from connections.drivers.vertica.session import (
    TLS_STATE_SQL,
    WRITE_ACCESS_SQL,
    Session,
    connect,
    join_snapshot,
    may_reuse,
    open_snapshot,
    test,
)
from connections.drivers.vertica.types import plan

__all__ = [
    "BATCH_BYTES",
    "CSV_BLOCK_BYTES",
    "REPORTS_ROWS_SENT",
    "TABLES_PER_DESCRIBE",
    "TLS_STATE_SQL",
    "WRITE_ACCESS_SQL",
    "Session",
    "check_filter",
    "check_query",
    "check_view",
    "columns",
    "connect",
    "constraints",
    "count_rows",
    "describe",
    "explain",
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
    "relatives",
    "schemas",
    "tables",
    "test",
    "views",
]
