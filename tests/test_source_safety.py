"""Read-only by construction (issue 17): every hole, attacked as a hostile operator would,
against the suite's real PostgreSQL.

A canary database holds `people` (under sensitive-column policies where a test says so),
a `canary` table of known rows, and traps: user functions and an operator that write to
the canary and count their calls (track_functions). After each attack the canary and
people keep their rows and values, pg_stat_user_tables counts no insert, update or delete
(aborted ones included), no trap was called, and any refusal is one sentence with no
source data in it. Attacks go through the headless command (`adu_export --where/--query`),
the API (`selections`, `queries`), the new-export page, saved queries and their preview.
"""

import html
import io
import json
import re
import time
import uuid

import psycopg2
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent
from connections.drivers import postgresql, user_sql
from connections.drivers.postgresql import copy as postgresql_copy
from connections.models import SavedQuery, SensitiveColumn
from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob
from tests.factories import (
    Canary,
    Refused,
    assert_one_clean_sentence,
    build_canary,
    canary_fixtures,
    export_by_api,
    export_by_command,
    query_through,
    user_with_role,
)

# Users are made for every test here; their passwords are never what is tested.

canary_db, canary = canary_fixtures()


@pytest.fixture
def boss(django_user_model):
    return user_with_role(django_user_model, "boss", "ADU Admin")


@pytest.fixture
def no_task_cluster(monkeypatch):
    # Accepted jobs are run here, in the test, rather than queued.
    monkeypatch.setattr("exports.views.start_job", lambda job: None)
    monkeypatch.setattr("api.v1.start_job", lambda job: None)


PEOPLE_COLUMNS = ["id", "name", "ssn", "salary", "email"]


def filter_through(surface, client, user, connection, text, allow=()):
    """Ask for an export of public.people with `text` as its row filter through a surface:
    Refused(message), or the job it accepted (already run)."""
    if surface == "command":
        where = f"public.people:{text}"
        return export_by_command(
            user, connection, "--tables", "public.people", "--where", where, allow=allow
        )
    if surface == "api":
        data = {
            "connection": connection.pk,
            "tables": ["public.people"],
            "selections": {"public.people": {"filter": text}},
            "allow_sensitive": list(allow),
        }
        return export_by_api(client, user, data)
    if surface == "page":
        assert not allow
        client.force_login(user)
        form = {
            "connection": connection.pk, "parallel": 2, "compression_level": 3,
            "batch_rows": 100000, "validation": "sample",
            "tables": ["public.people"], "detail": ["public.people"],
            "col:public.people": PEOPLE_COLUMNS, "where:public.people": text,
        }  # fmt: skip
        response = client.post(reverse("job_new"), form)
        if response.status_code == 200:
            errors = re.findall(r'<p class="error[^"]*">(.*?)</p>', response.content.decode(), re.S)
            assert len(errors) == 1, errors
            return Refused(html.unescape(errors[0]))
        assert response.status_code == 302, response.status_code
        return run_job(ExportJob.objects.latest("pk").pk)
    assert surface == "direct"
    try:
        job = create_job(
            user,
            connection,
            tables=["public.people"],
            selections={("public", "people"): {"filter": text}},
            allow_sensitive=allow,
        )
    except BadRequest as error:
        return Refused(str(error))
    return run_job(job.pk)


# -- Row filters ------------------------------------------------------------------------

