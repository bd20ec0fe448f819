"""Row filters and saved queries built by Hypothesis from a grammar that mixes harmless
parts (columns, constants, comparisons, AND/OR, lower(), casts) with quote tricks
(E'..\\'..', $$..;..$$, $tag$..$tag$, U&'..', doubled quotes), comments (--, nested
/* */), semicolons followed by DELETE/DROP/UPDATE/ROLLBACK/COMMIT/SET, and dangerous
functions (issue 17).

For every text, either ADU's check refuses it with one sentence, or what the check lets
through runs on a real source and the canary is untouched: no row of it changes, no
write is even attempted, no trap (a user function or operator that tries to write) is
called. Most texts go through the parser's check alone (user_sql), those it passes then
through the driver's check and a count (or a preview) on one reused session; a smaller
share goes the whole way through create_job. The deparsed text is a fixed point.
"""

import psycopg2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pglast import parser

from connections.drivers import BadSelection, postgresql, user_sql
from connections.models import Connection
from exports.jobs import BadRequest, create_job
from tests.factories import throwaway_database

PEOPLE_COLUMNS = ["id", "name", "ssn", "salary", "email"]
CANARY = [(1, "CANARY-51C2-ONE", "1.50"), (2, "CANARY-51C2-TWO", None)]
SETUP = """
CREATE TABLE people (
    id integer PRIMARY KEY, name text NOT NULL, ssn text, salary numeric(10,2), email text
);
INSERT INTO people
SELECT i, 'Person ' || i, 'SSN-' || (500 + i), 1000 + i * 2.5,
       CASE WHEN i % 4 <> 0 THEN 'p' || i || '@example.org' END
FROM generate_series(1, 30) i;
CREATE TABLE canary (id integer PRIMARY KEY, secret text NOT NULL, amount numeric);
INSERT INTO canary VALUES (1, 'CANARY-51C2-ONE', 1.50), (2, 'CANARY-51C2-TWO', NULL);
CREATE VIEW people_view AS SELECT id, name FROM people;
CREATE SEQUENCE counter;
-- Traps: if ever called they try to write (a read-only session fails them loudly).
CREATE FUNCTION public.lower(text) RETURNS text VOLATILE LANGUAGE plpgsql AS $$
BEGIN INSERT INTO canary VALUES (100, 'lower', 0); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION public.steal() RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN DELETE FROM canary; RETURN true; END $$;
CREATE FUNCTION public.text_eq_int(text, integer) RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN UPDATE canary SET secret = 'operator'; RETURN false; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.text_eq_int);
"""

# -- The grammar -------------------------------------------------------------------------

STATEMENTS = [
    "DELETE FROM canary",
    "DROP TABLE canary",
    "UPDATE canary SET secret = 'gone'",
    "INSERT INTO canary VALUES (9, 'in', 0)",
    "TRUNCATE canary",
    "ROLLBACK",
    "COMMIT",
    "BEGIN READ WRITE",
    "SET default_transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SELECT steal()",
]
# Pieces of text that confuse a scanner: quotes, escapes, dollar tags, comment marks.
PIECES = [";", "'", "''", "\\", "\\'", "\\\\", "$$", "$t$", "--", "/*", "*/", "\n", " ",
          "x", "E'", "U&'", "\\0027", "\\x27", "\\047", '"', ")", "(", ",", "%", "_"]  # fmt: skip
text_inside = st.lists(st.sampled_from(PIECES + STATEMENTS), max_size=7).map("".join)


def _unicode_escaped(text: str, escape: str = "\\") -> str:
    return "".join(
        c if c.isalnum() and c.isascii() else f"{escape}{ord(c):04x}"
        for c in text
        if ord(c) < 0x10000
    )


