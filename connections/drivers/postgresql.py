"""PostgreSQL (and Greenplum) driver: discovery, one snapshot per job, and streaming reads.

Rows leave the server as `COPY (SELECT ...) TO STDOUT`, in one of two forms. A table of
plain types (integers, floats, numeric, text, dates and times, bytea, uuid) comes in
binary and is decoded by ADU's C extension (native/adu_pgcopy.c) straight into Arrow
buffers, with the GIL released. Any other table comes as CSV, the server's text output,
which is exact for every type, parsed by pyarrow's streaming CSV reader in C++. Either
way memory is bounded by the batch size. A large table is read as several ctid ranges
over several connections that all import the job's snapshot, as `pg_dump -j` does.
"""

import dataclasses
import fcntl
import functools
import json
import os
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterator

import adu_pgcopy
import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
from django.conf import settings
from psycopg2 import sql

from adu_site.redaction import redact
from connections.drivers import (
    PER_TABLE,
    BadSelection,
    LinkReport,
    SourceColumn,
    TableInfo,
    interrupt,
    user_sql,
)
from connections.models import ConnectionFailed
from exports.engine.types import NATIVE, DoesNotFit, plan, read_schema  # noqa: F401  (plan: the driver interface)

SYSTEM_SCHEMAS = ("information_schema",)
SYSTEM_SCHEMA_PREFIXES = ("pg_", "gp_")
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
CSV_BLOCK_BYTES = 2 << 20
PIPE_BYTES = 1 << 20
# Below this many pages (8 kB each) one reader is as fast as several.
SPLIT_MIN_PAGES = 4096
_F_SETPIPE_SZ = 1031


def connect(
    connection,
    *,
    session_settings: bool = True,
    long_reads: bool = False,
    lock_timeout: int | None = None,
):
    """An open read-only psycopg2 connection, or ConnectionFailed with one clear sentence.

    Its statements stop after settings.SOURCE_STATEMENT_TIMEOUT seconds (no limit for
    `long_reads`: an export's sessions) and wait at most `lock_timeout` seconds (default
    settings.SOURCE_LOCK_TIMEOUT) for another session's lock.
    """
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
    startup = {**SAFE_SESSION, **(SESSION_SETTINGS if session_settings else {})}
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
NUMERIC_OID = 1700
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


def schemas(connection) -> list[str]:
    db = connect(connection)
    try:
        with db.cursor() as cur:
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'USAGE') "
                "ORDER BY nspname"
            )
            return [name for (name,) in cur.fetchall() if not is_system_schema(name)]
    finally:
        db.close()


def is_system_schema(name: str) -> bool:
    return name in SYSTEM_SCHEMAS or name.startswith(SYSTEM_SCHEMA_PREFIXES)


_RELKINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
}


def tables(connection, schema: str | None = None) -> list[TableInfo]:
    """Tables and views with estimated rows and size; partitions are left to their root.

    Greenplum: its legacy partitions (pg_partition_rule) are left to their root too, and
    its external tables are listed as "external table" (not exported by default).
    """
    db = connect(connection)
    try:
        with db.cursor() as cur:
            cur.execute(CATALOG_FEATURES_SQL)
            features = dict(zip(CATALOG_FEATURES, cur.fetchone(), strict=True))
            cur.execute(tables_sql(features), {"schema": schema})
            return [
                TableInfo(nsp, name, kind, rows, size)
                for nsp, name, kind, rows, size in cur.fetchall()
                if not is_system_schema(nsp)
            ]
    finally:
        db.close()


CATALOG_FEATURES = ("relispartition", "relstorage", "partition_rule", "exttable")
# PostgreSQL 10+ has relispartition; Greenplum 6 has relstorage ('x': external) and its
# own partition catalog; Greenplum 6 and 7 list external tables in pg_exttable.
CATALOG_FEATURES_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'pg_catalog.pg_class'::regclass AND attname = 'relispartition'),
       EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'pg_catalog.pg_class'::regclass AND attname = 'relstorage'),
       to_regclass('pg_catalog.pg_partition_rule') IS NOT NULL,
       to_regclass('pg_catalog.pg_exttable') IS NOT NULL
"""


def tables_sql(features: dict) -> str:
    """The discovery query for a server with these catalog features."""
    external = ["false"]
    if features["relstorage"]:
        external.append("c.relstorage = 'x'")
    if features["exttable"]:
        external.append("EXISTS (SELECT 1 FROM pg_exttable x WHERE x.reloid = c.oid)")
    root = ["c.relkind = 'p'"]
    hidden = ["false"]
    if features["relispartition"]:
        hidden.append("c.relispartition")
    if features["partition_rule"]:
        root.append("EXISTS (SELECT 1 FROM pg_partition pp WHERE pp.parrelid = c.oid)")
        hidden.append("EXISTS (SELECT 1 FROM pg_partition_rule pr WHERE pr.parchildrelid = c.oid)")
    is_root = " OR ".join(root)
    return f"""
        WITH RECURSIVE tree(root, rel) AS (
            SELECT inhparent, inhrelid FROM pg_inherits
          UNION ALL
            SELECT tree.root, i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel
        )
        SELECT n.nspname, c.relname,
               CASE WHEN {" OR ".join(external)} THEN 'external table'
                    WHEN {is_root} THEN 'partitioned table'
                    WHEN c.relkind = 'r' THEN 'table'
                    WHEN c.relkind = 'v' THEN 'view'
                    WHEN c.relkind = 'm' THEN 'materialized view'
                    ELSE 'foreign table' END,
               CASE WHEN {is_root} THEN (
                        SELECT sum(greatest(p.reltuples, 0))::bigint
                        FROM tree JOIN pg_class p ON p.oid = tree.rel
                        WHERE tree.root = c.oid AND p.relkind IN ('r', 'm'))
                    WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0
                        THEN c.reltuples::bigint END,
               CASE WHEN {is_root} THEN (
                        SELECT sum(pg_total_relation_size(tree.rel))::bigint
                        FROM tree WHERE tree.root = c.oid)
                    WHEN c.relkind IN ('r', 'm') AND NOT ({" OR ".join(external)})
                        THEN pg_total_relation_size(c.oid) END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND NOT ({" OR ".join(hidden)})
          AND (%(schema)s IS NULL OR n.nspname = %(schema)s)
        ORDER BY n.nspname, c.relname
        """


def columns(db, schema: str, table: str) -> list[SourceColumn]:
    """The table's columns with declared types, domains resolved to their base types."""
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            [schema, table],
        )
        rows = cur.fetchall()
    if not rows:
        raise ConnectionFailed(f"Table {schema}.{table} does not exist or has no columns.")
    names, oids, typmods, notnull = (list(values) for values in zip(*rows, strict=True))
    return _resolve_types(db, names, oids, typmods, notnull)