# A `;` hidden from a quote scanner: each is refused, or is one condition comparing a
# column with a strange constant (no row matches) and runs as such.
QUOTE_TRICKS = [
    "name = E'\\''; ROLLBACK; DELETE FROM canary; --'",
    "name = E'\\\\''; ROLLBACK; DELETE FROM canary; --'",
    "name = E'\\x27); DROP TABLE canary; --'",
    "name = $$;$$; ROLLBACK; DELETE FROM canary",
    "name = $$'$$; ROLLBACK; DROP TABLE canary; --",
    "name = $x$ $$; DROP TABLE canary; $$ $x$",
    "name = $$ '; UPDATE canary SET secret = 'gone'; -- $$",
    "name = U&'\\0027; DELETE FROM canary; --'",
    "name = U&'!0027' UESCAPE '!'; UPDATE canary SET secret = 'gone'",
    "name = 'a' /* /* */ ; DELETE FROM canary; */ OR false",
    "name = 'a' /* */ ; DELETE FROM canary; /* */",
    "name = 'x' \\; DELETE FROM canary",
    "name = 'it''s'; COMMIT; UPDATE canary SET secret = 'gone'",
    "true); DELETE FROM canary; SELECT (1",
    "name = 'a'; SET default_transaction_read_only = off; DELETE FROM canary",
    "name = 'a'; COMMIT; BEGIN READ WRITE; DELETE FROM canary; COMMIT",
    "name = 'a' -- ; DELETE FROM canary",
    "name = 'a'\n; DELETE FROM canary",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["command", "api", "page"])
@pytest.mark.parametrize("text", QUOTE_TRICKS)
def test_a_quote_trick_in_a_filter_runs_no_second_statement(
    canary, owner, client, no_task_cluster, surface, text
):
    connection = canary.db.connection(owner)
    outcome = filter_through(surface, client, owner, connection, text)
    if isinstance(outcome, Refused):
        assert_one_clean_sentence(outcome)
    else:
        run = outcome.tables.get(table="people")
        assert run.status == "complete", list(outcome.errors.values_list("message", flat=True))
        assert run.rows_written == 0  # a comparison with a constant no name equals
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("read", ["in its worker's thread", "in ctid ranges"])
@pytest.mark.parametrize("text", QUOTE_TRICKS)
def test_a_filter_stays_one_condition_however_its_table_is_read(
    canary, owner, client, monkeypatch, text, read
):
    # Issue 20: a table of a few pages is read in its worker's thread (read_batches does
    # not hand it to _merge); a large one in ctid ranges, each COPY the filter ANDed with
    # its range, proven by what the ranges sent. What reaches the server is the same
    # deparsed condition either way.
    if read == "in ctid ranges":
        monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
        canary.db.execute("ANALYZE people")  # its pages, which the ranges divide
    reader_threads = []
    real_merge = postgresql_copy._merge
    monkeypatch.setattr(
        postgresql_copy,
        "_merge",
        lambda read_one, jobs: (
            reader_threads.extend(s for _, s in jobs) or real_merge(read_one, jobs)
        ),
    )
    outcome = filter_through("command", client, owner, canary.db.connection(owner), text)
    if isinstance(outcome, Refused):
        assert_one_clean_sentence(outcome)
    else:
        run = outcome.tables.get(table="people")
        assert run.status == "complete", list(outcome.errors.values_list("message", flat=True))
        assert run.rows_written == 0
        assert run.rows_proof == "sent"  # the COPYs' own counts
        if read == "in ctid ranges":
            conn = canary.db.server.connect(canary.db.name)
            texts = [s.as_string(conn) for s in reader_threads]
            conn.close()
            assert len(texts) == 2 and all("ctid" in t and ") AND ctid" in t for t in texts)
        else:
            assert reader_threads == []
    canary.assert_untouched()