@st.composite
def strings(draw):
    """A string constant in one of PostgreSQL's quotings, well formed or not."""
    text = draw(text_inside)
    form = draw(st.integers(0, 9))
    if form == 0:
        return "'" + text.replace("'", "''") + "'"
    if form == 1:
        return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if form == 2:
        return "$$" + text.replace("$", "") + "$$"
    if form == 3:
        tag = draw(st.sampled_from(["t", "q1", "_x"]))
        return f"${tag}$" + text.replace(f"${tag}$", "") + f"${tag}$"
    if form == 4:
        return "U&'" + _unicode_escaped(text) + "'"
    if form == 5:
        return "U&'" + _unicode_escaped(text, "!") + "' UESCAPE '!'"
    if form == 6:
        return "E'" + text + "'"  # escapes as they come: may end early
    if form == 7:
        return "$$" + text + "$$"  # may hold $$ and end early
    if form == 8:
        return "'" + text + "'"  # may end early
    return draw(st.sampled_from(["'a'", "'Person 7'", "'%@example.org'", "''", "'SSN%'"]))


numbers = st.one_of(
    st.integers(-5, 40).map(str),
    st.sampled_from(["1.5", "1e3", "-0", "2147483648", "0.001", "'12'", "NULL"]),
)
constants = st.one_of(strings(), numbers)
columns = st.sampled_from(PEOPLE_COLUMNS)
TYPES = ["text", "integer", "numeric", "bigint", "varchar(5)", "date", "boolean",
         "regclass", "pg_catalog.text", "public.text", "oid", "json"]  # fmt: skip
OPERATORS = ["=", "<>", "<", ">=", "LIKE", "ILIKE", "~", "||", "+", "IS DISTINCT FROM",
             "OPERATOR(pg_catalog.=)", "OPERATOR(public.=)", "@@"]  # fmt: skip
DANGEROUS = [
    "query_to_xml('select * from canary', true, true, '')",
    "table_to_xml('canary', true, false, '')",
    "pg_read_file('/etc/hostname')",
    "set_config('default_transaction_read_only', 'off', false)",
    "current_setting('data_directory')",
    "nextval('counter')",
    "lo_export(1, '/tmp/adu-property')",
    "lo_import('/etc/hostname')",
    "dblink('dbname=postgres', 'DELETE FROM canary')",
    "pg_terminate_backend(pg_backend_pid())",
    "pg_sleep(10)",
    "steal()",
    "public.steal()",
    "public.lower(name)",
    "txid_current()",
    "(SELECT secret FROM canary LIMIT 1)",
    "EXISTS (SELECT 1 FROM canary)",
    "'canary'::regclass",
    "current_user",
    "generate_series(1, 3)",
]
HARMLESS_FUNCTIONS = ["lower", "upper", "length", "trim", "md5", "abs", "round", "reverse"]


@st.composite
def operands(draw):
    kind = draw(st.integers(0, 7))
    if kind <= 1:
        return draw(columns)
    if kind == 2:
        return draw(constants)
    if kind == 3:
        return f"{draw(st.sampled_from(HARMLESS_FUNCTIONS))}({draw(columns)})"
    if kind == 4:
        return f"CAST({draw(columns)} AS {draw(st.sampled_from(TYPES))})"
    if kind == 5:
        return f"{draw(columns)}::{draw(st.sampled_from(TYPES))}"
    if kind == 6:
        return f"coalesce({draw(columns)}, {draw(constants)})"
    return draw(st.sampled_from(DANGEROUS))


TEXT_OPERANDS = ["name", "ssn", "email", "lower(name)", "upper(email)", "trim(ssn)", "md5(name)",
                 "CAST(id AS text)", "name::text", "reverse(email)", "substr(name, 2, 3)"]  # fmt: skip
NUMBER_OPERANDS = ["id", "salary", "length(name)", "abs(salary)", "round(salary, 1)",
                   "CAST(salary AS integer)", "id::bigint", "id + 3", "salary * -1"]  # fmt: skip
