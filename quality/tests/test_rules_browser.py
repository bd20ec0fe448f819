"""A rule added from the browser: the form shows the fields of the chosen kind, refuses a
minimum above the maximum next to the field, and the fixed rule lands in the list."""

import pytest

from quality.models import Rule
from tests.browser import BROWSER_TEST, log_in, shot
from tests.factories import user_with_role

pytestmark = BROWSER_TEST


@pytest.mark.django_db(transaction=True)
def test_a_user_adds_a_range_rule_from_the_browser(
    live_server, browser_page, source_db, django_user_model
):
    page = browser_page
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    user = user_with_role(django_user_model, "analyst", "ADU Operator", "Analyst-pass-2026")
    source_db.execute("CREATE TABLE orders (id integer, amount numeric(10, 2), code text)")
    connection = source_db.connection(user, name="Sales")
    base = live_server.url

    page.goto(f"{base}/connections/")
    assert "/accounts/login/" in page.url
    log_in(page, "analyst", "Analyst-pass-2026")
    page.locator("tr", has_text="Sales").get_by_role("link", name="Rules").click()
    page.wait_for_url(f"{base}/rules/?connection={connection.pk}")
    page.get_by_role("link", name="New rule").click()
    assert page.input_value("#id_connection") == str(connection.pk)

    assert page.locator("#id_minimum").is_hidden()  # until a kind that uses it is chosen
    page.fill("#id_schema", "public")
    page.fill("#id_table", "orders")
    page.select_option("#id_kind", "range")
    assert page.locator("#id_minimum").is_visible() and page.locator("#id_pattern").is_hidden()
    page.fill("#id_column", "amount")
    page.fill("#id_minimum", "100")
    page.fill("#id_maximum", "5.50")
    page.select_option("#id_severity", "error")
    shot(page, "rules-01-new")
    page.click("main button[type=submit]")
    error = page.locator(".field", has=page.locator("#id_maximum")).locator(".field-error")
    assert error.inner_text() == "The maximum is below the minimum."
    assert page.locator("#id_minimum").is_visible()  # the kind chosen before is kept
    shot(page, "rules-02-refused")
    assert not Rule.objects.exists()

    page.fill("#id_maximum", "1000")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/rules/?connection={connection.pk}")
    row = page.locator("tr", has_text="public.orders")
    assert "amount between 100 and 1000" in row.inner_text()
    assert "Error" in row.inner_text()
    assert page.locator(".flash").inner_text().endswith("saved.")
    shot(page, "rules-03-list")
    assert Rule.objects.get().created_by == user

    outside = [url for url in requests if not url.startswith(base)]
    assert not outside, outside
