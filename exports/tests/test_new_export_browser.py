"""From the browser, the New export page: a refused export comes back exactly as it was
sent, a row filter is checked as it is typed, editing a table's "Columns and rows…" part
ticks the table, truncate's precision is offered only where it means something, and the
page fits a phone."""

import pytest
from django.urls import reverse

from connections.models import SavedQuery
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST

PASSWORD = "Clerk-pass-2026"
BAD_FILTER = "nope > 1 AND  name = 'it''s'"  # two spaces and a quote: kept as typed


@pytest.fixture
def staff(source_db):
    source_db.execute(
        "CREATE TABLE staff (id integer, name text, ssn text, hired date, salary numeric(10,2),"
        " stamp timestamptz, flags jsonb);"
        "INSERT INTO staff SELECT i, 'n' || i, 'ssn-' || i, date '2020-01-15' + i, 1000 + i,"
        " now(), '{}' FROM generate_series(1, 40) i;"
        "CREATE SCHEMA hr; CREATE TABLE hr.people (id integer, badge text);"
        "INSERT INTO hr.people VALUES (1, 'b1'); ANALYZE staff; ANALYZE hr.people;"
    )
    return source_db


@pytest.fixture
def clerk(django_user_model):
    return user_with_role(django_user_model, "clerk", "ADU Operator", PASSWORD)


def open_new_export(page, base):
    page.goto(f"{base}/jobs/new/")
    if "/login/" in page.url:
        log_in(page, "clerk", PASSWORD)
    page.wait_for_selector("#table-list tr[data-name='public.staff']")
    page.wait_for_load_state("networkidle")


def open_part(page, table):
    page.locator(f"tr[data-name='{table}']").get_by_role("button", name="Columns and rows…").click()
    page.wait_for_selector(f"fieldset[data-table='{table}']")


def exported_columns(page, table):
    boxes = page.locator(f"input[name='col:{table}']")
    return [
        boxes.nth(i).get_attribute("value")
        for i in range(boxes.count())
        if boxes.nth(i).is_checked()
    ]


def check_whole_choice_survived(page, query, out):
    """Everything the test chose before Start, as it was typed."""
    assert page.is_checked("input[name=tables][value='public.staff']")
    assert page.is_checked("input[name=tables][value='hr.people']")
    assert page.inner_text("#selected-count") == "2 selected"
    assert page.input_value("#schema") == ""  # both schemas' tables are on show
    assert exported_columns(page, "public.staff") == [
        "id",
        "ssn",
        "hired",
        "salary",
        "stamp",
        "flags",
    ]
    assert page.input_value("select[name='mask:public.staff:ssn']") == "hash"
    assert page.input_value("select[name='mask:public.staff:salary']") == "truncate"
    assert page.input_value("input[name='precision:public.staff:salary']") == "-2"
    assert page.input_value("select[name='mask:public.staff:hired']") == ""
    assert page.is_checked(f"input[name=queries][value='{query.pk}']")
    assert page.input_value("#id_parallel") == "3"
    assert page.input_value("#id_compression_level") == "7"
    assert page.input_value("#id_batch_rows") == "5000"
    assert page.input_value("#id_validation") == "full"
    assert page.input_value("#id_out") == out