# Each column's declared type and, through any domains, its base type.
_RESOLVE_TYPES = """
WITH RECURSIVE cols AS (
    SELECT u.ord, u.name, u.not_null, format_type(u.typid, u.typmod) AS declared,
           u.typid, u.typmod, 0 AS depth
    FROM unnest(%s::text[], %s::oid[], %s::int[], %s::bool[])
         WITH ORDINALITY AS u(name, typid, typmod, not_null, ord)
  UNION ALL
    SELECT cols.ord, cols.name, cols.not_null OR t.typnotnull, cols.declared,
           t.typbasetype, t.typtypmod, cols.depth + 1
    FROM cols JOIN pg_type t ON t.oid = cols.typid
    WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (cols.ord) cols.name, cols.declared, t.typname, t.typcategory, t.typtype,
       cols.typmod, cols.not_null, et.typname, format_type(cols.typid, cols.typmod)
FROM cols
JOIN pg_type t ON t.oid = cols.typid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
ORDER BY cols.ord, cols.depth DESC
"""


def _resolve_types(db, names, oids, typmods, notnull=None) -> list[SourceColumn]:
    notnull = notnull if notnull is not None else [False] * len(names)
    with db.cursor() as cur:
        cur.execute(_RESOLVE_TYPES, [names, oids, typmods, notnull])
        rows = cur.fetchall()
    return [
        SourceColumn(
            name=name,
            source_type=declared,
            base_type=typname,
            category=category,
            type_kind=typtype,
            typmod=typmod,
            nullable=not is_notnull,
            extra={"element_type": element, "base_declared": base_declared},
        )
        for name, declared, typname, category, typtype, typmod, is_notnull, element, base_declared in rows
    ]


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


def join_snapshot(connection, snapshot_id: str | None, lock_timeout: int | None = None):
    """A read-only session for an export's long reads that sees the database exactly as
    the job's snapshot does (with a PER_TABLE id: as its own transaction does)."""
    db = connect(connection, long_reads=True, lock_timeout=lock_timeout)
    db.set_session(isolation_level="REPEATABLE READ", readonly=True)
    if snapshot_id and not snapshot_id.startswith(PER_TABLE):
        with db.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", [snapshot_id])
    return db


def count_rows(db, schema: str, table: str, row_filter: str = "", query: str = "") -> int:
    with db.cursor() as cur:
        if db.server_version >= 90600:
            # The count runs beside the read: parallel workers would only take the cores
            # the read's backends need.
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}{}").format(
                _relation(schema, table, query), _where(row_filter, [])
            )
        )
        return cur.fetchone()[0]


def _relation(schema: str, table: str, query: str) -> sql.Composable:
    if query:
        # What runs is the query's tree deparsed again, never the text as typed.
        return sql.SQL("(\n{}\n) AS q").format(sql.SQL(user_sql.check_query(query).sql))
    return sql.Identifier(schema, table)


def _where(row_filter: str, conditions: list) -> sql.Composable:
    if row_filter:
        checked = user_sql.check_filter(row_filter)
        conditions = [sql.SQL("({})").format(sql.SQL(checked.sql)), *conditions]
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def check_filter(db, schema: str, table: str, expression: str) -> user_sql.CheckedFilter:
    """The filter, parsed and checked (user_sql), then planned: BadSelection unless it is
    one allowed condition on the table's own columns whose plan reads that table alone."""
    checked = user_sql.check_filter(expression, [c.name for c in columns(db, schema, table)])
    _check_views(db, _relations(db, [(schema, table)]), "filter")
    statement = sql.SQL("SELECT * FROM {} WHERE ({})").format(
        sql.Identifier(schema, table), sql.SQL(checked.sql)
    )
    tree = _check_plan(db, statement, "filter")
    own = _table_and_partitions(db, schema, table)
    read = {(scan_schema, name) for scan_schema, name, _ in _scans(tree)}
    if not read <= own or _has_subplan(tree):
        raise BadSelection(
            "The filter reads more than its table; a filter is one condition on the "
            "table's own columns."
        )
    return checked