text_comparison = st.builds(
    "{} {} {}".format,
    st.sampled_from(TEXT_OPERANDS),
    st.sampled_from(["=", "<>", "<", ">=", "LIKE", "ILIKE", "NOT LIKE", "~", "IS DISTINCT FROM"]),
    st.one_of(strings(), st.sampled_from(TEXT_OPERANDS)),
)
number_comparison = st.builds(
    "{} {} {}".format,
    st.sampled_from(NUMBER_OPERANDS),
    st.sampled_from(["=", "<>", "<", ">=", "IS NOT DISTINCT FROM"]),
    st.one_of(st.integers(-5, 1100).map(str), st.sampled_from(NUMBER_OPERANDS)),
)


@st.composite
def conditions(draw, depth=2):
    """A condition: mostly well typed (so that it gets to run), some of anything."""
    kind = draw(st.integers(0, 10 if depth else 6))
    if kind <= 1:
        return draw(text_comparison)
    if kind == 2:
        return draw(number_comparison)
    if kind == 3:
        op = draw(st.sampled_from(OPERATORS))
        return f"{draw(operands())} {op} {draw(operands())}"
    if kind == 4:
        return f"{draw(columns)} IS {draw(st.sampled_from(['NULL', 'NOT NULL']))}"
    if kind == 5:
        items = draw(st.lists(constants, min_size=1, max_size=3))
        return f"{draw(columns)} IN ({', '.join(items)})"
    if kind == 6:
        return f"{draw(columns)} BETWEEN {draw(constants)} AND {draw(constants)}"
    inner = conditions(depth=depth - 1)
    if kind == 7:
        return f"({draw(inner)}) AND ({draw(inner)})"
    if kind == 8:
        return f"{draw(inner)} OR {draw(inner)}"
    if kind == 9:
        return f"NOT ({draw(inner)})"
    return f"{draw(inner)}{draw(noise())}"


@st.composite
def noise(draw):
    """Something between tokens: a comment of any kind, a break of line, or a tail that
    tries to start another statement."""
    kind = draw(st.integers(0, 6))
    text = draw(text_inside)
    if kind == 0:
        return " /* " + text.replace("*/", "") + " */ "
    if kind == 1:
        return " /* /* " + text.replace("*/", "").replace("/*", "") + " */ */ "
    if kind == 2:
        return " -- " + text + "\n"
    if kind == 3:
        return " /* " + text  # an unclosed comment
    if kind == 4:
        return "; " + draw(st.sampled_from(STATEMENTS))
    if kind == 5:
        return f" {draw(strings())}; {draw(st.sampled_from(STATEMENTS))}; --"
    return "\n"


@st.composite
def filters(draw):
    text = draw(conditions())
    if draw(st.booleans()):
        text = draw(noise()) + text
    if draw(st.booleans()):
        text += draw(noise())
    return text


FROM_ITEMS = ["people", "people AS p", "people_view", "canary", "(SELECT id, name FROM people) AS s",
              "generate_series(1, 3) AS g", "pg_stat_activity", "pg_authid", "pg_settings",
              "pg_catalog.pg_class", "people, LATERAL (SELECT steal()) AS l",
              "dblink('dbname=postgres', 'DELETE FROM canary') AS d(x text)"]  # fmt: skip
WITH_ITEMS = ["c AS (SELECT id, name FROM people)", "c AS (DELETE FROM canary RETURNING id)",
              "c AS (UPDATE canary SET secret = 'x' RETURNING id)",
              "c AS (INSERT INTO canary VALUES (7, 'y', 0) RETURNING id)",
              "c AS MATERIALIZED (SELECT 1 AS id)"]  # fmt: skip


