"""Vertica driver: discovery from v_catalog, one epoch per job, and streaming reads.

Every read of a job runs `AT EPOCH n SELECT ...` with the epoch pinned when the job
started, so all its tables show the database at one instant (Vertica keeps history back
to its Ancient History Mark). Rows travel in Vertica's binary format (exact floats,
numerics and intervals), are taken from the cursor row by row into batches bounded by
bytes and rows, and each batch becomes Arrow (exports.engine.vertica_types).
"""

import socket
from collections.abc import Callable, Iterator

import pyarrow as pa
import vertica_python
from vertica_python import errors as vertica_errors

from adu_site.redaction import redact
from connections.drivers import BadSelection, LinkReport, SourceColumn, TableInfo
from connections.models import ConnectionFailed
from exports.engine.types import DoesNotFit, read_schema
from exports.engine.vertica_types import (
    Read,
    build_batch,
    describe,
    plan,  # noqa: F401  (the driver interface: the engine asks the driver for plans)
    quote,
    register_converters,
)

SYSTEM_SCHEMAS = ("v_catalog", "v_monitor", "v_internal", "v_func", "v_txtindex", "v_secure")
# connection.sslmode (libpq's words) -> vertica-python's tlsmode. Vertica has no "allow"
# (try without TLS, then with): "prefer" is the nearest that still connects.
TLS_MODES = {
    "disable": "disable",
    "allow": "prefer",
    "prefer": "prefer",
    "require": "require",
    "verify-ca": "verify-ca",
    "verify-full": "verify-full",
}
SESSION_SETTINGS = [
    "SET TIME ZONE TO 'UTC'",
    "SET DATESTYLE TO ISO",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
]
# A batch ends at about BATCH_BYTES of values or MAX_BATCH_ROWS rows, whichever comes
# first: Python holds a batch's values as objects (about 60 bytes each) until it becomes
# Arrow, so both stay small whatever the table's size, even with 32 MB LONG values.
BATCH_BYTES = 4 << 20
MAX_BATCH_ROWS = 16384
CSV_BLOCK_BYTES = BATCH_BYTES  # the engine's name for a driver's read budget


class Session:
    """A Vertica connection, and the epoch its reads see (None: the latest committed data)."""

    def __init__(self, db, epoch: int | None = None):
        self.db = db
        self.epoch = epoch

    def at(self) -> str:
        return f"AT EPOCH {int(self.epoch)} " if self.epoch is not None else ""

    def cursor(self):
        cursor = self.db.cursor()
        register_converters(cursor)
        return cursor

    def cancel(self):
        self.db.cancel()

    def rollback(self):
        self.db.rollback()

    def close(self):
        self.db.close()


def connect(connection, *, session_settings: bool = True) -> Session:
    """An open session, or ConnectionFailed with one clear sentence."""
    params = {
        "host": connection.host,
        "port": connection.port,
        "database": connection.database,
        "user": connection.username,
        "password": connection.secret(),
        "tlsmode": TLS_MODES.get(connection.sslmode, "prefer"),
        "connection_timeout": connection.connect_timeout,
        "session_label": "adu",
        "binary_transfer": True,
        "request_complex_types": True,
        "unicode_error": "strict",
    }
    params.update({k: v for k, v in connection.driver_options().items() if k not in params})
    with connection.ca_file() as ca_path:
        if ca_path:
            params["tls_cafile"] = ca_path
        try:
            db = vertica_python.connect(**params)
        except (vertica_errors.Error, OSError) as error:
            raise ConnectionFailed(explain(error, connection)) from None
    # The connect timeout stays on the socket: without this a count longer than it fails.
    if getattr(db, "socket", None) is not None:
        db.socket.settimeout(None)
    session = Session(db)
    if session_settings:
        try:
            with session.cursor() as cur:
                for statement in SESSION_SETTINGS:
                    cur.execute(statement)
        except vertica_errors.Error as error:
            session.close()
            raise ConnectionFailed(explain(error, connection)) from None
    return session


# ssl_state: None, Server (TLS) or Mutual (TLS with a client certificate).
TLS_STATE_SQL = "SELECT ssl_state FROM v_monitor.sessions WHERE session_id = CURRENT_SESSION()"
# A superuser, or a login granted a privilege that changes data (its roles' grants aside).
WRITE_ACCESS_SQL = (
    "SELECT (SELECT is_super_user FROM v_catalog.users WHERE user_name = CURRENT_USER()), "
    "(SELECT COUNT(*) FROM v_catalog.grants WHERE grantee = CURRENT_USER() "
    "AND object_type = 'TABLE' AND REGEXP_LIKE(privileges_description, "
    "'INSERT|UPDATE|DELETE|TRUNCATE'))"
)