def check_query(db, query: str) -> user_sql.CheckedQuery:
    """The query, parsed and checked (user_sql), then planned: BadSelection unless it is
    one SELECT that reads no system catalog and, through the views it reads, calls only
    built-in functions that change nothing. Its `reads` are the (schema, table, column)
    of every table column it touches, whatever the query or its views call them, and as
    the columns of every table they are partitions (or children) of."""
    checked = user_sql.check_query(query)
    relations = _relations(db, checked.relations)
    system = sorted(f"{s}.{name}" for _, s, name, _ in relations if is_system_schema(s))
    if system:
        raise BadSelection(
            f"The query reads the system catalog ({system[0]}); a query reads the "
            "database's own tables."
        )
    # Before the plan: planning runs the immutable functions of a view's WHERE.
    through_views = _check_views(db, relations, "query")
    # Planned as the export runs it, inside a subquery: with more than one relation in
    # the plan, EXPLAIN names every column with its relation's alias.
    tree = _check_plan(
        db, sql.SQL("SELECT * FROM (\n{}\n) AS q").format(sql.SQL(checked.sql)), "query"
    )
    nodes = list(_plan_nodes(tree))
    if any(node.get("Node Type") == "ModifyTable" for node in nodes):
        raise BadSelection("The query changes data; an export runs only a SELECT.")
    scans = list(_scans(tree))
    system = sorted(f"{s}.{name}" for s, name, _ in scans if is_system_schema(s))
    if system:
        raise BadSelection(
            f"The query reads the system catalog ({system[0]}); a query reads the "
            "database's own tables."
        )
    reads = _columns_read(db, tree, scans) | through_views
    return dataclasses.replace(checked, reads=_with_relatives(db, reads))


def check_view(db, schema: str, view: str) -> user_sql.CheckedQuery:
    """A view exported as a table, checked as the query that reads all of it."""
    return check_query(
        db, sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, view)).as_string(db)
    )


def views(db, names) -> dict[tuple[str, str], str]:
    """The relations among `names` whose reading runs or reads through stored SQL, each
    "view" (a view or a materialized view: it is checked as the query that reads it) or
    "table" (row security on it or a child: its policies are checked)."""
    relations = _relations(db, names)
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT c.oid FROM pg_class c WHERE c.oid = ANY(%s::oid[]) AND (c.relrowsecurity
                OR EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
                           WHERE i.inhparent = c.oid AND k.relrowsecurity))
            """,
            [[oid for oid, *_ in relations]],
        )
        secured = {oid for (oid,) in cur.fetchall()}
    db.rollback()
    return {
        (s, name): "view" if kind in ("v", "m") else "table"
        for oid, s, name, kind in relations
        if kind in ("v", "m") or oid in secured
    }


def relatives(db, names) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The tables each of `names` is a partition (or an inheritance child) of, nearest
    first, then its own partitions and children: a policy on a partitioned table holds
    for its partitions, and one on a partition for the parent whose scan reads it."""
    if not names:
        return {}
    with db.cursor() as cur:
        cur.execute(
            """
            WITH RECURSIVE given(oid) AS (
                SELECT c.oid FROM unnest(%s::text[], %s::text[]) AS r(nsp, rel)
                JOIN pg_namespace n ON n.nspname = r.nsp
                JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.rel
            ), up(start, relative, depth) AS (
                SELECT i.inhrelid, i.inhparent, 1 FROM given JOIN pg_inherits i ON i.inhrelid = given.oid
              UNION
                SELECT up.start, i.inhparent, up.depth + 1
                FROM up JOIN pg_inherits i ON i.inhrelid = up.relative
            ), down(start, relative, depth) AS (
                SELECT i.inhparent, i.inhrelid, 1 FROM given JOIN pg_inherits i ON i.inhparent = given.oid
              UNION
                SELECT down.start, i.inhrelid, down.depth + 1
                FROM down JOIN pg_inherits i ON i.inhparent = down.relative
            )
            SELECT cn.nspname, c.relname, rn.nspname, r.relname
            FROM (SELECT start, relative, depth FROM up
                  UNION ALL SELECT start, relative, 1000 + depth FROM down) AS found
            JOIN pg_class c ON c.oid = found.start JOIN pg_namespace cn ON cn.oid = c.relnamespace
            JOIN pg_class r ON r.oid = found.relative JOIN pg_namespace rn ON rn.oid = r.relnamespace
            ORDER BY found.depth
            """,
            [[s for s, _ in names], [name for _, name in names]],
        )
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, name, relative_schema, relative in cur.fetchall():
            found.setdefault((schema, name), []).append((relative_schema, relative))
    db.rollback()
    return found


def _with_relatives(db, reads) -> frozenset[tuple[str, str, str]]:
    """The reads, and each again as a column of its table's relatives (see relatives)."""
    family = relatives(db, sorted({(s, name) for s, name, _ in reads}))
    return frozenset(reads) | {
        (*relative, column) for s, name, column in reads for relative in family.get((s, name), ())
    }


