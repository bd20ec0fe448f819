"""PostgreSQL (and Greenplum) sessions: connect read-only with ADU's limits, test a link,
and hold or join the one snapshot a job reads."""

import re
import uuid

import psycopg2
from django.conf import settings
from psycopg2.extensions import TRANSACTION_STATUS_INTRANS

from connections.drivers import PER_TABLE
from connections.drivers.base import LinkReport
from connections.drivers.postgresql.errors import explain
from connections.models import ConnectionFailed

# Every session starts with these, whatever the server's or the role's defaults: it is
# read-only from its first statement (no statement on it can write even if a transaction
# ends early), and reads string literals as the SQL standard and pglast do (with
# standard_conforming_strings off, '\'' would end a literal pglast reads as open).
SAFE_SESSION = {"default_transaction_read_only": "on", "standard_conforming_strings": "on"}
# Settings that make the server's text output exact and parseable whatever the
# server's defaults are.
SESSION_SETTINGS = {
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "iso_8601",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


def connect(
    connection,
    *,
    session_settings: bool = True,
    long_reads: bool = False,
    lock_timeout: int | None = None,
    writable: bool = False,
):
    """An open read-only psycopg2 connection, or ConnectionFailed with one clear sentence.

    Its statements stop after settings.SOURCE_STATEMENT_TIMEOUT seconds (no limit for
    `long_reads`: an export's sessions) and wait at most `lock_timeout` seconds (default
    settings.SOURCE_LOCK_TIMEOUT) for another session's lock. `writable`: a load's session
    on a connection marked as a load target (connect_target), the only one that may write.
    """
    if writable and not connection.is_target:
        raise ConnectionFailed(
            f"Connection {connection.name} is not marked as a load target: ADU writes only "
            "to a connection marked so."
        )
    params = {
        "host": connection.host,
        "port": connection.port,
        "dbname": connection.database,
        "user": connection.username,
        "password": connection.secret(),
        "sslmode": connection.sslmode,
        "connect_timeout": connection.connect_timeout,
        "application_name": "adu",
        "client_encoding": "UTF8",
    }
    params.update({k: v for k, v in connection.driver_options().items() if k not in params})
    safe = {**SAFE_SESSION, "default_transaction_read_only": "off"} if writable else SAFE_SESSION
    startup = {**safe, **(SESSION_SETTINGS if session_settings else {})}
    params["options"] = " ".join(
        f"-c {name}={value.replace(' ', '')}" for name, value in startup.items()
    )
    if connection.sslmode in VERIFYING and not connection.ca_certificate:
        raise ConnectionFailed(
            f"sslmode {connection.sslmode} checks the server's certificate against a CA "
            "certificate: upload the CA that signed it with the connection."
        )
    with connection.ca_file() as ca_path:
        if ca_path:
            params["sslrootcert"] = ca_path
        try:
            db = psycopg2.connect(**params)
        except psycopg2.Error as error:
            raise ConnectionFailed(explain(error, connection)) from None
    try:
        _limit(
            db, long_reads, settings.SOURCE_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        )
    except psycopg2.Error as error:
        db.close()
        raise ConnectionFailed(explain(error, connection)) from None
    return db


# The session's limits in one round trip: ours, unless the role's own is stricter (a
# limit of 0 is none; NULL: leave it). An export's long reads alone lift the statement
# timeout, and keep their transaction open while other sessions read. (pg_settings: a
# server without one of these, such as Greenplum 6 without the idle timeout, is left so.)
_LIMITS = """
SELECT set_config(name, CASE WHEN ours IS NULL THEN setting
                             WHEN ours = 0 THEN '0'
                             WHEN setting::bigint = 0 OR setting::bigint > ours THEN ours::text
                             ELSE setting END, false)
FROM pg_settings
JOIN (VALUES ('statement_timeout', %(statement)s::bigint),
             ('lock_timeout', %(lock)s::bigint),
             ('idle_in_transaction_session_timeout', %(idle)s::bigint)) AS limits(limit_name, ours)
  ON name = limit_name
"""


def _limit(db, long_reads: bool, lock_timeout: int):
    with db.cursor() as cur:
        cur.execute(
            _LIMITS,
            {
                "statement": 0 if long_reads else settings.SOURCE_STATEMENT_TIMEOUT * 1000,
                "lock": max(1, lock_timeout) * 1000,
                "idle": 0 if long_reads else None,
            },
        )
    db.commit()


def connect_target(connection):
    """A session of a load: it may write, its COPYs have no time limit, and it reads
    values in the form exports write them (SESSION_SETTINGS)."""
    return connect(connection, long_reads=True, writable=True)


def test(connection) -> LinkReport:
    db = connect(connection, session_settings=False)
    try:
        with db.cursor() as cur:
            cur.execute("SELECT version()")
            version = cur.fetchone()[0]
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            row = cur.fetchone()
            encrypted, protocol = (bool(row[0]), row[1] or "") if row else (False, "")
            cur.execute(WRITE_ACCESS)
            superuser, tables, create = cur.fetchone()
        # Greenplum's version() starts with the PostgreSQL it is built on: name Greenplum.
        greenplum = re.search(r"Greenplum Database (\S+)", version)
        postgres = re.match(r"PostgreSQL (\S+)", version)
        return LinkReport(
            version=version,
            encrypted=encrypted,
            protocol=protocol,
            verified=encrypted and connection.sslmode in VERIFYING,
            write_access=_write_access(superuser, tables, create),
            product=f"Greenplum {greenplum[1]}"
            if greenplum
            else (f"PostgreSQL {postgres[1]}" if postgres else ""),
        )
    finally:
        db.close()


VERIFYING = ("verify-ca", "verify-full")

# Whether this login could change the source: superuser, tables it may write, schemas
# it may create objects in (outside the system schemas).
WRITE_ACCESS = """
SELECT r.rolsuper,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
          AND n.nspname NOT LIKE 'pg\\_%'
          AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
               OR has_table_privilege(c.oid, 'DELETE')
               OR has_table_privilege(c.oid, 'TRUNCATE'))),
       (SELECT count(*) FROM pg_namespace n
        WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
          AND has_schema_privilege(n.oid, 'CREATE'))
FROM pg_roles r WHERE r.rolname = current_user
"""


def _write_access(superuser: bool, tables: int, create: int) -> str:
    if superuser:
        return "is a superuser (it can change anything)"
    found = []
    if tables:
        found.append(f"may write to {tables} table(s)")
    if create:
        found.append(f"may create objects in {create} schema(s)")
    return " and ".join(found)


def open_snapshot(connection, lock_timeout: int | None = None):
    """A REPEATABLE READ session holding the job's snapshot, and the snapshot's id.

    The session must stay open until every table of the job has imported the snapshot.
    A Greenplum that cannot export snapshots gets a PER_TABLE id instead: each table is
    then read in a transaction of its own, and the manifest says so.
    """
    db = connect(connection, long_reads=True, lock_timeout=lock_timeout)
    db.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with db.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            return db, cur.fetchone()[0]
    except psycopg2.Error as error:
        if connection.kind == "greenplum" and not isinstance(error, psycopg2.OperationalError):
            db.rollback()
            return db, f"{PER_TABLE}{uuid.uuid4().hex}"
        db.close()
        raise ConnectionFailed(explain(error, connection)) from None


def snapshot_xids(db) -> str:
    """The transaction ids of the session's snapshot, "xmin:xmax:xip,..." with 64-bit ids
    (connections.drivers.postgresql.incremental)."""
    with db.cursor() as cur:
        cur.execute("SELECT txid_current_snapshot()::text")
        return cur.fetchone()[0]


def may_reuse(db) -> bool:
    """Idle inside the snapshot's transaction: a session that failed, was cancelled or
    whose transaction ended (a new one would see another snapshot) is not reused."""
    return not db.closed and db.get_transaction_status() == TRANSACTION_STATUS_INTRANS


def join_snapshot(connection, snapshot_id: str | None, lock_timeout: int | None = None):
    """A read-only session for an export's long reads that sees the database exactly as
    the job's snapshot does (with a PER_TABLE id: as its own transaction does)."""
    db = connect(connection, long_reads=True, lock_timeout=lock_timeout)
    db.set_session(isolation_level="REPEATABLE READ", readonly=True)
    if snapshot_id and not snapshot_id.startswith(PER_TABLE):
        with db.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", [snapshot_id])
    return db
