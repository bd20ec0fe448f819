"""Export exactly what may leave: columns, row filters, masking, sensitive columns, queries."""

import hashlib
import hmac
import json

import pyarrow.parquet as pq
import pytest

from audit.models import AuditEvent
from connections.models import SavedQuery, SensitiveColumn
from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob

PEOPLE = """
CREATE TABLE people (
    id integer PRIMARY KEY, name text NOT NULL, email text, ssn text,
    born date, salary numeric(10,2), city text
);
INSERT INTO people
SELECT i, 'name' || i, 'user' || i || '@example.org', to_char(i, 'FM000-00-0000'),
       date '1980-01-01' + i * 37, 1000 + i * 12.34, (ARRAY['Oslo','Rome','Lima'])[1 + i % 3]
FROM generate_series(1, 300) i;
CREATE TABLE orders (id integer, email text, total numeric(10,2));
INSERT INTO orders SELECT i, 'user' || (i % 50 + 1) || '@example.org', i FROM generate_series(1, 120) i;
CREATE TABLE audit_log (n integer);
CREATE FUNCTION noisy() RETURNS boolean VOLATILE LANGUAGE sql
    AS 'INSERT INTO audit_log VALUES (1); SELECT true';
CREATE SEQUENCE counter;
"""


@pytest.fixture
def people(source_db):
    source_db.execute(PEOPLE)
    return source_db


def _table(job, table):
    run = job.tables.get(table=table)
    assert run.status == "complete", list(job.errors.values_list("message", flat=True))
    return pq.read_table(job.folder() / run.files[0]["path"]), run


def _export(owner, connection, **kwargs):
    return run_job(create_job(owner, connection, **kwargs).pk)


@pytest.mark.django_db(transaction=True)
def test_chosen_columns_leave_and_the_others_are_absent(people, owner):
    connection = people.connection(owner)
    job = _export(
        owner,
        connection,
        tables=["public.people", "public.orders"],
        selections={
            ("public", "people"): {"exclude": ["ssn", "salary"]},
            ("public", "orders"): {"columns": ["id", "total"]},
        },
    )
    data, _ = _table(job, "people")
    assert data.column_names == ["id", "name", "email", "born", "city"]
    orders, _ = _table(job, "orders")
    assert orders.column_names == ["id", "total"]
    manifest = json.loads(job.manifest_path().read_text())
    selected = {t["table"]: t["selection"] for t in manifest["tables"]}
    assert selected["orders"]["columns"] == ["id", "total"]


@pytest.mark.django_db(transaction=True)
def test_a_filter_exports_exactly_the_matching_rows(people, owner):
    condition = "city = 'Rome' AND born < date '1995-06-01' OR id = 300"
    job = _export(
        owner,
        people.connection(owner),
        tables=["public.people"],
        selections={("public", "people"): {"filter": condition}},
        options={"readers": 2},
    )
    data, run = _table(job, "people")
    [(expected,)] = people.execute(f"SELECT count(*) FROM people WHERE {condition}")
    assert data.num_rows == run.rows_expected == expected > 0
    ids = set(data.column("id").to_pylist())
    wanted = {i for (i,) in people.execute(f"SELECT id FROM people WHERE {condition}")}
    assert ids == wanted
    manifest = json.loads(job.manifest_path().read_text())
    # The manifest says what ran: the filter's tree as deparsed, not the text as typed.
    ran = manifest["tables"][0]["selection"]["filter"]
    assert ran == (
        "(city OPERATOR(pg_catalog.=) 'Rome' AND born OPERATOR(pg_catalog.<) "
        "CAST('1995-06-01' AS pg_catalog.date)) OR id OPERATOR(pg_catalog.=) 300"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("id >", "public.people: The filter does not parse: syntax error at end of input."),
        ("nosuch > 1", "The filter names nosuch, which is not a column of the table."),
        ("1=1; DROP TABLE people", "The filter holds 2 statements; write one condition."),
        ("id > 1) OR (true", "The filter does not parse: syntax error"),
        ("noisy()", "The filter calls noisy(), which is not on ADU's list of built-in functions"),
        ("nextval('counter') > 0", "calls nextval(), which is not on ADU's list"),
        ("random() < 0.5", "calls random(), which is not on ADU's list"),
        ("id IN (SELECT n FROM audit_log)", "The filter contains a subquery"),
    ],
)
def test_a_bad_filter_is_refused_before_the_job_and_changes_nothing(
    people, owner, condition, message
):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_job(
            owner,
            people.connection(owner),
            tables=["public.people"],
            selections={("public", "people"): {"filter": condition}},
        )
    assert people.execute("SELECT count(*) FROM audit_log") == [(0,)]
    assert people.execute("SELECT count(*) FROM people") == [(300,)]
    assert people.execute("SELECT last_value, is_called FROM counter") == [(1, False)]


