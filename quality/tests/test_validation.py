"""Validation while exporting, against a real PostgreSQL: the source's constraints and rules."""

import json
from decimal import Decimal

import pyarrow as pa
import pytest

from exports.jobs import BadRequest, create_job
from exports.models import ExportJob
from quality import validation
from quality.models import Rule
from quality.validation import _comparisons


def _checks(run, **match):
    return [
        c for c in run.validation["checks"] if all(c[key] == value for key, value in match.items())
    ]


def _rule(connection, table, **fields):
    return Rule.objects.create(connection=connection, schema="public", table=table, **fields)


@pytest.fixture
def orders(source_db):
    source_db.execute(
        """
        CREATE TABLE orders (
            id integer PRIMARY KEY,
            amount numeric(10,2) NOT NULL CHECK (amount >= 0),
            status text CHECK (status IN ('new', 'paid', 'sent')),
            email text,
            day date,
            CONSTRAINT small CHECK (amount < 100000 AND length(email) < 200)
        );
        INSERT INTO orders
        SELECT i, i * 1.5, (ARRAY['new', 'paid', 'sent'])[1 + i % 3],
               CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || i || '@example.org' END,
               date '2024-01-01' + (i % 90)
        FROM generate_series(1, 500) i;
        CREATE TABLE other (id integer); INSERT INTO other VALUES (1), (2);
        """
    )
    return source_db


@pytest.mark.django_db(transaction=True)
def test_the_sources_constraints_are_checked_and_reported(orders, owner, export):
    job = export(orders.connection(owner), tables=["public.orders"], validation="full")
    assert job.status == ExportJob.Status.COMPLETE
    run = job.tables.get()
    report = run.validation
    assert report["mode"] == "full" and report["status"] == "passed"
    assert report["rows_checked"] == 500
    described = {(c["origin"], c["description"]): c["status"] for c in report["checks"]}
    assert described[("source: NOT NULL", "amount is never null")] == "passed"
    assert described[("source: CHECK orders_amount_check", "amount >= 0")] == "passed"
    assert described[("source: CHECK orders_status_check", "status in (new, paid, sent)")] == (
        "passed"
    )
    # Only the plain half of `small` can be checked on a file; that half is.
    assert described[("source: CHECK small", "amount < 100000")] == "passed"
    assert described[("source: PRIMARY KEY orders_pkey", "(id) is unique")] == "passed"
    assert described[("source: column type", "amount is decimal128(10, 2)")] == "passed"
    manifest = json.loads(job.manifest_path().read_text())
    assert manifest["tables"][0]["validation"]["status"] == "passed"


@pytest.mark.django_db(transaction=True)
def test_validation_off_checks_no_source_constraint(orders, owner, export):
    job = export(orders.connection(owner), tables=["public.orders"], validation="off")
    run = job.tables.get()
    assert run.validation["rows_checked"] == 0
    automatic = [c for c in run.validation["checks"] if c["origin"].startswith("source")]
    assert run.validation["mode"] == "off" and automatic == []


def test_an_unknown_validation_mode_is_refused(orders, owner, db):
    with pytest.raises(BadRequest, match="validation must be one of off, sample, full"):
        create_job(
            owner,
            orders.connection(owner),
            tables=["public.orders"],
            options={"validation": "most"},
        )


@pytest.mark.django_db(transaction=True)
def test_a_warning_rule_reports_up_to_20_examples_and_keeps_the_file(orders, owner, export):
    connection = orders.connection(owner)
    rule = _rule(connection, "orders", column="email", kind=Rule.Kind.NOT_NULL)
    job = export(connection, tables=["public.orders", "public.other"])
    assert job.status == ExportJob.Status.COMPLETE
    run = job.tables.get(table="orders")
    [check] = _checks(run, origin=f"rule {rule.pk}")
    assert check["status"] == "failed" and check["severity"] == "warning"
    assert check["failures"] == 50
    assert len(check["examples"]) == 20
    # Row positions count from 0 in the file's order; every 10th id has no email.
    assert all(e["value"] is None for e in check["examples"])
    assert run.validation["status"] == "passed with warnings"
    assert (job.folder() / run.files[0]["path"]).exists()
    assert any("email is never null" in w["message"] for w in run.warnings)


