"""The user's row filters, queries and views on a PostgreSQL source: parsed and checked by
user_sql, then planned by the server, so that only one allowed SELECT of built-in functions
that change nothing runs; and the SQL that applies them (count, preview, the COPY's FROM)."""

import dataclasses
import json
import re
from collections.abc import Iterator

import psycopg2
from psycopg2 import sql

from connections.drivers import user_sql
from connections.drivers.base import BadSelection, SourceColumn
from connections.drivers.postgresql import incremental
from connections.drivers.postgresql.catalog import columns, is_system_schema, resolve_types
from connections.drivers.postgresql.errors import safe_reason

NUMERIC_OID = 1700  # pg_type of numeric: a query result column's type_code


def count_rows(
    db,
    schema: str,
    table: str,
    row_filter: str = "",
    query: str = "",
    xid_window=None,
    watermark=None,
) -> int:
    with db.cursor() as cur:
        if db.server_version >= 90600:
            # The count runs beside the read: parallel workers would only take the cores
            # the read's backends need.
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}{}").format(
                from_clause(schema, table, query),
                where_clause(row_filter, [], xid_window, watermark),
            )
        )
        return cur.fetchone()[0]


def fingerprint(
    db,
    schema: str,
    table: str,
    columns: list[dict],
    row_filter: str = "",
    xid_window=None,
    watermark=None,
):
    """(rows, digest): the content fingerprint of the table's rows (those the filter
    keeps) as a load computes it over its target (loads.fingerprint), in this session's
    snapshot."""
    from loads import fingerprint as content

    where = condition(row_filter, [], xid_window, watermark)
    with db.cursor() as cur:
        # Parallel workers are welcome here: unlike a count, nothing reads beside it.
        cur.execute(content.sql(schema, table, columns, where))
        rows, digest = cur.fetchone()
    return int(rows), digest


def from_clause(schema: str, table: str, query: str) -> sql.Composable:
    """What a count, a preview or a COPY reads: the table, or the checked query's result."""
    if query:
        # What runs is the query's tree deparsed again, never the text as typed.
        return sql.SQL("(\n{}\n) AS q").format(sql.SQL(user_sql.check_query(query).sql))
    return sql.Identifier(schema, table)


def where_clause(
    row_filter: str, conditions: list, xid_window=None, watermark=None
) -> sql.Composable:
    """ " WHERE " and condition(...), or nothing."""
    found = condition(row_filter, conditions, xid_window, watermark)
    return sql.SQL(" WHERE ") + found if found is not None else sql.SQL("")


def condition(row_filter: str, conditions: list, xid_window=None, watermark=None):
    """The checked row filter, the incremental window (by xmin or by a watermark column)
    and the other conditions (a COPY's ctid range), ANDed; None when there is none."""
    if xid_window:
        conditions = [xid_condition(xid_window), *conditions]
    if watermark and watermark_condition(watermark) is not None:
        conditions = [watermark_condition(watermark), *conditions]
    if row_filter:
        checked = user_sql.check_filter(row_filter)
        conditions = [sql.SQL("({})").format(sql.SQL(checked.sql)), *conditions]
    return sql.SQL(" AND ").join(conditions) if conditions else None


def xid_condition(xid_window: dict) -> sql.Composable:
    """The rows whose writer is in the window (connections.drivers.postgresql.incremental), from the literal
    numbers of the window: nothing a user typed."""
    bounds = incremental.bounds(xid_window)
    xmin = sql.SQL("xmin::text::bigint")
    back = sql.SQL("(({} - {} + {}) % {})").format(
        sql.Literal(bounds["xmax32"]),
        xmin,
        sql.Literal(incremental.WRAP),
        sql.Literal(incremental.WRAP),
    )
    below = sql.SQL("{} > {}").format(back, sql.Literal(bounds["nearer_than"]))
    if bounds["within"] is None:  # a base: 0-2 are the bootstrap and pre-9.4 frozen ids
        return sql.SQL("({} < 3 OR {})").format(xmin, below)
    return sql.SQL("({} >= 3 AND {} AND {} <= {})").format(
        xmin, below, back, sql.Literal(bounds["within"])
    )


# The types a watermark column may have, and what its lag is in each.
WATERMARK_TYPES = {
    "int2": ("smallint", "numeric"),
    "int4": ("integer", "numeric"),
    "int8": ("bigint", "numeric"),
    "numeric": ("numeric", "numeric"),
    "date": ("date", "interval"),
    "timestamp": ("timestamp", "interval"),
    "timestamptz": ("timestamptz", "interval"),
}


def watermark_upper(db, schema: str, table: str, column: str, base_type: str, lag: str, after):
    """The watermark's end in the session's snapshot, as text: the column's highest value
    less the lag, never before `after` (the last end); None for an empty table's base."""
    type_name, lag_type = WATERMARK_TYPES[base_type]
    with db.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT GREATEST(CAST(max({}) - CAST(%s AS {}) AS {}), CAST(%s AS {}))::text FROM {}"
            ).format(
                sql.Identifier(column),
                sql.SQL(lag_type),
                sql.SQL(type_name),
                sql.SQL(type_name),
                sql.Identifier(schema, table),
            ),
            [lag, after],
        )
        return cur.fetchone()[0]


def watermark_condition(watermark: dict):
    """The rows whose watermark is in (after, before]; a base also takes the rows without
    one. Values are literals cast to the column's type (from WATERMARK_TYPES)."""
    column = sql.Identifier(watermark["column"])
    type_name = sql.SQL(WATERMARK_TYPES[watermark["base_type"]][0])
    if watermark["before"] is None:  # the base of an empty table: all there is
        return None
    below = sql.SQL("{} <= CAST({} AS {})").format(
        column, sql.Literal(watermark["before"]), type_name
    )
    if watermark["after"] is None:
        return sql.SQL("({} OR {} IS NULL)").format(below, column)
    return sql.SQL("({} > CAST({} AS {}) AND {})").format(
        column, sql.Literal(watermark["after"]), type_name, below
    )


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
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(from_clause("", "", query)))
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
    return resolve_types(db, names, [c.type_code for c in described], typmods)


def preview(db, query: str, limit: int) -> list[tuple]:
    """The first `limit` rows of a checked query, as text, in a read-only transaction."""
    db.rollback()
    db.set_session(readonly=True)
    try:
        with db.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} LIMIT {}").format(
                    from_clause("", "", query), sql.Literal(limit)
                )
            )
            return [tuple(None if v is None else str(v) for v in row) for row in cur.fetchall()]
    except psycopg2.Error as error:
        raise BadSelection(
            f"The source refuses the query: {safe_reason(error, reading_rows=True)}."
        ) from None
    finally:
        db.rollback()


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
        raise BadSelection(f"The source refuses the {what}: {safe_reason(error)}.") from None
    finally:
        db.rollback()
    if unsafe:
        raise BadSelection(
            f"The {what} calls {unsafe[0]}() (through a view), which can change the database, "
            f"give another answer each time or read past its arguments; ADU runs only "
            f"built-in functions that change nothing and read only their arguments."
        )
    return tree
