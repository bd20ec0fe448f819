"""The pages a DBA watches all day, in headless Chromium: lists that refresh themselves, one
count of tables and rows everywhere, a job page that says what left and proves it, and a
validation failure told in one sentence naming the row by its primary key."""

import hashlib
import re

import pytest

from exports.engine.run import finish_job, run_job
from exports.jobs import create_job
from exports.models import ExportJob, TableRun
from quality.models import Rule
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST


@pytest.fixture
def dba(django_user_model):
    return user_with_role(django_user_model, "dba", "ADU Operator", "Dba-pass-2026")


def _open(page, url, username="dba", password="Dba-pass-2026"):
    page.goto(url)
    log_in(page, username, password)
    page.wait_for_url(url)
    # Set on this document only: still there later proves the page was never reloaded.
    page.evaluate("window.notReloaded = true")


def _not_reloaded(page) -> bool:
    return page.evaluate("window.notReloaded === true")


@pytest.mark.django_db(transaction=True)
def test_the_jobs_list_turns_queued_into_complete_by_itself(
    live_server, browser_page, source_db, dba
):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 500) AS id")
    connection = source_db.connection(dba)
    job = create_job(dba, connection, tables=["public.t"])
    page = browser_page
    _open(page, f"{live_server.url}/jobs/")
    row = f"#job-table tr[data-job='{job.pk}']"
    assert page.inner_text(f"{row} .status") == "Queued"
    assert page.get_attribute("#job-table", "hx-trigger")  # it polls: a job is unfinished

    run_job(job.pk)
    page.wait_for_selector(f"{row} .status:text-is('Complete')")
    assert "1 table: 1 complete" in page.inner_text(row)
    assert "500 of 500 rows" in page.inner_text(row)
    assert page.get_attribute(f"{row} .progress", "aria-valuenow") == "100"
    # Nothing left to watch: the refreshed list stops polling.
    assert page.get_attribute("#job-table", "hx-trigger") is None
    assert _not_reloaded(page)
    shot(page, "job-pages-01-list-refreshed")


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_notices_a_job_started_after_it_opened(
    live_server, browser_page, source_db, dba
):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 300) AS id")
    connection = source_db.connection(dba)
    page = browser_page
    _open(page, f"{live_server.url}/")
    assert "No exports yet." in page.inner_text("#running")

    job = create_job(dba, connection, tables=["public.t"])  # as another tab or the API would
    page.wait_for_selector(f"#running-{job.pk}")
    page.wait_for_selector(f"#recent-jobs tr[data-job='{job.pk}'] .status:text-is('Queued')")
    shot(page, "job-pages-02-dashboard-new-job")

    run_job(job.pk)
    page.wait_for_selector(f"#recent-jobs tr[data-job='{job.pk}'] .status:text-is('Complete')")
    page.wait_for_selector("#running >> text=Nothing is running.")
    assert "300 of 300 rows" in page.inner_text(f"#recent-jobs tr[data-job='{job.pk}']")
    assert _not_reloaded(page)


def _job_of_every_state(owner, connection) -> ExportJob:
    """A running job with a table in each state, rows as a real run leaves them: the failed
    and the cancelled tables read some rows before they stopped."""
    names = [("public", name) for name in ("a_done", "b_failed", "c_cancelled", "d_running")]
    job = ExportJob.create_with_tables(owner, connection, names, options={})
    job.set_status(ExportJob.Status.RUNNING)
    states = {
        "a_done": (TableRun.Status.COMPLETE, 100, 100, 4000),
        "b_failed": (TableRun.Status.FAILED, 200, 37, 900),
        "c_cancelled": (TableRun.Status.CANCELLED, 50, 5, 100),
        "d_running": (TableRun.Status.RUNNING, 80, 40, 1000),
    }
    for run in job.tables.all():
        run.status, run.rows_expected, run.rows_written, run.bytes_written = states[run.table]
        run.save()
    return job


@pytest.mark.django_db(transaction=True)
def test_counts_agree_on_the_list_the_dashboard_the_job_page_and_the_api(
    live_server, browser_page, source_db, dba
):
    job = _job_of_every_state(dba, source_db.connection(dba))
    tables = "4 tables: 1 complete, 1 failed, 1 cancelled, 1 running"
    # A failed or cancelled table's files are removed: its rows count nowhere.
    rows = "140 of 180 rows"
    # Weighed by rows: 100 + 200 + 50 finished, 40 of 80 running, of 430.
    percent = "90"
    page = browser_page
    base = live_server.url

    _open(page, f"{base}/jobs/")
    row = f"#job-table tr[data-job='{job.pk}']"
    assert tables in page.inner_text(row) and rows in page.inner_text(row)
    assert page.get_attribute(f"{row} .progress", "aria-valuenow") == percent

    page.goto(f"{base}/")
    card = f"#running-{job.pk}"
    assert tables in page.inner_text(card) and rows in page.inner_text(card)
    assert page.get_attribute(f"{card} .progress", "aria-valuenow") == percent
    recent = f"#recent-jobs tr[data-job='{job.pk}']"
    assert tables in page.inner_text(recent) and rows in page.inner_text(recent)

    page.goto(f"{base}/jobs/{job.pk}/")
    totals = page.inner_text("#job-live .totals")
    assert tables in totals and rows in totals and "4.9\xa0KB" in totals
    assert page.get_attribute("#job-live > .progress", "aria-valuenow") == percent
    shot(page, "job-pages-03-counts")

    counts = {
        "tables_total": 4, "tables_complete": 1, "tables_failed": 1, "tables_cancelled": 1,
        "tables_running": 1, "tables_queued": 0, "rows_written": 140, "rows_expected": 180,
        "bytes_written": 5000, "percent": 90,
    }  # fmt: skip
    [summary] = page.request.get(f"{base}/api/v1/jobs/").json()["results"]
    assert {name: summary[name] for name in counts} == counts
    detail = page.request.get(f"{base}/api/v1/jobs/{job.pk}/").json()
    assert detail["progress"] == counts