@pytest.mark.django_db(transaction=True)
def test_an_error_rule_fails_its_table_only_and_keeps_no_file(orders, owner, export):
    connection = orders.connection(owner)
    _rule(
        connection,
        "orders",
        column="amount",
        kind=Rule.Kind.RANGE,
        minimum="0",
        maximum="600",
        severity=Rule.Severity.ERROR,
    )
    job = export(connection, tables=["public.orders", "public.other"])
    assert job.status == ExportJob.Status.COMPLETE_WITH_ERRORS
    runs = {run.table: run for run in job.tables.all()}
    assert runs["other"].status == "complete"
    failed = runs["orders"]
    assert failed.status == "failed"
    assert not list(job.folder().rglob("orders.parquet*"))
    [error] = job.errors.filter(table_run=failed)
    assert error.message.startswith("Validation failed: amount between 0 and 600 (rule ")
    assert "100 row(s), e.g. row id=401: " in error.message
    assert error.context["phase"] == "validate"
    assert error.traceback == ""  # an expected outcome, explained by the report: no traceback
    [check] = _checks(failed, check="range")
    assert check["failures"] == 100
    assert {e["value"] for e in check["examples"]} <= {f"{i * 1.5:.2f}" for i in range(401, 501)}


@pytest.mark.django_db(transaction=True)
def test_no_gaps_finds_a_missing_month(source_db, owner, export):
    source_db.execute(
        "CREATE TABLE sales (day date, total integer);"
        "INSERT INTO sales SELECT d, 1 FROM generate_series(date '2024-01-01',"
        " date '2024-12-31', interval '1 day') d WHERE extract(month FROM d) <> 4;"
    )
    connection = source_db.connection(owner)
    _rule(connection, "sales", column="day", kind=Rule.Kind.NO_GAPS, grain=Rule.Grain.MONTH)
    _rule(connection, "sales", column="day", kind=Rule.Kind.NO_GAPS, grain=Rule.Grain.DAY)
    run = export(connection, tables=["public.sales"]).tables.get()
    month, day = _checks(run, check="no_gaps")
    assert month["failures"] == 1 and month["examples"] == [{"row": None, "value": "2024-04"}]
    assert day["failures"] == 30
    assert day["examples"][0]["value"] == "2024-04-01"
    assert "between 2024-01-01 and 2024-12-31" in day["note"]


@pytest.mark.django_db(transaction=True)
def test_uniqueness_spans_chunks_and_rules_see_every_row_in_sample_mode(
    source_db, owner, export, monkeypatch
):
    monkeypatch.setattr(validation, "SAMPLE_CHUNKS", 2)
    rows = validation.CHUNK_ROWS * 3
    source_db.execute(
        f"CREATE TABLE events (id bigint, code text);"
        f"INSERT INTO events SELECT i, 'c' || i FROM generate_series(1, {rows}) i;"
        f"INSERT INTO events VALUES (5, 'again'), (NULL, 'x'), (NULL, 'y');"
    )
    connection = source_db.connection(owner)
    unique = _rule(connection, "events", column="id", kind=Rule.Kind.UNIQUE)
    pattern = _rule(connection, "events", column="code", kind=Rule.Kind.REGEX, pattern=r"^c\d+$")
    job = export(connection, tables=["public.events"], readers=1)
    run = job.tables.get()
    [dup] = _checks(run, origin=f"rule {unique.pk}")
    assert dup["failures"] == 1  # NULLs are not duplicates of each other
    assert dup["examples"] == [{"row": rows, "value": 5}]  # no primary key: its place
    assert validation.example_text(dup["examples"][0]) == f"row {rows + 1:,} of the file: 5"
    [regex] = _checks(run, origin=f"rule {pattern.pk}")
    assert regex["failures"] == 3
    assert [e["value"] for e in regex["examples"]] == ["again", "x", "y"]
    # The automatic checks saw a sample, the rules every row.
    assert 0 < run.validation["rows_checked"] < rows