# Each reads past its table, runs something, or names a function that is not a plain
# built-in: refused before any job exists.
REFUSED_FILTERS = [
    "query_to_xml('select * from canary', true, true, '') IS NOT NULL",
    "table_to_xml('canary', true, false, '')::text LIKE '%ALPHA%'",
    "length(cursor_to_xml('c', 1, true, true, '')::text) > 0",
    "pg_read_file('/etc/hostname') <> ''",
    "pg_catalog.pg_read_binary_file('/etc/hostname') IS NOT NULL",
    "lo_import('/etc/hostname') > 0",
    "lo_export(1, '/tmp/adu-lo') = 1",
    "current_setting('data_directory') <> ''",
    "set_config('default_transaction_read_only', 'off', false) = 'off'",
    "dblink('dbname=postgres', 'DELETE FROM canary') IS NULL",
    "public.dblink_exec('DELETE FROM canary') = 'OK'",
    "id IN (SELECT id FROM canary)",
    "EXISTS (SELECT 1 FROM canary WHERE secret LIKE 'C%')",
    "id = (SELECT count(*) FROM canary)",
    "name = ANY(SELECT secret FROM canary)",
    "'canary'::regclass::oid > 0",
    "CAST('public.canary' AS regclass) IS NOT NULL",
    "to_regclass('canary') IS NOT NULL",
    "noisy()",
    "public.noisy()",
    "nextval('counter') > 0",
    "pg_sleep(1) IS NOT NULL",
    "pg_terminate_backend(pg_backend_pid())",
    "txid_current() > 0",
    "generate_series(1, 2) > 0",
    "name = current_user",
    "canary.secret = 'x'",
    "people.name = 'x'",
    "(SELECT secret FROM canary LIMIT 1) LIKE 'C%'",
    "name OPERATOR(public.=) 5",
    "name::public.mytype IS NULL",
    "row_to_json(people)::text LIKE '%'",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", REFUSED_FILTERS)
def test_a_filter_reaching_past_its_table_is_refused_and_nothing_runs(canary, owner, client, text):
    connection = canary.db.connection(owner)
    outcome = filter_through("direct", client, owner, connection, text)
    assert isinstance(outcome, Refused), f"accepted: {text}"
    assert outcome.startswith("public.people: The filter"), outcome
    assert_one_clean_sentence(outcome)
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["command", "api", "page"])
def test_every_surface_refuses_a_filter_that_reads_another_table(
    canary, owner, client, no_task_cluster, surface
):
    connection = canary.db.connection(owner)
    text = "query_to_xml('select * from canary', true, true, '')::text LIKE '%ALPHA%'"
    outcome = filter_through(surface, client, owner, connection, text)
    assert isinstance(outcome, Refused) and "query_to_xml" in outcome, outcome
    assert_one_clean_sentence(outcome)
    assert not ExportJob.objects.exists()
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_user_function_named_like_a_built_in_is_never_called(canary, owner, client):
    # public.lower shadows nothing: ADU calls pg_catalog.lower, whatever the search_path.
    connection = canary.db.connection(owner)
    outcome = filter_through("direct", client, owner, connection, "lower(name) = 'person-4107'")
    if not isinstance(outcome, Refused):
        run = outcome.tables.get(table="people")
        assert run.status == "complete" and run.rows_written == 1
    else:
        assert_one_clean_sentence(outcome)
    canary.assert_untouched()


OPERATOR_TRAPS = [
    "name = 5",
    "email = 0",
    "CAST(name AS text) = 41",
    "name IN (0, 1)",
    "name BETWEEN 1 AND 2",
    "name LIKE 5",
    "name IS DISTINCT FROM 5",
    "CASE name WHEN 5 THEN true ELSE false END",
    "nullif(name, 5) IS NULL",
    "name = ANY(ARRAY[5])",
    "name <> 5",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", OPERATOR_TRAPS)
def test_a_user_operator_is_never_what_a_filter_or_query_calls(canary, owner, client, text):
    # The source holds public.=, <>, >=, <= and ~~ for (text, integer): resolved through
    # the search_path, an operator of the filter would call one of them on every row.
    connection = canary.db.connection(owner)
    outcome = filter_through("direct", client, owner, connection, text)
    assert isinstance(outcome, Refused), (
        f"accepted; the job: {list(outcome.errors.values_list('message', flat=True))}"
    )
    assert_one_clean_sentence(outcome)
    sql = f"SELECT id FROM people WHERE {text}"
    preview = query_through("preview", client, owner, connection, sql)
    assert isinstance(preview, Refused), preview
    assert_one_clean_sentence(preview)
    canary.assert_untouched()


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["name = 'a' /* one\ntwo", "name = 'a\nb", "name = $$a\nb"])
def test_a_refusal_is_one_line_whatever_the_text_holds(canary, owner, client, text):
    connection = canary.db.connection(owner)
    outcome = filter_through("direct", client, owner, connection, text)
    assert isinstance(outcome, Refused), outcome
    assert_one_clean_sentence(outcome)
    preview = query_through("preview", client, owner, connection, f"SELECT 1 AS x WHERE {text}")
    assert isinstance(preview, Refused), preview
    assert_one_clean_sentence(preview)


