"""The portal's pages as people see them, in headless Chromium: every main page fits a
phone's screen (390 px) with the menu folded, each is shot at 1280 and 390 px, no page asks
for anything that is not there (the favicon), the API page is a working API browser
(Swagger UI under the Content-Security-Policy, "Try it out" with the login session), and
the small things: confirmations, the token's Copy button and its one-time form, the 404
and 500 pages, labels, the number format, the admin's title and the log's line range.

Screenshots go to $ADU_SCREENSHOTS, else adu-screenshots/ in the temporary folder: never
into the checkout.
"""

import os
import re
import tempfile
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from adu_site.templatetags.numbers import number
from api.models import ApiToken
from connections.forms import ConnectionForm
from connections.models import SavedQuery
from exports.joblog import log_path
from quality.models import Rule
from tests.browser import BROWSER_TEST, log_in

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LONG_TABLE = "quarterly_revenue_by_region_and_product_line_for_the_board_2026"
SHOTS = Path(os.environ.get("ADU_SCREENSHOTS") or Path(tempfile.gettempdir()) / "adu-screenshots")


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def portal(owner, source_db, export):
    """A connection, a finished job with an error (so retry, errors and a log show), a
    saved query, a rule and a token: each main page has something wide to show."""
    source_db.execute(
        f"CREATE TABLE {LONG_TABLE} AS SELECT i AS id, 'region ' || i AS long_region_name "
        "FROM generate_series(1, 1500) i"
    )
    source_db.execute("ANALYZE")
    connection = source_db.connection(owner, name="Warehouse of the finance department")
    job = export(connection, tables=[f"public.{LONG_TABLE}", "public.gone"])
    assert job.status == "complete_with_errors" and job.rows_written == 1500
    SavedQuery.objects.create(
        connection=connection,
        name="revenue_by_region",
        sql=f"SELECT id, long_region_name, id * 1000 AS revenue_in_cents FROM {LONG_TABLE} "
        "WHERE id > 10 ORDER BY long_region_name",
        created_by=owner,
    )
    Rule.objects.create(
        connection=connection,
        schema="public",
        table=LONG_TABLE,
        column="long_region_name",
        kind=Rule.Kind.REGEX,
        pattern="^region [0-9]+$",
        created_by=owner,
    )
    ApiToken.issue(owner, "nightly scheduler on etl-01")
    return {"connection": connection, "job": job}


def main_pages(portal) -> list[tuple[str, str]]:
    job, connection = portal["job"], portal["connection"]
    query = SavedQuery.objects.get()
    return [
        ("dashboard", reverse("dashboard")),
        ("jobs", reverse("job_list")),
        ("job", reverse("job_detail", args=[job.pk])),
        ("job-log", reverse("job_log", args=[job.pk])),
        ("new-export", f"{reverse('job_new')}?connection={connection.pk}"),
        ("connections", reverse("connection_list")),
        ("connection-form", reverse("connection_edit", args=[connection.pk])),
        ("queries", reverse("query_list")),
        ("query-form", reverse("query_edit", args=[query.pk])),
        ("rules", reverse("rule_list")),
        ("rule-form", reverse("rule_create")),
        ("profile", reverse("profile")),
        ("api", reverse("api_reference")),
        ("not-found", "/no/such/page/"),
    ]


def settle(page, name: str) -> None:
    """Wait for what a page draws after loading: Swagger UI, the table picker."""
    if name == "api":
        page.wait_for_selector(".swagger-ui .opblock")
    if name == "new-export":
        page.wait_for_selector("#table-list tbody tr")
    page.wait_for_load_state("networkidle")


def scroll_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


# What sticks out past the screen's right edge, to name it when a page is too wide.
STICKING_OUT = """() => Array.from(document.querySelectorAll("body *"))
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter(e => !e.parentElement.closest("table, pre, .scroll"))
  .slice(0, 5)
  .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
       (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : "") +
       " " + Math.round(e.getBoundingClientRect().right))"""


def in_browser(test):
    for mark in BROWSER_TEST:
        test = mark(test)
    return test


