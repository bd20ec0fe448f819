"""From the browser: a saved query previewed in its SQL box, then a job that exports two
columns of a table (one masked) with a row filter, and the saved query."""

import pytest

from connections.models import SavedQuery
from exports.models import ExportJob
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_columns_masks_a_filter_and_a_saved_query_from_the_browser(
    live_server, browser_page, source_db, django_user_model, monkeypatch
):
    monkeypatch.setattr("exports.views.start_job", lambda job: None)  # the job is what we check
    source_db.execute(
        "CREATE TABLE staff (id integer, name text, ssn text, hired date);"
        "INSERT INTO staff SELECT i, 'n' || i, 'ssn-' || i, date '2020-01-15' + i"
        " FROM generate_series(1, 40) i; ANALYZE staff;"
    )
    user = user_with_role(django_user_model, "clerk", "ADU Operator", "Clerk-pass-2026")
    connection = source_db.connection(user, name="HR")
    page = browser_page
    base = live_server.url

    page.goto(f"{base}/connections/queries/new/")
    log_in(page, "clerk", "Clerk-pass-2026")
    page.select_option("#id_connection", label="HR")
    page.fill("#id_name", "hired-per-year")
    page.fill(
        "#id_sql",
        "SELECT extract(year FROM hired)::int AS year, count(*) AS n FROM staff GROUP BY 1",
    )
    page.click("#preview-button")
    page.wait_for_selector("#preview-table")
    assert page.locator("#preview-table tbody tr").count() == 1
    shot(page, "selection-01-query-preview")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/connections/queries/")
    query = SavedQuery.objects.get(name="hired-per-year")

    page.goto(f"{base}/jobs/new/")
    page.wait_for_selector("#table-list tr[data-name='public.staff']")
    page.check("input[value='public.staff']")
    page.locator("tr[data-name='public.staff']").get_by_role(
        "button", name="Columns and rows…"
    ).click()
    page.wait_for_selector("input[name='col:public.staff'][value='ssn']")
    page.uncheck("input[name='col:public.staff'][value='ssn']")
    page.uncheck("input[name='col:public.staff'][value='name']")
    page.select_option("select[name='mask:public.staff:hired']", "truncate")
    page.fill("input[name='where:public.staff']", "id > 30")
    page.check(f"input[name=queries][value='{query.pk}']")
    shot(page, "selection-02-columns")
    page.click("#start")
    page.wait_for_url(lambda url: "/jobs/" in url and "/new/" not in url)
    job = ExportJob.objects.get()
    runs = {run.table: run.spec for run in job.tables.all()}
    assert runs == {
        "staff": {
            "columns": ["id", "hired"],
            "filter": "id OPERATOR(pg_catalog.>) 30",  # what runs
            "masks": {"hired": {"method": "truncate"}},
        },
        "hired-per-year": {"query": query.sql},
    }
    assert job.connection == connection