@pytest.mark.django_db(transaction=True)
def test_hash_gives_the_same_token_across_tables_and_jobs_and_another_with_another_key(
    people, owner, settings
):
    connection = people.connection(owner)
    masks = {"email": {"method": "hash"}}
    selections = {("public", "people"): {"masks": masks}, ("public", "orders"): {"masks": masks}}
    tables = ["public.people", "public.orders"]
    site_key = settings.MASKING_KEY
    first = _export(owner, connection, tables=tables, selections=selections)
    second = _export(owner, connection, tables=tables, selections=selections)
    settings.MASKING_KEY = "another-site-key-" + "x" * 32
    third = _export(owner, connection, tables=tables, selections=selections)

    def tokens(job, table):
        data, _ = _table(job, table)
        return dict(
            zip(data.column("id").to_pylist(), data.column("email").to_pylist(), strict=True)
        )

    people_tokens, order_tokens = tokens(first, "people"), tokens(first, "orders")
    # orders.id i has the email of people.id (i % 50 + 1): the join still works.
    assert all(order_tokens[i] == people_tokens[i % 50 + 1] for i in order_tokens)
    assert tokens(second, "people") == people_tokens
    assert set(tokens(third, "people").values()).isdisjoint(people_tokens.values())
    token = people_tokens[1]
    assert len(token) == 64 and "example.org" not in token
    # By default the key is the connection's, derived from the site's.
    key = hmac.new(site_key.encode(), f"adu-connection-{connection.pk}".encode(), hashlib.sha256)
    expected = hmac.new(key.digest(), b"user1@example.org", hashlib.sha256).hexdigest()
    assert token == expected


@pytest.mark.django_db(transaction=True)
def test_tokens_differ_between_connections_unless_an_admin_chooses_the_sites_key(
    people, owner, admin_user, settings
):
    """An operator who controls one source must not hash guesses through it and look up
    the tokens of another connection's export."""
    selections = {("public", "people"): {"masks": {"email": {"method": "hash"}}}}
    tables = ["public.people"]
    mine, other = people.connection(owner), people.connection(owner, name="other")

    def emails(job):
        return set(_table(job, "people")[0].column("email").to_pylist())

    one = _export(owner, mine, tables=tables, selections=selections)
    two = _export(owner, other, tables=tables, selections=selections)
    assert emails(one).isdisjoint(emails(two))
    with pytest.raises(BadRequest, match="Only an ADU Admin may hash with the site's key"):
        create_job(owner, mine, tables=tables, selections=selections,
                   options={"masking_key": "site"})  # fmt: skip
    site = {"masking_key": "site"}
    a = _export(admin_user, mine, tables=tables, selections=selections, options=site)
    b = _export(admin_user, other, tables=tables, selections=selections, options=site)
    expected = hmac.new(settings.MASKING_KEY.encode(), b"user1@example.org", hashlib.sha256)
    assert emails(a) == emails(b) and expected.hexdigest() in emails(a)