@in_browser
@pytest.mark.django_db(transaction=True)
def test_every_main_page_fits_a_phone_and_asks_for_nothing_missing(
    live_server, browser_page, portal
):
    page = browser_page
    missing = []
    page.on(
        "response",
        lambda response: (
            missing.append(response.url)
            if response.status >= 400 and "/no/such/page/" not in response.url
            else None
        ),
    )
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/")
    settle(page, "login")
    assert scroll_width(page) <= PHONE["width"], "login"
    shoot(page, "login-390")
    page.set_viewport_size(DESKTOP)
    shoot(page, "login-1280")
    log_in(page, "owner", "owner-pass-123")

    wide = {}
    for name, url in main_pages(portal):
        page.set_viewport_size(PHONE)
        page.goto(f"{live_server.url}{url}")
        settle(page, name)
        if scroll_width(page) > PHONE["width"]:
            wide[name] = (scroll_width(page), page.evaluate(STICKING_OUT))
        shoot(page, f"{name}-390")
        page.set_viewport_size(DESKTOP)
        shoot(page, f"{name}-1280")
        icon = page.locator("link[rel=icon]")
        assert icon.count() == 1, name
    assert wide == {}, f"pages wider than the phone's {PHONE['width']} px: {wide}"
    assert missing == [], missing
    # The icon is there, and so is /favicon.ico for the pages that name none (the admin's).
    assert page.request.get(f"{live_server.url}/favicon.ico").status == 200


@in_browser
@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_menu_folds_behind_a_button(live_server, browser_page, owner):
    page = browser_page
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/")
    log_in(page, "owner", "owner-pass-123")
    jobs_link = page.locator("header nav >> text=Jobs")
    assert not jobs_link.is_visible()
    page.click("header .menu-button")
    assert jobs_link.is_visible()
    jobs_link.click()
    page.wait_for_url(f"{live_server.url}/jobs/")
    page.set_viewport_size(DESKTOP)  # wide: the menu shows, the button does not
    assert page.locator("header nav >> text=Jobs").is_visible()
    assert not page.locator("header .menu-button").is_visible()


@in_browser
@pytest.mark.django_db(transaction=True)
def test_the_api_page_tries_endpoints_with_the_login_session(live_server, browser_page, owner):
    page = browser_page
    page.goto(f"{live_server.url}/")
    log_in(page, "owner", "owner-pass-123")
    page.click("header >> text=API")
    page.wait_for_selector(".swagger-ui .opblock")
    paths = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert "/api/v1/jobs/" in [p.strip().replace("\u200b", "") for p in paths]

    def try_out(method: str, path: str, fill=None) -> str:
        block = page.locator(f".opblock-{method}").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )
        block.locator(".opblock-summary").click()
        block.locator("button.try-out__btn").click()
        if fill:
            for name, value in fill.items():
                block.locator(f'tr[data-param-name="{name}"] input').fill(value)
        block.locator("button.execute").click()
        status = block.locator(".live-responses-table .response .response-col_status")
        status.first.wait_for()
        return status.first.inner_text().strip()

    assert try_out("get", "/api/v1/jobs/") == "200"
    # A POST passes CSRF (the interceptor sends the token) and reaches the view: no job 999.
    assert try_out("post", "/api/v1/jobs/{job_id}/cancel/", {"job_id": "999"}) == "404"
    shoot(page, "api-tried")


