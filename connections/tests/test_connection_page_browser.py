"""From the browser, a connection's own page: its details, sharing, schemas and tables with
their sizes and its jobs; "Test connection" says "Testing…" while it runs, answers in one
line with the details behind a click, and on the form tests the values as typed, before
they are saved; a viewer sees the page without where the connection points."""

import re

import pytest
from django.contrib.auth.models import Group

from connections.models import Connection
from exports.jobs import create_job
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST

PASSWORD = "Keeper-pass-2026"
VIEWER_PASSWORD = "Reader-pass-2026"
PHONE = {"width": 390, "height": 844}
SUMMARY = re.compile(r"^Connected: PostgreSQL \d+(\.\d+)? · not encrypted$")
SIZE = re.compile(r"^\d+(\.\d)?\s(bytes|KB|MB)$")


@pytest.fixture
def keeper(django_user_model):
    return user_with_role(django_user_model, "keeper", "ADU Operator", PASSWORD)


@pytest.fixture
def warehouse(source_db, keeper):
    """A connection of keeper's to a source with two schemas, shared with "analysts",
    and one job."""
    source_db.execute(
        "CREATE TABLE orders AS SELECT i AS id, 'o' || i AS label FROM generate_series(1, 1000) i;"
        "CREATE SCHEMA hr; CREATE TABLE hr.people (id integer, badge text);"
        "INSERT INTO hr.people VALUES (1, 'b1'); CREATE SCHEMA empty; ANALYZE;"
    )
    connection = source_db.connection(keeper, name="warehouse")
    connection.shared_with.add(Group.objects.create(name="analysts"))
    job = create_job(keeper, connection, tables=["public.orders"])
    return connection, job


def open_as(page, base, url, username, password):
    page.goto(f"{base}{url}")
    if "/login/" in page.url:
        log_in(page, username, password)
    page.wait_for_load_state("networkidle")


def click_test(page, button):
    """Click Test with its request held: "Testing…" shows until the answer comes, then
    the answer replaces it. Returns the result's text."""
    held = []
    page.route("**/test/", lambda route: held.append(route))
    part = button.locator("xpath=..")
    testing, result = part.locator(".testing"), part.locator(".test-result")
    assert testing.is_hidden()
    button.click()
    while not held:
        page.wait_for_timeout(20)
    assert testing.is_visible() and testing.inner_text() == "Testing…"
    held[0].continue_()
    page.unroute("**/test/")
    result.locator("p").wait_for()
    testing.wait_for(state="hidden")
    return result.locator("p").inner_text()


@pytest.mark.django_db(transaction=True)
def test_the_page_shows_details_sharing_tables_with_sizes_and_jobs(
    live_server, browser_page, source_db, warehouse
):
    page = browser_page
    connection, job = warehouse
    server = source_db.server
    open_as(page, live_server.url, "/connections/", "keeper", PASSWORD)
    page.get_by_role("link", name="warehouse").click()
    page.wait_for_url(f"{live_server.url}/connections/{connection.pk}/")

    details = page.inner_text("#connection-details")
    assert f"{server.host}:{server.port}" in details
    assert source_db.name in details and server.user in details
    assert "Shared with analysts" in page.inner_text("#connection-sharing")
    jobs = page.locator("#connection-jobs")
    assert jobs.locator(f"tr[data-job='{job.pk}']").count() == 1
    jobs.get_by_role("link", name="All jobs of this connection").wait_for()

    page.wait_for_selector("#discovery details.schema")
    schemas = page.locator("#discovery details.schema")
    assert [schemas.nth(i).get_attribute("data-schema") for i in range(schemas.count())] == [
        "empty",
        "hr",
        "public",
    ]
    public = page.locator("details.schema[data-schema='public']")
    assert re.search(r"public · 1 table · \d", public.locator("summary").inner_text())
    assert public.locator("tr[data-name='public.orders']").is_hidden()  # behind a click
    public.locator("summary").click()
    orders = public.locator("tr[data-name='public.orders'] td")
    assert orders.nth(0).inner_text() == "orders" and orders.nth(1).inner_text() == "table"
    assert orders.nth(2).inner_text() == "1,000"
    assert SIZE.match(orders.nth(3).inner_text().replace("\xa0", " "))
    page.locator("details.schema[data-schema='hr'] summary").click()
    assert page.locator("tr[data-name='hr.people']").is_visible()
    assert page.inner_text("details.schema[data-schema='empty'] summary") == "empty · no tables"
    shot(page, "connection-page-01-owner")

    text = click_test(page, page.locator("#connection-test .test-button"))
    assert SUMMARY.match(text), text
    more = page.locator("#connection-test details.test-details")
    assert more.locator("summary").inner_text() == "Details · 1 warning"
    assert more.locator("dd").first.is_hidden()
    more.locator("summary").click()
    assert more.locator("dd").first.inner_text().startswith("PostgreSQL ")  # version() whole
    assert "superuser" in more.inner_text()
    shot(page, "connection-page-02-tested")

    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