@pytest.mark.django_db(transaction=True)
def test_a_rule_whose_column_is_gone_is_not_applicable(source_db, owner, export):
    source_db.execute("CREATE TABLE t (a integer, b integer); INSERT INTO t VALUES (1, 2);")
    connection = source_db.connection(owner)
    gone_rule = _rule(
        connection, "t", column="b", kind=Rule.Kind.NOT_NULL, severity=Rule.Severity.ERROR
    )
    _rule(connection, "t", kind=Rule.Kind.MIN_ROWS, min_rows=10)
    source_db.execute("ALTER TABLE t DROP COLUMN b;")
    run = export(connection, tables=["public.t"]).tables.get()
    assert run.status == "complete"
    [gone] = _checks(run, check="not_null", origin=f"rule {gone_rule.pk}")
    [count] = _checks(run, check="min_rows")
    assert gone["status"] == "not applicable"
    assert gone["note"].startswith("column b is not in this export")
    assert count["status"] == "failed" and count["severity"] == "warning"
    assert any("the table has 1 rows" in w["message"] for w in run.warnings)


@pytest.mark.parametrize(
    ("definition", "column", "arrow_type", "expected"),
    [
        ("CHECK ((amount >= (0)::numeric))", "amount", pa.decimal128(10, 2), [(">=", 0)]),
        ("CHECK ((qty > '-5'::integer))", "qty", pa.int32(), [(">", -5)]),
        (
            "CHECK (((a >= 1) AND (a <= 9) AND (b < 3)))",
            "a",
            pa.int64(),
            [(">=", 1), ("<=", 9)],
        ),
        (
            "CHECK ((s = ANY (ARRAY['x'::text, 'it''s'::text])))",
            "s",
            pa.string(),
            [("in", ["x", "it's"])],
        ),
        ('CHECK (("Odd Name" <> 0))', "Odd Name", pa.int32(), [("<>", 0)]),
        ("CHECK (((a > 0) OR (a < -10)))", "a", pa.int32(), []),
        ("CHECK ((length(s) < 5))", "s", pa.string(), []),
        (
            "CHECK ((d > '2020-01-01'::date))",
            "d",
            pa.date32(),
            [(">", __import__("datetime").date(2020, 1, 1))],
        ),
        ("CHECK ((a < b))", "a", pa.int32(), []),
    ],
)
def test_check_constraints_translate_only_when_plain(definition, column, arrow_type, expected):
    assert _comparisons(definition, column, arrow_type) == expected


@pytest.mark.django_db(transaction=True)
def test_the_report_is_in_adu_job_the_job_page_and_the_admin(
    orders, owner, admin_user, export, client
):
    import io

    from django.core.management import call_command

    connection = orders.connection(owner)
    _rule(connection, "orders", column="status", kind=Rule.Kind.ALLOWED, allowed_values=["new"])
    job = export(connection, tables=["public.orders"], validation="full")
    run = job.tables.get()

    out = io.StringIO()
    call_command("adu_job", str(job.pk), "--as", "owner", stdout=out)
    text = out.getvalue()
    assert "validation: passed with warnings (full: source constraints on 500 of 500 rows;" in text
    assert "failed: status in (new) (rule " in text and ": 334 failure(s)" in text
    # Rows are named by their primary key: a position in the file means nothing at the source.
    assert 'e.g. row id=1: "paid"; row id=2: "sent"; row id=4: "paid"' in text
    assert "complete with warnings on 1 table(s)" in text

    out = io.StringIO()
    call_command("adu_job", str(job.pk), "--as", "owner", "--json", stdout=out)
    [table] = json.loads(out.getvalue())["tables"]
    [check] = [c for c in table["validation"]["checks"] if c["check"] == "allowed"]
    assert len(check["examples"]) == 20
    assert check["examples"][0] == {"row": 0, "value": "paid", "key": {"id": 1}}

    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "passed only with warnings on 1 table" in page
    assert "Validation of public.orders: passed with warnings" in page
    assert "<code>row id=1: &quot;paid&quot;</code>" in page

    client.force_login(admin_user)
    page = client.get(f"/admin/exports/tablerun/{run.pk}/change/").content.decode()
    assert "status in (new)" in page and "0: paid" in page