def test(connection) -> LinkReport:
    session = connect(connection, session_settings=False)
    try:
        with session.cursor() as cur:
            cur.execute("SELECT version()")
            version = cur.fetchone()[0]
            cur.execute(TLS_STATE_SQL)
            row = cur.fetchone()
            encrypted = bool(row) and (row[0] or "None") != "None"
            cur.execute(WRITE_ACCESS_SQL)
            superuser, tables = cur.fetchone()
    finally:
        session.close()
    write = (
        "is a superuser (it can change anything)"
        if superuser
        else (f"may write to {tables} table(s)" if tables else "")
    )
    return LinkReport(
        version=version,
        encrypted=encrypted,
        verified=encrypted and connection.sslmode in ("verify-ca", "verify-full"),
        write_access=write,
    )


def is_system_schema(name: str) -> bool:
    return name.lower() in SYSTEM_SCHEMAS


SCHEMAS_SQL = (
    "SELECT schema_name FROM v_catalog.schemata "
    "WHERE NOT is_system_schema AND HAS_SCHEMA_PRIVILEGE(schema_name, 'USAGE') "
    "ORDER BY schema_name"
)


def schemas(connection) -> list[str]:
    session = connect(connection)
    try:
        with session.cursor() as cur:
            cur.execute(SCHEMAS_SQL)
            return [name for (name,) in cur.fetchall() if not is_system_schema(name)]
    finally:
        session.close()


# Rows: per projection, the rows over its nodes (an unsegmented projection holds every
# row on every node); a table's estimate is its smallest projection's. Bytes: all its
# projections' storage, buddies included: what the table takes on disk. External tables
# have a table_definition (their COPY) and no storage.
TABLES_SQL = """
SELECT t.table_schema, t.table_name,
       CASE WHEN COALESCE(t.table_definition, '') <> '' THEN 'external table' ELSE 'table' END,
       s.row_count, s.used_bytes
FROM v_catalog.tables t
LEFT JOIN (
    SELECT anchor_table_id, MIN(projection_rows) AS row_count, SUM(projection_bytes) AS used_bytes
    FROM (
        SELECT ps.anchor_table_id, ps.projection_id,
               SUM(ps.row_count) // CASE WHEN p.is_segmented THEN 1
                                         ELSE COUNT(DISTINCT ps.node_name) END AS projection_rows,
               SUM(ps.used_bytes) AS projection_bytes
        FROM v_monitor.projection_storage ps
        JOIN v_catalog.projections p ON p.projection_id = ps.projection_id
        GROUP BY ps.anchor_table_id, ps.projection_id, p.is_segmented
    ) per_projection
    GROUP BY anchor_table_id
) s ON s.anchor_table_id = t.table_id
WHERE NOT t.is_system_table AND NOT t.is_temp_table
  AND (%s IS NULL OR t.table_schema = %s)
UNION ALL
SELECT v.table_schema, v.table_name, 'view', NULL, NULL
FROM v_catalog.views v
WHERE NOT v.is_system_view AND (%s IS NULL OR v.table_schema = %s)
ORDER BY 1, 2
"""


def tables(connection, schema: str | None = None) -> list[TableInfo]:
    """Tables, external tables and views with estimated rows and size."""
    session = connect(connection)
    try:
        with session.cursor() as cur:
            cur.execute(TABLES_SQL, [schema, schema, schema, schema])
            return [
                TableInfo(nsp, name, kind, _int(rows), _int(size))
                for nsp, name, kind, rows, size in cur.fetchall()
                if not is_system_schema(nsp)
            ]
    finally:
        session.close()


COLUMNS_SQL = """
SELECT ordinal_position, column_name, data_type, character_maximum_length,
       numeric_precision, numeric_scale, datetime_precision, interval_precision, is_nullable
FROM v_catalog.columns WHERE table_schema = %s AND table_name = %s
UNION ALL
SELECT ordinal_position, column_name, data_type, character_maximum_length,
       numeric_precision, numeric_scale, datetime_precision, interval_precision, TRUE
FROM v_catalog.view_columns WHERE table_schema = %s AND table_name = %s
ORDER BY 1
"""


