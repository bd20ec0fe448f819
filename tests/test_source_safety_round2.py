"""Read-only by construction (issue 17), second round of attacks: what the first round's
fixes still let through, against the suite's real PostgreSQL.

The canary database of tests/test_source_safety.py, plus a schema `r2` holding what an
attacker with CREATE rights on one schema of the source could leave there (a partitioned
table, views, functions that read other tables or write; ROUND2_EXTRA in tests/factories.py).
Each finding is a failing test with the attack in its docstring; the attacks that were
refused as they should be are kept as passing tests.
"""

import pytest

from audit.models import AuditEvent
from connections.drivers import BadSelection, user_sql
from connections.models import SavedQuery
from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from tests.factories import (
    ROUND2_EXTRA,
    Refused,
    assert_one_clean_sentence,
    canary_fixtures,
    exported_values,
    policy,
    query_through,
)

canary_db, canary = canary_fixtures(ROUND2_EXTRA, schemas=("r2",))


# -- Findings -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT x AS code FROM people AS p(i, n, x)",
        # The aliases swap names: the plan reads "p.email", which is really ssn.
        "SELECT p.email FROM people AS p(id, name, email, salary, ssn)",
        "SELECT c FROM (SELECT * FROM people AS p(a, b, c)) AS s",
    ],
)
def test_column_aliases_in_from_hide_a_sensitive_column(canary, owner, client, sql):
    """FINDING: a FROM item's column aliases, `people AS p(i, n, x)`, rename the columns
    in EXPLAIN's output (`p.x`), and _columns_read looks for `p.ssn`: the query reads
    nothing sensitive as far as ADU knows. An operator exports and previews ssn under a
    "*ssn*" leave-out policy."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    preview = query_through("preview", client, owner, connection, sql)
    assert isinstance(preview, Refused), f"previewed ssn: {'SSN-731001' in preview}"
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), "accepted: " + exported_values(run_job(outcome.pk))[:80]
    assert "public.people.ssn" in outcome


@pytest.mark.django_db(transaction=True)
def test_a_policy_on_a_partitioned_table_holds_for_a_query_that_reads_it(canary, owner, client):
    """FINDING: a policy naming a partitioned table ("r2.staff.salary") is matched against
    the relations of the plan, which are its partitions (r2.staff_a, r2.staff_b):
    `SELECT salary FROM r2.staff` reads "r2.staff_a.salary" as far as ADU knows, and
    exports and previews every salary. (Exporting the partition r2.staff_a as a table
    escapes the policy the same way.)"""
    connection = canary.db.connection(owner)
    policy(connection, "r2.staff.salary")
    sql = "SELECT id, salary FROM r2.staff"
    preview = query_through("preview", client, owner, connection, sql)
    assert isinstance(preview, Refused), f"previewed: {'91234.56' in preview}"
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), "accepted: " + exported_values(run_job(outcome.pk))[:80]


@pytest.mark.django_db(transaction=True)
def test_a_partition_exported_as_a_table_keeps_its_parents_policy(canary, owner):
    """FINDING (same cause): `--tables r2.staff_a` exports the salaries of a partition
    of r2.staff, whose policy "r2.staff.salary" leaves them out."""
    connection = canary.db.connection(owner)
    policy(connection, "r2.staff.salary")
    job = run_job(create_job(owner, connection, tables=["r2.staff_a"]).pk)
    assert "91234.56" not in exported_values(job)


@pytest.mark.django_db(transaction=True)
def test_a_view_exported_as_a_table_is_held_to_the_policies_of_what_it_reads(canary, owner, client):
    """FINDING: the saved query `SELECT code FROM people_view` is refused (the plan shows
    that code is people.ssn), but exporting the view people_view itself as a table
    (`--tables public.people_view`) matches policies against its own column names only:
    ssn leaves as "code" under a "*ssn*" leave-out policy, with nothing on the spec."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    refused = query_through("saved", client, owner, connection, "SELECT code FROM people_view")
    assert isinstance(refused, Refused)
    try:
        job = create_job(owner, connection, tables=["public.people_view"])
    except BadRequest as error:
        assert_one_clean_sentence(str(error))
        return
    job = run_job(job.pk)
    assert "SSN-731001" not in exported_values(job), job.tables.get().spec