@pytest.mark.django_db(transaction=True)
def test_the_job_page_says_what_left_and_proves_it(live_server, browser_page, source_db, dba):
    source_db.execute(
        "CREATE TABLE staff (id integer PRIMARY KEY, name text, ssn text, hired date);"
        "INSERT INTO staff SELECT i, 'n' || i, 'ssn-' || i, date '2020-01-15' + i"
        " FROM generate_series(1, 40) i; ANALYZE staff;"
    )
    connection = source_db.connection(dba)
    job = create_job(
        dba,
        connection,
        tables=["public.staff"],
        selections={
            ("public", "staff"): {
                "columns": ["id", "hired"],
                "masks": {"hired": {"method": "truncate"}},
                "filter": "id > 30",
            }
        },
    )
    job = run_job(job.pk)
    run = job.tables.get()
    [file] = run.files
    page = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _open(page, f"{live_server.url}/jobs/{job.pk}/")

    table = f"#table-{run.pk}"
    assert page.inner_text(f"{table} .columns") == "only id, hired; left out: name, ssn"
    assert page.inner_text(f"{table} .masks") == "hired: truncate"
    assert page.inner_text(f"{table} .row-filter") == "where id OPERATOR(pg_catalog.>) 30"
    assert page.inner_text(f"{table} .count-proof") == (
        "10 counted at the source in the snapshot, 10 written · they match"
    )
    on_disk = (job.folder() / file["path"]).read_bytes()
    sha256 = hashlib.sha256(on_disk).hexdigest()
    [listed] = page.locator(f"{table} table.files tbody tr").all()
    assert file["path"] in listed.inner_text()
    assert page.inner_text(f"{table} .sha256 code") == sha256
    size = listed.locator("td").nth(2)
    assert size.get_attribute("title") == f"{len(on_disk):,} bytes"
    copy = listed.get_by_role("button", name="Copy")
    copy.click()
    page.wait_for_selector(f"{table} .sha256 button:text-is('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == sha256
    shot(page, "job-pages-04-what-left")


@pytest.mark.django_db(transaction=True)
def test_a_validation_failure_is_one_sentence_naming_the_row_by_its_key(
    live_server, browser_page, source_db, django_user_model
):
    # An ADU Admin sees tracebacks: if the failure kept one, this page would show it.
    admin = user_with_role(django_user_model, "boss", "ADU Admin", "Boss-pass-2026")
    source_db.execute(
        "CREATE TABLE payments (code text PRIMARY KEY, amount integer);"
        "INSERT INTO payments SELECT 'P-' || i, i FROM generate_series(1, 50) i;"
    )
    connection = source_db.connection(admin)
    Rule.objects.create(
        connection=connection, schema="public", table="payments", column="amount",
        kind=Rule.Kind.RANGE, maximum="45", severity=Rule.Severity.ERROR,
    )  # fmt: skip
    job = run_job(create_job(admin, connection, tables=["public.payments"]).pk)
    assert job.status == ExportJob.Status.FAILED
    page = browser_page
    _open(page, f"{live_server.url}/jobs/{job.pk}/", "boss", "Boss-pass-2026")

    error = page.inner_text(".error-card")
    # pandera hands failing values back as text, so the value is quoted.
    assert '5 row(s), e.g. row code="P-46": "46"' in error
    assert "the table's file was not kept" in error
    assert not re.search(r"e\.g\. row \d", error)
    assert not page.locator(".error-card details").count()  # no traceback to open
    assert "Traceback" not in page.content()
    failed_check = page.locator(".validation tr.check-failed")
    assert 'row code="P-46": "46"' in failed_check.locator("td").last.inner_text()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    shot(page, "job-pages-05-validation-failure")


@pytest.mark.django_db(transaction=True)
def test_a_flash_message_goes_when_what_it_announces_is_over(
    live_server, browser_page, source_db, dba
):
    job = _job_of_every_state(dba, source_db.connection(dba))
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    _open(page, f"{live_server.url}/jobs/{job.pk}/")
    page.click("#cancel")
    page.wait_for_selector(f".flash:text-is('Job {job.pk} is being cancelled.')")

    running = job.tables.get(status=TableRun.Status.RUNNING)
    running.finish(TableRun.Status.CANCELLED)  # its worker saw the request
    finish_job(job.pk)
    page.wait_for_selector("#job-status:text-is('Cancelled')")
    page.wait_for_selector(".flash", state="detached")
    assert "4 tables: 1 complete, 1 failed, 2 cancelled" in page.inner_text("#job-live .totals")