def _relations(db, names) -> list[tuple[int, str, str, str]]:
    """(oid, schema, name, relkind) of the relations among (schema or "", name), resolved as the
    session would (pg_stat_activity, pg_settings... need no schema to be found)."""
    if not names:
        return []
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT c.oid, n.nspname, c.relname, c.relkind::text
            FROM unnest(%s::text[], %s::text[]) AS r(nsp, rel)
            JOIN pg_class c ON c.oid = to_regclass(
                CASE WHEN r.nsp = '' THEN quote_ident(r.rel)
                     ELSE quote_ident(r.nsp) || '.' || quote_ident(r.rel) END)
            JOIN pg_namespace n ON n.oid = c.relnamespace
            """,
            [[s for s, _ in names], [name for _, name in names]],
        )
        found = sorted(cur.fetchall())
    db.rollback()
    return found


# Every relation reached from the given ones: through the stored queries of views and
# materialized views (a rule depends, in pg_depend, on each relation, column, type and
# non-built-in function or operator it uses), and to the children whose rows a parent's
# scan includes. `code` is what runs as they are read: views' rules and row security
# policies; `rules` the stored queries that say what they read.
_REACHED = """
WITH RECURSIVE reached(oid) AS (
    SELECT unnest(%(oids)s::oid[])
  UNION
    SELECT next.oid FROM reached, LATERAL (
        SELECT d.refobjid
        FROM pg_class v
        JOIN pg_rewrite w ON w.ev_class = v.oid
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
         AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
        WHERE v.oid = reached.oid AND v.relkind IN ('v', 'm')
      UNION ALL
        SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = reached.oid
    ) AS next(oid)
), code AS (
    SELECT v.oid AS relation, 'pg_rewrite'::regclass AS classid, w.oid AS objid
    FROM reached JOIN pg_class v ON v.oid = reached.oid AND v.relkind = 'v'
    JOIN pg_rewrite w ON w.ev_class = v.oid
  UNION ALL
    SELECT p.polrelid, 'pg_policy'::regclass, p.oid
    FROM reached JOIN pg_policy p ON p.polrelid = reached.oid
), rules AS (
    SELECT v.oid AS view, v.relkind, w.oid AS rule
    FROM reached JOIN pg_class v ON v.oid = reached.oid AND v.relkind IN ('v', 'm')
    JOIN pg_rewrite w ON w.ev_class = v.oid
)
"""
# Objects initdb creates have OIDs below this (FirstNormalObjectId): the built-ins.
# Extensions are not trusted either: some run SQL text (tablefunc's crosstab), and the
# owner of one may add any function to it.
FIRST_NORMAL_OID = 16384
# Volatile built-ins that only wait or draw a number: they change nothing.
HARMLESS_VOLATILE = ["pg_sleep", "pg_sleep_for", "pg_sleep_until", "random",
                     "clock_timestamp", "timeofday", "gen_random_uuid"]  # fmt: skip
# Stable built-ins that read more than their arguments: any table, by its name or a
# query's text (table_to_xml, query_to_xml...), or what other sessions run.
READS_BEYOND_ARGUMENTS = r"(_to_xml|_to_xmlschema|_to_xml_and_xmlschema)$|^pg_stat_get_"
# What that code runs that is not built in: functions (of operators, aggregates and
# casts too), and domains whose CHECK runs on every value cast to them. (Calls of
# built-ins are pinned and leave no trace here: _check_plan reads them in the plan.)
_USER_CODE = (
    _REACHED
    + """
SELECT DISTINCT quote_ident(rn.nspname) || '.' || quote_ident(r.relname), what FROM (
    SELECT code.relation,
           'calls ' || quote_ident(fn.nspname) || '.' || quote_ident(f.proname) || '()'
    FROM code
    JOIN pg_depend d ON d.classid = code.classid AND d.objid = code.objid
    LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
    JOIN pg_proc f ON f.oid = CASE WHEN d.refclassid = 'pg_proc'::regclass THEN d.refobjid
                                   ELSE o.oprcode::oid END
    JOIN pg_namespace fn ON fn.oid = f.pronamespace
    WHERE f.oid >= %(first_normal)s
  UNION ALL
    SELECT code.relation, 'casts to the domain ' || format_type(t.oid, NULL)
    FROM code
    JOIN pg_depend d ON d.classid = code.classid AND d.objid = code.objid
     AND d.refclassid = 'pg_type'::regclass
    JOIN pg_type t ON t.oid = d.refobjid AND t.typtype = 'd'
    WHERE EXISTS (SELECT 1 FROM pg_constraint c WHERE c.contypid IN (t.oid, t.typbasetype))
) AS found(relation, what)
JOIN pg_class r ON r.oid = found.relation JOIN pg_namespace rn ON rn.oid = r.relnamespace
ORDER BY 1, 2
"""
)
# The table columns those stored queries read (EXPLAIN names them by the aliases a view
# gives them, and does not look into a materialized view at all; the dependencies do).
# A whole row leaves no column dependency: a materialized view's counts as every column
# of the relations it reads (a view's shows in the plan as alias.*).
_READ_BY_VIEWS = (
    _REACHED
    + """
SELECT DISTINCT n.nspname, c.relname, a.attname
FROM rules
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule
 AND d.refclassid = 'pg_class'::regclass
 AND (d.refobjsubid > 0 OR rules.relkind = 'm')
JOIN pg_class c ON c.oid = d.refobjid AND c.relkind NOT IN ('v', 'm') AND c.oid <> rules.view
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 AND (a.attnum = d.refobjsubid OR d.refobjsubid = 0)
"""
)


def _check_views(db, relations, what: str) -> frozenset[tuple[str, str, str]]:
    """The table columns the views among `relations` read (through other views too);
    BadSelection if reading them runs code that is not built in."""
    oids = [oid for oid, *_ in relations]
    if not oids:
        return frozenset()
    params = {"oids": oids, "first_normal": FIRST_NORMAL_OID}
    with db.cursor() as cur:
        cur.execute(_USER_CODE, params)
        found = cur.fetchall()
        cur.execute(_READ_BY_VIEWS, params)
        reads = frozenset(cur.fetchall())
    db.rollback()
    if found:
        relation, does = found[0]
        raise BadSelection(
            f"The {what} reads {relation}, which {does}: code that is not built in, which "
            "would run with ADU's login; ADU reads views (and row security) that use "
            "built-in functions only."
        )
    return reads


def _plan_nodes(tree: dict) -> Iterator[dict]:
    yield tree
    for child in tree.get("Plans", ()):
        yield from _plan_nodes(child)


def _scans(tree: dict) -> Iterator[tuple[str, str, str]]:
    """(schema, relation, alias) of every relation the plan reads."""
    for node in _plan_nodes(tree):
        if "Relation Name" in node:
            yield node.get("Schema", ""), node["Relation Name"], node.get("Alias", "")


def _has_subplan(tree: dict) -> bool:
    return any(
        node.get("Parent Relationship") in ("SubPlan", "InitPlan") or "Subplan Name" in node
        for node in _plan_nodes(tree)
    )


def _table_and_partitions(db, schema: str, table: str) -> set[tuple[str, str]]:
    with db.cursor() as cur:
        cur.execute(
            """
            WITH RECURSIVE tree(oid) AS (
                SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s
              UNION ALL
                SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
            )
            SELECT n.nspname, c.relname FROM tree
            JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
            """,
            [schema, table],
        )
        return set(cur.fetchall())


def _columns_read(db, tree: dict, scans) -> frozenset[tuple[str, str, str]]:
    """The columns of scanned relations that appear anywhere in the verbose plan (as
    alias.column, or all of them as alias.*): outputs, filters, join and sort keys."""
    if not scans:
        return frozenset()
    texts = "\n".join(_plan_texts(tree))
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT n.nspname, c.relname, a.attname
            FROM unnest(%s::text[], %s::text[]) AS r(nsp, rel)
            JOIN pg_namespace n ON n.nspname = r.nsp
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.rel
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            """,
            [[s for s, _, _ in scans], [name for _, name, _ in scans]],
        )
        relation_columns: dict[tuple[str, str], list[str]] = {}
        for schema, name, column in cur.fetchall():
            relation_columns.setdefault((schema, name), []).append(column)
    reads = set()
    for schema, name, alias in scans:
        for column in relation_columns.get((schema, name), []):
            if re.search(_qualified(alias, column), texts) or re.search(
                _qualified(alias, "*"), texts
            ):
                reads.add((schema, name, column))
    return frozenset(reads)