@pytest.mark.django_db(transaction=True)
def test_a_stable_user_function_in_a_view_reads_past_the_policies(canary, owner, client):
    """FINDING: the plan check refuses only VOLATILE functions. A view left in a schema
    the attacker may create in (r2.report) calls r2.peek(), a STABLE plpgsql function
    that reads people.ssn with ADU's login: `SELECT note FROM r2.report` reads nothing
    sensitive as far as ADU knows; preview and export show every ssn."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    sql = "SELECT note FROM r2.report"
    preview = query_through("preview", client, owner, connection, sql)
    assert isinstance(preview, Refused), f"previewed ssn: {'SSN-731001' in preview}"
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), "accepted: " + exported_values(run_job(outcome.pk))[:80]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["preview", "saved"])
def test_the_explain_check_runs_no_user_code_and_quotes_no_data(canary, owner, client, surface):
    """FINDING: EXPLAIN is not inert: the planner folds an IMMUTABLE function with
    constant arguments, so the check itself runs r2.fold(1) (a view's WHERE), which
    reads the canary and raises it; the refusal (P0001, passed on by _reason as is)
    reads "The source refuses the query: read: CANARY-7F3A-ALPHA CANARY-7F3A-BRAVO ..."."""
    connection = canary.db.connection(owner)
    outcome = query_through(surface, client, owner, connection, "SELECT id FROM r2.folded")
    assert isinstance(outcome, Refused), outcome
    assert_one_clean_sentence(outcome)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        # The plan shows public.lower(people.name): `lower` is in pg_catalog, so the
        # volatile check takes it for the built-in.
        "SELECT x FROM r2.lowered",
        # The plan shows r2."Noisy"(): the name pattern [A-Za-z_][\w$]*\( skips it.
        "SELECT id FROM r2.quoted",
    ],
)
def test_a_volatile_function_in_a_view_is_refused_however_the_plan_spells_it(
    canary, owner, client, sql
):
    """FINDING: _check_plan finds volatile functions by name in the plan's text. A view
    calling the volatile trap public.lower (a name pg_catalog also has) or r2."Noisy"()
    (a quoted name) passes; the export calls the trap on every row."""
    connection = canary.db.connection(owner)
    outcome = query_through("saved", client, owner, connection, sql)
    if not isinstance(outcome, Refused):
        run_job(outcome.pk)
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_view_exported_as_a_table_calls_no_volatile_function(canary, owner, client):
    """FINDING: the saved query `SELECT id FROM r2.noisy_view` is refused (it calls
    noisy()), but `--tables r2.noisy_view` is exported with no check at all: the view's
    volatile function runs with ADU's login on every row (here it tries DELETE FROM
    canary; a superuser's could COPY ... TO PROGRAM, pg_terminate_backend, ...)."""
    connection = canary.db.connection(owner)
    refused = query_through("saved", client, owner, connection, "SELECT id FROM r2.noisy_view")
    assert isinstance(refused, Refused)
    SavedQuery.objects.all().delete()
    try:
        run_job(create_job(owner, connection, tables=["r2.noisy_view"]).pk)
    except BadRequest as error:
        assert_one_clean_sentence(str(error))
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_saved_query_is_checked_again_when_its_job_runs(canary, owner, client):
    """FINDING: a saved query is checked (plan, policies) when the job is created, and at
    run time only parsed again. Whoever owns a view it reads redefines the view between
    the two (CREATE OR REPLACE VIEW r2.label_view ... ssn AS label): the queued job
    exports ssn under a "*ssn*" leave-out policy."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    canary.db.execute(
        "CREATE OR REPLACE VIEW r2.label_view AS SELECT id, name AS label FROM public.people"
    )
    job = query_through("saved", client, owner, connection, "SELECT label FROM r2.label_view")
    assert not isinstance(job, Refused), job
    canary.db.execute(
        "CREATE OR REPLACE VIEW r2.label_view AS SELECT id, ssn AS label FROM public.people"
    )
    job = run_job(job.pk)
    assert "SSN-731001" not in exported_values(job)


DEEP = [
    ("filter", "NOT " * 500 + "true"),
    ("filter", "id = " + "1 + (" * 300 + "1" + ")" * 300),
    ("query", "SELECT " + "abs(" * 500 + "1" + ")" * 500 + " AS x"),
]


@pytest.mark.parametrize(("what", "text"), DEEP)
def test_a_deeply_nested_text_is_refused_in_one_sentence(what, text):
    """FINDING: 500 nested NOT (2.5 kB), 300 nested + or 500 nested abs() make pglast and
    _Checker.visit recurse past Python's limit: RecursionError, not BadSelection. The
    API answers 500 server_error, the new-export page and the query preview a 500, and
    `adu_export --where` dies with a RecursionError traceback, instead of one sentence."""
    check = user_sql.check_filter if what == "filter" else user_sql.check_query
    try:
        check(text)
    except BadSelection as error:
        assert_one_clean_sentence(str(error))
    except RecursionError:
        pytest.fail("RecursionError instead of a refusal")


@pytest.mark.django_db(transaction=True)
def test_a_deeply_nested_filter_through_create_job_is_a_refusal(canary, owner):
    """FINDING (as above, through create_job): RecursionError escapes create_job."""
    connection = canary.db.connection(owner)
    try:
        create_job(owner, connection, tables=["public.people"],
                   selections={("public", "people"): {"filter": "NOT " * 500 + "true"}})  # fmt: skip
    except BadRequest as error:
        assert_one_clean_sentence(str(error))
    except RecursionError:
        pytest.fail("RecursionError out of create_job")


def test_a_filter_cannot_build_a_value_billions_of_times_its_input():
    """FINDING: repeat() and lpad() are left off the function list because a filter runs
    on every row of a production table; replace() does the same thing: eight nested
    replace(x, 'e', 'eeeeeeeeeeeeeeee') multiply each 'e' by 16^8 (4 billion). Accepted;
    on this suite's server a preview of it made the backend fail with "out of memory"
    (after allocating ~1 GB) in 4 s, per row, per reader."""
    text = "name"
    for _ in range(8):
        text = f"replace({text}, 'e', 'eeeeeeeeeeeeeeee')"
    with pytest.raises(BadSelection):
        user_sql.check_filter(f"length({text}) > 0")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT make_date(2000, 1, CAST(salary AS integer)) AS d FROM people",
        "SELECT make_time(0, 0, CAST(salary AS float8)) AS t FROM people",
    ],
)
def test_a_data_exception_quotes_no_value_unquoted(canary, owner, client, sql):
    """FINDING: _reason and explain() cut only quoted values out of a data exception;
    make_date/make_time/make_timestamp print the failing value bare: the preview's
    refusal reads "date field value out of range: 2000-01-52001" (a salary), and a job's
    error the same."""
    connection = canary.db.connection(owner)
    refused = query_through("preview", client, owner, connection, sql)
    assert isinstance(refused, Refused), refused
    assert "52001" not in refused, refused


@pytest.mark.django_db(transaction=True)
def test_a_data_exception_in_a_filter_quotes_no_value_in_the_job_error(canary, owner):
    """FINDING (as above, in a job's error): the filter
    `make_date(2000, 1, CAST(salary AS integer)) IS NOT NULL` fails on the first row
    and the JobError says "... date field value out of range: 2000-01-52001"."""
    connection = canary.db.connection(owner)
    text = "make_date(2000, 1, CAST(salary AS integer)) IS NOT NULL"
    job = run_job(create_job(owner, connection, tables=["public.people"],
                             selections={("public", "people"): {"filter": text}}).pk)  # fmt: skip
    [error] = job.errors.all()
    assert "52001" not in error.message, error.message


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT CAST(name AS integer) AS n FROM people",  # ran on the source, failed there
        "SELECT id FROM r2.folded",  # ran r2.fold() on the source while planning
    ],
)
def test_a_preview_that_ran_on_the_source_and_failed_is_on_the_audit_trail(
    canary, owner, client, sql
):
    """FINDING: preview_query records an audit event when it shows rows or refuses a
    sensitive read, not when the source fails the query (or its EXPLAIN): a preview that
    read production rows and failed leaves no trace (nor does one whose check ran user
    code)."""
    connection = canary.db.connection(owner)
    refused = query_through("preview", client, owner, connection, sql)
    assert isinstance(refused, Refused), refused
    assert AuditEvent.objects.filter(action="query_preview").exists()


# -- Refused as they should be ------------------------------------------------------------

# Each reads people.ssn in a way a regex over the plan might miss; each is found.
FOUND_QUERIES = [
    "SELECT count(DISTINCT ssn) AS n FROM people",
    "SELECT DISTINCT ON (ssn) id FROM people",
    "SELECT count(*) AS n FROM people GROUP BY ssn",
    "SELECT 1 AS o FROM people HAVING max(ssn) > 'SSN-731020'",
    "SELECT row_number() OVER (PARTITION BY ssn) AS n FROM people",
    "SELECT id FROM people ORDER BY ssn LIMIT 1",
    "SELECT id FROM people WHERE (ssn, id) > ('SSN-731005', 0)",
    "SELECT ARRAY[ssn] AS a FROM people",
    "WITH s AS (SELECT ssn AS x FROM people) SELECT a.x FROM s AS a JOIN s AS b ON a.x = b.x",
    'SELECT x FROM people AS "p.q", LATERAL (SELECT "p.q".ssn AS x) AS l',
    "SELECT id FROM people AS canary WHERE canary.ssn LIKE 'SSN-7%'",
    "SELECT v.x FROM (VALUES ('a')) AS v(x) JOIN people ON people.ssn = v.x",
    "SELECT ssn AS x FROM people UNION SELECT secret FROM canary",
    "TABLE people",
    "SELECT j.c FROM (people JOIN canary ON true) AS j(a, b, c)",
    "WITH s(a, b, c) AS (SELECT * FROM people) SELECT c FROM s",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", FOUND_QUERIES)
def test_a_sensitive_read_the_plan_shows_is_refused(canary, owner, client, sql):
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), f"accepted: {sql}"
    assert "public.people.ssn" in outcome
    assert_one_clean_sentence(outcome)


@pytest.mark.django_db(transaction=True)
def test_a_role_setting_does_not_beat_the_sessions_startup_options(canary, owner):
    """ALTER ROLE ... SET default_transaction_read_only = off / standard_conforming_strings
    = off: the startup options (a client source) win over the role's defaults."""
    from connections.drivers import postgresql

    role = "adu_r2_reader"
    canary.db.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD 'r2-pass'; GRANT SELECT ON ALL TABLES IN SCHEMA "
        f"public TO {role}; ALTER ROLE {role} SET default_transaction_read_only = off; "
        f"ALTER ROLE {role} SET standard_conforming_strings = off"
    )
    try:
        connection = canary.db.connection(owner, username=role, password="r2-pass")
        session = postgresql.connect(connection)
        with session.cursor() as cur:
            cur.execute("SELECT current_setting('default_transaction_read_only'), "
                        "current_setting('standard_conforming_strings')")  # fmt: skip
            assert cur.fetchone() == ("on", "on")
        session.close()
    finally:
        admin = canary.server.connect()
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE usename = %s", [role])  # fmt: skip
        admin.close()
        canary.db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


# -- Closed after the second round ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("view", "sql"),
    [
        # Aliases inside a view rename the columns in the plan as in a query.
        ("r2.renamed", "SELECT x FROM public.people AS p(i, n, x)"),
        # A view of a view: the outer one reads only what the inner one calls "code".
        ("r2.outer_view", "SELECT code AS c FROM public.people_view"),
        # A whole row: no column of people is named.
        ("r2.whole", "SELECT row_to_json(p) AS r FROM public.people AS p"),
    ],
)
def test_what_a_view_reads_is_found_however_it_names_it(canary, owner, client, view, sql):
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    canary.db.execute(f"CREATE VIEW {view} AS {sql}")
    outcome = query_through("saved", client, owner, connection, f"SELECT * FROM {view}")
    assert isinstance(outcome, Refused), "accepted: " + exported_values(run_job(outcome.pk))[:80]
    assert "public.people.ssn" in outcome
    with pytest.raises(BadRequest, match="public.people.ssn"):
        create_job(owner, connection, tables=[view])


