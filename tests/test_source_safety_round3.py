"""Read-only by construction (issue 17), third round of attacks: what the second round's
fixes (view dependencies in pg_depend, FROM column aliases rewritten, the depth limit,
the recheck at run time) still let through, against the suite's real PostgreSQL.

The canary database of round 2 (schemas public and r2), plus a schema `r3` holding what
someone with CREATE on one schema (or the DBA, for the extension) may have left there.
Each finding is a failing test with the attack in its docstring; attacks refused as they
should be are passing tests.
"""

import re

import pytest

from connections.models import SavedQuery
from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from tests.factories import (
    ROUND2_EXTRA,
    SOURCE_VALUES,
    Refused,
    assert_one_clean_sentence,
    canary_fixtures,
    exported_values,
    policy,
    query_through,
)

EXTRA3 = """
CREATE SCHEMA r3;
-- A copy of ssn under another name: a materialized view is read as a table.
CREATE MATERIALIZED VIEW r3.mv AS SELECT id, ssn AS code FROM public.people;
-- tablefunc (a contrib extension a DBA installs): crosstab() is STABLE, a member of an
-- extension, and runs the SQL text it is given, with the caller's login.
CREATE EXTENSION tablefunc SCHEMA r3;
CREATE VIEW r3.pivot AS SELECT * FROM r3.crosstab(
    'SELECT ssn, 1, ssn FROM public.people ORDER BY 1') AS ct(k text, v text);
-- Whoever owns an extension may make any function of theirs a member of it.
CREATE FUNCTION r3.peek3() RETURNS text STABLE LANGUAGE plpgsql AS $$
BEGIN RETURN (SELECT string_agg(ssn, ',') FROM public.people); END $$;
ALTER EXTENSION tablefunc ADD FUNCTION r3.peek3();
CREATE VIEW r3.member AS SELECT id, r3.peek3() AS note FROM public.canary;
-- A domain whose CHECK calls the volatile trap: a cast to it in a view runs the trap.
CREATE DOMAIN r3.checked AS text CHECK (public.noisy() OR VALUE IS NULL);
CREATE VIEW r3.domained AS SELECT id, name::r3.checked AS n FROM public.people;
-- Inheritance: the parent's scan returns the child's rows too.
CREATE TABLE r3.base (id integer, salary numeric(10,2));
CREATE TABLE r3.kid () INHERITS (r3.base);
INSERT INTO r3.base VALUES (1, 1000.00);
INSERT INTO r3.kid VALUES (2, 77777.77);
-- A cast whose failure names the value it was given, in a class ADU passes on (42).
CREATE VIEW r3.reg AS SELECT id, name::regproc::text AS r FROM public.people;
"""


canary_db, canary = canary_fixtures(ROUND2_EXTRA, EXTRA3, schemas=("r3", "r2"))


def leaks(text: str) -> bool:
    """Whether a text carries a source value (case-insensitively: some casts fold case)."""
    return bool(re.search(SOURCE_VALUES.pattern, text, re.I)) or "77777.77" in text


def withheld(outcome) -> str:
    """'' if the attack was refused cleanly; else what leaked (an accepted saved query is
    run)."""
    if isinstance(outcome, Refused):
        assert_one_clean_sentence(outcome)
        return "refusal quotes data: " + outcome if leaks(outcome) else ""
    if isinstance(outcome, str):
        return "previewed: " + (SOURCE_VALUES.search(outcome) or [""])[0] if leaks(outcome) else ""
    values = exported_values(run_job(outcome.pk))
    return "exported: " + values[:80] if leaks(values) else ""


def export_table(owner, connection, table) -> str:
    try:
        job = create_job(owner, connection, tables=[table])
    except BadRequest as error:
        assert_one_clean_sentence(str(error))
        return "" if not leaks(str(error)) else str(error)
    job = run_job(job.pk)
    found = exported_values(job) + " ".join(job.errors.values_list("message", flat=True))
    return found[:120] if leaks(found) else ""


