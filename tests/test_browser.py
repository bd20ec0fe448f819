"""The portal end to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Logs in, adds a connection to the test PostgreSQL and tests it, tries a wrong password,
discovers tables, exports three of them on a real task cluster, watches the job complete,
downloads the manifest and a Parquet file and checks them. Screenshots of every page go
to adu-test-artifacts/ in the temporary folder (/tmp), never to the checkout's var/. Every
request the browser makes must go to the test server.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_a_user_exports_three_tables_from_the_browser(
    live_server, browser_page, source_db, clusters, django_user_model, tmp_path
):
    page = browser_page
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    user_with_role(django_user_model, "dba", "ADU Operator", "Dba-pass-2026")
    for name, rows in [("orders", 3000), ("customers", 500), ("items", 1200), ("skip", 10)]:
        source_db.execute(
            f"CREATE TABLE {name} AS SELECT i AS id, 'v' || i AS label FROM generate_series(1, {rows}) i"
        )
    source_db.execute("ANALYZE")
    clusters()
    server = source_db.server
    base = live_server.url

    page.goto(f"{base}/")
    assert "/accounts/login/" in page.url
    shot(page, "01-login")
    log_in(page, "dba", "Dba-pass-2026")
    assert page.url == f"{base}/"
    assert page.locator("text=dba").first.is_visible()
    shot(page, "02-dashboard")

    def add_connection(name, password):
        page.goto(f"{base}/connections/new/")
        page.fill("#id_name", name)
        page.fill("#id_host", server.host)
        page.fill("#id_port", str(server.port))
        page.fill("#id_database", source_db.name)
        page.fill("#id_username", server.user)
        page.fill("#id_password", password)
        page.select_option("#id_sslmode", "disable")
        page.click("main button[type=submit]")
        page.wait_for_url(f"{base}/connections/")

    add_connection("Test PostgreSQL", server.password)
    add_connection("Wrong password", "Not-The-Password-1")
    shot(page, "03-connections")
    page.locator("tr", has_text="Test PostgreSQL").get_by_role(
        "button", name="Test connection"
    ).click()
    page.wait_for_selector("text=Connected: PostgreSQL")
    page.locator("tr", has_text="Wrong password").get_by_role(
        "button", name="Test connection"
    ).click()
    page.wait_for_selector("text=Wrong user name or password")
    assert "Not-The-Password-1" not in page.content()
    shot(page, "04-connection-tests")

    page.goto(f"{base}/jobs/new/")
    page.select_option("select[name=connection]", label="Test PostgreSQL")
    page.wait_for_selector("#table-list tr[data-name='public.orders']")
    page.wait_for_load_state("networkidle")
    page.fill("#table-filter", "o")  # orders, customers
    page.click("#select-all")
    assert page.inner_text("#selected-count") == "2 selected"
    page.fill("#table-filter", "")
    page.check("input[value='public.items']")
    assert page.inner_text("#selected-count") == "3 selected"
    page.fill("#id_out", "browser-export")
    shot(page, "05-new-export")
    page.click("#start")
    page.wait_for_url("**/jobs/*/")
    job_url = page.url
    page.wait_for_selector("#job-status:text('Complete')", timeout=90000)
    assert page.get_attribute("#job-live .progress", "aria-valuenow") == "100"
    assert not page.locator("#cancel").count()  # the live part dropped what no longer applies
    shot(page, "06-job-complete")

    with page.expect_download() as download:
        page.click("#manifest-link")
    manifest = json.loads(Path(download.value.path()).read_text())
    assert sorted(t["table"] for t in manifest["tables"]) == ["customers", "items", "orders"]
    assert all(t["rows_written"] == t["source_rows"] for t in manifest["tables"])
    with page.expect_download() as download:
        page.click("a:text('public/orders.parquet')")
    table = pq.read_table(download.value.path())
    assert table.num_rows == 3000 and table.column("label")[0].as_py().startswith("v")

    page.goto(job_url + "log/")
    assert "complete" in page.inner_text("#log-lines")
    shot(page, "07-log")
    page.goto(f"{base}/jobs/")
    shot(page, "08-history")
    page.goto(f"{base}/")
    shot(page, "09-dashboard-after")

    outside = [url for url in requests if not url.startswith(base)]
    assert not outside, outside
