"""One account of a job's tables and rows (ExportJob.progress), the same on every page, in
the API and in the commands; the history's live table; flash messages that end with the
state they announce."""

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from exports.job_display import job_data
from exports.models import ExportJob, TableRun


@pytest.fixture
def job(owner, source_db):
    connection = source_db.connection(owner)
    tables = [("public", name) for name in ("a", "b", "c")]
    job = ExportJob.create_with_tables(owner, connection, tables, options={})
    job.set_status(ExportJob.Status.RUNNING)
    return job


def _set(job, **states):
    """_set(job, a=(status, rows_expected, rows_written, bytes_written), ...)"""
    for run in job.tables.all():
        if run.table in states:
            run.status, run.rows_expected, run.rows_written, run.bytes_written = states[run.table]
            run.save()


@pytest.mark.django_db
def test_each_table_counts_in_exactly_one_state_and_cancelled_is_not_complete(job):
    _set(job, a=("complete", 10, 10, 100), b=("cancelled", 10, 4, 40), c=("failed", 10, 2, 20))
    progress = job.progress()
    assert {name: progress[f"tables_{name}"] for name in TableRun.Status.values} == {
        "queued": 0, "running": 0, "complete": 1, "failed": 1, "cancelled": 1,
    }  # fmt: skip
    assert progress["tables_total"] == 3
    # The stopped tables' files were removed: their rows and bytes count nowhere.
    assert (progress["rows_written"], progress["bytes_written"]) == (10, 100)
    assert progress["rows_expected"] == 10


@pytest.mark.django_db
def test_the_totals_take_one_query_however_many_tables(job, django_assert_num_queries):
    _set(job, a=("complete", 7, 7, 70), b=("complete", 9, 9, 90), c=("failed", 9, 3, 30))
    # Not a query per table (a deferred job_id once cost one for each).
    with django_assert_num_queries(1):
        job.update_totals()
    assert (job.tables_total, job.tables_complete, job.rows_written) == (3, 2, 16)


@pytest.mark.django_db
def test_adu_jobs_counts_a_running_job_as_the_portal_does(job):
    _set(job, a=("complete", 7, 7, 70), b=("running", 9, 4, 40), c=("failed", 9, 3, 30))
    out = io.StringIO()
    call_command("adu_jobs", "--json", "--as", "owner", stdout=out)
    [listed] = json.loads(out.getvalue())
    progress = job.progress()
    assert (listed["tables_complete"], listed["tables_failed"], listed["rows"]) == (1, 1, 11)
    assert listed["tables_total"] == progress["tables_total"] == 3
    assert (listed["rows"], listed["bytes"]) == (
        progress["rows_written"],
        progress["bytes_written"],
    )


@pytest.mark.django_db
def test_adu_jobs_counts_no_one_elses_job(job, outsider):
    _set(job, a=("complete", 7, 7, 70), b=("running", 9, 4, 40))
    out = io.StringIO()
    call_command("adu_jobs", "--json", "--as", "outsider", stdout=out)
    assert json.loads(out.getvalue()) == []
    out = io.StringIO()
    call_command("adu_jobs", "--status", "running", "--as", "outsider", stdout=out)
    assert out.getvalue().strip() == "No jobs."


@pytest.mark.django_db
def test_the_bar_is_not_full_while_a_table_has_written_nothing(job):
    _set(job, a=("complete", 1000, 1000, 1), b=("running", None, 0, 0), c=("complete", 5, 5, 1))
    progress = job.progress()
    assert progress["percent"] < 100
    assert progress["rows_expected"] is None  # b is still being counted
    assert progress["rows_written"] == 1005
    _set(job, b=("running", 1000, 1000, 1))
    assert job.progress()["percent"] == 99  # written, not yet finished
    assert TableRun.objects.get(table="b").percent == 99


@pytest.mark.django_db
def test_a_finished_job_is_at_100_percent_and_stores_the_same_totals(job):
    _set(job, a=("complete", 7, 7, 70), b=("failed", 9, 3, 30), c=("cancelled", None, 0, 0))
    job.update_totals()
    job.set_status(ExportJob.Status.COMPLETE_WITH_ERRORS)
    progress = job.progress()
    assert progress["percent"] == 100 and progress["eta_seconds"] is None
    stored = (job.tables_total, job.tables_complete, job.tables_failed, job.rows_written)
    assert (
        stored
        == (3, 1, 1, 7)
        == tuple(
            progress[name]
            for name in ("tables_total", "tables_complete", "tables_failed", "rows_written")
        )
    )
    assert job_data(job)["progress"]["tables_cancelled"] == 1


@pytest.mark.django_db
def test_the_history_costs_the_same_queries_for_more_jobs(
    client, owner, job, django_assert_max_num_queries
):
    client.force_login(owner)
    with django_assert_max_num_queries(20) as few:
        client.get(reverse("job_list"))
    for _ in range(4):
        ExportJob.create_with_tables(owner, job.connection, [("public", "a"), ("public", "b")], {})
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("job_list"))


@pytest.mark.django_db
def test_the_history_polls_only_while_a_job_it_shows_is_unfinished(client, owner, outsider, job):
    client.force_login(owner)
    rows = client.get(reverse("job_list_rows") + "?status=running").content.decode()
    assert f'data-job="{job.pk}"' in rows and 'hx-trigger="every 2s"' in rows
    assert "?status=running" in rows  # it keeps the filters it was asked with
    _set(job, a=("complete", 1, 1, 1), b=("complete", 1, 1, 1), c=("complete", 1, 1, 1))
    job.set_status(ExportJob.Status.COMPLETE)
    rows = client.get(reverse("job_list_rows")).content.decode()
    assert f'data-job="{job.pk}"' in rows and "hx-trigger" not in rows
    client.force_login(outsider)
    assert f'data-job="{job.pk}"' not in client.get(reverse("job_list_rows")).content.decode()


@pytest.mark.django_db
def test_the_dashboard_polls_even_when_nothing_runs(client, owner):
    client.force_login(owner)
    page = client.get(reverse("dashboard_running")).content.decode()
    assert "No exports yet." in page and 'hx-trigger="every 5s"' in page


@pytest.mark.django_db
def test_cancelling_says_cancelled_when_nothing_was_running(client, owner, job):
    client.force_login(owner)
    response = client.post(reverse("job_cancel", args=[job.pk]), follow=True)
    assert f"Job {job.pk} cancelled." in response.content.decode()
    assert ExportJob.objects.get(pk=job.pk).status == ExportJob.Status.CANCELLED


@pytest.mark.django_db
def test_a_finished_job_page_drops_the_flash_messages_it_outlived(client, owner, job):
    client.force_login(owner)
    live = client.get(reverse("job_live", args=[job.pk])).content.decode()
    assert "hx-swap-oob" not in live
    job.finished_at = timezone.now()
    job.set_status(ExportJob.Status.CANCELLED)
    live = client.get(reverse("job_live", args=[job.pk])).content.decode()
    assert 'hx-swap-oob="delete:main > .flash.success"' in live
