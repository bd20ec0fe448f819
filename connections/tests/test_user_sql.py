"""The parser-level check of filters and queries (connections.drivers.user_sql): no server."""

import pytest

from connections.drivers import BadSelection, user_sql

COLUMNS = ["id", "name", "city", "born", "tags", "total"]


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("id IN (1, 2)", "id OPERATOR(pg_catalog.=) ANY(ARRAY[1, 2])"),
        ("id NOT IN (1, 2)", "id OPERATOR(pg_catalog.<>) ALL(ARRAY[1, 2])"),
        (
            "city LIKE 'R%' AND NOT name ILIKE 'x'",
            "city OPERATOR(pg_catalog.~~) 'R%' AND NOT name OPERATOR(pg_catalog.~~*) 'x'",
        ),
        (
            "name SIMILAR TO 'a|b'",
            "name OPERATOR(pg_catalog.~) pg_catalog.similar_to_escape('a|b')",
        ),
        (
            "id BETWEEN 1 AND 2 OR total IS NULL",
            "(id OPERATOR(pg_catalog.>=) 1 AND id OPERATOR(pg_catalog.<=) 2) OR total IS NULL",
        ),
        ("lower(name) = 'x'", "pg_catalog.lower(name) OPERATOR(pg_catalog.=) 'x'"),
        ("extract(year FROM born) = 2020", "EXTRACT(YEAR FROM born) OPERATOR(pg_catalog.=) 2020"),
        ("born > current_date - interval '1 day'", None),
        (
            "coalesce(total, 0) > nullif(id, 1)",
            "COALESCE(total, 0) OPERATOR(pg_catalog.>) "
            "CASE WHEN id OPERATOR(pg_catalog.=) 1 THEN NULL ELSE id END",
        ),
        (
            "CASE city WHEN 'Rome' THEN 1 END = 1",
            "CASE WHEN city OPERATOR(pg_catalog.=) 'Rome' THEN 1 END OPERATOR(pg_catalog.=) 1",
        ),
        ("CASE WHEN id > 1 THEN 'a' ELSE 'b' END = 'a'", None),
        ("tags[1] = 'x' AND id = ANY(ARRAY[1, 2])", None),
        ("name = $$it's; DELETE FROM t$$", "name OPERATOR(pg_catalog.=) 'it''s; DELETE FROM t'"),
        ("name = E'a\\'b' -- a comment", "name OPERATOR(pg_catalog.=) 'a''b'"),
        ("name = U&'d\\0061t'", "name OPERATOR(pg_catalog.=) 'dat'"),
        ("total::numeric(10, 2) > 1", "CAST(total AS numeric(10, 2)) OPERATOR(pg_catalog.>) 1"),
    ],
)
def test_an_allowed_filter_is_sent_as_its_tree_written_back(text, sent):
    checked = user_sql.check_filter(text, COLUMNS)
    if sent:
        assert checked.sql == sent
    # What is sent parses to the same tree again.
    assert user_sql.check_filter(checked.sql, COLUMNS).sql == checked.sql


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("id = 1; DELETE FROM t", "The filter holds 2 statements; write one condition."),
        ("name = E'\\''; ROLLBACK; DELETE FROM t; --", "holds 3 statements"),
        ("name = $$x$$; COMMIT; DROP TABLE t", "holds 3 statements"),
        ("id = (SELECT 1)", "The filter contains a subquery"),
        ("EXISTS (SELECT 1 FROM t)", "contains a subquery"),
        ("query_to_xml('select * from t', true, true, '') IS NOT NULL", "calls query_to_xml()"),
        ("table_to_xml('t', true, true, '') IS NOT NULL", "calls table_to_xml()"),
        ("pg_read_file('/etc/passwd') = ''", "calls pg_read_file()"),
        ("set_config('default_transaction_read_only', 'off', false) = ''", "calls set_config()"),
        ("current_setting('data_directory') = ''", "calls current_setting()"),
        ("lo_export(1, '/tmp/x') = 1", "calls lo_export()"),
        ("public.lower(name) = 'x'", "calls public.lower()"),
        ("repeat(name, 100000000) = ''", "calls repeat()"),
        ("count(*) > 1", "calls count()"),
        ("id::regclass = 1", "casts to regclass"),
        ("id OPERATOR(public.=) 1", "uses the operator public.="),
        ("t.id = 1", "names a column with its table"),
        ("current_user = 'x'", "reads current_user"),
        ("1 FROM t", "is one condition, not a list or a query"),
        ("1 UNION SELECT 2", "is one condition, not a list or a query"),
        ("id, name", "is one condition, not a list or a query"),
        ("nosuch > 1", "The filter names nosuch, which is not a column of the table."),
        ("id >", "The filter does not parse: syntax error at end of input."),
        ("", "The filter is empty."),
        ("id = $1", "contains a parameter ($1)"),
        ("name COLLATE \"C\" = 'x'", "contains COLLATE"),
        ("id IS DISTINCT FROM 1", "uses IS [NOT] DISTINCT FROM"),
        ("id BETWEEN SYMMETRIC 2 AND 1", "uses BETWEEN SYMMETRIC"),
        ("name = 'a\nb", "The filter does not parse: unterminated quoted string"),
    ],
)
def test_a_refused_filter_gets_one_sentence_naming_the_part(text, refusal):
    with pytest.raises(BadSelection) as refused:
        user_sql.check_filter(text, COLUMNS)
    message = str(refused.value)
    assert refusal in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM people",
        "SELECT a AS x FROM s.t JOIN u ON u.id = t.id WHERE b > 1 ORDER BY 1 LIMIT 5",
        "SELECT city, count(*), sum(total) OVER (PARTITION BY city) FROM t GROUP BY city",
        "WITH x AS (SELECT id FROM t) SELECT * FROM x WHERE id IN (SELECT id FROM u)",
        "SELECT a FROM t UNION ALL SELECT b FROM u",
        "TABLE people",
    ],
)
def test_an_allowed_query_round_trips(text):
    checked = user_sql.check_query(text)
    assert user_sql.check_query(checked.sql).sql == checked.sql


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("DELETE FROM t", "The query is not a SELECT but DELETE"),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", "a DELETE statement in its WITH"),
        ("SELECT 1; DROP TABLE t", "The query holds 2 statements"),
        ("SELECT * INTO z FROM t", "creates a table (SELECT INTO)"),
        ("SELECT * FROM t FOR UPDATE", "locks rows"),
        ("SELECT * FROM generate_series(1, 3)", "a function in FROM"),
        ("SELECT * FROM pg_catalog.pg_authid", "reads the system catalog"),
        ("SELECT * FROM information_schema.tables", "reads the system catalog"),
        ("SELECT query_to_xml('select 1', true, true, '')", "calls query_to_xml()"),
        ("SELECT * FROM t TABLESAMPLE SYSTEM (1)", "contains TABLESAMPLE"),
        ("SELECT nextval('s')", "calls nextval()"),
        ("EXPLAIN ANALYZE DELETE FROM t", "not a SELECT but EXPLAIN"),
        ("SELECT * FROM t JOIN u USING (id)", "joins with USING or NATURAL"),
        ("SELECT * FROM t NATURAL JOIN u", "joins with USING or NATURAL"),
        ("SELECT * FROM t ORDER BY a USING <", "sorts with USING an operator"),
    ],
)
def test_a_refused_query_gets_one_sentence_naming_the_part(text, refusal):
    with pytest.raises(BadSelection, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        user_sql.check_query(text)