@pytest.mark.django_db(transaction=True)
def test_a_value_that_fails_a_filter_is_not_quoted_in_the_job_error(canary, owner, client):
    connection = canary.db.connection(owner)
    job = filter_through("direct", client, owner, connection, "CAST(name AS integer) > 0")
    assert not isinstance(job, Refused), job
    [error] = job.errors.all()
    assert_one_clean_sentence(error.message)
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["command", "api", "direct"])
def test_a_filter_naming_a_sensitive_column_is_refused_unless_an_admin_allows_it(
    canary, owner, boss, client, no_task_cluster, surface
):
    connection = canary.db.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="hash")
    # An oracle: which rows have an ssn starting so tells the ssn, row by row.
    text = "ssn LIKE 'SSN-73100%'"
    refused = filter_through(surface, client, owner, connection, text)
    assert isinstance(refused, Refused), refused
    assert "ssn" in refused and "sensitive" in refused and "allow_sensitive" in refused
    assert_one_clean_sentence(refused)
    with pytest.raises(BadRequest, match="Only an ADU Admin"):
        create_job(owner, connection, tables=["public.people"],
                   selections={("public", "people"): {"filter": text}},
                   allow_sensitive=["public.people.ssn"])  # fmt: skip
    job = filter_through(surface, client, boss, connection, text, allow=["public.people.ssn"])
    assert not isinstance(job, Refused), job
    run = job.tables.get(table="people")
    assert run.status == "complete" and run.rows_written == 9
    assert run.spec["sensitive"]["ssn"] == "sensitive (*ssn*): allowed unmasked by boss"
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_filter_under_the_admins_allowance_is_recorded_as_read_by_the_filter(
    canary, owner, boss, client
):
    connection = canary.db.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="hash")
    job = create_job(
        boss,
        connection,
        tables=["public.people"],
        selections={("public", "people"): {"filter": "ssn LIKE 'SSN-73100%'",
                                           "columns": ["id", "name"]}},
        allow_sensitive=["public.people.ssn"],
    )  # fmt: skip
    [run] = job.tables.all()
    assert run.spec["columns"] == ["id", "name"]
    assert run.spec["sensitive"] == {
        "ssn": "sensitive (*ssn*): read by the filter, allowed by boss"
    }
    event = AuditEvent.objects.get(action="job_create", object_id=str(job.pk))
    assert event.details["sensitive_allowed_unmasked"] == ["public.people.ssn"]


