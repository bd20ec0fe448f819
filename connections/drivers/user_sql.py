"""SQL a user types (row filters, saved queries), parsed by PostgreSQL's own parser.

pglast embeds libpg_query, the server's grammar: the text becomes the tree the server
would build, so no quoting trick (E'\\'', $$...$$, U&'...', comments) can hide a second
statement. Every node of the tree must be on a short list, and what is sent to the
server is the tree deparsed again, never the user's text: what was checked is what runs.

- A filter is one expression over the table's own columns: constants, operators, casts
  to built-in types, boolean logic, CASE, IN, BETWEEN, LIKE/ILIKE/SIMILAR TO, IS [NOT]
  NULL and a short list of built-in functions. No subquery, no set-returning function.
- A query is one SELECT (CTEs that only select, joins, subqueries, aggregates and window
  functions over the same short list of functions); no function in FROM, no SELECT INTO,
  no FOR UPDATE, no table of the system catalogs.

Functions are sent qualified with pg_catalog, so a function of the same name in another
schema is never the one called. The driver checks the plan too (a second line).
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, cast

from pglast import ast, parser
from pglast.enums import A_Expr_Kind, BoolExprType, SQLValueFunctionOp, SubLinkType
from pglast.stream import RawStream

from connections.drivers.base import BadSelection

# Immutable or stable built-in functions that read nothing but their arguments (and none
# that builds a value as large as an argument asks, such as repeat or lpad, or a value
# many times its input, such as replace nested: a filter runs on every row of a
# production table).
SCALAR_FUNCTIONS = frozenset(
    """
    lower upper initcap length char_length character_length octet_length bit_length
    substr substring btrim ltrim rtrim trim strpos position left right
    concat concat_ws starts_with split_part reverse translate md5
    abs round trunc floor ceil ceiling mod sign div power sqrt exp ln log width_bucket
    date_trunc date_part date_bin extract make_date make_time make_timestamp
    make_timestamptz make_interval justify_days justify_hours justify_interval age
    isfinite timezone now statement_timestamp transaction_timestamp
    to_char to_date to_timestamp to_number
    array_length array_lower array_upper cardinality array_position array_to_string
    similar_to_escape similar_escape like_escape
    """.split()
)
# Aggregates and window functions: a query may use them, a filter may not.
QUERY_FUNCTIONS = SCALAR_FUNCTIONS | frozenset(
    """
    count sum avg min max bool_and bool_or every string_agg array_agg
    stddev stddev_pop stddev_samp variance var_pop var_samp
    row_number rank dense_rank percent_rank cume_dist ntile lag lead
    first_value last_value nth_value
    """.split()
)
OPERATORS = frozenset(
    "= <> != < > <= >= + - * / % ^ || ~~ !~~ ~~* !~~* ~ ~* !~ !~* @> <@ &&".split()
)
_EXPRESSION_KINDS = {
    A_Expr_Kind.AEXPR_OP,
    A_Expr_Kind.AEXPR_OP_ANY,
    A_Expr_Kind.AEXPR_OP_ALL,
    A_Expr_Kind.AEXPR_DISTINCT,
    A_Expr_Kind.AEXPR_NOT_DISTINCT,
    A_Expr_Kind.AEXPR_NULLIF,
    A_Expr_Kind.AEXPR_IN,
    A_Expr_Kind.AEXPR_LIKE,
    A_Expr_Kind.AEXPR_ILIKE,
    A_Expr_Kind.AEXPR_SIMILAR,
    A_Expr_Kind.AEXPR_BETWEEN,
    A_Expr_Kind.AEXPR_NOT_BETWEEN,
    A_Expr_Kind.AEXPR_BETWEEN_SYM,
    A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM,
}
_CLOCKS = {
    SQLValueFunctionOp.SVFOP_CURRENT_DATE,
    SQLValueFunctionOp.SVFOP_CURRENT_TIME,
    SQLValueFunctionOp.SVFOP_CURRENT_TIME_N,
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP,
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP_N,
    SQLValueFunctionOp.SVFOP_LOCALTIME,
    SQLValueFunctionOp.SVFOP_LOCALTIME_N,
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP,
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP_N,
}
# Built-in types a value may be cast to (as pg_catalog names them).
BUILTIN_TYPES = frozenset(
    """
    bool int2 int4 int8 float4 float8 numeric money text varchar bpchar char name
    date time timetz timestamp timestamptz interval bytea uuid json jsonb inet cidr
    macaddr bit varbit oid
    """.split()
)
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
# Nodes every expression may hold; the checks of each kind are in _Checker.
_EXPRESSION_NODES = (
    ast.A_Const,
    ast.ColumnRef,
    ast.A_Expr,
    ast.BoolExpr,
    ast.NullTest,
    ast.BooleanTest,
    ast.CaseExpr,
    ast.CaseWhen,
    ast.CoalesceExpr,
    ast.MinMaxExpr,
    ast.A_ArrayExpr,
    ast.A_Indirection,
    ast.A_Indices,
    ast.TypeCast,
    ast.TypeName,
    ast.FuncCall,
    ast.SQLValueFunction,
    ast.String,
    ast.Integer,
    ast.Float,
    ast.Boolean,
    ast.BitString,
)
_QUERY_NODES = (
    ast.RawStmt,
    ast.SelectStmt,
    ast.ResTarget,
    ast.A_Star,
    ast.Alias,
    ast.RangeVar,
    ast.JoinExpr,
    ast.RangeSubselect,
    ast.SubLink,
    ast.WithClause,
    ast.CommonTableExpr,
    ast.SortBy,
    ast.WindowDef,
    ast.GroupingSet,
    ast.RowExpr,
)
MAX_TEXT = 100_000
# Deeper than this, a text is refused before Python's recursion (or the server's stack)
# gives out; a query a person writes is rarely 30 deep.
MAX_DEPTH = 150


@dataclass(frozen=True)
class CheckedFilter:
    sql: str  # the expression as deparsed from its tree: what runs
    columns: frozenset[str]  # the table's columns it reads


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # the SELECT as deparsed from its tree: what runs
    # (schema, table, column) of the table columns it reads, as the driver finds them in
    # its plan (views and aliases resolved); empty until then
    reads: frozenset[tuple[str, str, str]] = frozenset()
    # (schema or "", name) of every relation it names, for the driver to resolve
    relations: tuple[tuple[str, str], ...] = ()


def check_filter(text: str, columns=None) -> CheckedFilter:
    """The filter, checked; BadSelection with one sentence if it is not one allowed
    expression over `columns` (any column name when None: the catalog is checked apart)."""
    with _not_too_deep("filter"):
        return _check_filter(text, columns)


def _check_filter(text: str, columns) -> CheckedFilter:
    stmt = _one_select(text, "filter", prefix="SELECT ")
    extra = {
        name: value
        for name, value in _fields(stmt)
        if name not in ("targetList", "limitOption", "op", "all", "groupDistinct")
    }
    targets = stmt.targetList or ()
    if extra or len(targets) != 1 or targets[0].name:
        raise BadSelection("The filter is one condition, not a list or a query.")
    checker = _Checker("filter", SCALAR_FUNCTIONS)
    expression = checker.visit(targets[0].val)
    if columns is not None:
        unknown = sorted(checker.columns - set(columns))
        if unknown:
            raise BadSelection(
                f"The filter names {unknown[0]}, which is not a column of the table."
            )
    deparsed = RawStream()(expression)
    again = _one_select(deparsed, "filter", prefix="SELECT ").targetList
    if again is None or again[0].val != expression:
        raise BadSelection("The filter cannot be written back exactly; simplify it.")
    return CheckedFilter(deparsed, frozenset(checker.columns))


def check_query(text: str) -> CheckedQuery:
    """The query, checked; BadSelection with one sentence if it is not one allowed SELECT."""
    with _not_too_deep("query"):
        checker = _Checker("query", QUERY_FUNCTIONS)
        stmt = checker.visit(_one_select(text, "query"))
        deparsed = RawStream()(stmt)
        if _one_select(deparsed, "query") != stmt:
            raise BadSelection("The query cannot be written back exactly; simplify it.")
        return CheckedQuery(deparsed, relations=tuple(sorted(checker.relations)))


@contextmanager
def _not_too_deep(what: str):
    """A refusal, not a RecursionError, for a text nested deeper than the checker goes
    (the parser itself takes any depth; the walks over its tree are recursive)."""
    try:
        yield
    except RecursionError:
        raise BadSelection(
            f"The {what} is nested more than {MAX_DEPTH} levels deep; simplify it."
        ) from None


def _one_select(text: str, what: str, prefix: str = "") -> ast.SelectStmt:
    if not text or not text.strip():
        raise BadSelection(f"The {what} is empty.")
    if len(text) > MAX_TEXT:
        raise BadSelection(f"The {what} is longer than {MAX_TEXT:,} characters.")
    if "\x00" in text:
        raise BadSelection(f"The {what} contains a NUL character.")
    try:
        statements = parser.parse_sql(prefix + text)
    except parser.ParseError as error:
        reason = str(error.args[0]) if error.args else "syntax error"
        reason = " ".join(reason.split(", at index")[0].split())  # one line
        raise BadSelection(f"The {what} does not parse: {reason}.") from None
    if len(statements) != 1:
        raise BadSelection(
            f"The {what} holds {len(statements)} statements; write one "
            f"{'condition' if what == 'filter' else 'SELECT'}."
        )
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise BadSelection(
            f"The {what} is not a SELECT but {_kind(stmt)}; an export runs only a SELECT."
        )
    return stmt


class _Checker:
    def __init__(self, what: str, functions: frozenset):
        self.what = what
        self.functions = functions
        self.columns: set[str] = set()
        self.relations: set[tuple[str, str]] = set()
        self.depth = 0
        self.allowed = _EXPRESSION_NODES + (_QUERY_NODES if what == "query" else ())

    def refuse(self, part: str) -> NoReturn:
        raise BadSelection(f"The {self.what} {part}; {self._rule()}.")

    def _rule(self) -> str:
        if self.what == "filter":
            return "a filter is one condition on the table's own columns"
        return "a query is one SELECT over tables, with built-in functions only"

    def visit(self, node):
        """The node, checked, with what the server would look up by name made explicit:
        functions and operators qualified with pg_catalog, and the forms that look an
        operator up implicitly (IN, BETWEEN, LIKE, NULLIF, CASE x WHEN) written with one.
        Returns the node to put in its parent's place."""
        if isinstance(node, tuple | list):
            return tuple(self.visit(item) for item in node)
        if not isinstance(node, ast.Node):
            return node
        if not isinstance(node, self.allowed):
            self.refuse(f"contains {_kind(node)}")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadSelection(
                f"The {self.what} is nested more than {MAX_DEPTH} levels deep; simplify it."
            )
        check = getattr(self, f"_{type(node).__name__}", None)
        if check:
            node = check(node) or node
        for name, value in list(_fields(node)):
            setattr(node, name, self.visit(value))
        self.depth -= 1
        return node

    def _ColumnRef(self, node):
        names = [f.sval for f in node.fields if isinstance(f, ast.String)]
        if self.what == "filter":
            if len(node.fields) != 1 or len(names) != 1:
                self.refuse("names a column with its table or as *; name the column alone")
            # pglast types String.sval as optional; a parsed name always has it.
            self.columns.add(cast(str, names[0]))

    def _operator(self, names) -> tuple:
        """pg_catalog.<operator>, or a refusal if it is not a built-in one on the list."""
        names = [n.sval for n in names if isinstance(n, ast.String)]
        if not names or names[-1] not in OPERATORS or names[:-1] not in ([], ["pg_catalog"]):
            self.refuse(
                f"uses the operator {'.'.join(names)}, which is not a built-in comparison "
                "or arithmetic"
            )
        return (ast.String(sval="pg_catalog"), ast.String(sval=names[-1]))

    def _A_Expr(self, node):
        kind = node.kind
        if kind in (A_Expr_Kind.AEXPR_DISTINCT, A_Expr_Kind.AEXPR_NOT_DISTINCT):
            self.refuse("uses IS [NOT] DISTINCT FROM; write it with =, <> and IS NULL")
        if kind in (A_Expr_Kind.AEXPR_BETWEEN_SYM, A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM):
            self.refuse("uses BETWEEN SYMMETRIC; write it with >= and <=")
        if kind not in _EXPRESSION_KINDS:
            self.refuse(f"uses the operator form {kind.name}")
        if kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN):
            # As PostgreSQL itself reads it: a >= x AND a <= y (NOT: a < x OR a > y).
            low, high = node.rexpr
            inside = kind == A_Expr_Kind.AEXPR_BETWEEN
            return ast.BoolExpr(
                boolop=BoolExprType.AND_EXPR if inside else BoolExprType.OR_EXPR,
                args=(
                    _op(">=" if inside else "<", node.lexpr, low),
                    _op("<=" if inside else ">", node.lexpr, high),
                ),
            )
        if kind == A_Expr_Kind.AEXPR_IN:
            # As PostgreSQL itself reads a list of one type: = ANY (ARRAY[...]), and
            # NOT IN: <> ALL (ARRAY[...]).
            any_or_all = (
                A_Expr_Kind.AEXPR_OP_ANY if node.name[0].sval == "=" else A_Expr_Kind.AEXPR_OP_ALL
            )
            return ast.A_Expr(
                kind=any_or_all,
                name=self._operator(node.name),
                lexpr=node.lexpr,
                rexpr=ast.A_ArrayExpr(elements=tuple(node.rexpr)),
            )
        if kind == A_Expr_Kind.AEXPR_NULLIF:
            first, second = node.lexpr, node.rexpr
            return ast.CaseExpr(
                args=(ast.CaseWhen(expr=_op("=", first, second), result=ast.A_Const(isnull=True)),),
                defresult=first,
            )
        # LIKE, ILIKE and SIMILAR TO are the operators ~~, ~~*, ~ (and their negations).
        node.kind = (
            kind
            if kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL)
            else A_Expr_Kind.AEXPR_OP
        )
        node.name = self._operator(node.name)
        return node

    def _CaseExpr(self, node):
        if node.arg is not None:  # CASE x WHEN v: x = v, with the built-in =
            node.args = tuple(
                ast.CaseWhen(expr=_op("=", node.arg, when.expr), result=when.result)
                for when in node.args
            )
            node.arg = None
        return node

    def _FuncCall(self, node):
        names = [n.sval for n in node.funcname]
        name = names[-1].lower()
        if names[:-1] not in ([], ["pg_catalog"]) or name not in self.functions:
            self.refuse(
                f"calls {'.'.join(names)}(), which is not on ADU's list of built-in functions"
            )
        if node.over is not None and self.what == "filter":
            self.refuse(f"uses {name}() as a window function")
        if node.func_variadic:
            self.refuse(f"calls {name}() with VARIADIC")
        # Qualified, so that a function of that name in another schema is never called.
        node.funcname = (ast.String(sval="pg_catalog"), ast.String(sval=name))

    def _SQLValueFunction(self, node):
        if node.op not in _CLOCKS:
            self.refuse(f"reads {node.op.name.removeprefix('SVFOP_').lower()}")

    def _TypeName(self, node):
        names = [n.sval for n in node.names]
        if names[:-1] not in ([], ["pg_catalog"]) or names[-1] not in BUILTIN_TYPES:
            self.refuse(f"casts to {'.'.join(names)}, which is not a built-in type")
        if node.setof or node.pct_type:
            self.refuse("uses a type form that reads the catalog")
        if node.typmods and not all(isinstance(m, ast.A_Const) for m in node.typmods):
            self.refuse("gives a type modifier that is not a constant")
        node.names = (ast.String(sval="pg_catalog"), ast.String(sval=names[-1]))

    def _SelectStmt(self, node):
        if node.intoClause is not None:
            self.refuse("creates a table (SELECT INTO)")
        if node.lockingClause:
            self.refuse("locks rows (FOR UPDATE/SHARE)")

    def _CommonTableExpr(self, node):
        if not isinstance(node.ctequery, ast.SelectStmt):
            self.refuse(f"holds a {_kind(node.ctequery)} statement in its WITH clause")

    def _RangeVar(self, node):
        schema = (node.schemaname or "").lower()
        if node.catalogname:
            self.refuse("names a table of another database")
        if schema in SYSTEM_SCHEMAS or schema.startswith("pg_"):
            self.refuse(f"reads the system catalog ({schema}.{node.relname})")
        self.relations.add((node.schemaname or "", node.relname))
        if node.alias is not None and node.alias.colnames:
            # t AS p(a, b) is read as (SELECT * FROM t) AS p(a, b): the same rows, and a
            # plan that names the table's columns by their own names, not the aliases.
            alias, node.alias = node.alias, None
            inner = parser.parse_sql("SELECT * FROM t")[0].stmt
            assert isinstance(inner, ast.SelectStmt)
            inner.fromClause = (node,)
            return ast.RangeSubselect(lateral=False, subquery=inner, alias=alias)

    def _SubLink(self, node):
        if not isinstance(node.subselect, ast.SelectStmt):
            self.refuse(f"holds a {_kind(node.subselect)} statement")
        if node.subLinkType in (SubLinkType.ANY_SUBLINK, SubLinkType.ALL_SUBLINK):
            # x IN (SELECT ...) compares with = looked up by name: say which.
            node.operName = self._operator(node.operName or (ast.String(sval="="),))
        elif node.operName:
            self.refuse("compares rows with a subquery")
        return node

    def _JoinExpr(self, node):
        if node.usingClause or node.isNatural:
            self.refuse(
                "joins with USING or NATURAL (an = looked up by name); write the join with ON"
            )

    def _SortBy(self, node):
        if node.useOp:
            self.refuse("sorts with USING an operator; sort with ASC or DESC")


