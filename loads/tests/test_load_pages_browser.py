"""A load started from the portal in headless Chromium: the new-load form sent with a real
export's folder and a target, the load's page it leads to, and its live part turning to
the final status by itself with each table's rows and proof, without a reload."""

import re

import pytest

from loads.engine import run_load
from loads.models import Load
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import throwaway_database

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_a_load_started_from_the_form_shows_its_tables_verified_by_itself(
    live_server, browser_page, source_db, source_server, owner, export, monkeypatch
):
    # The test runs the load itself, as test_job_pages_browser.py runs its jobs.
    monkeypatch.setattr("loads.views.start_load", lambda load: None)
    source_db.execute(
        "CREATE TABLE t AS SELECT i, 'n' || i AS name FROM generate_series(1, 1200) i;"
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1), (2), (3);"
    )
    job = export(source_db.connection(owner), tables=["public.t", "public.u"], fingerprint="on")
    with throwaway_database(source_server) as target_db:
        target_db.connection(owner, name="far", is_target=True)
        page = browser_page
        page.goto(f"{live_server.url}/loads/new/")
        log_in(page, "owner", "owner-pass-123")
        page.fill("#id_folder", str(job.folder()))
        page.select_option("#id_target", label="far")
        page.fill("#id_schema_map", "public=landed")
        shot(page, "load-pages-00-form")
        page.click("#start")
        page.wait_for_url(re.compile(r"/loads/\d+/$"))
        load = Load.objects.get()
        assert page.url == f"{live_server.url}/loads/{load.pk}/"
        # Set on this document only: still there later proves the page was never reloaded.
        page.evaluate("window.notReloaded = true")
        assert page.inner_text("#load-status") == "Queued"
        assert page.get_attribute("#load-live", "hx-trigger") == "every 2s"
        page.wait_for_selector(
            f".flash:text-is(\"Load {load.pk} started: 2 table(s) into 'far'.\")"
        )
        shot(page, "load-pages-01-queued")

        run_load(load.pk)  # what the cluster's worker does with the queued task
        page.wait_for_selector("#load-status:text-is('Verified')")
        for name, rows in (("t", "1,200"), ("u", "3")):
            row = page.locator(f"#load-tables tr[data-table='public.{name}']")
            assert row.locator("td").nth(1).inner_text() == f"landed.{name}"
            assert row.locator("td").nth(3).inner_text() == rows
            assert row.locator(".proof").inner_text() == "target = file = source"
        assert "2 of 2 tables done · 1,203 rows" in page.inner_text("#load-live .totals")
        # Nothing left to watch: the live part stops polling and the "started" flash goes.
        assert page.get_attribute("#load-live", "hx-trigger") is None
        assert not page.locator("#cancel").count()
        page.wait_for_selector(".flash", state="detached")
        assert page.evaluate("window.notReloaded === true")
        shot(page, "load-pages-02-verified")

        page.click("header nav >> text=Loads")
        page.wait_for_selector(f"#load-table tr[data-load='{load.pk}'] .status:text-is('Verified')")
        assert "2 of 2 tables done" in page.inner_text(f"tr[data-load='{load.pk}']")