@pytest.mark.django_db(transaction=True)
def test_a_refused_export_comes_back_exactly_as_it_was_sent(
    live_server, browser_page, staff, clerk, export_root, monkeypatch
):
    monkeypatch.setattr("exports.views.start_job", lambda job: None)  # the job is what we check
    connection = staff.connection(clerk, name="HR")
    query = SavedQuery.objects.create(connection=connection, name="n", sql="SELECT 1 AS one")
    # The sentence the command and the API give for this filter: they all call create_job.
    with pytest.raises(BadRequest) as command_says:
        create_job(clerk, connection, tables=["public.staff"],
                   selections={("public", "staff"): {"filter": BAD_FILTER}})  # fmt: skip
    page = browser_page
    open_new_export(page, live_server.url)

    page.check("input[name=tables][value='public.staff']")
    page.check("input[name=tables][value='hr.people']")
    open_part(page, "public.staff")
    page.uncheck("input[name='col:public.staff'][value='name']")
    page.select_option("select[name='mask:public.staff:ssn']", "hash")
    page.select_option("select[name='mask:public.staff:salary']", "truncate")
    page.fill("input[name='precision:public.staff:salary']", "-2")
    page.fill("input[name='where:public.staff']", BAD_FILTER)
    page.check(f"input[name=queries][value='{query.pk}']")
    page.fill("#id_parallel", "3")
    page.fill("#id_compression_level", "7")
    page.fill("#id_batch_rows", "5000")
    page.select_option("#id_validation", "full")
    page.fill("#id_out", "staff-2026")
    page.click("#start")

    page.wait_for_selector("#where-check-publicstaff p.error")
    assert page.inner_text("#where-check-publicstaff") == str(command_says.value)
    assert page.locator(".error").count() == 1  # said once, next to the filter
    check_whole_choice_survived(page, query, "staff-2026")
    assert page.input_value("input[name='where:public.staff']") == BAD_FILTER
    assert "Traceback" not in page.content()
    shot(page, "new-export-01-bad-filter")

    (export_root / "staff-2026").mkdir(parents=True)
    page.fill("input[name='where:public.staff']", "id > 30")
    page.wait_for_selector("#where-check-publicstaff p.ok")
    page.click("#start")
    page.wait_for_selector("#id_out + small + p.field-error")
    assert page.inner_text("#id_out + small + p.field-error") == (
        "The folder 'staff-2026' already exists under the export root; choose another name."
    )
    assert page.locator(".error").count() == 1
    check_whole_choice_survived(page, query, "staff-2026")
    assert page.input_value("input[name='where:public.staff']") == "id > 30"
    # The filter, sent back, is checked again on its own.
    page.wait_for_selector("#where-check-publicstaff p.ok")
    shot(page, "new-export-02-folder-exists")

    page.fill("#id_out", "staff-2026-b")
    page.click("#start")
    page.wait_for_url(lambda url: "/jobs/" in url and "/new/" not in url)
    job = ExportJob.objects.get()
    assert job.output_dir == "staff-2026-b"
    assert {k: job.config[k] for k in ("parallel", "compression_level", "batch_rows", "validation")} == {
        "parallel": 3, "compression_level": 7, "batch_rows": 5000, "validation": "full"
    }  # fmt: skip
    runs = {f"{run.schema}.{run.table}": run.spec for run in job.tables.all()}
    assert runs == {
        "public.staff": {
            "columns": ["id", "ssn", "hired", "salary", "stamp", "flags"],
            "filter": "id OPERATOR(pg_catalog.>) 30",
            "masks": {"ssn": {"method": "hash"}, "salary": {"method": "truncate", "precision": -2}},
        },
        "hr.people": {},
        "queries.n": {"query": "SELECT 1 AS one"},
    }


@pytest.mark.django_db(transaction=True)
def test_a_refusal_keeps_the_schema_that_was_shown(
    live_server, browser_page, staff, clerk, export_root
):
    staff.connection(clerk, name="HR")
    (export_root / "taken").mkdir(parents=True)
    page = browser_page
    open_new_export(page, live_server.url)
    page.select_option("#schema", "hr")
    page.wait_for_selector("tr[data-name='public.staff']", state="detached")
    page.check("input[name=tables][value='hr.people']")
    page.fill("#id_out", "taken")
    page.click("#start")
    page.wait_for_selector("#id_out + small + p.field-error")
    assert page.input_value("#schema") == "hr"
    assert page.is_checked("input[name=tables][value='hr.people']")
    assert not page.locator("tr[data-name='public.staff']").count()


@pytest.mark.django_db(transaction=True)
def test_a_row_filter_is_checked_as_it_is_typed(live_server, browser_page, staff, clerk):
    connection = staff.connection(clerk, name="HR")
    page = browser_page
    open_new_export(page, live_server.url)
    open_part(page, "public.staff")
    where = "input[name='where:public.staff']"
    page.fill(where, "id = 1; DELETE FROM staff")
    page.wait_for_selector("#where-check-publicstaff p.error")
    with pytest.raises(BadRequest) as command_says:
        create_job(clerk, connection, tables=["public.staff"],
                   selections={("public", "staff"): {"filter": "id = 1; DELETE FROM staff"}})  # fmt: skip
    assert page.inner_text("#where-check-publicstaff") == str(command_says.value)
    assert "holds 2 statements" in str(command_says.value)
    shot(page, "new-export-03-filter-refused")
    page.fill(where, "hired >= '2020-02-01'")
    page.wait_for_selector("#where-check-publicstaff p.ok")
    assert page.inner_text("#where-check-publicstaff") == "OK"
    page.fill(where, "")
    page.wait_for_selector("#where-check-publicstaff p", state="detached")
    assert ExportJob.objects.count() == 0
    assert staff.execute("SELECT count(*) FROM staff") == [(40,)]


