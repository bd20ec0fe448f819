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
    """What the engine needs to know of each of `names` before reading it, in seven queries
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
    types = user_types(db, names)
    defaults = column_defaults(db, names)
    return {
        name: TableDescription(
            columns=found[name],
            pages=sizes[name][0],
            rows_estimate=sizes[name][1],
            distinct=distinct.get(name, {}),
            constraints=constraints.get(name, []),
            types=types.get(name, {}),
            defaults=defaults.get(name, {}),
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

# The types of each table's columns that are not PostgreSQL's own (enums, domains,
# composites, ranges, an extension's), and the types those are made of, through domain
# bases, composite fields, range subtypes and array elements: what a load on the far
# side must create before the table. A type refers to another by its format_type() text
# and its element type's oid (its own where it is no array).
_USED_TYPES = f"""
WITH RECURSIVE used(ord, oid) AS (
    SELECT u.ord, CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
    {_NAMED}
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
  UNION
    SELECT used.ord,
           CASE WHEN d.typcategory = 'A' AND d.typelem <> 0 THEN d.typelem ELSE d.oid END
    FROM used
    JOIN pg_type t ON t.oid = used.oid
    JOIN LATERAL (
        SELECT t.typbasetype WHERE t.typtype = 'd'
      UNION ALL
        SELECT a.atttypid FROM pg_attribute a
        WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0
          AND NOT a.attisdropped
      UNION ALL
        SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
    ) deps(oid) ON true
    JOIN pg_type d ON d.oid = deps.oid
)
SELECT used.ord, t.oid, tn.nspname, t.typname, t.typtype,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
       t.typbasetype, t.typnotnull, pg_get_expr(t.typdefaultbin, 0),
       ARRAY(SELECT ARRAY[con.conname::text, pg_get_constraintdef(con.oid)]
             FROM pg_constraint con WHERE con.contypid = t.oid AND con.contype = 'c'
             ORDER BY con.conname),
       ARRAY(SELECT ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod),
                          (CASE WHEN f.typcategory = 'A' AND f.typelem <> 0
                                THEN f.typelem ELSE f.oid END)::text]
             FROM pg_attribute a JOIN pg_type f ON f.oid = a.atttypid
             WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0
               AND NOT a.attisdropped
             ORDER BY a.attnum),
       (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid),
       (SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid)
FROM used
JOIN pg_type t ON t.oid = used.oid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY used.ord, t.oid
"""

# Each table's columns whose type (or its element type) is not PostgreSQL's own.
_USER_TYPED_COLUMNS = f"""
SELECT u.nsp, u.rel, a.attname, tn.nspname, e.typname, t.oid <> e.oid
{_NAMED}
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type e ON e.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0
                               THEN t.typelem ELSE t.oid END
