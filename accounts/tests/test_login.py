"""Every page needs a login, except the login page itself."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from adu_site import urls as root_urls


def every_path(patterns=None, prefix=""):
    """A concrete path for every URL pattern, with 1 for each argument."""
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(pattern.pattern)
        route = route.replace("^", "").replace("$", "").replace("\\Z", "")
        for converter in (
            "<int:pk>",
            "<path:object_id>",
            "<int:job_id>",
            "<int:id>",
            "<int:connection_id>",
        ):
            route = route.replace(converter, "1")
        if isinstance(pattern, URLResolver):
            yield from every_path(pattern.url_patterns, prefix + route)
        elif isinstance(pattern, URLPattern) and "(?P" not in route and "<" not in route:
            yield "/" + prefix + route


# /healthz answers load balancers and the container's health check, which have no login.
PUBLIC = {"/accounts/login/", "/admin/login/", "/healthz", "/favicon.ico"}
API = "/api/v1/"


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in_everywhere(client):
    paths = sorted(set(every_path(root_urls.urlpatterns)))
    assert "/" in paths and "/admin/" in paths and "/api/v1/jobs/1/" in paths
    for path in paths:
        if path in PUBLIC or path.startswith("/static/"):
            continue
        response = client.get(path)
        if path.startswith(API):
            # The API answers its callers in JSON (token or session), never with a redirect:
            # 401, or 404/405 for the API's root and POST-only endpoints.
            assert response.status_code in (401, 404, 405), path
            assert response["Content-Type"].startswith("application/json"), path
            continue
        assert response.status_code == 302, path
        assert "login" in response["Location"], path


@pytest.mark.django_db
def test_the_login_page_is_public_and_logging_in_works(client, owner):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "owner", "password": "owner-pass-123"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_a_wrong_password_gets_a_clear_message(client, owner):
    response = client.post("/accounts/login/", {"username": "owner", "password": "nope"})
    assert b"did not match" in response.content
