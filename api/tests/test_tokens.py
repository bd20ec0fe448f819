"""Personal API tokens: made and revoked on the profile page, shown once, stored hashed,
revocable by an ADU Admin, on the audit trail; the session works too, with CSRF; and the
per-token rate limit."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection as db
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from api.tests.helpers import error_of
from audit.models import AuditEvent

API = "/api/v1"


def _plaintext(response) -> str:
    text = response.content.decode()
    start = text.index('<code class="token">') + len('<code class="token">')
    return text[start : text.index("</code>", start)]


@pytest.mark.django_db
def test_a_token_is_shown_once_and_stored_only_as_its_hash(client, owner):
    client.force_login(owner)
    response = client.post("/profile/", {"name": "nightly", "expires": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = _plaintext(response)
    assert plaintext.startswith("adu_") and len(plaintext) >= 40
    token = ApiToken.objects.get()
    assert token.digest == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.user == owner and token.name == "nightly"
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    again = client.get("/profile/").content.decode()
    assert plaintext not in again and token.shown in again and "nightly" in again
    # Nowhere in the database: not the token table, not the audit trail, not the session.
    with db.cursor() as cursor:
        for table in ("api_apitoken", "audit_auditevent", "django_session"):
            cursor.execute(f"SELECT * FROM {table}")
            rows = repr(cursor.fetchall())
            assert plaintext[len(token.shown) :] not in rows, table
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_CREATE)
    assert (event.username, event.object_id) == ("owner", str(token.pk))


@pytest.mark.django_db
def test_the_profile_page_needs_a_name_and_shows_only_ones_own_tokens(client, owner, outsider):
    ApiToken.issue(outsider, "theirs")
    client.force_login(owner)
    response = client.post("/profile/", {"name": "", "expires": ""})
    assert response.status_code == 200 and b"This field is required" in response.content
    assert not ApiToken.objects.filter(user=owner).exists()
    assert b"theirs" not in client.get("/profile/").content
    assert client.delete("/profile/").status_code == 405


@pytest.mark.django_db
def test_the_profile_page_needs_a_login(client):
    response = client.get("/profile/")
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.django_db
def test_a_user_revokes_their_token_and_it_stops_working(client, owner, bearer):
    headers = bearer(owner)
    token = ApiToken.objects.get()
    assert client.get(f"{API}/jobs/", **headers).status_code == 200
    client.force_login(owner)
    assert client.get(f"/profile/tokens/{token.pk}/revoke/").status_code == 405
    response = client.post(f"/profile/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.status == "revoked" and token.revoked_by == owner
    client.logout()
    response = client.get(f"{API}/jobs/", **headers)
    assert response.status_code == 401 and "revoked" in error_of(response)["message"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert (event.username, event.object_id) == ("owner", str(token.pk))


@pytest.mark.django_db
def test_nobody_revokes_another_users_token(client, owner, outsider):
    token, _ = ApiToken.issue(outsider, "theirs")
    client.force_login(owner)
    assert client.post(f"/profile/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.status == "active"


@pytest.mark.django_db
def test_an_adu_admin_revokes_any_token_in_the_admin(client, admin_user, owner):
    token, plaintext = ApiToken.issue(owner, "nightly")
    client.force_login(admin_user)
    listing = client.get("/admin/api/apitoken/")
    assert listing.status_code == 200 and b"nightly" in listing.content
    assert plaintext.encode() not in listing.content
    assert client.get("/admin/api/apitoken/add/").status_code == 403
    response = client.post(
        "/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.status == "revoked" and token.revoked_by == admin_user
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert event.username == "root" and event.details["owner"] == "owner"
    detail = client.get(f"/admin/api/apitoken/{token.pk}/change/")
    assert detail.status_code == 200 and plaintext.encode() not in detail.content


@pytest.mark.django_db
def test_token_use_is_on_the_audit_trail_once_a_minute(client, owner, bearer):
    headers = bearer(owner)
    for _ in range(3):
        assert client.get(f"{API}/jobs/", **headers, HTTP_USER_AGENT="cron").status_code == 200
    uses = AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_USE)
    [use] = uses
    assert (use.username, use.user_agent, use.details["path"]) == ("owner", "cron", f"{API}/jobs/")
    token = ApiToken.objects.get()
    assert token.last_used_at is not None
    ApiToken.objects.update(last_used_at=token.last_used_at - timedelta(seconds=61))
    client.get(f"{API}/connections/", **headers)
    assert uses.all().count() == 2  # .all(): the first answer is cached


@pytest.mark.django_db
def test_actions_through_a_token_are_recorded_for_its_user(client, owner, source_db, bearer):
    connection = source_db.connection(owner)
    client.get(f"{API}/connections/{connection.pk}/schemas/", **bearer(owner))
    event = AuditEvent.objects.get(action=AuditEvent.Action.DISCOVERY)
    assert event.username == "owner" and event.ip_address == "127.0.0.1"


@pytest.mark.django_db
def test_the_browser_session_works_with_csrf_for_unsafe_methods(owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    assert browser.get(f"{API}/jobs/").status_code == 200
    refused = browser.post(f"{API}/jobs/1/cancel/")
    assert refused.status_code == 403 and error_of(refused)["code"] == "csrf_failed"
    browser.get("/profile/")  # sets the CSRF cookie, as every portal page does
    csrf = browser.cookies["csrftoken"].value
    allowed = browser.post(f"{API}/jobs/1/cancel/", HTTP_X_CSRFTOKEN=csrf)
    assert allowed.status_code == 404  # past CSRF: there is no job 1


@pytest.mark.django_db
def test_a_bad_token_is_refused_even_with_a_session(client, owner):
    client.force_login(owner)
    response = client.get(f"{API}/jobs/", HTTP_AUTHORIZATION="Bearer adu_nope")
    assert response.status_code == 401


@pytest.mark.django_db
def test_too_many_requests_get_429_with_retry_after(client, owner, outsider, bearer, settings):
    settings.API_RATE_PER_MINUTE = 3
    headers, other = bearer(owner), bearer(outsider)
    statuses = [client.get(f"{API}/jobs/", **headers).status_code for _ in range(4)]
    if statuses[-1] == 200:  # the clock minute turned between two requests: once more
        statuses = [client.get(f"{API}/jobs/", **headers).status_code for _ in range(4)]
    assert statuses[-1] == 429
    response = client.get(f"{API}/jobs/", **headers)
    assert error_of(response)["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert client.get(f"{API}/jobs/", **other).status_code == 200  # counted per token
    client.force_login(owner)
    assert [client.get(f"{API}/jobs/").status_code for _ in range(3)][0] == 200  # the session


def test_logs_never_show_a_token():
    import logging

    from adu_site.redaction import RedactSecrets

    plaintext = "adu_" + "A1-_" * 10 + "xyz"  # the shape of a token: 43 characters
    record = logging.LogRecord(
        "adu", logging.INFO, __file__, 1, "got %s; header Bearer %s", (plaintext, "other"), None
    )
    RedactSecrets().filter(record)
    assert record.getMessage() == "got [redacted]; header Bearer [redacted]"