def _qualified(alias: str, column: str) -> str:
    """A pattern for alias.column as EXPLAIN prints it, quoted or not."""

    def name(identifier: str) -> str:
        quoted = '"' + identifier.replace('"', '""') + '"'
        if identifier == "*":
            return re.escape("*")
        return f"(?:{re.escape(quoted)}|{re.escape(identifier)})"

    return rf'(?<![\w$"]){name(alias)}\.{name(column)}(?![\w$"])'


def _plan_texts(node) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _plan_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plan_texts(value)
    elif isinstance(node, str):
        yield node


def query_columns(db, query: str) -> list[SourceColumn]:
    """The columns of a query's result, typed like a table's (nullable: unknown, so yes)."""
    with db.cursor() as cur:
        try:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(_relation("", "", query)))
        finally:
            db.rollback()
        described = cur.description
    names = [c.name for c in described]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadSelection(
            f"The query returns several columns named {', '.join(repeated)}: name each "
            "column once (… AS other_name)."
        )
    # The result's type modifiers are known only through what psycopg2 derives from them:
    # a numeric's precision and scale (the rest need none; an unconstrained numeric
    # reports 65535).
    typmods = [
        ((c.precision << 16) | c.scale) + 4
        if c.type_code == NUMERIC_OID and c.precision is not None and 0 < c.precision <= 1000
        else -1
        for c in described
    ]  # fmt: skip
    return _resolve_types(db, names, [c.type_code for c in described], typmods)


def preview(db, query: str, limit: int) -> list[tuple]:
    """The first `limit` rows of a checked query, as text, in a read-only transaction."""
    db.rollback()
    db.set_session(readonly=True)
    try:
        with db.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} LIMIT {}").format(
                    _relation("", "", query), sql.Literal(limit)
                )
            )
            return [tuple(None if v is None else str(v) for v in row) for row in cur.fetchall()]
    except psycopg2.Error as error:
        raise BadSelection(
            f"The source refuses the query: {_reason(error, reading_rows=True)}."
        ) from None
    finally:
        db.rollback()


def _reason(error: psycopg2.Error, reading_rows: bool = False) -> str:
    """The server's reason in one line, when its kind of message names only what the user
    typed or the server's limits; otherwise only the name of its condition: a query that
    fails on a row must not carry that row's data out in its message (a data exception
    quotes the failing value, bare or quoted; a function's RAISE says anything)."""
    if error.pgcode == "57014":
        return f"it ran longer than {settings.SOURCE_STATEMENT_TIMEOUT} s (ADU_SOURCE_STATEMENT_TIMEOUT)"
    if error.pgcode == "55P03":
        return "a table it reads is locked by another session (an ACCESS EXCLUSIVE lock)"
    if _may_quote_data(error) or (reading_rows and error.pgcode not in (None, "42501")):
        # Reading rows, even a "name" may be a value: 'x'::regclass fails with 42P01.
        return _condition(error.pgcode)
    return " ".join((error.diag.message_primary or _first_line(str(error))).split()).rstrip(".")


# SQLSTATE classes whose messages name only objects, syntax or limits: syntax errors and
# access rules, unsupported features, resources, program limits, transaction state.
TELLING_CLASSES = ("42", "0A", "53", "54", "25")


def _may_quote_data(error: BaseException) -> bool:
    """Whether the error's message may carry source data: it is not of a telling class,
    or a function raised it (its context names the function; RAISE takes any SQLSTATE)."""
    code = getattr(error, "pgcode", None)
    diag = getattr(error, "diag", None)
    return bool(code) and (code[:2] not in TELLING_CLASSES or bool(diag and diag.context))


def _condition(code: str) -> str:
    """'22008' -> 'datetime field overflow (SQLSTATE 22008)'."""
    try:
        name = psycopg2.errorcodes.lookup(code).lower().replace("_", " ")
    except KeyError:
        return f"SQLSTATE {code}"
    return f"{name} (SQLSTATE {code})"