@pytest.mark.django_db(transaction=True)
def test_a_view_without_sensitive_reads_or_unsafe_calls_is_exported(canary, owner):
    """The checks refuse what they must and no more: a view over people's id and name,
    with built-in functions, exports as a table under a "*ssn*" policy."""
    connection = canary.db.connection(owner)
    policy(connection, "*ssn*")
    canary.db.execute(
        "CREATE VIEW r2.names AS SELECT id, upper(name) AS name FROM public.people WHERE id < 731004"
    )
    job = run_job(create_job(owner, connection, tables=["r2.names"]).pk)
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    assert job.tables.get().rows_written > 0


@pytest.mark.django_db(transaction=True)
def test_a_view_redefined_to_call_a_user_function_fails_its_table_at_run_time(canary, owner):
    """Created as a harmless view; between the job's creation and its run the view calls
    r2.peek(): the table fails with the reason (phase "check"), nothing of it is
    written, and the job's other table is exported."""
    connection = canary.db.connection(owner)
    canary.db.execute("CREATE VIEW r2.turncoat AS SELECT id FROM public.canary")
    job = create_job(owner, connection, tables=["r2.turncoat", "public.canary"])
    canary.db.execute(
        "CREATE OR REPLACE VIEW r2.turncoat AS SELECT id, r2.peek() AS note FROM public.canary"
    )
    job = run_job(job.pk)
    turncoat = job.tables.get(table="turncoat")
    assert turncoat.status == "failed" and not turncoat.files
    [error] = job.errors.all()
    assert error.context["phase"] == "check"
    assert "r2.peek()" in error.message and "not built in" in error.message
    assert_one_clean_sentence(error.message)
    assert job.tables.get(table="canary").status == "complete"
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("errcode", ["42501", "22012", "P0001"])
def test_a_message_a_function_raises_is_not_passed_on(canary, owner, errcode):
    """RAISE takes any SQLSTATE and any text: whatever class it claims, a message raised
    inside a function reaches neither a refusal nor a job's error."""
    import psycopg2

    from connections.drivers import postgresql
    from connections.drivers.postgresql import errors

    connection = canary.db.connection(owner)
    session = postgresql.connect(connection)
    try:
        with session.cursor() as cur:
            cur.execute(
                "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '" + errcode + "', "
                "MESSAGE = (SELECT string_agg(secret, ' ') FROM public.canary); END$$"
            )
    except psycopg2.Error as raised:
        error = raised
    finally:
        session.close()
    for message in (errors.safe_reason(error), postgresql.explain(error, connection, "s.t")):
        assert "CANARY" not in message, message
        assert_one_clean_sentence(message)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        # Stable built-ins that read any table by its name or a query's text.
        "SELECT query_to_xml('select ssn from public.people', true, true, '')::text AS x",
        "SELECT table_to_xml('public.people', true, false, '')::text AS x",
        # What other sessions run, with the literals in their queries.
        "SELECT query FROM pg_stat_get_activity(NULL)",
        # Volatile built-in that changes the session.
        "SELECT set_config('default_transaction_read_only', 'off', false) AS x",
    ],
)
def test_a_view_calling_a_built_in_that_reads_past_its_arguments_is_refused(
    canary, owner, client, sql
):
    connection = canary.db.connection(owner)
    canary.db.execute(f"CREATE VIEW r2.beyond AS {sql}")
    try:
        called = sql.split("(")[0].split()[-1]
        outcome = query_through("saved", client, owner, connection, "SELECT * FROM r2.beyond")
        assert isinstance(outcome, Refused) and f"{called}()" in outcome, outcome
        assert_one_clean_sentence(outcome)
        with pytest.raises(BadRequest, match=rf"r2\.beyond.*{called}\(\)"):
            create_job(owner, connection, tables=["r2.beyond"])
    finally:
        canary.db.execute("DROP VIEW r2.beyond")