# -- Masks against policies --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("policy", "mask", "refused"),
    [
        ("exclude", "salary=truncate:18", True),
        ("exclude", "salary=truncate", True),
        ("exclude", "salary=hash", True),
        ("exclude", "salary=redact", True),
        ("exclude", "salary=null", True),
        ("null", "salary=hash", True),
        ("null", "salary=redact", True),
        ("redact", "salary=hash", True),
        ("hash", "salary=truncate:-3", True),
        ("hash", "salary=null", False),
        ("hash", "salary=redact", False),
        ("hash", "salary=hash", False),
        ("null", "salary=null", False),
    ],
)
def test_a_mask_weaker_than_its_policy_is_refused(canary, owner, policy, mask, refused):
    connection = canary.db.connection(owner, name="hr")
    SensitiveColumn.objects.create(connection=connection, pattern="*salary*", action=policy)
    out = io.StringIO()
    args = ["adu_export", "hr", "--tables", "public.people", "--mask", f"public.people:{mask}"]
    if refused:
        with pytest.raises(CommandError) as error:
            call_command(*args, "--sync", "--json", "--as", "owner", stdout=out)
        message = str(error.value)
        assert f"asks for '{policy}'" in message and "salary" in message, message
        assert_one_clean_sentence(message)
        assert not ExportJob.objects.exists()
    else:
        with pytest.raises(SystemExit) as done:
            call_command(*args, "--sync", "--json", "--as", "owner", stdout=out)
        assert done.value.code == 0
        job = ExportJob.objects.get(pk=json.loads(out.getvalue())["job_id"])
        run = job.tables.get()
        method = mask.split("=")[1]
        assert run.spec["masks"]["salary"] == {"method": method}
        salaries = [c for c in run.columns if c["name"] == "salary"]
        assert salaries and salaries[0]["masking"]["method"] == method
    canary.assert_untouched()


# -- Saved queries and their preview ----------------------------------------------------

REFUSED_QUERIES = [
    "WITH gone AS (DELETE FROM canary RETURNING *) SELECT * FROM gone",
    "WITH x AS (UPDATE canary SET secret = 'gone' RETURNING 1) SELECT 1 AS one",
    "WITH x AS (INSERT INTO canary VALUES (9, 'x', 0) RETURNING 1) SELECT 1 AS one",
    "SELECT * INTO stolen FROM canary",
    "SELECT * FROM canary FOR UPDATE",
    "SELECT id FROM canary FOR SHARE NOWAIT",
    "SELECT * FROM pg_catalog.pg_authid",
    "SELECT rolname, rolpassword FROM pg_authid",
    "SELECT usename, passwd FROM pg_shadow",
    "SELECT query FROM pg_stat_activity",
    "SELECT pid, query FROM pg_catalog.pg_stat_activity",
    "SELECT name, setting FROM pg_settings",
    "SELECT relname FROM pg_class",
    "SELECT table_name FROM information_schema.tables",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM canary') AS t(x text)",
    "SELECT query_to_xml('select * from canary', true, true, '') AS x",
    "SELECT table_to_xml('canary', true, false, '') AS x",
    "SELECT pg_read_file('/etc/hostname') AS x",
    "SELECT lo_import('/etc/hostname') AS x",
    "SELECT current_setting('data_directory') AS x",
    "SELECT set_config('default_transaction_read_only', 'off', false) AS x",
    "SELECT noisy() AS x",
    "SELECT public.lower(secret) AS x FROM canary",
    "SELECT nextval('counter') AS x",
    "SELECT 1 AS x; DELETE FROM canary",
    "SELECT E'\\''; ROLLBACK; DELETE FROM canary; --' AS x",
    "SELECT $$;$$; COMMIT; DROP TABLE canary",
    "SELECT 'canary'::regclass AS x",
    "SELECT id FROM people, LATERAL (SELECT noisy()) AS x",
    "SELECT id FROM canary WHERE secret = 'x' OR noisy()",
    "SELECT name FROM people WHERE name = 5",
    "DELETE FROM canary",
    "EXPLAIN ANALYZE DELETE FROM canary",
    "COPY canary TO '/tmp/adu-canary'",
    "DO $$BEGIN DELETE FROM canary; END$$",
    "TABLE canary; DELETE FROM canary",
    "PREPARE p AS DELETE FROM canary",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", REFUSED_QUERIES)
def test_a_saved_query_that_is_not_one_plain_select_is_refused(canary, owner, client, sql):
    connection = canary.db.connection(owner)
    outcome = query_through("saved", client, owner, connection, sql)
    assert isinstance(outcome, Refused), f"accepted: {sql}"
    assert outcome.startswith("query 'attack': The "), outcome
    assert_one_clean_sentence(outcome)
    preview = query_through("preview", client, owner, connection, sql)
    assert isinstance(preview, Refused), f"previewed: {sql}"
    assert_one_clean_sentence(preview)
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["command", "api", "form", "preview"])
@pytest.mark.parametrize(
    "sql",
    [
        "WITH gone AS (DELETE FROM canary RETURNING *) SELECT * FROM gone",
        "SELECT E'\\''; ROLLBACK; DELETE FROM canary; --' AS x",
        "SELECT query_to_xml('select * from canary', true, true, '') AS x",
    ],
)
def test_every_query_surface_refuses_a_writing_or_reaching_query(
    canary, owner, client, no_task_cluster, surface, sql
):
    connection = canary.db.connection(owner)
    outcome = query_through(surface, client, owner, connection, sql)
    assert isinstance(outcome, Refused), outcome
    assert_one_clean_sentence(outcome)
    assert not ExportJob.objects.exists()
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT $$; DELETE FROM canary; $$ AS x", "; DELETE FROM canary; "),
        ("SELECT U&'\\0027; DROP TABLE canary; --' AS x", "'; DROP TABLE canary; --"),
        ("SELECT 'a' AS x /* /* */ ; DELETE FROM canary; */", "a"),
        ("SELECT $t$'$$;$t$ AS x -- ; DELETE FROM canary", "'$$;"),
    ],
)
def test_a_quote_trick_in_a_query_is_one_constant(canary, owner, client, sql, expected):
    connection = canary.db.connection(owner)
    job = run_job(query_through("saved", client, owner, connection, sql).pk)
    run = job.tables.get(schema="queries")
    assert run.status == "complete" and run.rows_written == 1
    preview = query_through("preview", client, owner, connection, sql)
    assert not isinstance(preview, Refused), preview
    assert f"<td>{html.escape(expected)}</td>" in preview
    canary.assert_untouched()