# -- Findings -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["preview", "saved", "table"])
def test_a_materialized_view_is_held_to_the_policies_of_what_it_reads(
    canary, owner, client, surface
):
    """FINDING: views(), _check_views and _VIEWS_REACHED consider relkind 'v' only. A
    materialized view `r3.mv AS SELECT id, ssn AS code FROM people` is a relation of its
    own to the plan (scan on r3.mv, column r3.mv.code): `SELECT code FROM r3.mv` (and
    `--tables r3.mv`) reads nothing sensitive as far as ADU knows and exports and
    previews every ssn under a "*ssn*" leave-out policy."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    if surface == "table":
        assert not export_table(owner, connection, "r3.mv")
        return
    assert not withheld(query_through(surface, client, owner, connection, "SELECT code FROM r3.mv"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["preview", "saved", "table"])
def test_an_extension_function_that_runs_sql_text_reads_past_the_policies(
    canary, owner, client, surface
):
    """FINDING: _UNSAFE_CALLS trusts every function that is a member of an extension and
    not volatile. tablefunc's crosstab(text) (and connectby(relname, ...)) is STABLE and
    runs the query text it is given with ADU's login: a view
    `SELECT * FROM crosstab('SELECT ssn, 1, ssn FROM public.people ...') AS ct(k, v)`
    depends on no column of people and its plan is a Function Scan, so
    `SELECT v FROM r3.pivot` reads nothing sensitive as far as ADU knows: every ssn is
    previewed and exported under a "*ssn*" policy."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    if surface == "table":
        assert not export_table(owner, connection, "r3.pivot")
        return
    outcome = query_through(surface, client, owner, connection, "SELECT v FROM r3.pivot")
    assert not withheld(outcome)


@pytest.mark.django_db(transaction=True)
def test_a_function_added_to_an_extension_is_not_taken_for_a_built_in(canary, owner, client):
    """FINDING: membership of an extension is decided by its owner: `ALTER EXTENSION
    tablefunc ADD FUNCTION r3.peek3()` (allowed to whoever owns the extension and the
    function, e.g. a user who created a trusted extension) makes the plpgsql function
    that reads people.ssn pass as "part of an installed extension"; the view r3.member
    that calls it is previewed and exported with every ssn under a "*ssn*" policy.
    (Round 2's r2.report, the same function outside an extension, is refused.)"""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    sql = "SELECT note FROM r3.member"
    assert not withheld(query_through("preview", client, owner, connection, sql))
    assert not withheld(query_through("saved", client, owner, connection, sql))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["saved", "table"])
def test_a_domain_check_in_a_view_runs_no_user_code(canary, owner, client, surface):
    """FINDING: a view's cast to a domain, `name::r3.checked`, runs the domain's CHECK
    (public.noisy(), volatile: it tries DELETE FROM canary) on every row. The view's rule
    depends on the type, not on the function (pg_constraint holds it), and the plan
    shows `(people.name)::r3.checked`, no call: `SELECT n FROM r3.domained` and
    `--tables r3.domained` pass every check and the export calls the trap with ADU's
    login."""
    connection = canary.db.connection(owner)
    if surface == "table":
        try:
            run_job(create_job(owner, connection, tables=["r3.domained"]).pk)
        except BadRequest as error:
            assert_one_clean_sentence(str(error))
    else:
        outcome = query_through("saved", client, owner, connection, "SELECT n FROM r3.domained")
        if not isinstance(outcome, Refused):
            run_job(outcome.pk)
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_row_security_policy_behind_a_view_runs_no_user_code(canary, owner, client):
    """FINDING: a table r3.guarded with FORCE ROW LEVEL SECURITY and a policy
    `USING (public.noisy())`, read through a view owned by the same (non-superuser)
    role: row security is checked as the view's owner, so the policy's qual joins the
    plan and runs with ADU's login on every row. Neither the view's rule (no function in
    it) nor the plan check (it looks up only pg_catalog names: `noisy()` is not one)
    notices: `SELECT * FROM r3.guarded_view` is exported and the trap is called. (Read
    directly by a non-superuser ADU login, the table itself does the same, with no check
    at all.)"""
    role = "adu_r3_owner"
    canary.db.execute(
        f"CREATE ROLE {role} NOLOGIN; "
        "CREATE TABLE r3.guarded (id integer, v text); INSERT INTO r3.guarded VALUES (1, 'x'); "
        "ALTER TABLE r3.guarded ENABLE ROW LEVEL SECURITY; "
        "ALTER TABLE r3.guarded FORCE ROW LEVEL SECURITY; "
        "CREATE POLICY see ON r3.guarded USING (public.noisy()); "
        "CREATE VIEW r3.guarded_view AS SELECT id, v FROM r3.guarded; "
        f"ALTER TABLE r3.guarded OWNER TO {role}; ALTER VIEW r3.guarded_view OWNER TO {role}"
    )
    canary.arm()
    try:
        connection = canary.db.connection(owner)
        sql = "SELECT * FROM r3.guarded_view"
        outcome = query_through("saved", client, owner, connection, sql)
        if not isinstance(outcome, Refused):
            run_job(outcome.pk)
        canary.assert_untouched()
    finally:
        canary.db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