@in_browser
@pytest.mark.django_db(transaction=True)
def test_a_new_token_is_copied_and_revoking_asks_first(live_server, browser_page, owner):
    page = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{live_server.url}/profile/")
    log_in(page, "owner", "owner-pass-123")
    page.fill("#id_name", "nightly")
    page.click("text=Create token")
    plaintext = page.inner_text("code.token")
    page.click("#new-token button[data-copy]")
    # The clipboard answers asynchronously: wait for the button to say so.
    page.wait_for_selector("#new-token button[data-copy]:text-is('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext

    token = ApiToken.objects.get()
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    page.click(f"#token-{token.pk} button")
    token.refresh_from_db()
    assert token.status == "active" and "Revoke the token 'nightly'" in questions[0]
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.click(f"#token-{token.pk} button")
    page.wait_for_selector(f"#token-{token.pk} .status-revoked")
    token.refresh_from_db()
    assert token.status == "revoked"


@in_browser
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_job_asks_first(live_server, browser_page, owner, source_db):
    from exports.jobs import create_job

    source_db.execute("CREATE TABLE t AS SELECT 1 AS i")
    job = create_job(owner, source_db.connection(owner), tables=["public.t"])  # queued
    page = browser_page
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    log_in(page, "owner", "owner-pass-123")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.click("#cancel")
    job.refresh_from_db()
    assert job.status == "queued" and questions == [
        f"Cancel job #{job.pk}? Running tables stop and their partial files are removed."
    ]


# Without a browser ---------------------------------------------------------------------


@pytest.mark.django_db
def test_sending_the_token_form_again_makes_no_second_token(client, owner):
    client.force_login(owner)
    page = client.get("/profile/").content.decode()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    first = client.post("/profile/", {"name": "nightly", "expires": "", "nonce": nonce})
    assert b'<code class="token">' in first.content
    again = client.post("/profile/", {"name": "nightly", "expires": "", "nonce": nonce})
    assert b'<code class="token">' not in again.content
    assert b"no second token was made" in again.content
    assert ApiToken.objects.count() == 1
    # A nonce never handed out is refused the same way.
    client.post("/profile/", {"name": "other", "expires": "", "nonce": "made-up"})
    assert ApiToken.objects.count() == 1


@pytest.mark.django_db
def test_a_missing_page_is_a_404_in_the_sites_style_and_the_500_page_stands_alone(client, owner):
    client.force_login(owner)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "adu/adu.css" in page and "<h1>Not found</h1>" in page and "Dashboard" in page
    assert "adu/favicon.svg" in page
    # Rendered with no request and no context at all, as Django's server_error does.
    error_page = render_to_string("500.html")
    assert "<h1>Server error</h1>" in error_page and "adu/adu.css" in error_page


@pytest.mark.django_db
def test_the_admin_is_titled_adu_administration(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "<title>Site administration | ADU administration</title>" in page or (
        "ADU administration" in page
    )
    assert "Django administration" not in page


@pytest.mark.django_db
def test_labels_say_ssl_mode_verify_ca_and_sql(owner):
    form = ConnectionForm(owner=owner, user=owner)
    assert form["sslmode"].label == "SSL mode"
    choices = dict(form.fields["sslmode"].choices)
    assert choices["verify-ca"].startswith("verify-ca (SSL; Verify CA")
    assert "Verify Ca" not in str(choices) and "Sslmode" not in str(form)
    assert SavedQuery._meta.get_field("sql").verbose_name == "SQL"


def test_numbers_are_grouped_by_thousands():
    assert [number(v) for v in (0, 999, 1000, 1234567, -5000, 2.6e6, None, "", "12345")] == [
        "0", "999", "1,000", "1,234,567", "-5,000", "2,600,000", "", "", "12,345",
    ]  # fmt: skip
    assert number(1234.4) == "1,234" and number("n/a") == "n/a"


@pytest.mark.django_db(transaction=True)
def test_pages_write_row_counts_with_thousands_separators(client, portal, owner):
    client.force_login(owner)
    for url in (
        reverse("dashboard"),
        reverse("job_list"),
        reverse("job_detail", args=[portal["job"].pk]),
    ):
        assert "1,500" in client.get(url).content.decode(), url


@pytest.mark.django_db(transaction=True)
def test_the_log_says_which_lines_it_shows(client, portal, owner):
    job = portal["job"]
    path = log_path(job)
    with open(path, "a") as log:
        for i in range(3000):
            log.write(f"2026-01-01 00:00:00,000 INFO adu.test: filler line {i}\n")
    with open(path) as log:
        total = sum(1 for line in log if len(line.split(" ", 3)) > 2)  # INFO and above
    client.force_login(owner)
    url = reverse("job_log_lines", args=[job.pk])
    page = client.get(url, {"limit": 50}).content.decode()
    assert f"Showing lines {number(total - 49)}–{number(total)} of {number(total)}" in page
    assert "the last 50; up to 1,000 at a time" in page
    # More than the page shows at once: it says so, rather than silently showing less.
    page = client.get(url, {"limit": 5000}).content.decode()
    assert f"Showing lines {number(total - 999)}–{number(total)} of {number(total)}" in page
    page = client.get(url, {"level": "ERROR"}).content.decode()
    assert re.search(r"Showing lines 1–\d+ of \d+ at ERROR and above\.", page)
