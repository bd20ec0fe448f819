"""Every portal page and partial: the owner sees it, another user gets 404, an anonymous
visitor is sent to log in, and the wrong method gets 405."""

import pytest
from django.urls import reverse

from exports.engine.run import run_job
from exports.jobs import create_job
from exports.models import ExportJob

PASSWORD = "View-Secret-Mark"


@pytest.fixture
def finished_job(owner, source_db):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    connection = source_db.connection(owner, name="src")
    return run_job(create_job(owner, connection).pk)


def pages(job):
    """(url, methods that work) for every page and partial about this job and connection."""
    connection = job.connection
    [entry] = job.tables.get().files
    return [
        (reverse("dashboard"), "GET"),
        (reverse("dashboard_running"), "GET"),
        (reverse("job_list"), "GET"),
        (reverse("job_list_rows"), "GET"),
        (reverse("job_new"), "GET"),
        (reverse("job_detail", args=[job.pk]), "GET"),
        (reverse("job_live", args=[job.pk]), "GET"),
        (reverse("job_log", args=[job.pk]), "GET"),
        (reverse("job_log_lines", args=[job.pk]), "GET"),
        (reverse("job_log_download", args=[job.pk]), "GET"),
        (reverse("job_file", args=[job.pk, entry["path"]]), "GET"),
        (reverse("job_file", args=[job.pk, "manifest.json"]), "GET"),
        (reverse("job_cancel", args=[job.pk]), "POST"),
        (reverse("job_retry", args=[job.pk]), "POST"),
        (reverse("connection_list"), "GET"),
        (reverse("connection_create"), "GET"),
        (reverse("connection_edit", args=[connection.pk]), "GET"),
        (reverse("connection_delete", args=[connection.pk]), "GET"),
        (reverse("connection_test", args=[connection.pk]), "POST"),
        (reverse("connection_tables") + f"?connection={connection.pk}", "GET"),
    ]


OWN_OBJECT = ("/jobs/", "/connections/")


@pytest.mark.django_db(transaction=True)
def test_the_owner_sees_every_page(client, owner, finished_job):
    client.force_login(owner)
    for url, method in pages(finished_job):
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code in (200, 302), url
        body = b"".join(response) if hasattr(response, "streaming_content") else response.content
        assert b"Traceback" not in body, url


@pytest.mark.django_db(transaction=True)
def test_another_user_gets_404_for_the_owners_objects(client, outsider, finished_job):
    client.force_login(outsider)
    for url, method in pages(finished_job):
        if not any(str(pk) in url for pk in (finished_job.pk, finished_job.connection.pk)):
            continue  # pages of their own (dashboard, lists) are theirs to see
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 404, url


@pytest.mark.django_db(transaction=True)
def test_anonymous_visitors_are_sent_to_log_in(client, finished_job):
    for url, method in pages(finished_job):
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.django_db(transaction=True)
def test_the_wrong_method_gets_405(client, owner, finished_job):
    client.force_login(owner)
    for url, method in pages(finished_job):
        response = client.post(url) if method == "GET" else client.get(url)
        if method == "GET" and url.endswith(("/new/", "/edit/", "/delete/")):
            continue  # forms take POST too
        if "/jobs/new/" in url:
            continue
        assert response.status_code == 405, url


@pytest.mark.django_db(transaction=True)
def test_lists_show_only_own_jobs_and_connections(client, outsider, finished_job):
    client.force_login(outsider)
    assert b"<td>src</td>" not in client.get(reverse("connection_list")).content
    assert f"#{finished_job.pk}".encode() not in client.get(reverse("job_list")).content
    assert f"#{finished_job.pk}".encode() not in client.get(reverse("dashboard")).content