@pytest.mark.django_db(transaction=True)
def test_a_child_tables_policy_holds_when_its_parent_is_exported(canary, owner, client):
    """FINDING: a policy on an inheritance child (or a partition), "r3.kid.salary", is
    matched against the exported table r3.base and the tables *above* it only; a scan of
    the parent returns the child's rows, so `--tables r3.base` exports the kid's salary
    77777.77. (The query `SELECT salary FROM r3.base` is refused: its plan scans r3.kid.)"""
    connection = canary.db.connection(owner)
    policy(connection, "r3.kid.salary")
    refused = query_through("saved", client, owner, connection, "SELECT salary FROM r3.base")
    assert isinstance(refused, Refused) and "r3.kid.salary" in refused, refused
    SavedQuery.objects.all().delete()
    assert not export_table(owner, connection, "r3.base")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["preview", "table"])
def test_a_failed_cast_to_a_reg_type_quotes_no_value(canary, owner, client, surface):
    """FINDING: _reason and explain() pass on a message of class 42 as is (it "names only
    what the user typed"), but a cast of a column to regproc (here in a view,
    `name::regproc`) fails at run time with 42883 `function "person-4101" does not
    exist`: the preview's refusal and the job's error (and the job log's ERROR line)
    quote a value of people.name. (regclass, regtype, regrole, regconfig... the same.)"""
    connection = canary.db.connection(owner)
    if surface == "table":
        assert not export_table(owner, connection, "r3.reg")
        return
    outcome = query_through("preview", client, owner, connection, "SELECT r FROM r3.reg")
    assert isinstance(outcome, Refused), outcome[:200]
    assert not withheld(outcome)


# -- Refused as they should be ------------------------------------------------------------

# Each reads people.ssn through a form of the query text a rewrite or a regex may miss.
TEXT_FORMS = [
    "SELECT * FROM people AS p(a)",
    'SELECT "X" FROM people AS "P"(i, n, "X")',
    'SELECT "P".ssn FROM ONLY people AS "P"',
    "SELECT count(*) AS n FROM people GROUP BY GROUPING SETS ((ssn), ())",
    "SELECT count(*) OVER w AS n FROM people WINDOW w AS (PARTITION BY ssn)",
    "SELECT l.x FROM canary AS c, LATERAL (SELECT ssn AS x FROM people WHERE people.id = c.id) AS l",
    "WITH canary AS (SELECT ssn AS secret FROM people) SELECT secret FROM canary",
    "WITH people AS (SELECT * FROM public.people AS people(a, b)) SELECT ssn FROM people",
    "SELECT string_agg(CAST(p AS text), ',') AS s FROM people AS p",
    "SELECT (SELECT id FROM people ORDER BY ssn LIMIT 1) AS x",
    "SELECT id FROM people WHERE ssn IN (SELECT secret FROM canary)",
    "SELECT x FROM (SELECT * FROM people AS a(i, n, x)) AS b(i2, n2, x)",
    "SELECT a FROM people AS p(a) WHERE p.ssn > ''",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", TEXT_FORMS)
def test_a_sensitive_read_however_the_text_names_it_is_refused(canary, owner, client, sql):
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), "accepted: " + exported_values(run_job(outcome.pk))[:80]
    assert "public.people.ssn" in outcome
    assert_one_clean_sentence(outcome)


