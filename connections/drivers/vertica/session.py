"""Vertica sessions: connect read-only with TLS as asked, test a link, and pin the epoch
every read of a job runs AT."""

import vertica_python
from vertica_python import errors as vertica_errors

from connections.drivers.base import LinkReport
from connections.drivers.vertica.errors import explain
from connections.drivers.vertica.types import register_converters
from connections.models import ConnectionFailed

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


def may_reuse(db) -> bool:
    """Each table gets sessions of its own: reuse is measured and tested on PostgreSQL
    only (the tests' Vertica is a fake server)."""
    return False


def join_snapshot(connection, snapshot_id: str | None, lock_timeout=None) -> Session:
    """A session whose reads see the job's epoch (reads AT EPOCH take no locks, so
    `lock_timeout` has nothing to limit)."""
    session = connect(connection)
    session.epoch = int(snapshot_id) if snapshot_id else None
    return session