@pytest.mark.django_db(transaction=True)
def test_a_guessed_file_path_is_404(client, owner, finished_job):
    client.force_login(owner)
    for path in ["../../etc/passwd", "public/other.parquet", "public/t.parquet.part"]:
        assert client.get(f"/jobs/{finished_job.pk}/files/{path}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_downloads_stream_the_files(client, owner, finished_job):
    client.force_login(owner)
    [entry] = finished_job.tables.get().files
    response = client.get(reverse("job_file", args=[finished_job.pk, entry["path"]]))
    body = b"".join(response.streaming_content)
    assert body[:4] == b"PAR1" and len(body) == entry["bytes"]
    manifest = client.get(reverse("job_file", args=[finished_job.pk, "manifest.json"]))
    assert b'"job_id"' in b"".join(manifest.streaming_content)


@pytest.mark.django_db
def test_connection_forms_keep_the_password_write_only(client, owner):
    client.force_login(owner)
    data = {"name": "dw", "kind": "postgresql", "host": "db.internal", "port": 5432,
            "database": "dw", "username": "etl", "password": PASSWORD, "sslmode": "prefer",
            "connect_timeout": 10}  # fmt: skip
    assert client.post(reverse("connection_create"), data).status_code == 302
    from connections.models import Connection

    connection = Connection.objects.get(name="dw")
    page = client.get(reverse("connection_edit", args=[connection.pk])).content.decode()
    assert PASSWORD not in page
    client.post(
        reverse("connection_edit", args=[connection.pk]),
        {**data, "password": "", "connect_timeout": 20},
    )
    connection.refresh_from_db()
    assert connection.connect_timeout == 20 and connection.secret() == PASSWORD
    # A new host needs the password again (connections/tests/test_endpoint.py).
    client.post(
        reverse("connection_edit", args=[connection.pk]), {**data, "password": "", "host": "h2"}
    )
    connection.refresh_from_db()
    assert connection.host == "db.internal" and connection.secret() == PASSWORD


@pytest.mark.django_db
def test_connection_form_errors_sit_next_to_the_field(client, owner):
    client.force_login(owner)
    response = client.post(reverse("connection_create"), {"name": "", "port": "x"})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count("field-error") >= 3


@pytest.mark.django_db(transaction=True)
def test_delete_is_refused_while_a_job_uses_the_connection(client, owner, finished_job):
    client.force_login(owner)
    url = reverse("connection_delete", args=[finished_job.connection.pk])
    assert b"cannot be deleted" in client.get(url).content
    client.post(url)
    assert ExportJob.objects.filter(connection=finished_job.connection).exists()


@pytest.mark.django_db(transaction=True)
def test_test_connection_answers_in_place(client, owner, source_db):
    client.force_login(owner)
    good = source_db.connection(owner, name="good")
    bad = source_db.connection(owner, name="bad", password=PASSWORD)
    ok = client.post(reverse("connection_test", args=[good.pk])).content.decode()
    assert "Connected: PostgreSQL" in ok
    wrong = client.post(reverse("connection_test", args=[bad.pk])).content.decode()
    assert "Wrong user name or password" in wrong and PASSWORD not in wrong


@pytest.mark.django_db(transaction=True)
def test_discovery_errors_are_shown_in_place(client, owner, source_db):
    client.force_login(owner)
    bad = source_db.connection(owner, name="bad", database="nope")
    page = client.get(reverse("connection_tables") + f"?connection={bad.pk}").content.decode()
    assert "Database &#x27;nope&#x27; does not exist" in page


@pytest.mark.django_db(transaction=True)
def test_starting_an_export_from_the_form_queues_it(client, owner, source_db):
    source_db.execute("CREATE TABLE a AS SELECT 1 AS i")
    connection = source_db.connection(owner, name="src")
    client.force_login(owner)
    form = {"connection": connection.pk, "out": "", "parallel": 2, "compression_level": 3,
            "batch_rows": 100000}  # fmt: skip
    missing = client.post(reverse("job_new"), form)
    assert b"Select at least one table" in missing.content
    response = client.post(reverse("job_new"), {**form, "tables": ["public.a"]})
    job = ExportJob.objects.get()
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    assert job.status == "queued" and job.tables_total == 1
    bad_out = client.post(reverse("job_new"), {**form, "tables": ["public.a"], "out": "../x"})
    assert b"is not a folder name" in bad_out.content