JOIN pg_namespace tn ON tn.oid = e.typnamespace
WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema')
"""

_TYPE_KINDS = {"e": "enum", "d": "domain", "c": "composite", "r": "range", "b": "base"}


def user_types(db, names: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """For each of `names` with a column of a type that is not PostgreSQL's own:
    {"columns": {column: {"schema", "name", "array"}}, "definitions": [every such type
    it needs, those it is made of first]}. A type is named by its schema and name; the
    types a definition refers to, by a reference ({"sql"} for PostgreSQL's own, with
    "schema", "name" and "array" for another: the far side's schemas may have other
    names, so the text is not enough)."""
    schemas_, tables_ = [s for s, _ in names], [t for _, t in names]
    with db.cursor() as cur:
        cur.execute(_USER_TYPED_COLUMNS, [schemas_, tables_])
        columns = cur.fetchall()
        if not columns:
            return {}
        cur.execute(_USED_TYPES, [schemas_, tables_])
        rows = cur.fetchall()
    known = {oid: (nsp, name) for _, oid, nsp, name, *_ in rows}

    def reference(sql_text: str, element: int) -> dict:
        if element not in known:
            return {"sql": sql_text}
        nsp, name = known[element]
        return {"sql": sql_text, "schema": nsp, "name": name, "array": sql_text.endswith("]")}

    by_ord: dict[int, list[dict]] = {}
    for (
        ord_,
        _oid,
        nsp,
        name,
        kind,
        labels,
        base,
        base_oid,
        notnull,
        default,
        checks,
        fields,
        subtype,
        subtype_oid,
    ) in rows:
        definition: dict = {"schema": nsp, "name": name, "kind": _TYPE_KINDS.get(kind, kind)}
        if kind == "e":
            definition["labels"] = list(labels)
        elif kind == "d":
            definition["base"] = reference(base, base_oid)
            definition["not_null"] = notnull
            definition["default"] = default
            definition["checks"] = [{"name": n, "definition": d} for n, d in checks]
        elif kind == "c":
            definition["fields"] = [{"name": n, "type": reference(t, int(e))} for n, t, e in fields]
        elif kind == "r":
            definition["subtype"] = reference(subtype, subtype_oid)
        by_ord.setdefault(ord_, []).append(definition)
    found: dict[tuple[str, str], dict] = {}
    for nsp, rel, column, type_schema, type_name, is_array in columns:
        entry = found.setdefault((nsp, rel), {"columns": {}, "definitions": []})
        entry["columns"][column] = {"schema": type_schema, "name": type_name, "array": is_array}
    for ord_, definitions in by_ord.items():
        if names[ord_ - 1] in found:
            found[names[ord_ - 1]]["definitions"] = _dependencies_first(definitions)
    return found


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


def _dependencies_first(definitions: list[dict]) -> list[dict]:
    """The definitions ordered so that each comes after the types it refers to."""
    by_name = {(d["schema"], d["name"]): d for d in definitions}
    ordered: list[dict] = []
    placed: set[tuple[str, str]] = set()

    def place(key: tuple[str, str]):
        if key in placed or key not in by_name:
            return
        placed.add(key)
        for ref in type_references(by_name[key]):
            if "schema" in ref:
                place((ref["schema"], ref["name"]))
        ordered.append(by_name[key])

    for key in by_name:
        place(key)
    return ordered


def type_references(definition: dict) -> list[dict]:
    """The references a user type's definition makes to other types."""
    if definition["kind"] == "domain":
        return [definition["base"]]
    if definition["kind"] == "composite":
        return [f["type"] for f in definition["fields"]]
    if definition["kind"] == "range":
        return [definition["subtype"]]
    return []


# Each column's default, and where it is an identity or takes its values from a sequence
# the table owns (serial), that sequence's name and where it stands: a load recreates the
# sequence at the same point, so new rows on the far side do not collide with the old.
_DEFAULTS = f"""
SELECT u.nsp, u.rel, a.attname, pg_get_expr(d.adbin, d.adrelid), {{identity}},
       sn.nspname, sc.relname,
       CASE WHEN has_sequence_privilege(sc.oid, 'SELECT') THEN {{last_value}} END
{_NAMED}
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_depend dep ON dep.refobjid = c.oid AND dep.refobjsubid = a.attnum
     AND dep.classid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
LEFT JOIN pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S'
LEFT JOIN pg_namespace sn ON sn.oid = sc.relnamespace
WHERE d.adbin IS NOT NULL OR sc.oid IS NOT NULL
ORDER BY u.ord, a.attnum
"""


def column_defaults(db, names: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """{column: {"default": SQL text or None, "identity": "always" | "by default" | None,
    "sequence": {"schema", "name", "last_value"} or None}} of each of `names`' columns that
    have a default or an owned sequence. last_value is None when the sequence was never
    used or this login may not read it."""
    modern = db.server_version >= 100000  # identities and pg_sequence_last_value
    query = _DEFAULTS.format(
        identity="a.attidentity" if modern else "''",
        last_value="pg_sequence_last_value(sc.oid)" if modern else "NULL::bigint",
    )
    with db.cursor() as cur:
        cur.execute(query, [[s for s, _ in names], [t for _, t in names]])
        rows = cur.fetchall()
    found: dict[tuple[str, str], dict] = {}
    for nsp, rel, column, default, identity, seq_schema, seq_name, last_value in rows:
        found.setdefault((nsp, rel), {})[column] = {
            "default": default,
            "identity": {"a": "always", "d": "by default"}.get(identity or ""),
            "sequence": {"schema": seq_schema, "name": seq_name, "last_value": last_value}
            if seq_name
            else None,
        }
    return found
