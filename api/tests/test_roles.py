"""Each role against each API endpoint, as the portal's role matrix (accounts/tests/
test_roles.py): `owner` (Operator) shares a connection with the group "analysts", of which
`mate` (Operator) and `reader` (Viewer) are members; `stranger` (Operator) is not; `boss`
is an ADU Admin; `nobody` has no role."""

import pytest

from api.tests.helpers import post_json
from tests.factories import role_cast

# Runs export jobs: `make test` runs it again on PostgreSQL metadata and the Redis broker.
pytestmark = pytest.mark.jobs
API = "/api/v1"
USERS = ("boss", "owner", "mate", "reader", "stranger", "nobody")
SEE_JOB = {"boss", "owner", "mate", "reader"}
USE_CONNECTION = {"boss", "owner", "mate"}
CHANGE = {"boss", "owner"}


@pytest.fixture
def cast(django_user_model, source_db, bearer):
    people, connection, job = role_cast(
        django_user_model, source_db, tables=["public.t", "public.gone"]
    )
    return {
        "connection": connection,
        "job": job,
        "headers": {name: bearer(user) for name, user in people.items()},
    }


# (name, method, url builder, who gets the success status; everyone else gets 404)
MATRIX = [
    ("job", "GET", lambda c: f"{API}/jobs/{c['job'].pk}/", SEE_JOB),
    ("errors", "GET", lambda c: f"{API}/jobs/{c['job'].pk}/errors/", SEE_JOB),
    ("manifest", "GET", lambda c: f"{API}/jobs/{c['job'].pk}/manifest/", SEE_JOB),
    (
        "file",
        "GET",
        lambda c: f"{API}/jobs/{c['job'].pk}/files/{c['job'].tables.get(table='t').files[0]['path']}",
        SEE_JOB,
    ),
    ("schemas", "GET", lambda c: f"{API}/connections/{c['connection'].pk}/schemas/", USE_CONNECTION),
    ("tables", "GET", lambda c: f"{API}/connections/{c['connection'].pk}/tables/", USE_CONNECTION),
    ("cancel", "POST", lambda c: f"{API}/jobs/{c['job'].pk}/cancel/", CHANGE),  # 409: finished
    ("retry", "POST", lambda c: f"{API}/jobs/{c['job'].pk}/retry/", CHANGE),
]  # fmt: skip
SUCCESS = {"cancel": 409, "retry": 202}


@pytest.mark.django_db(transaction=True)
def test_every_role_against_every_endpoint(client, cast):
    wrong = []
    for username in USERS:
        headers = cast["headers"][username]
        for name, method, url, allowed in MATRIX:
            if name == "retry":  # the last: once retried, the job is running again
                continue
            response = (
                client.get(url(cast), **headers)
                if method == "GET"
                else client.post(url(cast), **headers)
            )
            expected = SUCCESS.get(name, 200) if username in allowed else 404
            if response.status_code != expected:
                wrong.append(f"{username} {name}: {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.django_db(transaction=True)
def test_only_the_owner_and_an_adu_admin_may_retry(client, cast):
    url = f"{API}/jobs/{cast['job'].pk}/retry/"
    for username in ("mate", "reader", "stranger", "nobody"):
        assert client.post(url, **cast["headers"][username]).status_code == 404, username
    assert client.post(url, **cast["headers"]["boss"]).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_lists_show_what_the_role_may_see_and_where_it_points_only_to_editors(client, cast):
    connection = cast["connection"]
    for username in USERS:
        headers = cast["headers"][username]
        jobs = client.get(f"{API}/jobs/", **headers).json()["results"]
        assert ([j["id"] for j in jobs] == [cast["job"].pk]) == (username in SEE_JOB), username
        listed = client.get(f"{API}/connections/", **headers).json()
        assert bool(listed) == (username in SEE_JOB), username
        for entry in listed:
            assert entry["id"] == connection.pk and entry["shared_with"] == ["analysts"]
            assert entry["can_edit"] == (username in CHANGE), username
            assert entry["can_export"] == (username in USE_CONNECTION), username
            where = (entry["host"], entry["port"], entry["database"], entry["username"])
            if username in CHANGE:
                assert where == (connection.host, connection.port, connection.database,
                                 connection.username)  # fmt: skip
            else:
                assert where == (None, None, None, None), username
            assert not {"password", "ca_certificate", "options"} & set(entry)


@pytest.mark.django_db(transaction=True)
def test_only_operators_on_a_usable_connection_start_jobs(client, cast):
    data = {"connection": cast["connection"].pk, "tables": ["public.t"]}
    expected = {"boss": 202, "owner": 202, "mate": 202, "reader": 403, "stranger": 404,
                "nobody": 403}  # fmt: skip
    got = {
        username: post_json(client, f"{API}/jobs/", data, **cast["headers"][username]).status_code
        for username in USERS
    }
    assert got == expected
