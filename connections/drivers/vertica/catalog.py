"""What a Vertica source holds, from v_catalog: schemas, tables with their sizes, columns
with their types, and the keys Vertica enforces."""

from connections.drivers.base import SourceColumn, TableDescription, TableInfo
from connections.drivers.vertica import types
from connections.drivers.vertica.session import Session, connect
from connections.models import ConnectionFailed

SYSTEM_SCHEMAS = ("v_catalog", "v_monitor", "v_internal", "v_func", "v_txtindex", "v_secure")


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


def tables(connection, schema: str | None = None, sizes: bool = True) -> list[TableInfo]:
    """Tables, external tables and views with estimated rows and size (the sizes come
    with the rows from v_monitor.projection_storage, whatever `sizes` says)."""
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
        node = types.describe(described)
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
    return f"{types.quote(schema)}.{types.quote(table)}"


# describe reads table after table: asked about tables ahead, a worker would read some
# that another worker exports.
TABLES_PER_DESCRIBE = 1


def describe(db: Session, names: list[tuple[str, str]]) -> dict[tuple[str, str], TableDescription]:
    """Table after table: Vertica has no ctid ranges to split a read by and no cheap
    estimate of distinct values (every column may be dictionary-encoded)."""
    described = {}
    for schema, table in names:
        try:
            described[(schema, table)] = TableDescription(
                columns=columns(db, schema, table), constraints=constraints(db, schema, table)
            )
        except ConnectionFailed as error:  # not there, or changed while being read
            described[(schema, table)] = TableDescription(problem=str(error))
    return described


def money_scale(db) -> int:
    return 2  # Vertica has no money type; the engine asks every driver


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


def _int(value) -> int | None:
    return None if value is None else int(value)