def columns(db: Session, schema: str, table: str) -> list[SourceColumn]:
    """The table's columns: declared types and nullability from v_catalog, and the exact
    structure (numeric precision and scale, array elements, row fields) as the server
    describes the table's result columns."""
    with db.cursor() as cur:
        cur.execute(COLUMNS_SQL, [schema, table, schema, table])
        catalog = cur.fetchall()
        if not catalog:
            raise ConnectionFailed(f"Table {schema}.{table} does not exist or has no columns.")
        cur.execute(f"{db.at()}SELECT * FROM {relation(schema, table)} LIMIT 0")
        result = {c.name: c for c in cur.description}
        cur.fetchall()  # nothing: ends the statement
    found = []
    for _, name, declared, length, precision, scale, dt_precision, iv_precision, null in catalog:
        described = result.get(name)
        if described is None:
            raise ConnectionFailed(f"Column {name} of {schema}.{table} changed while reading it.")
        node = describe(described)
        found.append(
            SourceColumn(
                name=name,
                source_type=declared,
                base_type=node["type"],
                category="",
                type_kind="",
                typmod=-1,
                nullable=bool(null),
                extra={
                    "vertica": node,
                    "base_declared": node["type"],
                    "length": length,
                    "precision": precision,
                    "scale": scale,
                    "datetime_precision": dt_precision,
                    "interval_precision": iv_precision,
                },
            )
        )
    return found