# Each reads people.ssn (under "*ssn*", leave out), whatever it calls it.
SENSITIVE_QUERIES = [
    "SELECT ssn AS x FROM people",
    "SELECT id, upper(ssn) AS x FROM people",
    "SELECT max(ssn) AS x FROM people",
    "SELECT * FROM people",
    "SELECT p.* FROM people AS p",
    "SELECT code FROM people_view",
    "SELECT x FROM (SELECT ssn AS x FROM people) AS s",
    "WITH s AS (SELECT ssn AS x FROM people) SELECT x FROM s",
    "WITH s AS MATERIALIZED (SELECT ssn AS x FROM people) SELECT x FROM s",
    "SELECT p FROM people AS p",
    "SELECT count(*) AS n FROM people WHERE ssn = 'SSN-731007'",
    "SELECT id FROM people ORDER BY ssn",
    "SELECT p.id FROM people AS p JOIN canary AS c ON c.secret = p.ssn",
    "SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE ssn LIKE 'SSN-73100%')",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", SENSITIVE_QUERIES)
def test_a_query_reading_a_sensitive_column_is_refused_unless_an_admin_allows_it(
    canary, owner, boss, client, sql
):
    connection = canary.db.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="exclude")
    refused = query_through("saved", client, owner, connection, sql)
    assert isinstance(refused, Refused), f"an operator may export: {sql}"
    assert "public.people.ssn" in refused and "allow_sensitive" in refused, refused
    assert_one_clean_sentence(refused)
    # Preview applies the policies with no one's allowance, an ADU Admin's included.
    for user in (owner, boss):
        preview = query_through("preview", client, user, connection, sql)
        assert isinstance(preview, Refused), f"previewed: {sql}"
        assert "public.people.ssn" in preview
        assert_one_clean_sentence(preview)
    previews = AuditEvent.objects.filter(action="query_preview")
    assert [e.details["ok"] for e in previews] == [False, False]
    SavedQuery.objects.all().delete()
    job = query_through("saved", client, boss, connection, sql, allow=["public.people.ssn"])
    assert not isinstance(job, Refused), job
    run = job.tables.get(schema="queries")
    assert run.spec["sensitive"]["public.people.ssn"] == (
        "sensitive (*ssn*): read by the query, allowed by boss"
    )
    canary.assert_untouched()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("surface", ["command", "api"])