@pytest.mark.django_db(transaction=True)
def test_a_job_key_gives_tokens_that_match_only_within_the_job(people, owner):
    connection = people.connection(owner)
    selections = {("public", "people"): {"masks": {"email": {"method": "hash"}}}}
    per_job = {"masking_key": "job"}
    one = _export(owner, connection, tables=["public.people"], selections=selections,
                  options=per_job)  # fmt: skip
    two = _export(owner, connection, tables=["public.people"], selections=selections,
                  options=per_job)  # fmt: skip
    a, _ = _table(one, "people")
    b, _ = _table(two, "people")
    assert set(a.column("email").to_pylist()).isdisjoint(b.column("email").to_pylist())


@pytest.mark.django_db(transaction=True)
def test_null_redact_and_truncate(people, owner):
    masks = {
        "ssn": {"method": "null"},
        "name": {"method": "redact"},
        "born": {"method": "truncate"},
        "salary": {"method": "truncate", "precision": -2},
    }
    job = _export(
        owner,
        people.connection(owner),
        tables=["public.people"],
        selections={("public", "people"): {"masks": masks}},
    )
    data, run = _table(job, "people")
    rows = {r["id"]: r for r in data.to_pylist()}
    assert all(r["ssn"] is None for r in rows.values())
    assert {r["name"] for r in rows.values()} == {"[redacted]"}
    assert all(r["born"].day == 1 for r in rows.values())
    [(born, salary)] = people.execute("SELECT born, salary FROM people WHERE id = 7")
    assert rows[7]["born"] == born.replace(day=1)
    assert rows[7]["salary"] == (salary // 100) * 100
    assert data.schema.field("ssn").metadata[b"adu.masking"] == b"null"
    columns = {c["name"]: c for c in run.columns}
    assert columns["salary"]["masking"] == {"method": "truncate", "precision": -2}
    # The source's NOT NULL on name is not claimed of a masked column: the table passed.
    assert run.validation["status"] == "passed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"columns": ["id", "nosuch"]}, "public.people has no column nosuch"),
        ({"masks": {"city": {"method": "scramble"}}}, "'scramble' is not a masking method"),
        ({"masks": {"city": {"method": "truncate"}}}, "truncate applies to dates"),
        ({"exclude": ["city"], "masks": {"city": {"method": "null"}}}, "city is masked but not"),
        ({"columns": ["id"], "exclude": ["id"]}, "no column is left to export"),
    ],
)
def test_a_bad_selection_is_refused_with_one_sentence(people, owner, selection, message):
    with pytest.raises(BadRequest, match=message):
        create_job(
            owner,
            people.connection(owner),
            tables=["public.people"],
            selections={("public", "people"): selection},
        )


@pytest.mark.django_db(transaction=True)
def test_sensitive_columns_never_leave_unmasked_unless_an_admin_allows_it(
    people, owner, admin_user
):
    connection = people.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*")
    SensitiveColumn.objects.create(connection=connection, pattern="*email*", action="hash")
    job = _export(owner, connection, tables=["public.people"])
    data, run = _table(job, "people")
    assert "ssn" not in data.column_names
    assert data.column("email")[0].as_py() != "user1@example.org"
    assert run.spec["sensitive"] == {
        "email": "sensitive (*email*): masked (hash)",
        "ssn": "sensitive (*ssn*): left out",
    }
    with pytest.raises(BadRequest, match="Only an ADU Admin may allow sensitive columns"):
        create_job(owner, connection, tables=["public.people"],
                   allow_sensitive=["public.people.ssn"])  # fmt: skip

    allowed = _export(
        admin_user, connection, tables=["public.people"], allow_sensitive=["public.people.ssn"]
    )
    data, run = _table(allowed, "people")
    assert data.column("ssn")[0].as_py() == "000-00-0001"
    assert run.spec["sensitive"]["ssn"] == "sensitive (*ssn*): allowed unmasked by root"
    event = AuditEvent.objects.get(action="job_create", object_id=str(allowed.pk))
    assert event.user == admin_user
    assert event.details["sensitive_allowed_unmasked"] == ["public.people.ssn"]


