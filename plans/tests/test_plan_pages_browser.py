"""A plan made, run and followed in headless Chromium: the form refused once and kept what
was typed, then saved; Run now; the history follows the job to its end without a reload."""

import re

import pytest

from exports.models import ExportJob
from plans.models import ExportPlan
from tests.browser import BROWSER_TEST, log_in, shot

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_a_plan_made_run_and_followed_in_the_browser(live_server, browser_page, source_db, owner):
    source_db.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    source_db.connection(owner)
    page = browser_page
    page.goto(f"{live_server.url}/plans/new/")
    log_in(page, "owner", "owner-pass-123")
    page.fill("#id_name", "nightly")
    page.select_option("#id_connection", label="source")
    page.fill("#id_tables", "public.t")
    page.fill("#id_cron", "0 2 * * * *")
    page.fill("#id_email", "dba@example.org")
    page.click("#plan-form button")
    assert "is not a cron expression" in page.inner_text(".field-error")
    assert (
        page.input_value("#id_tables") == "public.t"
        and page.input_value("#id_email") == "dba@example.org"
    )
    shot(page, "plans-00-refused")
    page.fill("#id_cron", "0 2 * * *")
    page.click("#plan-form button")
    plan = ExportPlan.objects.get()
    page.wait_for_url(re.compile(rf"/plans/{plan.pk}/$"))
    page.click("#run-now")
    page.wait_for_url(re.compile(rf"/plans/{plan.pk}/$"))
    job = ExportJob.objects.get()
    page.evaluate("window.notReloaded = true")
    row = page.locator(f"#plan-history tr[data-run='{plan.runs.get().pk}']")
    assert row.locator(".status").inner_text() == "Queued"
    shot(page, "plans-01-started")
    ExportJob.objects.filter(pk=job.pk).update(status="complete")  # as its worker would
    page.wait_for_selector(
        f"#plan-history tr[data-run='{plan.runs.get().pk}'] .status:text-is('Complete')"
    )
    assert page.get_attribute("#plan-history", "hx-trigger") is None
    assert page.evaluate("window.notReloaded === true")
    page.click("header nav >> text=Plans")
    assert "nightly" in page.inner_text(f"tr[data-plan='{plan.pk}']")
