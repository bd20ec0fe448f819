"""What a PostgreSQL (or Greenplum) source holds: schemas, tables with their sizes, columns
with their types resolved through domains, keys and checks, and statistics."""

from connections.drivers.base import SourceColumn, TableDescription, TableInfo
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


def tables(connection, schema: str | None = None, sizes: bool = True) -> list[TableInfo]:
    """Tables and views with estimated rows and size (None without `sizes`: asking every
    table's files for their size took 80-190 ms for 2,000 tables); partitions are left to
    their root.

    Greenplum: its legacy partitions (pg_partition_rule) are left to their root too, and
    its external tables are listed as "external table" (not exported by default).
    """
    db = connect(connection)
    try:
        with db.cursor() as cur:
            cur.execute(CATALOG_FEATURES_SQL)
            features = dict(zip(CATALOG_FEATURES, cur.fetchone(), strict=True))
            cur.execute(tables_sql(features, sizes), {"schema": schema})
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


def tables_sql(features: dict, sizes: bool = True) -> str:
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
    size = f"""CASE WHEN {is_root} THEN (
                        SELECT sum(pg_total_relation_size(tree.rel))::bigint
                        FROM tree WHERE tree.root = c.oid)
                    WHEN c.relkind IN ('r', 'm') AND NOT ({" OR ".join(external)})
                        THEN pg_total_relation_size(c.oid) END"""
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
               {size if sizes else "NULL::bigint"}
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND NOT ({" OR ".join(hidden)})
          AND (%(schema)s IS NULL OR n.nspname = %(schema)s)
        ORDER BY n.nspname, c.relname
        """


def columns(db, schema: str, table: str) -> list[SourceColumn]:
    """The table's columns with declared types, domains resolved to their base types."""
    found = _columns(db, [(schema, table)])
    if not found:
        raise ConnectionFailed(f"Table {schema}.{table} does not exist or has no columns.")
    return found[(schema, table)]


# A few queries tell about this many tables as fast as about one.
TABLES_PER_DESCRIBE = 100


def describe(db, names: list[tuple[str, str]]) -> dict[tuple[str, str], TableDescription]:
    """What the engine needs to know of each of `names` before reading it, in five queries
    whatever their number: a schema of small tables would otherwise spend more on the
    catalog than on its rows. A table that is not there gets only a `problem`."""
    schemas_, tables_ = [s for s, _ in names], [t for _, t in names]
    found = _columns(db, names)
    with db.cursor() as cur:
        cur.execute(_SIZES, [schemas_, tables_])
        sizes = {(s, t): (pages, rows) for s, t, pages, rows in cur.fetchall()}
        cur.execute(_DISTINCT, [schemas_, tables_])
        distinct: dict[tuple[str, str], dict[str, int]] = {}
        for s, t, column, estimate in cur.fetchall():
            distinct.setdefault((s, t), {})[column] = int(estimate)
        cur.execute(_CONSTRAINTS, [schemas_, tables_])
        constraints: dict[tuple[str, str], list[dict]] = {}
        for s, t, con, kind, definition, keys in cur.fetchall():
            constraints.setdefault((s, t), []).append(
                {"name": con, "kind": _KINDS[kind], "columns": list(keys), "definition": definition}
            )
    return {
        name: TableDescription(
            columns=found[name],
            pages=sizes[name][0],
            rows_estimate=sizes[name][1],
            distinct=distinct.get(name, {}),
            constraints=constraints.get(name, []),
        )
        if name in found
        else TableDescription(
            problem=f"Table {name[0]}.{name[1]} does not exist or has no columns."
        )
        for name in names
    }


# unnest(schemas, tables) AS u(nsp, rel, ord): the tables asked for, in their order.
_NAMED = """
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(nsp, rel, ord)
JOIN pg_namespace n ON n.nspname = u.nsp
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.rel
"""

_COLUMNS = f"""
SELECT u.nsp, u.rel, a.attname, a.atttypid, a.atttypmod, a.attnotnull
{_NAMED}
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY u.ord, a.attnum
"""

# Pages of a plain table or materialized view (ctid ranges apply), NULL otherwise; the
# rows ANALYZE counted, NULL if it never ran (reltuples -1; 0 before PostgreSQL 14).
_SIZES = f"""
SELECT u.nsp, u.rel,
       CASE WHEN c.relkind IN ('r', 'm')
            THEN pg_relation_size(c.oid) / current_setting('block_size')::int END,
       CASE WHEN c.reltuples > 0 THEN c.reltuples::bigint END
{_NAMED}
"""

# ANALYZE's estimate of distinct values per column (columns never analyzed are absent).
# LATERAL: pg_stats is a view that checks the privilege on every column of the database;
# joined whole it took 0.45 s for 100 tables of a database of 2,800; asked table by table,
# with the names pushed into the view, a few ms.
_DISTINCT = f"""
SELECT u.nsp, u.rel, s.attname,
       CASE WHEN s.n_distinct >= 0 THEN s.n_distinct
            ELSE -s.n_distinct * greatest(c.reltuples, 0) END
{_NAMED}
CROSS JOIN LATERAL (
    SELECT attname, n_distinct FROM pg_stats WHERE schemaname = u.nsp AND tablename = u.rel
    OFFSET 0  -- kept a subquery: the planner would otherwise join the whole view
) s
"""

# Primary-key, unique and validated CHECK constraints: what the rows must satisfy.
_CONSTRAINTS = f"""
SELECT u.nsp, u.rel, con.conname, con.contype, pg_get_constraintdef(con.oid),
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.pos)
{_NAMED}
JOIN pg_constraint con ON con.conrelid = c.oid
WHERE con.contype IN ('p', 'u', 'c') AND con.convalidated
ORDER BY u.ord, con.contype, con.conname
"""

_KINDS = {"p": "primary key", "u": "unique", "c": "check"}


def _columns(db, names: list[tuple[str, str]]) -> dict[tuple[str, str], list[SourceColumn]]:
    """The columns of each of `names` that exists and has columns, in two queries."""
    with db.cursor() as cur:
        cur.execute(_COLUMNS, [[s for s, _ in names], [t for _, t in names]])
        rows = cur.fetchall()
    if not rows:
        return {}
    schemas_, tables_, column_names, oids, typmods, notnull = (
        list(values) for values in zip(*rows, strict=True)
    )
    resolved = iter(resolve_types(db, column_names, oids, typmods, notnull))
    found: dict[tuple[str, str], list[SourceColumn]] = {}
    for name in zip(schemas_, tables_, strict=True):
        found.setdefault(name, []).append(next(resolved))
    return found


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


def money_scale(db) -> int:
    """Digits after the point of `money`, which depend on the server's lc_monetary."""
    with db.cursor() as cur:
        cur.execute("SELECT scale(0::money::numeric)")
        return cur.fetchone()[0]
