"""Every API endpoint: the owner gets it, another user gets 404, no token and a bad,
revoked or expired token get 401, a wrong method gets 405, all errors in one JSON shape."""

from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import ApiToken
from api.tests.helpers import body, error_of

# Runs export jobs: `make test` runs it again on PostgreSQL metadata and the Redis broker.
pytestmark = pytest.mark.jobs
API = "/api/v1"


def endpoints(world):
    """(method, url, the owner's status) for every endpoint, about the world's objects."""
    done, queued, connection = world["done"], world["queued"], world["connection"]
    table = done.tables.get(table="t")
    return [
        ("GET", f"{API}/jobs/", 200),
        ("GET", f"{API}/jobs/{done.pk}/", 200),
        ("GET", f"{API}/jobs/{done.pk}/errors/", 200),
        ("GET", f"{API}/jobs/{done.pk}/manifest/", 200),
        ("GET", f"{API}/jobs/{done.pk}/files/{table.files[0]['path']}", 200),
        ("GET", f"{API}/jobs/{done.pk}/files/manifest.json", 200),
        ("POST", f"{API}/jobs/{queued.pk}/cancel/", 202),
        ("POST", f"{API}/jobs/{done.pk}/retry/", 202),
        ("GET", f"{API}/connections/", 200),
        ("GET", f"{API}/connections/{connection.pk}/schemas/", 200),
        ("GET", f"{API}/connections/{connection.pk}/tables/?schema=public", 200),
    ]


LISTS = {f"{API}/jobs/", f"{API}/connections/"}


def call(client, method, url, **headers):
    return client.get(url, **headers) if method == "GET" else client.post(url, **headers)


@pytest.mark.django_db(transaction=True)
def test_the_owner_gets_every_endpoint(client, owner, world, bearer):
    headers = bearer(owner)
    for method, url, status in endpoints(world):
        response = call(client, method, url, **headers)
        assert response.status_code == status, (url, body(response)[:300])
        assert b"Traceback" not in body(response), url


@pytest.mark.django_db(transaction=True)
def test_another_user_gets_404_for_the_owners_objects(client, outsider, world, bearer):
    headers = bearer(outsider)
    for method, url, _ in endpoints(world):
        response = call(client, method, url, **headers)
        if url in LISTS:
            data = response.json()
            assert response.status_code == 200, url
            assert (data["results"] if isinstance(data, dict) else data) == [], url
        else:
            assert response.status_code == 404, url
            assert error_of(response)["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_no_token_gets_401_not_a_login_page(client, world):
    for method, url, _ in endpoints(world):
        response = call(client, method, url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == 'Bearer realm="adu"'
        assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.django_db(transaction=True)
def test_a_revoked_expired_or_unknown_token_gets_401(client, owner, world, bearer):
    revoked, expired = bearer(owner, name="revoked"), bearer(owner, name="expired", days=1)
    ApiToken.objects.get(name="revoked").revoke(by=owner)
    ApiToken.objects.filter(name="expired").update(expires_at=timezone.now() - timedelta(seconds=1))
    wrong = {
        "revoked": revoked,
        "expired": expired,
        "not valid": {"HTTP_AUTHORIZATION": "Bearer adu_" + "x" * 43},
        "must be 'Bearer": {"HTTP_AUTHORIZATION": "Basic b3duZXI6b3duZXItcGFzcy0xMjM="},
    }
    for method, url, _ in endpoints(world):
        for words, headers in wrong.items():
            response = call(client, method, url, **headers)
            assert response.status_code == 401, (url, words)
            assert words in error_of(response)["message"], (url, words)


@pytest.mark.django_db(transaction=True)
def test_an_inactive_users_token_gets_401(client, owner, world, bearer):
    headers = bearer(owner)
    owner.is_active = False
    owner.save()
    assert client.get(f"{API}/jobs/", **headers).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_wrong_method_gets_405_in_json(client, owner, world, bearer):
    headers = bearer(owner)
    for method, url, _ in endpoints(world):
        wrong = client.delete(url, **headers) if method == "GET" else client.get(url, **headers)
        assert wrong.status_code == 405, url
        assert error_of(wrong)["code"] == "method_not_allowed"
        assert method in wrong["Allow"]


@pytest.mark.django_db(transaction=True)
def test_an_unknown_api_url_is_a_json_404(client, owner, bearer):
    response = client.get(f"{API}/nothing-here/", **bearer(owner))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    # A path converter that does not match (not a number) is the same 404.
    assert client.get(f"{API}/jobs/abc/", **bearer(owner)).status_code == 404