@pytest.mark.django_db(transaction=True)
def test_a_query_export_matches_the_query_value_by_value(people, owner):
    connection = people.connection(owner)
    sql = (
        "SELECT p.city, count(*) AS orders, sum(o.total) AS total, min(p.born) AS first_born "
        "FROM people p JOIN orders o ON o.email = p.email GROUP BY p.city"
    )
    query = SavedQuery.objects.create(connection=connection, name="by-city", sql=sql)
    job = _export(owner, connection, tables=["public.orders"], queries=[query])
    data, run = _table(job, "by-city")
    assert run.schema == "queries" and run.files[0]["path"] == "queries/by-city.parquet"
    # sum() of a numeric is an unconstrained numeric, which ADU keeps exactly as text.
    expected = {city: (n, str(total), born) for city, n, total, born in people.execute(sql)}
    got = {r["city"]: (r["orders"], r["total"], r["first_born"]) for r in data.to_pylist()}
    assert got == expected
    assert run.rows_expected == len(expected)
    manifest = json.loads(job.manifest_path().read_text())
    listed = {t["table"]: t["selection"] for t in manifest["tables"]}
    assert listed["by-city"]["query"] == sql


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM people", "The query is not a SELECT but DELETE"),
        ("WITH gone AS (DELETE FROM people RETURNING id) SELECT * FROM gone", "a DELETE"),
        ("SELECT 1; SELECT 2", "The query holds 2 statements"),
        ("SELECT nextval('counter')", "calls nextval()"),
        ("SELECT id, id FROM people", "several columns named id"),
        ("SELEC 1", "syntax error"),
    ],
)
def test_a_bad_query_is_refused_before_the_job_and_changes_nothing(people, owner, sql, message):
    connection = people.connection(owner)
    query = SavedQuery.objects.create(connection=connection, name="bad", sql=sql)
    with pytest.raises(BadRequest, match=message):
        create_job(owner, connection, queries=[query])
    assert people.execute("SELECT count(*) FROM people") == [(300,)]


@pytest.mark.django_db(transaction=True)
def test_the_command_takes_columns_filters_masks_and_queries(people, owner):
    import io

    from django.core.management import CommandError, call_command

    connection = people.connection(owner, name="hr")
    SavedQuery.objects.create(
        connection=connection, name="cities", sql="SELECT DISTINCT city FROM people"
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit:
        call_command(
            "adu_export", "hr", "--tables", "public.people,public.orders",
            "--columns", "public.people:id,email,born", "--exclude-columns", "public.orders:email",
            "--where", "public.people:id <= 10", "--mask", "public.people:email=hash",
            "--mask", "public.people:born=truncate", "--query", "cities",
            "--sync", "--json", "--as", "owner", stdout=out,
        )  # fmt: skip
    assert exit.value.code == 0
    result = json.loads(out.getvalue())
    rows = {t["table"]: t["rows"] for t in result["tables"]}
    assert rows == {"people": 10, "orders": 120, "cities": 3}
    job = ExportJob.objects.get(pk=result["job_id"])
    data, _ = _table(job, "people")
    assert data.column_names == ["id", "email", "born"]
    assert data.column("born")[0].as_py().day == 1
    for bad, message in [
        (["--columns", "public.people"], "--columns takes SCHEMA.TABLE:..."),
        (["--mask", "public.people:email"], "--mask takes SCHEMA.TABLE:COLUMN=METHOD"),
        (["--query", "nosuch"], "has no saved query 'nosuch'"),
        (["--where", "public.people:id = 1; DROP TABLE people"], "holds 2 statements"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("adu_export", "hr", "--tables", "public.people", *bad, "--as", "owner")


@pytest.mark.django_db(transaction=True)
def test_truncating_a_column_that_falls_back_to_text_fails_that_table_clearly(people, owner):
    people.execute("INSERT INTO people (id, name, born) VALUES (999, 'x', 'infinity')")
    job = _export(
        owner,
        people.connection(owner),
        tables=["public.people", "public.orders"],
        selections={("public", "people"): {"masks": {"born": {"method": "truncate"}}}},
    )
    assert job.tables.get(table="orders").status == "complete"
    [error] = job.errors.all()
    assert error.message.startswith(
        "Column born holds values that only text can carry exactly, so it cannot be masked"
    )
    assert not list(job.folder().rglob("people.parquet*"))