@st.composite
def queries(draw):
    """A SELECT: mostly plain over people (so that it gets to run), with a WITH, INTO,
    locking, a union or a tail of another statement now and then."""
    harmless = draw(st.integers(0, 3)) != 2
    if harmless:
        source = draw(st.sampled_from(["people", "people AS p", "(SELECT * FROM people) AS s"]))
        targets = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(TEXT_OPERANDS + NUMBER_OPERANDS),
                    strings(),
                    text_comparison,
                    number_comparison,
                ),
                min_size=1,
                max_size=3,
            )
        )
    else:
        source = draw(st.sampled_from(FROM_ITEMS))
        targets = draw(
            st.lists(
                st.one_of(operands(), st.just("*"), conditions(depth=0)), min_size=1, max_size=3
            )
        )
    listed = ", ".join(f"{t} AS c{i}" if t != "*" else t for i, t in enumerate(targets))
    if harmless and draw(st.integers(0, 5)) == 3:
        listed = "count(*) AS n"
    text = f"SELECT {listed}"
    if draw(st.integers(0, 9)) == 5:
        text += " INTO stolen"
    if harmless or draw(st.integers(0, 5)) != 3:
        text += f" FROM {source}"
        if draw(st.booleans()):
            text += f" WHERE {draw(conditions())}"
    if draw(st.integers(0, 5)) == 3:
        text = f"WITH {draw(st.sampled_from(WITH_ITEMS))} " + text
    if draw(st.integers(0, 7)) == 4:
        text += draw(st.sampled_from([" FOR UPDATE", " FOR SHARE", " LIMIT 3", " ORDER BY 1",
                                      " UNION ALL SELECT secret FROM canary"]))  # fmt: skip
    if draw(st.integers(0, 2)) == 1:
        text += draw(noise())
    return text


# -- The source ------------------------------------------------------------------------------


class Source:
    def __init__(self, db):
        self.db = db
        self.connection = Connection(
            kind="postgresql", name="property", host=db.server.host, port=db.server.port,
            database=db.name, username=db.server.user, password=db.server.password,
            sslmode="disable", connect_timeout=5,
        )  # fmt: skip
        self.pristine = self.content()

    def content(self):
        return (
            self.db.execute("SELECT id, secret, amount::text FROM canary ORDER BY id"),
            self.db.execute("SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM people p"),
            self.db.execute("SELECT last_value, is_called FROM counter"),
        )

    def assert_untouched(self, text):
        content = self.content()
        assert content[0] == CANARY, f"the canary changed after: {text!r}"
        assert content == self.pristine, f"the source changed after: {text!r}"

    def writes(self):
        """Inserts, updates and deletes as PostgreSQL counts them (attempts included),
        once every other session of the database has ended and reported."""
        conn = self.db.server.connect(self.db.name)
        try:
            with conn.cursor() as cur:
                for _ in range(500):
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                        "AND application_name = 'adu'"
                    )
                    if cur.fetchone()[0] == 0:
                        break
                    cur.execute("SELECT pg_sleep(0.02)")
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                    "WHERE relname IN ('canary', 'people') ORDER BY relname"
                )
                return cur.fetchall()
        finally:
            conn.close()

    def open(self):
        return postgresql.connect(self.connection)


@pytest.fixture(scope="module")
def source(source_server):
    with throwaway_database(source_server) as db:
        setup = source_server.connect(db.name)
        with setup.cursor() as cur:
            cur.execute(SETUP)
        setup.close()
        yield Source(db)


@pytest.fixture
def session(source, settings):
    """One checking session for all the examples of a test; afterwards the source is as
    it was and PostgreSQL counted no write attempted on it."""
    settings.SOURCE_STATEMENT_TIMEOUT = 5
    before = source.writes()
    db = source.open()
    yield db
    db.close()
    source.assert_untouched("the whole run")
    assert source.writes() == before, "a write was attempted on the source"


# -- What must hold of every text ------------------------------------------------------------


def assert_sentence(error):
    # (That a refusal is one line is shown in test_source_safety: a parse error may quote
    # the text as typed, breaks of line included.)
    message = str(error)
    assert message and "Traceback" not in message, message
    assert "CANARY-51C2" not in message and "SSN-5" not in message, message


def assert_fixed_point(checked, check):
    """What runs is one statement, and checking it again gives it back unchanged."""
    again = check(checked.sql)
    assert again.sql == checked.sql
    prefix = "SELECT " if check is user_sql.check_filter else ""
    assert len(parser.parse_sql(prefix + checked.sql)) == 1