def test_a_query_under_an_alias_is_refused_through_the_command_and_the_api(
    canary, owner, boss, client, no_task_cluster, surface
):
    connection = canary.db.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="exclude")
    refused = query_through(surface, client, owner, connection, "SELECT ssn AS x FROM people")
    assert isinstance(refused, Refused), "an operator exported ssn under another name"
    assert "public.people.ssn" in refused
    SavedQuery.objects.all().delete()
    job = query_through(surface, client, boss, connection, "SELECT ssn AS x FROM people",
                        allow=["public.people.ssn"])  # fmt: skip
    assert not isinstance(job, Refused), job
    run = job.tables.get(schema="queries")
    assert run.status == "complete" and run.rows_written == 40
    assert "public.people.ssn" in run.spec["sensitive"]


# -- The source's own settings cannot change what runs ----------------------------------


@pytest.fixture
def legacy_strings(source_db):
    """A source whose database still has standard_conforming_strings off: a backslash
    in a plain string escapes the quote there."""
    build_canary(source_db.server, source_db.name)
    source_db.execute(f'ALTER DATABASE "{source_db.name}" SET standard_conforming_strings = off')
    canary = Canary(source_db)
    canary.arm()
    return canary


LEGACY_TRICKS = [
    "name = '\\''); COMMIT; BEGIN READ WRITE; DELETE FROM canary; COMMIT; --'",
    "name = '\\''); COMMIT; SET default_transaction_read_only = off; COMMIT; "
    "DELETE FROM canary; --'",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", LEGACY_TRICKS)
def test_a_filter_means_the_same_on_a_source_without_standard_strings(
    legacy_strings, owner, client, text
):
    # As ADU's parser reads it, one condition comparing name with a constant.
    assert user_sql.check_filter(text).columns == {"name"}
    connection = legacy_strings.db.connection(owner)
    outcome = filter_through("direct", client, owner, connection, text)
    if not isinstance(outcome, Refused):
        assert outcome.tables.get(table="people").rows_written == 0
    legacy_strings.assert_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_query_means_the_same_on_a_source_without_standard_strings(legacy_strings, owner, client):
    sql = "SELECT '\\''; COMMIT; BEGIN READ WRITE; DELETE FROM canary; COMMIT; --' AS x"
    connection = legacy_strings.db.connection(owner)
    for surface in ("preview", "saved"):
        outcome = query_through(surface, client, owner, connection, sql)
        if surface == "saved" and not isinstance(outcome, Refused):
            run_job(outcome.pk)
        legacy_strings.assert_untouched()


# -- Sessions: read-only for life, timeouts ---------------------------------------------


@pytest.mark.django_db
def test_a_source_session_stays_read_only_after_its_transaction_ends(canary, owner):
    connection = canary.db.connection(owner)
    for session in (
        postgresql.connect(connection),
        postgresql.join_snapshot(connection, None),
    ):
        try:
            with session.cursor() as cur:
                cur.execute("SHOW default_transaction_read_only")
                assert cur.fetchone() == ("on",)
            session.commit()
            session.autocommit = True  # no transaction of psycopg2's: each statement its own
            with session.cursor() as cur:
                for statement in (
                    "INSERT INTO canary VALUES (50, 'written', 0)",
                    "COMMIT; INSERT INTO canary VALUES (51, 'written', 0)",
                    "ROLLBACK; DELETE FROM canary",
                    "UPDATE canary SET secret = 'gone'",
                    "CREATE TABLE stolen AS SELECT * FROM canary",
                    "SELECT nextval('counter')",
                ):
                    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                        cur.execute(statement)
        finally:
            session.close()
    canary.assert_untouched()


@pytest.fixture
def limited_role(source_db):
    """A read-only login with limits of its own in the source database; dropped after."""
    build_canary(source_db.server, source_db.name)
    role = f"adu_reader_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    source_db.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}';"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        f"ALTER ROLE {role} IN DATABASE \"{source_db.name}\" SET statement_timeout = '1s';"
        f"ALTER ROLE {role} IN DATABASE \"{source_db.name}\" SET lock_timeout = '700ms';"
    )
    yield role, password
    admin = source_db.server.connect()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    [role])  # fmt: skip
    admin.close()
    source_db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def _limits(session):
    with session.cursor() as cur:
        cur.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        found = cur.fetchone()
    session.rollback()
    session.close()
    return found