@pytest.mark.django_db(transaction=True)
def test_test_runs_the_values_typed_in_the_new_form_before_saving(
    live_server, browser_page, source_db, keeper
):
    page = browser_page
    server = source_db.server
    open_as(page, live_server.url, "/connections/new/", "keeper", PASSWORD)
    page.fill("#id_name", "typed")
    page.fill("#id_host", server.host)
    page.fill("#id_port", str(server.port))
    page.fill("#id_database", source_db.name)
    page.fill("#id_username", server.user)
    page.fill("#id_password", server.password)
    page.select_option("#id_sslmode", "disable")
    button = page.locator("form .test-button")

    assert SUMMARY.match(click_test(page, button))
    assert not Connection.objects.exists()  # tested, not saved

    page.fill("#id_password", "Not-The-Password-7")
    wrong = click_test(page, button)
    assert wrong == (
        f"Wrong user name or password for '{server.user}' on {server.host}:{server.port}."
    )
    assert "Not-The-Password-7" not in page.content()

    page.fill("#id_host", "no-such-host.invalid")
    assert click_test(page, button) == "Unknown host 'no-such-host.invalid': check the host name."
    shot(page, "connection-page-03-typed")
    assert not Connection.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_test_on_the_edit_form_sends_the_stored_password_only_where_it_was_typed_for(
    live_server, browser_page, source_db, warehouse
):
    page = browser_page
    connection, _ = warehouse
    server = source_db.server
    open_as(page, live_server.url, f"/connections/{connection.pk}/edit/", "keeper", PASSWORD)
    button = page.locator("form .test-button")
    assert SUMMARY.match(click_test(page, button))  # the stored password, same endpoint

    page.fill("#id_database", "nope")
    assert click_test(page, button) == "Password: Enter the password again: the database changed."
    page.fill("#id_password", server.password)
    assert click_test(page, button) == (
        f"Database 'nope' does not exist on {server.host}:{server.port}."
    )
    connection.refresh_from_db()
    assert connection.database == source_db.name  # nothing was saved


@pytest.mark.django_db(transaction=True)
def test_a_viewer_sees_the_page_without_where_it_points(
    live_server, browser_page, source_db, warehouse, django_user_model
):
    page = browser_page
    connection, job = warehouse
    server = source_db.server
    reader = user_with_role(django_user_model, "reader", "ADU Viewer", VIEWER_PASSWORD)
    reader.groups.add(Group.objects.get(name="analysts"))
    open_as(page, live_server.url, "/connections/", "reader", VIEWER_PASSWORD)
    page.get_by_role("link", name="warehouse").click()
    page.wait_for_url(f"{live_server.url}/connections/{connection.pk}/")

    assert "PostgreSQL" in page.inner_text("#connection-details")
    assert "Shown to those who may edit the connection." in page.inner_text("#connection-details")
    assert "Shared with analysts" in page.inner_text("#connection-sharing")
    assert page.locator(f"#connection-jobs tr[data-job='{job.pk}']").count() == 1
    html = page.content()
    for hidden in (f"{server.host}:{server.port}", source_db.name, f">{server.user}<"):
        assert hidden not in html
    # A viewer neither tests nor reads the source.
    assert not page.locator(".test-button").count() and not page.locator("#discovery").count()
    assert not page.get_by_role("link", name="Edit").count()
    shot(page, "connection-page-04-viewer")