def relation(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


def open_snapshot(connection, lock_timeout: int | None = None):
    """A session, and the job's epoch: the latest one whose data is all committed.

    Every later read of the job runs AT this epoch.
    """
    session = connect(connection)
    try:
        with session.cursor() as cur:
            cur.execute("SELECT GET_CURRENT_EPOCH() - 1")
            epoch = int(cur.fetchone()[0])
    except vertica_errors.Error as error:
        session.close()
        raise ConnectionFailed(explain(error, connection)) from None
    session.epoch = epoch
    return session, str(epoch)


def join_snapshot(connection, snapshot_id: str | None, lock_timeout=None) -> Session:
    """A session whose reads see the job's epoch (reads AT EPOCH take no locks, so
    `lock_timeout` has nothing to limit)."""
    session = connect(connection)
    session.epoch = int(snapshot_id) if snapshot_id else None
    return session


def count_rows(db: Session, schema: str, table: str) -> int:
    with db.cursor() as cur:
        cur.execute(f"{db.at()}SELECT COUNT(*) FROM {relation(schema, table)}")
        return int(cur.fetchone()[0])


def check_filter(db, schema: str, table: str, expression: str):
    """Row filters are checked against PostgreSQL's plans; Vertica has no such check yet."""
    raise BadSelection(
        "row filters are not available for Vertica sources yet: export a view that "
        "filters the table."
    )


def check_query(db, query: str):
    raise BadSelection(
        "saved queries are not available for Vertica sources yet: export a view instead."
    )


def check_view(db, schema: str, view: str):
    check_query(db, "")


def views(db, names) -> dict:
    """Vertica's views are exported as tables are: without a check of what they read
    (its plans are not read yet); policies hold for a view's own column names."""
    return {}


def relatives(db, names) -> dict:
    return {}  # Vertica has no table inheritance or partitioned parents


def query_columns(db, query: str) -> list[SourceColumn]:
    check_query(db, query)


def distinct_estimates(db, schema: str, table: str) -> dict[str, int]:
    return {}  # no cheap estimate: every column may be dictionary-encoded


def money_scale(db) -> int:
    return 2  # Vertica has no money type; the engine asks every driver


def table_pages(db, schema: str, table: str) -> None:
    return None  # one reader per table: Vertica has no ctid ranges


CONSTRAINTS_SQL = """
SELECT constraint_name, constraint_type, column_name
FROM v_catalog.constraint_columns
WHERE table_schema = %s AND table_name = %s AND constraint_type IN ('p', 'u') AND is_enabled
ORDER BY constraint_type, constraint_name
"""


def constraints(db: Session, schema: str, table: str) -> list[dict]:
    """Primary and unique keys that Vertica enforces.

    Vertica does not enforce keys by default (they guide the optimizer and may hold
    duplicates); a key that is not enabled is no promise about the rows, so it is not
    returned, and validation does not fail a table on it.
    """
    with db.cursor() as cur:
        cur.execute(CONSTRAINTS_SQL, [schema, table])
        rows = cur.fetchall()
    kinds = {"p": "primary key", "u": "unique"}
    found: dict[str, dict] = {}
    for name, kind, column in rows:
        entry = found.setdefault(
            name, {"name": name, "kind": kinds[kind], "columns": [], "definition": ""}
        )
        entry["columns"].append(column)
    for entry in found.values():
        entry["definition"] = f"{entry['kind'].upper()} ({', '.join(entry['columns'])})"
    return list(found.values())


def read_batches(
    open_session: Callable[[], Session],
    schema: str,
    table: str,
    plans: list,
    readers: int = 1,
    pages: int | None = None,
    block_bytes: int = BATCH_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the table at the session's epoch, of bounded size.

    Rows are taken one at a time from the cursor (vertica-python reads one message per
    row from the socket) and counted by size, so a batch never holds much more than
    `block_bytes` of values, whatever the width of the rows.
    """
    select_list: list[Read] = [p.expression for p in plans]
    arrow_types = read_schema(plans)
    session = open_session()
    columns = ", ".join(read.sql for read in select_list)
    fixed = 8 * len(select_list)
    with session.cursor() as cur:
        cur.execute(f"{session.at()}SELECT {columns} FROM {relation(schema, table)}")
        while True:
            rows, size, row = [], 0, None
            while size < block_bytes and len(rows) < MAX_BATCH_ROWS:
                row = cur.fetchone()
                if row is None:
                    break
                rows.append(row)
                size += fixed + sum(_size(value) for value in row)
            if rows:
                yield build_batch(rows, select_list, arrow_types)
            if row is None:
                return


def _size(value) -> int:
    """About how many bytes a value takes in Arrow (fixed-width values count in `fixed`)."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, (list, dict, set)):
        return 16 * len(value)
    return 0


def explain(error: BaseException, connection, table: str = "") -> str:
    """One sentence telling the user what went wrong and what to fix; never a secret."""
    where = f"{connection.host}:{connection.port}"
    text = str(getattr(error, "message", None) or error).strip()
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(error, DoesNotFit):
        return f"Column {error.column} holds a value ADU cannot store exactly: {error.reason}."
    if isinstance(error, vertica_errors.SSLNotSupported):
        return f"The server at {where} does not support TLS: set sslmode to 'prefer' or 'disable'."
    if isinstance(error, (socket.timeout, TimeoutError)) or text in (
        "timed out",
        "The read operation timed out",
    ):
        return _no_answer(connection, where)
    wrong_password = f"Wrong user name or password for '{connection.username}' on {where}."
    lost = (
        f"The connection to {where} was lost while exporting {table or 'the table'}; retry the job."
    )
    checks = [
        ("Invalid username or password", wrong_password),
        ("authentication failed", wrong_password),
        (
            f'Database "{connection.database}" does not exist',
            f"Database '{connection.database}' does not exist on {where}.",
        ),
        ("Failed to establish a connection", None),
        (
            "CERTIFICATE_VERIFY_FAILED",
            f"The TLS certificate of {where} could not be verified against this connection's "
            "CA certificate: upload the CA that signed it, or set sslmode to 'require'.",
        ),
        (
            "Ancient History Mark",
            "Vertica purged the job's epoch before this table was read (its Ancient "
            "History Mark moved on): raise HistoryRetentionTime, or retry the job.",
        ),
        ("Execution canceled", "The export was cancelled."),
        ("Connection closed by Vertica", lost),
        ("Socket connection broken", lost),
    ]
    if sqlstate == "3D000":
        return f"Database '{connection.database}' does not exist on {where}."
    if sqlstate in ("42V01", "42P01") or isinstance(error, vertica_errors.MissingRelation):
        return "The table does not exist (dropped or renamed?)."
    if sqlstate == "42501" or isinstance(error, vertica_errors.PermissionDenied):
        return f"User '{connection.username}' lacks permission: {_first_line(text)}."
    for needle, message in checks:
        if needle in text:
            if needle == "Failed to establish a connection":
                return _unreachable(connection, where)
            if message:
                return message
    return redact(_first_line(text) or type(error).__name__, (connection.password or "",))


def _unreachable(connection, where: str) -> str:
    """vertica-python says only that no address answered: find out why, in one sentence."""
    try:
        socket.getaddrinfo(connection.host, connection.port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"Unknown host '{connection.host}': check the host name."
    try:
        with socket.create_connection(
            (connection.host, connection.port), timeout=connection.connect_timeout
        ):
            pass
    except ConnectionRefusedError:
        return (
            f"Connection refused by {where}: check that the server runs and listens on that port."
        )
    except TimeoutError:
        return _no_answer(connection, where)
    except OSError as error:
        return f"Cannot reach {where}: {error.strerror or error}."
    return f"Could not connect to {where}; it accepts connections now: retry."


def _no_answer(connection, where: str) -> str:
    return (
        f"No answer from {where} within {connection.connect_timeout} s: "
        "check the host, port and firewall."
    )


def _first_line(text: str) -> str:
    # A server error reads "Severity: ERROR, Message: ..., Sqlstate: ...": keep the message.
    if "Message: " in text:
        text = text.split("Message: ", 1)[1].split(", Sqlstate:", 1)[0]
    return text.splitlines()[0].rstrip(".") if text else ""


def _int(value) -> int | None:
    return None if value is None else int(value)
