"""In a real browser: a user makes a token on the profile page (shown once), revokes it,
reads the API page, and calls the API with the login session (CSRF for a POST), all under
the Content-Security-Policy."""

import pytest

from api.models import ApiToken
from tests.browser import BROWSER_TEST, log_in, shot

pytestmark = BROWSER_TEST

FETCH = """async ([url, method, csrf]) => {
  const headers = csrf ? {"X-CSRFToken": csrf} : {};
  const response = await fetch(url, {method, headers, credentials: "same-origin"});
  return [response.status, await response.json()];
}"""


@pytest.mark.django_db(transaction=True)
def test_a_user_makes_and_revokes_a_token_and_uses_the_api_from_the_browser(
    live_server, browser_page, owner
):
    page = browser_page
    page.goto(f"{live_server.url}/")
    log_in(page, "owner", "owner-pass-123")
    page.click("header a.who")  # the user's name leads to the profile page
    page.fill("#id_name", "nightly")
    page.select_option("#id_expires", "30")
    page.click("text=Create token")
    plaintext = page.inner_text("code.token")
    shot(page, "api-token-created")
    token = ApiToken.objects.get()
    assert plaintext.startswith("adu_") and token.shown in plaintext
    page.goto(f"{live_server.url}/profile/")  # shown once: a new visit does not show it
    assert page.locator("code.token").count() == 0 and plaintext not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())  # "Revoke the token ...?"
    page.click(f"#token-{token.pk} button")
    assert "revoked" in page.inner_text(f"#token-{token.pk}")
    token.refresh_from_db()
    assert token.status == "revoked"

    page.click("header >> text=API")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() == 24
    shot(page, "api-reference")

    jobs = f"{live_server.url}/api/v1/jobs/"
    assert page.evaluate(FETCH, [jobs, "GET", ""])[0] == 200
    cancel = f"{live_server.url}/api/v1/jobs/999/cancel/"
    status, body = page.evaluate(FETCH, [cancel, "POST", ""])
    assert (status, body["error"]["code"]) == (403, "csrf_failed")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    assert page.evaluate(FETCH, [cancel, "POST", csrf])[0] == 404  # past CSRF: no job 999
