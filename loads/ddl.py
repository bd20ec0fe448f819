"""The target's definitions, made from an export's manifest: schemas, user types, tables,
and after the rows the keys and checks.

The manifest is read as hostile, like any SQL a user types: it crossed the gap on media
anyone could have handled. Names go out as quoted identifiers; a type written as text
is parsed by PostgreSQL's own parser (pglast) and must be one type name and nothing
else; a CHECK is sent only if it passes the same checker as a row filter. What is sent
is the deparsed tree, never the manifest's text.
"""

from dataclasses import dataclass, field

from pglast import ast, parser
from pglast.stream import RawStream
from psycopg2 import sql

from connections.drivers import user_sql
from connections.drivers.base import BadSelection


class LoadRefused(Exception):
    """One sentence: why this table (or the whole load) cannot go into the target."""


def type_name(text: str) -> str:
    """`text` as one PostgreSQL type name (with its modifiers and array brackets), deparsed
    from its parse tree; LoadRefused if it is anything more."""
    refused = LoadRefused(f"The manifest names a column type ADU does not accept: {text[:80]!r}.")
    if not text or len(text) > 200 or "\x00" in text:
        raise refused
    try:
        [statement] = parser.parse_sql(f"SELECT NULL::{text}")
    except (parser.ParseError, ValueError):
        raise refused from None
    select = statement.stmt
    if not isinstance(select, ast.SelectStmt) or len(select.targetList or ()) != 1:
        raise refused
    others = {
        name: getattr(select, name)
        for name in select.__slots__
        if name not in ("targetList", "limitOption", "op", "all", "groupDistinct")
    }
    cast = select.targetList[0].val
    if any(others.values()) or select.targetList[0].name or not isinstance(cast, ast.TypeCast):
        raise refused
    if not isinstance(cast.arg, ast.A_Const) or not cast.arg.isnull:
        raise refused
    typ = cast.typeName
    modifiers = typ.typmods or ()
    if typ.setof or typ.pct_type or not all(_is_integer(m) for m in modifiers):
        raise refused
    return RawStream()(typ)


def _is_integer(node) -> bool:
    return isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer)


def type_sql(ref: dict, schema_map: dict[str, str]) -> sql.Composable:
    """A type reference of the manifest ({"sql"} for the server's own, with "schema",
    "name" and "array" for a user type) as the target names it."""
    if "schema" in ref:
        name = sql.SQL("{}.{}").format(
            sql.Identifier(schema_map.get(ref["schema"], ref["schema"])),
            sql.Identifier(ref["name"]),
        )
        return sql.SQL("{}[]").format(name) if ref.get("array") else name
    return sql.SQL(type_name(ref["sql"]))


def column_type(column: dict, user_columns: dict, schema_map: dict[str, str]) -> sql.Composable:
    """The type a column of the manifest gets in the target: its source type, or for a
    masked column the type its masked values have in the file."""
    if "masking" in column:
        return sql.SQL(MASKED_TYPES.get(column["arrow_type"], "text"))
    if column["name"] in user_columns:
        return type_sql(user_columns[column["name"]], schema_map)
    return type_sql({"sql": column["source_type"]}, schema_map)


# A masked column holds what its mask made (a keyed hash is text, a truncated date is a
# date): the source's type may not take it.
MASKED_TYPES = {
    "string": "text",
    "int64": "bigint",
    "int32": "integer",
    "int16": "smallint",
    "double": "double precision",
    "date32[day]": "date",
    "timestamp[us]": "timestamp",
    "timestamp[us, tz=UTC]": "timestamptz",
}


