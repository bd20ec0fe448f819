"""What a PostgreSQL (or Greenplum) source holds: schemas, tables with their sizes, columns
with their types resolved through domains, keys and checks, and statistics."""

from connections.drivers.base import SourceColumn, TableInfo
from connections.drivers.postgresql.session import connect
from connections.models import ConnectionFailed

SYSTEM_SCHEMAS = ("information_schema",)
SYSTEM_SCHEMA_PREFIXES = ("pg_", "gp_")


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
    return resolve_types(db, names, oids, typmods, notnull)


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


def resolve_types(db, names, oids, typmods, notnull=None) -> list[SourceColumn]:
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
