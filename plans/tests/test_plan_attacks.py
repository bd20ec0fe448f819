"""A plan as an attacker writes one: what it carries (watermarks, filters, masks, names, a
connection) is refused with a sentence, or taken as data, never as SQL; the source's tables
are as they were, and no value leaves that a policy keeps."""

import json

import pyarrow.parquet as pq
import pytest

from connections.models import SensitiveColumn
from exports.engine.run import run_job
from exports.models import ExportJob
from plans import runs
from plans.models import ExportPlan, PlanRefused

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "SECRET-4B1D"


def in_process(job):
    run_job(job.pk)


@pytest.fixture
def source(source_db):
    source_db.execute(
        'CREATE TABLE w (id int, ssn text, "we""ird $$ col" int);'
        f"INSERT INTO w VALUES (1, '{SECRET}', 10), (2, '{SECRET}', 20);"
        "CREATE TABLE hidden (v text); INSERT INTO hidden VALUES ('HIDDEN-9C2E');"
    )
    return source_db


def untouched(source_db):
    assert source_db.execute("SELECT count(*) FROM w") == [(2,)]
    assert source_db.execute("SELECT v FROM hidden") == [("HIDDEN-9C2E",)]


@pytest.fixture
def connection(source, owner):
    return source.connection(owner)


def plan_of(connection, owner, **fields):
    defaults = {"name": "p", "every_minutes": 60, "definition": {"tables": ["public.w"]}}
    return ExportPlan.create(owner=owner, connection=connection, **{**defaults, **fields})


def rows_of(job: ExportJob) -> list[dict]:
    manifest = json.loads((job.folder() / "manifest.json").read_text())
    table = next(t for t in manifest["tables"] if t["table"] == "w")
    return [r for f in table["files"] for r in pq.read_table(job.folder() / f["path"]).to_pylist()]


@pytest.mark.parametrize(
    "lag",
    [
        "1); DELETE FROM w; --",
        "0' ; DROP TABLE hidden; --",
        "$$ 1 $$",
        "(SELECT count(*) FROM hidden)",
        "pg_sleep(5)",
        "1 /* */ day",
    ],
)
def test_a_watermark_lag_that_is_not_a_number_or_duration_is_refused_at_once(
    source, connection, owner, lag
):
    with pytest.raises(PlanRefused, match="needs a column and a lag") as refused:
        plan_of(connection, owner, watermarks={"public.w": {"column": "id", "lag": lag}})
    assert refused.value.field == "watermarks"
    assert not ExportPlan.objects.exists()
    untouched(source)


@pytest.mark.parametrize(
    "column",
    [
        'id"; DELETE FROM w; --',
        "id) FROM w; DROP TABLE hidden; --",
        "$$id$$",
        "(SELECT max(length(v)) FROM hidden)",
        "id /* comment */",
    ],
)
def test_a_watermark_column_is_a_name_of_the_table_never_sql(source, connection, owner, column):
    plan = plan_of(connection, owner, watermarks={"public.w": {"column": column, "lag": "0"}})
    run = runs.run_plan(plan, start=in_process)
    job = ExportJob.objects.get(pk=run.job_id)
    assert job.status == "failed"
    assert "is not a column of this table" in job.errors.get().message
    untouched(source)


def test_a_column_named_with_quotes_and_dollars_is_a_watermark_like_any_other(
    source, connection, owner
):
    plan = plan_of(
        connection,
        owner,
        definition={"tables": ["public.w"], "exclude": []},
        watermarks={"public.w": {"column": 'we"ird $$ col', "lag": "5"}},
    )
    run = runs.run_plan(plan, start=in_process)
    job = ExportJob.objects.get(pk=run.job_id)
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    assert sorted(r["id"] for r in rows_of(job)) == [1]  # up to max 20 less the lag 5
    untouched(source)


@pytest.mark.parametrize(
    "row_filter, rows",
    [
        ("id = 1; DELETE FROM w", None),
        ("id = 1) OR (SELECT count(*) FROM hidden) > 0 OR (id = 2", None),
        ("id IN (SELECT length(v) FROM hidden)", None),
        ("id = (SELECT 1 FROM w LIMIT 1) OR pg_sleep(1) IS NULL", None),
        # Quoting and comments are only text: the condition is what the parser reads.
        ("id = $$2$$::int", [2]),
        ("id = 1 -- OR true", [1]),
        ("id = 1 /* OR true */", [1]),
    ],
)
def test_a_plans_filter_is_one_condition_on_its_table_or_a_sentence(
    source, connection, owner, row_filter, rows
):
    plan = plan_of(
        connection,
        owner,
        definition={"tables": ["public.w"], "selections": {"public.w": {"filter": row_filter}}},
    )
    run = runs.run_plan(plan, start=in_process)
    if rows is not None:
        job = ExportJob.objects.get(pk=run.job_id)
        assert job.status == "complete"
        assert sorted(r["id"] for r in rows_of(job)) == rows
    elif run.outcome == "refused":
        assert run.note and "Traceback" not in run.note
    else:
        job = ExportJob.objects.get(pk=run.job_id)
        assert job.status == "failed"
        message = job.errors.get().message
        assert "Traceback" not in message and "HIDDEN" not in message
    for path in run.job.folder().rglob("*") if run.job_id else []:
        assert not path.is_file() or b"HIDDEN-9C2E" not in path.read_bytes()
    untouched(source)


@pytest.mark.parametrize("weaker", ["redact", "null", "hash"])
def test_a_plans_mask_does_not_weaken_a_policy_that_leaves_the_column_out(
    source, connection, owner, weaker
):
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*")
    plan = plan_of(
        connection,
        owner,
        definition={
            "tables": ["public.w"],
            "selections": {"public.w": {"masks": {"ssn": {"method": weaker}}}},
        },
    )
    run = runs.run_plan(plan, start=in_process)
    assert run.outcome == "refused" and run.job_id is None
    assert "its policy (*ssn*) asks for 'exclude', and a mask may only be as strong" in run.note


def test_a_plan_cannot_allow_a_sensitive_column_for_a_user_who_is_not_an_admin(
    source, connection, owner
):
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*")
    plan = plan_of(
        connection, owner, definition={"tables": ["public.w"], "allow_sensitive": ["public.w.ssn"]}
    )
    run = runs.run_plan(plan, start=in_process)
    assert run.outcome == "refused"
    assert "Only an ADU Admin may allow sensitive columns" in run.note
    assert run.job_id is None


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "p\x00x", "x" * 65])
def test_a_plan_name_that_would_make_a_path_is_refused(source, connection, owner, name):
    with pytest.raises(PlanRefused) as refused:
        plan_of(connection, owner, name=name)
    assert refused.value.field == "name"
    assert not ExportPlan.objects.exists()