@pytest.mark.django_db
def test_checks_run_under_a_statement_timeout_and_every_session_under_a_lock_timeout(
    source_db, owner, settings
):
    connection = source_db.connection(owner)
    settings.SOURCE_STATEMENT_TIMEOUT = 7
    settings.SOURCE_LOCK_TIMEOUT = 3
    assert _limits(postgresql.connect(connection)) == ("7s", "3s")
    # An export's long reads alone run without a statement timeout, never without a lock one.
    assert _limits(postgresql.join_snapshot(connection, None)) == ("0", "3s")
    leader, _ = postgresql.open_snapshot(connection, lock_timeout=2)
    assert _limits(leader) == ("0", "2s")


@pytest.mark.django_db
def test_a_role_keeps_its_own_stricter_limits(source_db, owner, settings, limited_role):
    role, password = limited_role
    connection = source_db.connection(owner, username=role, password=password)
    settings.SOURCE_STATEMENT_TIMEOUT = 30
    settings.SOURCE_LOCK_TIMEOUT = 30
    assert _limits(postgresql.connect(connection)) == ("1s", "700ms")
    assert _limits(postgresql.join_snapshot(connection, None)) == ("0", "700ms")
    # The checks run on such a session: a filter is checked within the role's limit.
    session = postgresql.connect(connection)
    try:
        checked = postgresql.check_filter(session, "public", "people", "id < 5")
        assert checked.sql == "id OPERATOR(pg_catalog.<) 5"
    finally:
        session.close()


@pytest.fixture
def locked_people(canary):
    """Another session holds an ACCESS EXCLUSIVE lock on people in an open transaction."""
    holder = canary.server.connect(canary.db.name)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE people IN ACCESS EXCLUSIVE MODE")
    yield
    holder.rollback()
    holder.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["setting", "job option"])
def test_a_locked_table_fails_quickly_naming_the_lock_and_the_others_go_on(
    canary, owner, settings, locked_people, how
):
    connection = canary.db.connection(owner)
    options = {"lock_timeout": 2} if how == "job option" else {}
    settings.SOURCE_LOCK_TIMEOUT = 2 if how == "setting" else 600
    started = time.monotonic()
    job = run_job(
        create_job(owner, connection, tables=["public.people", "public.canary"], options=options).pk
    )
    took = time.monotonic() - started
    assert took < 15, took
    runs = {run.table: run for run in job.tables.all()}
    assert runs["canary"].status == "complete" and runs["canary"].rows_written == 3
    assert runs["people"].status == "failed"
    [error] = job.errors.all()
    assert error.table_run.table == "people"
    assert "lock" in error.message, error.message
    assert_one_clean_sentence(error.message)


@pytest.mark.django_db(transaction=True)
def test_a_check_behind_a_lock_is_refused_within_the_lock_timeout(
    canary, owner, settings, locked_people
):
    connection = canary.db.connection(owner)
    SavedQuery.objects.create(connection=connection, name="q", sql="SELECT id FROM people")
    settings.SOURCE_LOCK_TIMEOUT = 1
    started = time.monotonic()
    with pytest.raises(BadRequest) as refused:
        create_job(owner, connection, queries=list(SavedQuery.objects.all()))
    assert time.monotonic() - started < 10
    assert "lock" in str(refused.value), refused.value
    assert_one_clean_sentence(str(refused.value))