# Each fails on a row of the source; the refusal must not say which value failed.
FAILING = [
    "SELECT CAST(name AS integer) AS n FROM people",
    "SELECT CAST(email AS numeric) AS n FROM people",
    "SELECT to_date(name, 'YYYY-MM') AS d FROM people",
    "SELECT to_timestamp(email, 'HH24') AS t FROM people",
    "SELECT CAST(email AS json) AS j FROM people",
    "SELECT CAST(name AS inet) AS i FROM people",
    "SELECT CAST(name AS uuid) AS u FROM people",
    "SELECT CAST(name AS interval) AS i FROM people",
    "SELECT CAST(name AS bit(3)) AS b FROM people",
    "SELECT CAST(email AS money) AS m FROM people",
    "SELECT date_trunc(name, now()) AS d FROM people",
    "SELECT CAST(name AS date) AS d FROM people",
    "SELECT name ~ (name || '(') AS r FROM people",
    "SELECT make_interval(0, 0, 0, 0, 0, 0, salary * 1e305) AS i FROM people",
    "SELECT 1 / (id - 7) AS z FROM people",
    "SELECT split_part(name, '-', 7 - id) AS s FROM people",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", FAILING)
def test_a_query_failing_on_a_value_quotes_no_value(canary, owner, client, sql):
    connection = canary.db.connection(owner)
    outcome = query_through("preview", client, owner, connection, sql)
    assert isinstance(outcome, Refused), outcome[:300]
    assert_one_clean_sentence(outcome)
    assert not leaks(outcome), outcome


@pytest.mark.django_db(transaction=True)
def test_a_filter_failing_on_a_value_quotes_no_value_in_the_job_error(canary, owner):
    connection = canary.db.connection(owner)
    text = "CAST(email AS json) IS NOT NULL OR to_date(name, 'YYYY') IS NULL"
    job = run_job(create_job(owner, connection, tables=["public.people"],
                             selections={("public", "people"): {"filter": text}}).pk)  # fmt: skip
    [error] = job.errors.all()
    assert not leaks(error.message), error.message
    assert_one_clean_sentence(error.message)


@pytest.mark.django_db(transaction=True)
def test_a_preview_of_a_huge_aggregate_is_cut(canary, owner, client):
    """string_agg over a 64 000-row cross join: one value of ~1 MB, cut at PREVIEW_CHARS."""
    connection = canary.db.connection(owner)
    sql = ("SELECT string_agg(a.name || b.name || c.name, ',') AS s "
           "FROM people AS a, people AS b, people AS c")  # fmt: skip
    page = query_through("preview", client, owner, connection, sql)
    assert not isinstance(page, Refused), page
    assert len(page) < 100_000
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_view_redefined_as_a_materialized_view_is_checked_at_run_time(canary, owner):
    """FINDING (materialized views, through recheck): a harmless view queued for export,
    replaced before the run by a materialized view of ssn under the same name: the run
    must not export ssn under "*ssn*"."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    canary.db.execute("CREATE VIEW r3.swap AS SELECT id, name AS code FROM public.people")
    job = create_job(owner, connection, tables=["r3.swap"])
    canary.db.execute(
        "DROP VIEW r3.swap; CREATE MATERIALIZED VIEW r3.swap AS SELECT id, ssn AS code FROM public.people"
    )
    job = run_job(job.pk)
    assert "SSN-731001" not in exported_values(job)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "setup",
    [
        # A user-defined operator over a trap.
        "CREATE VIEW r3.code AS SELECT id FROM public.people WHERE name OPERATOR(public.=) 1",
        # A user-defined aggregate whose transition function is a trap.
        "CREATE FUNCTION r3.step(boolean, text) RETURNS boolean VOLATILE LANGUAGE sql "
        "AS 'SELECT public.noisy()'; CREATE AGGREGATE r3.agg(text) (SFUNC = r3.step, "
        "STYPE = boolean); CREATE VIEW r3.code AS SELECT r3.agg(name) AS a FROM public.people",
        # A cast WITH FUNCTION on a type the attacker owns.
        "CREATE TYPE r3.t AS (x text); CREATE FUNCTION r3.t_bool(r3.t) RETURNS boolean "
        "VOLATILE LANGUAGE sql AS 'SELECT public.noisy()'; "
        "CREATE CAST (r3.t AS boolean) WITH FUNCTION r3.t_bool(r3.t); "
        "CREATE VIEW r3.code AS SELECT id FROM public.people WHERE ROW(name)::r3.t::boolean",
    ],
)
def test_a_view_calling_user_code_by_operator_aggregate_or_cast_is_refused(
    canary, owner, client, setup
):
    connection = canary.db.connection(owner)
    canary.db.execute(setup)
    canary.arm()
    try:
        outcome = query_through("saved", client, owner, connection, "SELECT * FROM r3.code")
        assert isinstance(outcome, Refused), "accepted"
        assert_one_clean_sentence(outcome)
        with pytest.raises(BadRequest):
            create_job(owner, connection, tables=["r3.code"])
        canary.assert_untouched()
    finally:
        canary.db.execute(
            "DROP VIEW IF EXISTS r3.code; DROP AGGREGATE IF EXISTS r3.agg(text); "
            "DROP FUNCTION IF EXISTS r3.step(boolean, text); "
            "DROP TYPE IF EXISTS r3.t CASCADE"
        )