def _check_plan(db, statement, what: str) -> dict:
    """Plan the statement (nothing runs but the built-in immutable functions the planner
    folds; the session is read-only) and return the plan; BadSelection if it calls a
    built-in that changes something or reads past its arguments. (Calls of built-ins
    leave no trace in pg_depend, which _check_views reads: the plan names them, and a
    function of another schema never reaches this point.)"""
    db.rollback()
    try:
        with db.cursor() as cur:
            cur.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) ") + statement)
            [[explained]] = cur.fetchall()
            tree = explained[0]["Plan"]
            called = sorted(set(re.findall(r"([A-Za-z_][\w$]*)\(", json.dumps(tree))))
            cur.execute(
                """
                SELECT DISTINCT proname FROM pg_proc
                WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY(%(called)s)
                  AND ((provolatile = 'v' AND proname <> ALL(%(harmless)s))
                       OR proname ~ %(beyond)s)
                ORDER BY proname
                """,
                {"called": called, "harmless": HARMLESS_VOLATILE, "beyond": READS_BEYOND_ARGUMENTS},
            )
            unsafe = [name for (name,) in cur.fetchall()]
    except psycopg2.Error as error:
        raise BadSelection(f"The source refuses the {what}: {_reason(error)}.") from None
    finally:
        db.rollback()
    if unsafe:
        raise BadSelection(
            f"The {what} calls {unsafe[0]}() (through a view), which can change the database, "
            f"give another answer each time or read past its arguments; ADU runs only "
            f"built-in functions that change nothing and read only their arguments."
        )
    return tree


def distinct_estimates(db, schema: str, table: str) -> dict[str, int]:
    """ANALYZE's estimate of distinct values per column (columns never analyzed are absent)."""
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT s.attname,
                   CASE WHEN s.n_distinct >= 0 THEN s.n_distinct
                        ELSE -s.n_distinct * greatest(c.reltuples, 0) END
            FROM pg_stats s
            JOIN pg_namespace n ON n.nspname = s.schemaname
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
            WHERE s.schemaname = %s AND s.tablename = %s
            """,
            [schema, table],
        )
        return {name: int(estimate) for name, estimate in cur.fetchall()}


def constraints(db, schema: str, table: str) -> list[dict]:
    """Primary-key, unique and validated CHECK constraints: what the rows must satisfy.

    [{"name", "kind": "primary key" | "unique" | "check", "columns", "definition"}]
    """
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT con.conname, con.contype, pg_get_constraintdef(con.oid),
                   ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                         ORDER BY k.pos)
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND con.contype IN ('p', 'u', 'c')
              AND con.convalidated
            ORDER BY con.contype, con.conname
            """,
            [schema, table],
        )
        kinds = {"p": "primary key", "u": "unique", "c": "check"}
        return [
            {"name": name, "kind": kinds[kind], "columns": list(columns), "definition": text}
            for name, kind, text, columns in cur.fetchall()
        ]


def money_scale(db) -> int:
    """Digits after the point of `money`, which depend on the server's lc_monetary."""
    with db.cursor() as cur:
        cur.execute("SELECT scale(0::money::numeric)")
        return cur.fetchone()[0]


def table_pages(db, schema: str, table: str) -> int | None:
    """Pages of a plain table or materialized view (ctid ranges apply); None otherwise."""
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT CASE WHEN c.relkind IN ('r', 'm')
                        THEN pg_relation_size(c.oid) / current_setting('block_size')::int END
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s
            """,
            [schema, table],
        )
        row = cur.fetchone()
        return row[0] if row else None


def read_batches(
    open_session: Callable[[], object],
    schema: str,
    table: str,
    plans: list,
    readers: int = 1,
    pages: int | None = None,
    block_bytes: int = CSV_BLOCK_BYTES,
    row_filter: str = "",
    query: str = "",
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the table (or of `query`'s result) for its column plans, read over
    `readers` sessions opened by `open_session`, keeping only rows that meet `row_filter`
    (checked before).

    Each session must already see the job's snapshot. Batches of several readers
    interleave; their order carries no meaning. A row longer than `block_bytes` raises
    ArrowInvalid ("straddling object"): read again with larger blocks.
    """
    relation = _relation(schema, table, query)
    if query or readers <= 1 or not pages or pages < SPLIT_MIN_PAGES:
        ranges = [[]]
    else:
        bounds = [pages * i // readers for i in range(readers + 1)]
        ranges = [
            [sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({bounds[i]},0)"))]
            + (
                [sql.SQL("ctid < {}::tid").format(sql.Literal(f"({bounds[i + 1]},0)"))]
                if i < readers - 1
                else []
            )
            for i in range(readers)
        ]
    kinds = [binary_kind(p) for p in plans]
    if None in kinds:
        # A column only the server's text output carries exactly: every column as CSV.
        read = _read_csv(read_schema(plans), block_bytes)
        form = "csv"
    else:
        read = _read_binary(plans, kinds, block_bytes)
        form = "binary"
    statements = [
        sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT {})").format(
            sql.SQL(", ").join(p.expression for p in plans),
            relation,
            _where(row_filter, conditions),
            sql.SQL(form),
        )
        for conditions in ranges
    ]
    # Even one reader gets a thread: the server keeps sending while batches are written.
    yield from _merge(read, [(open_session, statement) for statement in statements])


# The types decoded from COPY's binary form by adu_pgcopy (native/). On lineitem that
# takes about 1 cpu-s where receiving and parsing CSV took about 5.
_BINARY_KINDS = {
    "bool": adu_pgcopy.BOOL,
    "int2": adu_pgcopy.INT16,
    "int4": adu_pgcopy.INT32,
    "int8": adu_pgcopy.INT64,
    "oid": adu_pgcopy.OID,
    "float4": adu_pgcopy.FLOAT32,
    "float8": adu_pgcopy.FLOAT64,
    "date": adu_pgcopy.DATE,
    "timestamp": adu_pgcopy.TIMESTAMP,
    "timestamptz": adu_pgcopy.TIMESTAMP,
    "time": adu_pgcopy.TIME,
    "numeric": adu_pgcopy.DECIMAL,
    "money": adu_pgcopy.DECIMAL,  # read as numeric
    "text": adu_pgcopy.STRING,
    "varchar": adu_pgcopy.STRING,
    "bpchar": adu_pgcopy.STRING,
    "name": adu_pgcopy.STRING,
    "bytea": adu_pgcopy.BINARY,
    "uuid": adu_pgcopy.UUID,
}
BINARY_BATCH_ROWS = 32_768


