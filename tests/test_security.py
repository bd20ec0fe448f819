"""Hardening and bad input: headers, CSRF, secrets that never leak, names that never inject,
folders that never leave the export root, and form input that never causes a 500."""

import io
import json
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection as metadata_db
from django.test import Client
from django.urls import reverse

from exports.engine.run import run_job
from exports.jobs import BadRequest, create_job
from exports.models import JobError

PLANTED_PASSWORD = "Planted-Pw-Qx7Zr81kL"
WRONG_PASSWORD = "Planted-Wrong-Pw-Vv42"


def _body(response) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


@pytest.mark.django_db
def test_every_page_carries_the_security_headers(client, owner):
    client.force_login(owner)
    for url in ("/", "/accounts/login/", "/admin/login/"):
        response = client.get(url)
        policy = response["Content-Security-Policy"]
        script = next(part for part in policy.split("; ") if part.startswith("script-src"))
        assert script == "script-src 'self'", url
        assert "frame-ancestors 'none'" in policy
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db(transaction=True)
def test_forms_and_htmx_requests_need_the_csrf_token(owner, source_db):
    connection = source_db.connection(owner)
    browser = Client(enforce_csrf_checks=True)
    login = browser.post(reverse("login"), {"username": "owner", "password": "owner-pass-123"})
    assert login.status_code == 403  # no token: not even the login form
    browser.get(reverse("login"))
    token = browser.cookies["csrftoken"].value
    browser.post(
        reverse("login"),
        {"username": "owner", "password": "owner-pass-123", "csrfmiddlewaretoken": token},
    )
    url = reverse("connection_test", args=[connection.pk])
    assert browser.post(url, HTTP_HX_REQUEST="true").status_code == 403
    token = browser.cookies["csrftoken"].value
    allowed = browser.post(url, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 200 and "Connected" in allowed.content.decode()
    # The pages hand htmx the token on every request.
    assert '"X-CSRFToken": "' in browser.get("/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "out",
    ["..", "../elsewhere", "/etc", "a/b", "x;rm -rf", "-rf", ".hidden", "ünï", "a" * 300],
)
def test_an_output_folder_never_leaves_the_export_root(owner, source_db, out):
    with pytest.raises(BadRequest, match="is not a folder name"):
        create_job(owner, source_db.connection(owner), tables=["public.t"], out=out)


@pytest.mark.django_db
def test_a_symlink_out_of_the_export_root_is_refused(owner, source_db, tmp_path):
    root = Path(settings.EXPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(BadRequest, match="leads outside the export root"):
        create_job(owner, source_db.connection(owner), tables=["public.t"], out="escape")


@pytest.mark.django_db(transaction=True)
def test_odd_names_are_exported_exactly_and_never_inject(owner, source_db, export):
    names = [
        "Mixed Case",
        'we"ird',
        "semi;colon",
        "space name",
        "ünïcödé",
        "x'); DROP TABLE victim; --",
    ]
    source_db.execute('CREATE TABLE victim (i int); CREATE SCHEMA "My Schema";')
    for n, name in enumerate(names, start=1):
        quoted = '"' + name.replace('"', '""') + '"'
        source_db.execute(
            f'CREATE TABLE "My Schema".{quoted} ({quoted} integer);'
            f'INSERT INTO "My Schema".{quoted} SELECT generate_series(1, {n});'
        )
    job = export(source_db.connection(owner), schemas=["My Schema"])
    assert job.status == "complete", list(job.errors.values_list("message", flat=True))
    rows = {run.table: run.rows_written for run in job.tables.all()}
    assert rows == {name: n for n, name in enumerate(names, start=1)}
    assert source_db.execute("SELECT count(*) FROM victim") == [(0,)]
    for run in job.tables.all():
        [entry] = run.files
        path = (job.folder() / entry["path"]).resolve()
        assert path.is_relative_to(job.folder().resolve())


@pytest.mark.django_db(transaction=True)
def test_oversized_or_malformed_form_input_gets_a_form_error_never_a_500(client, owner, source_db):
    connection = source_db.connection(owner)
    client.force_login(owner)
    huge = "x" * 100_000
    posts = [
        (reverse("connection_create"), {"name": huge, "host": huge, "port": "abc"}),
        (reverse("connection_create"), {"name": "n", "port": "99999999999999999999"}),
        (reverse("connection_create"), {"name": "n", "connect_timeout": "-1", "kind": "oracle"}),
        (reverse("job_new"), {"connection": "abc", "parallel": "many", "tables": [huge]}),
        (reverse("job_new"), {"connection": connection.pk, "parallel": "1", "out": "../x",
                              "compression_level": "3", "batch_rows": "100000",
                              "tables": ["nodot"]}),
        (reverse("rule_create"), {"connection": connection.pk, "schema": huge, "table": huge,
                                  "kind": "range", "minimum": huge, "pattern": "(" * 1000}),
    ]  # fmt: skip
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code == 200, (url, response.status_code)
        assert 'class="error' in response.content.decode(), url
    for url in ("/jobs/?page=zzz&since=notadate", "/jobs/1/log/?limit=abc&level=<script>"):
        assert client.get(url).status_code in (200, 404)
    assert Client().post(reverse("login"), {"username": huge, "password": huge}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_planted_password_and_key_appear_nowhere(
    client, owner, admin_user, source_db, settings, capsys, caplog
):
    key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [key]
    source_db.execute(
        f"CREATE ROLE planted LOGIN PASSWORD '{PLANTED_PASSWORD}';"
        "CREATE TABLE good AS SELECT generate_series(1, 50) AS i;"
        "GRANT SELECT ON good TO planted;"
        "CREATE TABLE locked (i int);"
    )
    server = source_db.server
    fields = {
        "kind": "postgresql", "host": server.host, "port": server.port,
        "database": source_db.name, "username": "planted", "sslmode": "disable",
        "connect_timeout": 5,
    }  # fmt: skip
    client.force_login(owner)
    client.post(
        reverse("connection_create"), {**fields, "name": "good", "password": PLANTED_PASSWORD}
    )
    client.post(reverse("connection_create"), {**fields, "name": "bad", "password": WRONG_PASSWORD})
    good, bad = owner.connections.get(name="good"), owner.connections.get(name="bad")
    seen = []  # every page, partial, output and message a person or a machine could read

    def page(url, method="GET", user=client):
        response = user.get(url) if method == "GET" else user.post(url)
        seen.append(_body(response))

    for connection in (good, bad):
        page(reverse("connection_test", args=[connection.pk]), "POST")
        page(reverse("connection_tables") + f"?connection={connection.pk}")
    job = run_job(create_job(owner, good, tables=["public.good", "public.locked"]).pk)
    failed = run_job(create_job(owner, bad, tables=["public.good"]).pk)
    assert job.status == "complete_with_errors" and failed.status == "failed"
    for each in (job, failed):
        for name in ("job_detail", "job_live", "job_log", "job_log_lines", "job_log_download"):
            page(reverse(name, args=[each.pk]))
        page(reverse("job_file", args=[each.pk, "manifest.json"]))
    for url in ("/", "/jobs/", "/connections/", "/rules/", "/jobs/new/"):
        page(url)
    for connection in (good, bad):
        page(reverse("connection_edit", args=[connection.pk]))
    admin = Client()
    admin.force_login(admin_user)
    for url in ("/admin/connections/connection/", f"/admin/connections/connection/{good.pk}/change/",
                f"/admin/exports/exportjob/{job.pk}/change/", "/admin/exports/joberror/",
                f"/admin/exports/tablerun/{job.tables.first().pk}/change/",
                "/admin/audit/auditevent/", "/admin/django_q/ormq/"):  # fmt: skip
        page(url, user=admin)
    for command, *args in (
        ("adu_connection", "list"),
        ("adu_connection", "test", "good"),
        ("adu_discover", "good"),
        ("adu_job", str(job.pk)),
        ("adu_jobs",),
        ("adu_export", "bad", "--sync", "--tables", "public.good"),
    ):
        out = io.StringIO()
        try:
            call_command(command, *args, "--as", "owner", "--json", stdout=out)
        except (CommandError, SystemExit) as error:
            seen.append(str(error))
        seen.append(out.getvalue())
    seen += [f"{e.message}\n{e.traceback}\n{json.dumps(e.context)}" for e in JobError.objects.all()]
    assert any("Wrong user name or password for 'planted'" in text for text in seen)

    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    files = [Path(metadata_db.settings_dict["NAME"])]
    files += [Path(str(files[0]) + suffix) for suffix in ("-wal", "-shm")]
    for folder in (settings.EXPORT_ROOT, settings.JOB_LOG_DIR, settings.VAR_DIR / "logs"):
        if Path(folder).exists():
            files += [p for p in Path(folder).rglob("*") if p.is_file()]
    blobs = [p.read_bytes() for p in files if p.exists()]
    assert len(blobs) > 5
    for secret in (PLANTED_PASSWORD, WRONG_PASSWORD, key):
        for text in seen:
            assert secret not in text
        for blob in blobs:
            assert secret.encode() not in blob
    assert os.environ.get("ADU_FERNET_KEYS", "") != key