def create_type(definition: dict, schema_map: dict[str, str]) -> tuple[sql.Composed, list[str]]:
    """CREATE TYPE/DOMAIN for a user type of the manifest, and what it leaves out (a
    domain's CHECK or default ADU does not send), each in one sentence."""
    name = type_sql({**definition, "array": False}, schema_map)
    kind = definition["kind"]
    notes: list[str] = []
    if kind == "enum":
        labels = sql.SQL(", ").join(sql.Literal(label) for label in definition["labels"])
        return sql.SQL("CREATE TYPE {} AS ENUM ({})").format(name, labels), notes
    if kind == "composite":
        fields = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(f["name"]), type_sql(f["type"], schema_map))
            for f in definition["fields"]
        )
        return sql.SQL("CREATE TYPE {} AS ({})").format(name, fields), notes
    if kind == "range":
        subtype = type_sql(definition["subtype"], schema_map)
        return sql.SQL("CREATE TYPE {} AS RANGE (subtype = {})").format(name, subtype), notes
    if kind == "domain":
        parts = [
            sql.SQL("CREATE DOMAIN {} AS {}").format(name, type_sql(definition["base"], schema_map))
        ]
        if definition.get("default"):
            try:
                default = user_sql.check_filter(definition["default"]).sql
                parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(default)))
            except BadSelection as error:
                notes.append(f"the default of domain {definition['name']} ({error})")
        if definition.get("not_null"):
            parts.append(sql.SQL("NOT NULL"))
        for check in definition.get("checks", []):
            condition = check_condition(check["definition"])
            if isinstance(condition, str):
                notes.append(f"check {check['name']} of domain {definition['name']} ({condition})")
            else:
                parts.append(
                    sql.SQL("CONSTRAINT {} CHECK ({})").format(
                        sql.Identifier(check["name"]), condition
                    )
                )
        return sql.SQL(" ").join(parts), notes
    raise LoadRefused(
        f"Type {definition['schema']}.{definition['name']} ({kind}) is not PostgreSQL's own: "
        "create it in the target (its extension, say) before loading."
    )


def check_condition(definition: str) -> sql.Composable | str:
    """The condition of a "CHECK (...)" definition, checked as a row filter is; a
    sentence saying why not otherwise."""
    text = definition.strip()
    if text.endswith(" NOT VALID"):
        text = text[: -len(" NOT VALID")]
    if text.endswith(" NO INHERIT"):
        text = text[: -len(" NO INHERIT")]
    if not (text.startswith("CHECK (") and text.endswith(")")):
        return "not a CHECK"
    try:
        return sql.SQL(user_sql.check_filter(text[len("CHECK (") : -1]).sql)
    except BadSelection as error:
        return str(error).rstrip(".")


def create_table(
    schema: str, table: str, columns: list[dict], user_columns: dict, schema_map: dict[str, str]
) -> sql.Composed:
    """The table with its columns, their types and NOT NULL (checked row by row as COPY
    writes: cheaper than a scan after it); keys and checks come after the rows."""
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c["name"]),
            column_type(c, user_columns, schema_map),
            sql.SQL(" NOT NULL" if _not_null(c) else ""),
        )
        for c in columns
    )
    return sql.SQL("CREATE TABLE {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table), definitions
    )


def _not_null(column: dict) -> bool:
    # A masked column holds what its mask made, which may be NULL (the null mask).
    return not column.get("nullable", True) and "masking" not in column


