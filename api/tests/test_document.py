"""The OpenAPI document matches the endpoints exactly, the portal's API page is rendered from
it (no script of its own), and no answer carries a traceback or a secret."""

import re

import pytest

from api.tests.helpers import body, error_of
from api.urls import api_urls
from api.v1 import api

# Runs export jobs: `make test` runs it again on PostgreSQL metadata and the Redis broker.
pytestmark = pytest.mark.jobs
API = "/api/v1"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _document():
    return api.get_openapi_schema()


def test_the_document_lists_exactly_the_routes_of_the_api():
    routes = {
        "/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(p.pattern))
        for p in api_urls[0]
        if str(p.pattern) not in ("", "openapi.json")
    }
    assert set(_document()["paths"]) == routes


@pytest.mark.django_db(transaction=True)
def test_each_path_answers_exactly_the_documented_methods(client, owner, world, bearer):
    headers = bearer(owner)
    ids = {"job_id": world["done"].pk, "connection_id": world["connection"].pk, "load_id": 1,
           "plan_id": 1, "action": "pause",
           "path": world["done"].tables.get(table="t").files[0]["path"]}  # fmt: skip
    for path, item in _document()["paths"].items():
        url = path.format(**ids)
        for method in METHODS:
            response = client.generic(method, url, **headers)
            documented = method.lower() in item
            assert (response.status_code != 405) == documented, (method, url)
            if documented:
                assert response.status_code in item[method.lower()]["responses"], (
                    method,
                    url,
                    response.status_code,
                )


@pytest.mark.django_db
def test_every_operation_documents_its_errors_in_one_shape():
    for path, item in _document()["paths"].items():
        for method, operation in item.items():
            for status in (400, 401, 404, 429):
                if status == 404 and path.endswith(
                    ("/jobs/", "/connections/", "/loads/", "/receipts/", "/plans/")
                ):
                    continue
                answer = operation["responses"][status]
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorOut"), (method, path, status)
            assert {"BearerToken": []} in operation["security"], (method, path)
            assert {"SessionCookie": []} in operation["security"], (method, path)


@pytest.mark.django_db
def test_the_document_needs_a_token_or_a_session(client, owner, bearer):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"
    assert client.get(f"{API}/openapi.json", **bearer(owner)).json()["openapi"].startswith("3.")
    client.force_login(owner)
    assert client.get(f"{API}/openapi.json").status_code == 200
    assert client.get(f"{API}/docs").status_code == 404  # no Swagger UI from a CDN


@pytest.mark.django_db
def test_the_api_page_is_swagger_ui_from_static_files_without_inline_scripts(client, viewer):
    anonymous = client.get("/api/")
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    client.force_login(viewer)
    response = client.get("/api/")
    assert response.status_code == 200
    page = response.content.decode()
    # Swagger UI, vendored, reads the document the API serves (the browser test drives it).
    assert 'src="/static/adu/swagger-ui/swagger-ui-bundle.js"' in page
    assert 'src="/static/adu/api-browser.js"' in page
    assert f'data-openapi-url="{API}/openapi.json"' in page
    assert re.findall(r"<script(?![^>]*src=\"/static/)", page) == []
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert 'href="/api/"' in page and 'href="/profile/"' in page  # in the nav


@pytest.mark.django_db(transaction=True)
def test_no_answer_carries_a_secret(client, owner, source_db, export, bearer):
    secret = "Api-Secret-Mark-7"
    role = f"reader_{source_db.name}"
    source_db.execute("CREATE TABLE t AS SELECT 1 AS i")
    source_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    source_db.execute(f"GRANT SELECT ON t TO {role}")
    try:
        connection = source_db.connection(owner, name="src", username=role, password=secret)
        job = export(connection, tables=["public.t", "public.gone"])
        assert job.status == "complete_with_errors"
        headers = bearer(owner)
        for url in [
            f"{API}/jobs/",
            f"{API}/jobs/{job.pk}/",
            f"{API}/jobs/{job.pk}/errors/",
            f"{API}/jobs/{job.pk}/manifest/",
            f"{API}/connections/",
            f"{API}/connections/{connection.pk}/schemas/",
            f"{API}/connections/{connection.pk}/tables/",
        ]:
            response = client.get(url, **headers)
            assert response.status_code == 200, url
            assert secret.encode() not in body(response), url
    finally:
        source_db.execute(f"DROP OWNED BY {role}")
        source_db.execute(f"DROP ROLE {role}")


@pytest.mark.django_db
def test_a_server_error_is_one_sentence_in_json_without_a_traceback(
    client, owner, bearer, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom at /secret/path")

    monkeypatch.setattr("api.v1.Connection.objects.editable_by", broken)
    response = client.get(f"{API}/connections/", **bearer(owner))
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "server_error" and "boom" not in error["message"]
