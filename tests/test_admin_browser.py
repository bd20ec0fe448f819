"""The admin site works under the Content-Security-Policy (no inline script is blocked)."""

import pytest

from tests.browser import BROWSER_TEST, log_in

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_the_admin_pages_run_their_scripts_under_the_policy(
    live_server, browser_page, django_user_model, owner, source_db
):
    django_user_model.objects.create_superuser("chief", password="Chief-pass-2026")
    connection = source_db.connection(owner)
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/?next=/admin/")
    log_in(page, "chief", "Chief-pass-2026")
    for path in (
        "/admin/",
        "/admin/connections/connection/",
        f"/admin/connections/connection/{connection.pk}/change/",
        "/admin/auth/user/add/",
        "/admin/audit/auditevent/",
        "/admin/exports/exportjob/",
    ):
        page.goto(live_server.url + path)
        assert page.locator("#content").is_visible(), path
    # The admin's own script ran: the collapsible filter and the calendar need it.
    page.goto(live_server.url + "/admin/audit/auditevent/")
    assert page.evaluate("typeof window.django") == "object"