@dataclass
class AfterRows:
    statements: list[sql.Composed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is left out, and why


def _defaults(schema: str, table: str, columns: list[dict], defaults: dict) -> AfterRows:
    """Identities and serial sequences where the source's stood (new rows on the far side
    do not collide with the loaded ones), and the other defaults that pass the row
    filter's checker; the rest is noted."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    result = AfterRows()
    exported = {c["name"]: c for c in columns}
    for name, found in defaults.items():
        if name not in exported:
            continue
        if "masking" in exported[name]:
            result.notes.append(f"the default of {name}: the column was masked")
            continue
        column = sql.Identifier(name)
        sequence = found.get("sequence") or {}
        last = sequence.get("last_value")
        if found.get("identity"):
            kind = sql.SQL("ALWAYS" if found["identity"] == "always" else "BY DEFAULT")
            result.statements.append(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {} AS IDENTITY").format(
                    target, column, kind
                )
            )
            if last is not None:
                result.statements.append(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} RESTART WITH {}").format(
                        target, column, sql.Literal(int(last) + 1)
                    )
                )
            else:
                result.statements.append(_past_the_rows(schema, table, name))
        elif sequence:
            # The sequence in the table's schema under its source name; the default is
            # written here, not taken from the manifest's text.
            seq = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(sequence["name"]))
            result.statements += [
                sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} OWNED BY {}.{}").format(
                    seq, target, column
                ),
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({}::regclass)").format(
                    target, column, sql.Literal(f"{_quoted(schema)}.{_quoted(sequence['name'])}")
                ),
            ]
            if last is not None:
                result.statements.append(
                    sql.SQL("ALTER SEQUENCE {} RESTART WITH {}").format(
                        seq, sql.Literal(int(last) + 1)
                    )
                )
            else:
                result.statements.append(_past_the_rows(schema, table, name))
        elif found.get("default"):
            try:
                default = user_sql.check_filter(found["default"]).sql
            except BadSelection as error:
                result.notes.append(f"the default of {name} ({str(error).rstrip('.')})")
                continue
            result.statements.append(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    target, column, sql.SQL(default)
                )
            )
    return result


def _past_the_rows(schema: str, table: str, column: str) -> sql.Composed:
    """The column's sequence set past its largest value: where the source's stood is not
    known (never used, or the export's login could not read it)."""
    return sql.SQL(
        "SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1, false) FROM {}.{}"
    ).format(
        sql.Literal(f"{_quoted(schema)}.{_quoted(table)}"),
        sql.Literal(column),
        sql.Identifier(column),
        sql.Identifier(schema),
        sql.Identifier(table),
    )


def _quoted(name: str) -> str:
    """An identifier quoted as PostgreSQL reads one inside a regclass literal."""
    return '"' + name.replace('"', '""') + '"'


def after_rows(schema: str, table: str, entry: dict) -> AfterRows:
    """What a table gets once its rows are in: its constraints, then its identities,
    sequences and defaults (an identity needs the NOT NULL before it)."""
    columns = entry["columns"]
    keys = _constraints(schema, table, columns, entry.get("constraints") or [])
    defaults = _defaults(schema, table, columns, entry.get("defaults") or {})
    return AfterRows(keys.statements + defaults.statements, keys.notes + defaults.notes)


def _constraints(
    schema: str, table: str, columns: list[dict], constraints: list[dict]
) -> AfterRows:
    """Primary key, unique and check constraints, added once the rows are in
    (one index build each, not an index kept up row by row). A key or check on a column
    the export left out or masked is left out with a note: the rows would not keep it."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    present = {c["name"] for c in columns}
    masked = {c["name"] for c in columns if "masking" in c}
    result = AfterRows()
    for constraint in constraints:
        name, kind = constraint["name"], constraint["kind"]
        keys = constraint.get("columns") or []
        outside = [k for k in keys if k not in present or k in masked]
        if outside:
            result.notes.append(
                f"{kind} {name}: column {outside[0]} was "
                f"{'masked' if outside[0] in masked else 'not exported'}"
            )
            continue
        if kind in ("primary key", "unique"):
            clause = sql.SQL("PRIMARY KEY" if kind == "primary key" else "UNIQUE")
            body = sql.SQL("{} ({})").format(clause, sql.SQL(", ").join(map(sql.Identifier, keys)))
        elif kind == "check":
            condition = check_condition(constraint["definition"])
            if isinstance(condition, str):
                result.notes.append(f"check {name}: {condition}")
                continue
            body = sql.SQL("CHECK ({})").format(condition)
        else:
            continue
        result.statements.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                target, sql.Identifier(name), body
            )
        )
    return result