def _op(symbol: str, left, right) -> ast.A_Expr:
    """left OPERATOR(pg_catalog.symbol) right."""
    return ast.A_Expr(
        kind=A_Expr_Kind.AEXPR_OP,
        name=(ast.String(sval="pg_catalog"), ast.String(sval=symbol)),
        lexpr=left,
        rexpr=right,
    )


def _fields(node):
    """(name, value) of the node's attributes that hold something."""
    for name in node.__slots__:
        if name == "location" or name.endswith("_location"):
            continue
        value = getattr(node, name, None)
        if value is not None and value != () and value != []:
            yield name, value


def _kind(node) -> str:
    """A node's kind in the words of SQL: 'DeleteStmt' -> 'DELETE', 'RangeFunction' ->
    'a function in FROM'."""
    name = type(node).__name__
    words = {
        "RangeFunction": "a function in FROM",
        "RangeTableFunc": "a table function in FROM (XMLTABLE, JSON_TABLE)",
        "RangeTableSample": "TABLESAMPLE",
        "ParamRef": "a parameter ($1)",
        "CollateClause": "COLLATE",
        "SubLink": "a subquery",
        "SelectStmt": "a query",
        "XmlExpr": "an XML expression",
        "XmlSerialize": "XMLSERIALIZE",
        "GroupingFunc": "GROUPING()",
        "A_Star": "*",
        "RangeVar": "a table",
        "JoinExpr": "a join",
        "RangeSubselect": "a subquery",
        "WithClause": "a WITH clause",
        "ResTarget": "a query",
        "RowExpr": "a row constructor",
    }
    if name in words:
        return words[name]
    if name.endswith("Stmt"):
        return name.removesuffix("Stmt").upper()
    return name