def run_filter(source, db, text, checked_sql):
    """Count the rows the filter keeps on the reused session: it may fail on a value, but
    nothing it runs may try to write or call a trap."""
    try:
        postgresql.count_rows(db, "public", "people", checked_sql)
    except psycopg2.Error as error:
        # A data exception (a cast of a text that is no number, a division by zero) is
        # the source saying no; anything else means something ran that should not.
        assert (error.pgcode or "").startswith("22"), f"{text!r}: {error.pgcode} {error}"
    finally:
        db.rollback()
    source.assert_untouched(text)


SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=3000, **SETTINGS)
@given(text=filters())
def test_a_filter_is_refused_or_runs_without_touching_the_source(source, session, text):
    try:
        checked = user_sql.check_filter(text, PEOPLE_COLUMNS)
    except BadSelection as error:
        assert_sentence(error)
        event("refused by the parser's check")
        return
    assert checked.columns <= set(PEOPLE_COLUMNS)
    assert_fixed_point(checked, user_sql.check_filter)
    try:
        on_server = postgresql.check_filter(session, "public", "people", text)
    except BadSelection as error:
        assert_sentence(error)
        source.assert_untouched(text)
        event("refused by the source's plan")
        return
    assert on_server.sql == checked.sql
    run_filter(source, session, text, on_server.sql)
    event("ran")


@settings(max_examples=1500, **SETTINGS)
@given(text=queries())
def test_a_query_is_refused_or_runs_without_touching_the_source(source, session, text):
    try:
        checked = user_sql.check_query(text)
    except BadSelection as error:
        assert_sentence(error)
        event("refused by the parser's check")
        return
    assert_fixed_point(checked, user_sql.check_query)
    try:
        postgresql.check_query(session, text)
        rows = postgresql.preview(session, text, 5)
    except BadSelection as error:
        assert_sentence(error)
        assert "read-only" not in str(error), f"{text!r}: {error}"
        source.assert_untouched(text)
        event("refused by the source")
        return
    assert len(rows) <= 5
    source.assert_untouched(text)
    event("ran")


@pytest.fixture
def saved_connection(source, owner):
    fields = {f: getattr(source.connection, f) for f in (
        "kind", "name", "host", "port", "database", "username", "password", "sslmode",
        "connect_timeout")}  # fmt: skip
    return Connection.objects.create(owner=owner, **fields)


@pytest.mark.django_db
@settings(max_examples=200, **SETTINGS)
@given(text=filters())
def test_a_filter_given_for_a_job_is_refused_or_runs_as_checked(
    source, session, owner, saved_connection, text
):
    connection = saved_connection
    try:
        job = create_job(
            owner,
            connection,
            tables=["public.people"],
            selections={("public", "people"): {"filter": text}},
        )
    except BadRequest as error:
        assert_sentence(error)
        source.assert_untouched(text)
        event("refused")
        return
    event("accepted and ran")
    [run] = job.tables.all()
    ran = run.spec.get("filter", "")
    # What the job will run is the checked tree, deparsed, never the text as typed.
    assert ran == user_sql.check_filter(text).sql
    run_filter(source, session, text, ran)


@settings(max_examples=400, **SETTINGS)
@given(text=st.one_of(filters(), st.text(max_size=60)))
def test_deparsing_a_checked_filter_is_stable(text):
    try:
        checked = user_sql.check_filter(text)
    except BadSelection as error:
        assert_sentence(error)
        return
    assert user_sql.check_filter(checked.sql).sql == checked.sql
    assert user_sql.check_filter(checked.sql).columns == checked.columns


@settings(max_examples=300, **SETTINGS)
@given(text=queries())
def test_deparsing_a_checked_query_is_stable(text):
    try:
        checked = user_sql.check_query(text)
    except BadSelection as error:
        assert_sentence(error)
        return
    assert user_sql.check_query(checked.sql).sql == checked.sql