def _null_in_a_keyed_table(masked=()):
    schema = pa.schema([("a", pa.int32()), ("b", pa.string()), ("v", pa.int64())])
    validator = validation.Validator(
        schema,
        {"a": False, "b": False, "v": False},
        [{"kind": "primary key", "name": "pk", "columns": ["a", "b"]}],
        [],
        mode="full",
        masked=set(masked),
    )
    validator.update(pa.record_batch([[1, 1, 2], ["x", "y", "x"], [10, None, 30]], schema=schema))
    report = validator.finish(3)
    [check] = [c for c in report["checks"] if c["check"] == "not_null" and c["column"] == "v"]
    return check


def test_examples_name_their_row_by_a_primary_key_of_several_columns():
    check = _null_in_a_keyed_table()
    assert check["examples"] == [{"row": 1, "value": None, "key": {"a": 1, "b": "y"}}]
    assert validation.example_text(check["examples"][0]) == 'row (a, b)=(1, "y"): null'
    assert validation.Check(**check).summary() == '1 row(s), e.g. row (a, b)=(1, "y"): null'


def test_a_masked_key_names_no_row_and_its_place_in_the_file_does():
    check = _null_in_a_keyed_table(masked={"b"})
    assert check["examples"] == [{"row": 1, "value": None}]
    assert validation.example_text(check["examples"][0]) == "row 2 of the file: null"


@pytest.mark.parametrize(
    "a, b, failures",
    [
        ([1, 2, 3], ["x", "x", "x"], 0),
        ([1, 2, 1], ["x", "x", "x"], 1),  # (1, x) twice
        ([None, None, 1], ["x", "x", "x"], 0),  # NULLs are never duplicates
        ([None, None, 1, 1], ["x", "x", "y", "y"], 1),
    ],
)
def test_a_table_of_one_chunk_finds_its_repeated_keys_exactly(a, b, failures):
    # Most tables of a schema are one chunk: checked without keeping hashes, but alike.
    schema = pa.schema([("a", pa.int32()), ("b", pa.string())])
    validator = validation.Validator(
        schema, {"a": True, "b": True}, [{"kind": "unique", "name": "u", "columns": ["a", "b"]}],
        [], mode="full",
    )  # fmt: skip
    validator.update(pa.record_batch([a, b], schema=schema))
    report = validator.finish(len(a))
    [check] = [c for c in report["checks"] if c["check"] == "unique"]
    assert check["failures"] == failures


def _uuids(*numbers: int) -> pa.Array:
    return pa.ExtensionArray.from_storage(
        pa.uuid(), pa.array([n.to_bytes(16, "big") for n in numbers], pa.binary(16))
    )


_ONE_CHUNK_TABLES = {
    # name: (columns {name: (arrow type, values)}, NOT NULL columns, constraints)
    "distinct int key": ({"id": (pa.int64(), [1, 2, 3])}, ["id"], [("primary key", ["id"])]),
    "repeated int key": ({"id": (pa.int64(), [1, 2, 1])}, ["id"], [("primary key", ["id"])]),
    "repeated text key": ({"k": (pa.string(), ["é", "b", "é"])}, ["k"], [("primary key", ["k"])]),
    "repeated decimal key": (
        {"k": (pa.decimal128(10, 2), [Decimal("1.10"), Decimal("1.1"), Decimal("2")])},
        ["k"],
        [("primary key", ["k"])],
    ),
    "repeated pair": (
        {"a": (pa.int32(), [1, 1, 2, 1]), "b": (pa.string(), ["x", "y", "x", "x"])},
        ["a", "b"],
        [("primary key", ["a", "b"])],
    ),
    "distinct pair": (
        {"a": (pa.int32(), [1, 1, 2]), "b": (pa.string(), ["x", "y", "x"])},
        ["a", "b"],
        [("primary key", ["a", "b"])],
    ),
    "distinct uuid key": ({"u": (pa.uuid(), _uuids(1, 2, 3))}, ["u"], [("primary key", ["u"])]),
    "repeated uuid key": ({"u": (pa.uuid(), _uuids(1, 2, 1))}, ["u"], [("primary key", ["u"])]),
    "nulls in a unique column": ({"u": (pa.int64(), [None, None, 1])}, [], [("unique", ["u"])]),
    "a null where none may be": ({"id": (pa.int64(), [1, None, 3])}, ["id"], []),
    "a check constraint broken": (
        {"q": (pa.int64(), [1, -1, 3])},
        ["q"],
        [("check", "CHECK ((q > 0))")],
    ),
    "no constraint": ({"t": (pa.string(), ["a", "a", None])}, [], []),
}