@pytest.mark.django_db(transaction=True)
def test_editing_an_unticked_tables_part_ticks_it_and_the_job_gets_the_choice(
    live_server, browser_page, staff, clerk, monkeypatch
):
    monkeypatch.setattr("exports.views.start_job", lambda job: None)
    staff.connection(clerk, name="HR")
    page = browser_page
    open_new_export(page, live_server.url)
    page.check("input[name=tables][value='hr.people']")
    for edit in (
        lambda: page.uncheck("input[name='col:public.staff'][value='ssn']"),
        lambda: page.select_option("select[name='mask:public.staff:name']", "redact"),
        lambda: page.fill("input[name='where:public.staff']", "id <= 3"),
    ):
        page.uncheck("input[name=tables][value='public.staff']")
        if not page.locator("fieldset[data-table='public.staff']").count():
            open_part(page, "public.staff")
        assert page.inner_text("#selected-count") == "1 selected"
        edit()
        assert page.is_checked("input[name=tables][value='public.staff']")
        assert page.inner_text("#selected-count") == "2 selected"
    page.wait_for_selector("#where-check-publicstaff p.ok")
    page.click("#start")
    page.wait_for_url(lambda url: "/jobs/" in url and "/new/" not in url)
    runs = {f"{run.schema}.{run.table}": run.spec for run in ExportJob.objects.get().tables.all()}
    assert runs["public.staff"] == {
        "columns": ["id", "name", "hired", "salary", "stamp", "flags"],
        "filter": "id OPERATOR(pg_catalog.<=) 3",
        "masks": {"name": {"method": "redact"}},
    }


@pytest.mark.django_db(transaction=True)
def test_precision_is_offered_only_for_numbers_and_truncate_for_numbers_and_dates(
    live_server, browser_page, staff, clerk
):
    staff.connection(clerk, name="HR")
    page = browser_page
    open_new_export(page, live_server.url)
    open_part(page, "public.staff")
    with_precision = page.locator("input[name^='precision:public.staff:']")
    names = [with_precision.nth(i).get_attribute("name") for i in range(with_precision.count())]
    assert names == ["precision:public.staff:id", "precision:public.staff:salary"]
    for column, truncatable in [("id", True), ("name", False), ("hired", True),
                                ("salary", True), ("stamp", True), ("flags", False)]:  # fmt: skip
        options = page.locator(f"select[name='mask:public.staff:{column}'] option")
        methods = [options.nth(i).get_attribute("value") for i in range(options.count())]
        assert ("truncate" in methods) == truncatable, column
    row = page.locator("fieldset[data-table='public.staff'] tr", has_text="hired")
    assert "to the month" in row.inner_text()


@pytest.mark.django_db(transaction=True)
def test_the_page_fits_a_phone(live_server, browser_page, staff, clerk, monkeypatch):
    monkeypatch.setattr("exports.views.start_job", lambda job: None)
    staff.connection(clerk, name="HR")
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    open_new_export(page, live_server.url)
    open_part(page, "public.staff")
    page.fill("input[name='where:public.staff']", "no_such_column = 1")
    page.wait_for_selector("#where-check-publicstaff p.error")
    shot(page, "new-export-04-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


@pytest.mark.django_db(transaction=True)
def test_only_users_of_the_connection_may_check_a_filter(client, owner, outsider, viewer, staff):
    connection = staff.connection(owner)
    url = reverse("job_new_filter_check")
    form = {"connection": connection.pk, "table": "public.staff", "where:public.staff": "id > 1"}
    assert client.post(url, form)["Location"].startswith("/accounts/login/")
    client.force_login(owner)
    assert client.post(url, form).content.decode().strip() == '<p class="ok">OK</p>'
    assert client.post(url, {**form, "where:public.staff": " "}).content.decode().strip() == ""
    assert client.get(url, form).status_code == 405
    client.force_login(outsider)
    assert client.post(url, form).status_code == 404
    client.force_login(viewer)
    assert client.post(url, form).status_code == 403
