"""Warnings when a re-export of a table looks very different from the last one."""

import io
import json

import pytest
from django.core.management import call_command

from exports.engine.run import run_job
from exports.jobs import create_job


def export(owner, connection):
    return run_job(create_job(owner, connection, tables=["public.t"]).pk)


@pytest.fixture
def table(source_db):
    source_db.execute(
        "CREATE TABLE t AS SELECT i, 'x' || i AS label FROM generate_series(1, 1000) i"
    )
    return source_db


@pytest.mark.django_db(transaction=True)
def test_a_first_export_has_no_warnings(owner, table):
    job = export(owner, table.connection(owner))
    assert job.tables.get().warnings == []


@pytest.mark.django_db(transaction=True)
def test_a_shrunken_reexport_warns(owner, table):
    connection = table.connection(owner)
    first = export(owner, connection)
    table.execute("DELETE FROM t WHERE i > 400")
    second = export(owner, connection)
    run = second.tables.get()
    assert run.status == "complete"
    assert [w["message"] for w in run.warnings] == [
        f"Rows fell from 1,000 to 400 (-60%) since job {first.pk}."
    ]
    manifest = json.loads(second.manifest_path().read_text())
    assert manifest["tables"][0]["warnings"] == run.warnings
    out = io.StringIO()
    call_command("adu_job", str(second.pk), "--as", "owner", stdout=out)
    assert "warning: Rows fell from 1,000 to 400" in out.getvalue()
    assert f"Job {second.pk} complete with warnings on 1 table(s)" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_growth_and_new_nulls_warn(owner, table):
    connection = table.connection(owner)
    export(owner, connection)
    table.execute("INSERT INTO t SELECT i, NULL FROM generate_series(1001, 4000) i")
    run = export(owner, connection).tables.get()
    checks = sorted(w["check"] for w in run.warnings)
    assert checks == ["nulls", "rows"]
    assert any("Nulls in column label rose from 0% to 75%" in w["message"] for w in run.warnings)


@pytest.mark.django_db(transaction=True)
def test_a_small_change_is_not_an_anomaly(owner, table):
    connection = table.connection(owner)
    export(owner, connection)
    table.execute("DELETE FROM t WHERE i > 900")
    assert export(owner, connection).tables.get().warnings == []


@pytest.mark.django_db(transaction=True)
def test_each_table_of_a_job_is_compared_with_its_own_last_export_on_its_connection(
    owner, source_db
):
    for name in ("a", "b", "c"):
        source_db.execute(f"CREATE TABLE {name} AS SELECT i FROM generate_series(1, 100) i")
    connection = source_db.connection(owner)
    other = source_db.connection(owner, name="other")

    def export_all(connection, *names):
        tables = [f"public.{n}" for n in names]
        return run_job(create_job(owner, connection, tables=tables, options={"parallel": 1}).pk)

    export_all(connection, "a", "b", "c")
    source_db.execute("DELETE FROM a WHERE i > 10")
    second = export_all(connection, "a", "b", "c")
    source_db.execute("INSERT INTO b SELECT generate_series(101, 1000)")
    source_db.execute("CREATE TABLE d AS SELECT 1 AS i")
    export_all(other, "b")  # another connection's export of b is no baseline
    third = export_all(connection, "a", "b", "c", "d")
    warnings = {r.table: [w["message"] for w in r.warnings] for r in third.tables.all()}
    assert warnings == {
        "a": [],  # 10 rows, as in the second export (not the first's 100)
        "b": [f"Rows grew from 100 to 1,000 (+900%) since job {second.pk}."],
        "c": [],
        "d": [],  # never exported before
    }