def binary_kind(column_plan) -> tuple[int, int, int] | None:
    """(kind, precision, scale) for adu_pgcopy, or None: the column needs the text form."""
    source, arrow_type = column_plan.source, column_plan.arrow_type
    kind = _BINARY_KINDS.get(source.base_type)
    if (
        kind is None
        or column_plan.representation != NATIVE
        or source.category == "A"
        or source.type_kind == "e"
    ):
        return None
    if kind == adu_pgcopy.DECIMAL:
        if not pa.types.is_decimal128(arrow_type):
            return None
        return kind, arrow_type.precision, arrow_type.scale
    return kind, 0, 0


class CopyFailed(Exception):
    """The server ended a binary COPY with an error (`pgcode` is its SQLSTATE)."""

    def __init__(self, pgcode: str | None, message: str):
        super().__init__(message)
        self.pgcode = pgcode


@functools.cache
def _libpq() -> str:
    """The file of the libpq psycopg2 runs on: adu_pgcopy must call that very copy."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if "/libpq" in path and ".so" in path:
                return path
    raise RuntimeError("psycopg2's libpq is not loaded")


def _read_binary(plans, kinds, block_bytes: int):
    names = [p.name for p in plans]
    arrow_types = [p.arrow_type for p in plans]

    def read(db, statement) -> Iterator[pa.RecordBatch]:
        if db.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            with db.cursor() as cur:  # psycopg2 begins its transaction on a first statement
                cur.execute("SELECT 1")
        decoder = adu_pgcopy.Decoder(_libpq(), db.pgconn_ptr, kinds)
        try:
            decoder.start(statement.as_string(db))
            while batch := decoder.read(BINARY_BATCH_ROWS, block_bytes * 8, pa.allocate_buffer):
                columns, rows = batch
                yield pa.RecordBatch.from_arrays(
                    [_array(t, rows, *c) for t, c in zip(arrow_types, columns, strict=True)],
                    names=names,
                )
        except adu_pgcopy.DoesNotFit as error:
            column, reason = error.args
            raise DoesNotFit(plans[column].name, reason) from None
        except adu_pgcopy.CopyFailed as error:
            state, message = error.args if len(error.args) == 2 else (None, error.args[0])
            raise CopyFailed(state, message) from None

    return read


def _array(arrow_type, rows: int, validity, values, offsets, nulls: int) -> pa.Array:
    if isinstance(arrow_type, pa.BaseExtensionType):  # uuid: over fixed_size_binary(16)
        storage = pa.Array.from_buffers(arrow_type.storage_type, rows, [validity, values], nulls)
        return pa.ExtensionArray.from_storage(arrow_type, storage)
    buffers = [validity, values] if offsets is None else [validity, offsets, values]
    return pa.Array.from_buffers(arrow_type, rows, buffers, nulls)


def _read_csv(arrow_types: pa.Schema, block_bytes: int):
    def read(db, statement) -> Iterator[pa.RecordBatch]:
        return _read_copy(db, statement, arrow_types, block_bytes)

    return read


def _read_copy(db, statement, arrow_types: pa.Schema, block_bytes: int):
    """Stream one COPY through an OS pipe into pyarrow's CSV reader.

    psycopg2 pushes COPY data into a file object; pyarrow pulls from one. A pipe joins
    them with bounded memory: when the reader falls behind, the COPY thread blocks.
    """
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # a smaller pipe is only slower
    source = os.fdopen(read_fd, "rb", buffering=PIPE_BYTES)
    sink = os.fdopen(write_fd, "wb", buffering=PIPE_BYTES)
    failure: list[BaseException] = []

    def copy():
        try:
            with db.cursor() as cur:
                cur.copy_expert(statement, sink)
        except BaseException as error:  # handed to the reading thread
            failure.append(error)
        finally:
            try:
                sink.close()
            except OSError as error:  # the reader went away
                failure.append(error)

    copier = threading.Thread(target=copy, daemon=True, name="adu-copy")
    copier.start()
    try:
        yield from _parse(source, arrow_types, block_bytes)
    except pa.ArrowInvalid:
        # A COPY that died mid-stream leaves a truncated CSV: its error is the real one.
        # (Look before stopping it: stopping makes the COPY fail with a broken pipe.)
        copy_failed = list(failure)
        _stop_copy(db, copier, source)
        if copy_failed:
            raise copy_failed[0] from None
        raise
    except BaseException:
        _stop_copy(db, copier, source)
        raise
    copier.join()
    source.close()
    if failure:
        raise failure[0]


def _parse(source, arrow_types: pa.Schema, block_bytes: int) -> Iterator[pa.RecordBatch]:
    # use_threads=False: the threaded reader reads ahead up to 32 blocks whenever the
    # Parquet writer is slower than the network, and memory grows with the table.
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=arrow_types.names, block_size=block_bytes, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=arrow_types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                # The session's client_encoding is UTF8: the server checks every byte it
                # sends (even from a SQL_ASCII database) and fails the COPY on a bad one.
                check_utf8=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    except pa.ArrowInvalid as error:
        if str(error) == "Empty CSV file":
            return  # an empty table, or a COPY that failed at once (the caller checks)
        raise
    yield from reader


def _stop_copy(db, copier, source):
    try:
        db.cancel()
    except psycopg2.Error:
        pass
    source.close()  # unblocks a COPY thread waiting on a full pipe
    copier.join(timeout=30)


_DONE = object()


def _merge(read_one, jobs) -> Iterator[pa.RecordBatch]:
    """Batches from several COPY streams, read by one thread each, through a bounded queue."""
    batches: queue.Queue = queue.Queue(maxsize=len(jobs))
    stop = threading.Event()
    failure: list[BaseException] = []
    sessions = []

    def read(open_session, statement):
        try:
            sessions.append(open_session())
            for batch in read_one(sessions[-1], statement):
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:
            failure.append(error)
            stop.set()
        finally:
            batches.put(_DONE)

    threads = [
        threading.Thread(target=read, args=job, daemon=True, name="adu-range") for job in jobs
    ]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            batch = batches.get()
            if batch is _DONE:
                finished += 1
                if failure:
                    raise failure[0]
                continue
            yield batch
    finally:
        # No reader may outlive this generator: its caller closes the sessions next, and a
        # reader in the middle of a batch still uses its session's connection. Cancelling
        # their COPY ends a reader that waits on the server at once.
        stop.set()
        if any(thread.is_alive() for thread in threads):
            interrupt(sessions)
        while any(thread.is_alive() for thread in threads):
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass
        for thread in threads:
            thread.join()


def explain(error: BaseException, connection, table: str = "") -> str:
    """One sentence telling the user what went wrong and what to fix; never a secret.

    `table`, when the error met one table's export, is named where it helps."""
    text = str(error).strip()
    where = f"{connection.host}:{connection.port}"
    code = getattr(error, "pgcode", None)
    checks = [
        (
            "password authentication failed",
            f"Wrong user name or password for '{connection.username}' on {where}.",
        ),
        (
            "no password supplied",
            f"The server at {where} asks for a password and none is stored for this connection.",
        ),
        (
            "could not translate host name",
            f"Unknown host '{connection.host}': check the host name.",
        ),
        ("Name or service not known", f"Unknown host '{connection.host}': check the host name."),
        (
            "Connection refused",
            f"Connection refused by {where}: check that the server runs and listens on that port.",
        ),
        (
            "timeout expired",
            f"No answer from {where} within {connection.connect_timeout} s: check the host, port and firewall.",
        ),
        (
            "server does not support SSL",
            f"The server at {where} does not support SSL: set sslmode to 'prefer' or 'disable'.",
        ),
        (
            "no encryption",
            f"The server at {where} has no pg_hba.conf rule for this user and database "
            "without encryption: set sslmode to 'require', or ask the DBA to allow this address.",
        ),
        (
            "certificate verify failed",
            f"The certificate of the server at {where} is not signed by this connection's CA "
            "certificate (or has expired): upload the CA that signed it.",
        ),
        (
            "does not match host name",
            f"The server's certificate is not for the host name '{connection.host}': connect "
            "with the name on its certificate, or use sslmode verify-ca.",
        ),
        (
            "SSL off",
            f"The server at {where} requires SSL for this user: set sslmode to 'require' (or stricter).",
        ),
        (
            "no pg_hba.conf entry",
            f"The server at {where} does not allow this user, database or address (pg_hba.conf).",
        ),
        (
            "terminating connection due to administrator command",
            f"The database server ended the session exporting {table or 'the table'} "
            "(an administrator or a restart stopped it); retry the job.",
        ),
        (
            "server closed the connection unexpectedly",
            f"The connection to {where} was lost while exporting {table or 'the table'}; retry the job.",
        ),
        ("could not open relation with OID", "The table was dropped after the export started."),
        ("canceling statement due to user request", "The export was cancelled."),
        (
            "invalid snapshot identifier",
            "The job's snapshot ended before this table started; retry the job.",
        ),
    ]
    if code == "3D000" or f'database "{connection.database}" does not exist' in text:
        return f"Database '{connection.database}' does not exist on {where}."
    if code == "22021":
        return (
            "The table holds text that is not valid UTF-8 (a database with encoding "
            "SQL_ASCII accepts any bytes); ADU writes text only as UTF-8: correct the "
            "data at the source."
        )
    if code == "42P01":
        return "The table does not exist (dropped or renamed?)."
    if code == "55P03" or "due to lock timeout" in text:
        return (
            f"{table or 'The table'} is locked by another session (an ACCESS EXCLUSIVE lock: "
            "ALTER TABLE, TRUNCATE, DROP, VACUUM FULL, REINDEX or LOCK TABLE), and the lock "
            "was not released within the job's lock timeout; export it again once it is."
        )
    if code == "42501" and not _may_quote_data(error):
        return f"User '{connection.username}' lacks permission: {_first_line(text)}."
    for needle, message in checks:
        if needle in text:
            return message
    # Any other message may quote source data (see _reason): only its condition is told.
    if code and code.startswith("22"):
        return (
            f"The source could not compute a value of {table or 'the table'} "
            f"({_condition(code)}): check the job's filter or query against the data."
        )
    if code:  # while reading rows any other message may quote a value (see _reason)
        return f"The source stopped the export of {table or 'the table'}: {_condition(code)}."
    if isinstance(error, psycopg2.Error):
        # libpq's own text: several lines, the address again, in its terms. Only its reason
        # is kept (without a pgcode it quotes no source data), in one sentence that says
        # where and what to check.
        reason = _LIBPQ_PREFIX.sub("", _first_line(text))[:200]
        reason = redact(reason or type(error).__name__, (connection.password or "",))
        if table:
            return f"The link to {where} failed while exporting {table} ({reason}); retry the job."
        return (
            f"ADU could not connect to {where} ({reason}): check the host, port and SSL mode, "
            "and that the server runs and accepts this user from this machine."
        )
    return redact(_first_line(text) or type(error).__name__, (connection.password or "",))


_LIBPQ_PREFIX = re.compile(
    r'^connection to server (?:at|on socket) "[^"]*"(?: \([^)]*\))?(?:, port \d+)? failed: '
    r"(?:(?:FATAL|ERROR): +)?"
)


def _first_line(text: str) -> str:
    return text.splitlines()[0].rstrip(".") if text else ""