def _one_chunk_report(columns, not_null, constraints):
    schema = pa.schema([(name, arrow_type) for name, (arrow_type, _) in columns.items()])
    validator = validation.Validator(
        schema,
        {name: name not in not_null for name in columns},
        [
            {"kind": kind, "name": f"c{n}", "columns": what}
            if kind != "check"
            else {"kind": kind, "name": f"c{n}", "definition": what, "columns": []}
            for n, (kind, what) in enumerate(constraints)
        ],
        [],
        mode="sample",
        rows_estimate=3,
    )
    validator.update(pa.record_batch([values for _, values in columns.values()], schema=schema))
    return validator.finish(len(next(iter(columns.values()))[1]))


@pytest.mark.parametrize("table", _ONE_CHUNK_TABLES)
def test_a_table_of_one_chunk_told_valid_by_arrow_alone_gets_the_report_polars_gives(
    table, monkeypatch
):
    """A table read in one chunk that Arrow finds valid at once is not handed to polars; one
    it does not is checked as any other. Either way the report is the same."""
    told = []
    real = validation._whole_and_plainly_valid
    monkeypatch.setattr(
        validation, "_whole_and_plainly_valid", lambda *a: told.append(real(*a)) or told[-1]
    )
    fast = _one_chunk_report(*_ONE_CHUNK_TABLES[table])
    monkeypatch.setattr(validation, "_whole_and_plainly_valid", lambda *a: False)
    slow = _one_chunk_report(*_ONE_CHUNK_TABLES[table])
    assert fast == slow
    # Told from Arrow alone when valid, but for a key with a NULL (polars tells NULLs apart).
    assert told == [fast["status"] == "passed" and table != "nulls in a unique column"]
    assert fast["rows_checked"] == fast["rows"] > 0


def test_a_valid_table_of_one_chunk_is_not_handed_to_polars(monkeypatch):
    def no_polars(table):
        raise AssertionError("a frame was built")

    monkeypatch.setattr(validation, "_frame", no_polars)
    report = _one_chunk_report(*_ONE_CHUNK_TABLES["distinct pair"])
    assert report["status"] == "passed"
    assert {c["status"] for c in report["checks"]} == {"passed"}


def _sampled_chunks(chunks: int, **size) -> int:
    """How many of `chunks` full chunks a sample-mode Validator checks."""
    schema = pa.schema([("id", pa.int64())])
    validator = validation.Validator(schema, {"id": False}, [], [], mode="sample", **size)
    batch = pa.record_batch([pa.array(range(validation.CHUNK_ROWS), pa.int64())], schema=schema)
    for _ in range(chunks):
        validator.update(batch)
    validator.finish(chunks * validation.CHUNK_ROWS)
    return validator.rows_checked // validation.CHUNK_ROWS


def test_a_sample_spreads_over_the_estimate_until_the_count_is_known():
    # As many chunks as the sample takes: all of them, as the estimate (ANALYZE) says.
    assert _sampled_chunks(8, rows_estimate=8 * validation.CHUNK_ROWS) == 8
    # Twice as many: one in two.
    assert _sampled_chunks(16, rows_estimate=16 * validation.CHUNK_ROWS) == 8
    # No estimate (a query, a table never analyzed): chunks 0, 1, 2, 4, 8 and 16 of 20,
    # not the first alone; and never more than the sample's size.
    assert _sampled_chunks(20) == 6
    assert _sampled_chunks(1000) == validation.SAMPLE_CHUNKS


@pytest.mark.django_db(transaction=True)
def test_a_table_proven_by_its_copy_is_sampled_over_its_whole_length(source_db, owner, export):
    rows = validation.CHUNK_ROWS * 3
    source_db.execute(f"CREATE TABLE t AS SELECT i FROM generate_series(1, {rows}) i; ANALYZE t")
    run = export(source_db.connection(owner), tables=["public.t"], readers=1).tables.get()
    assert run.rows_proof == "sent"
    assert run.validation["rows_checked"] == rows  # three chunks: all in the sample of 8
