"""What the portal, the API and the commands show of a connection and of an error, by role
(issue 17, point 8b and 8c): tracebacks only to ADU Admins; where a connection points
(host, port, database, user) only to those who may edit it."""

import io
import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from connections.models import Connection
from exports.models import ExportJob, JobError, TableRun
from tests.factories import user_with_role

HOST, USER = "db-secret-host.internal", "etl_secret_login"
TRACE = 'Traceback (most recent call last):\n  File "/app/exports/engine/run.py", line 1'


@pytest.fixture
def cast(django_user_model, owner):
    """owner's connection, shared with the team of `mate` (an Operator) and `reader` (a
    Viewer); `boss` is an ADU Admin by group; one job with an error that has a traceback."""
    team = Group.objects.create(name="team")
    people = {
        "owner": owner,
        "mate": user_with_role(django_user_model, "mate", "ADU Operator"),
        "reader": user_with_role(django_user_model, "reader", "ADU Viewer"),
        "boss": user_with_role(django_user_model, "boss", "ADU Admin"),
    }
    for name in ("owner", "mate", "reader"):
        people[name].groups.add(team)
    connection = Connection.objects.create(
        owner=owner, name="warehouse", host=HOST, port=5439, database="dw", username=USER,
        password="Pw-Never-Shown-1",
    )  # fmt: skip
    connection.shared_with.add(team)
    job = ExportJob.objects.create(owner=owner, connection=connection, output_dir="exposure-1")
    run = TableRun.objects.create(job=job, schema="public", table="t", status="failed")
    JobError.objects.create(job=job, table_run=run, message="The table broke.", traceback=TRACE)
    return people, connection, job


def page(client, user, url) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


@pytest.mark.django_db
def test_tracebacks_only_for_adu_admins(client, cast):
    people, _, job = cast
    for url in (reverse("job_detail", args=[job.pk]), reverse("job_live", args=[job.pk])):
        for name in ("owner", "mate", "reader"):
            html = page(client, people[name], url)
            assert "The table broke." in html, (name, url)
            assert "Traceback" not in html and "engine/run.py" not in html, (name, url)
        html = page(client, people["boss"], url)
        assert "Traceback" in html and "engine/run.py" in html


@pytest.mark.django_db
def test_the_job_page_shows_where_the_source_is_only_to_editors(client, cast):
    people, _, job = cast
    url = reverse("job_detail", args=[job.pk])
    for name in ("mate", "reader"):
        html = page(client, people[name], url)
        assert "warehouse" in html and "PostgreSQL" in html
        assert HOST not in html and USER not in html and "5439" not in html, name
    for name in ("owner", "boss"):
        assert f"{HOST}:5439/dw" in page(client, people[name], url), name


@pytest.mark.django_db
def test_the_connection_list_shows_where_it_points_only_to_editors(client, cast):
    people, _, _ = cast
    for name in ("mate", "reader"):
        html = page(client, people[name], reverse("connection_list"))
        assert "warehouse" in html and HOST not in html and USER not in html, name
    html = page(client, people["owner"], reverse("connection_list"))
    assert HOST in html and USER in html


@pytest.mark.django_db
def test_the_api_lists_where_it_points_only_to_editors(client, cast):
    people, _, _ = cast
    client.force_login(people["mate"])
    [entry] = client.get("/api/v1/connections/").json()
    assert entry["name"] == "warehouse" and entry["kind"] == "postgresql"
    assert entry["host"] is None and entry["username"] is None and not entry["can_edit"]
    client.force_login(people["owner"])
    [entry] = client.get("/api/v1/connections/").json()
    assert entry["host"] == HOST and entry["username"] == USER


@pytest.mark.django_db
def test_the_command_lists_where_it_points_only_to_editors(cast):
    def listing(name, *extra):
        out = io.StringIO()
        call_command("adu_connection", "list", "--as", name, *extra, stdout=out)
        return out.getvalue()

    text = listing("mate")
    assert "warehouse" in text and HOST not in text and USER not in text
    [row] = json.loads(listing("mate", "--json"))
    assert row["host"] is None and row["username"] is None and row["kind"] == "postgresql"
    assert HOST in listing("owner") and USER in listing("owner")
