"""Bad input and faults: one clear sentence each, in the command's output and the JobError;
never the password; the other tables finish; no .parquet left at a final path for a failure."""

import io
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.localpg import free_port
from exports.models import ExportJob, JobError

PASSWORD_MARK = "Sup3r-Secret-Mark"


def run_export(*args):
    """adu_export --sync --json: (exit code, parsed output)."""
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("adu_export", *args, "--sync", "--json", "--as", "owner", stdout=out)
    return exit_info.value.code, json.loads(out.getvalue())


@pytest.fixture
def two_tables(source_db):
    source_db.execute("CREATE TABLE good (id int PRIMARY KEY, name text)")
    source_db.execute("INSERT INTO good SELECT i, 'n' || i FROM generate_series(1, 1000) i")
    source_db.execute("CREATE TABLE other (id int)")
    source_db.execute("INSERT INTO other SELECT generate_series(1, 10)")
    return source_db


def assert_no_secret(job, *texts):
    for error in JobError.objects.filter(job=job):
        texts += (error.message, error.traceback, json.dumps(error.context))
    for text in texts:
        assert PASSWORD_MARK not in text


def assert_no_final_file(job, table):
    folder = job.folder() / "public"
    if folder.exists():
        names = os.listdir(folder)
        assert f"{table}.parquet" not in names
        assert not [n for n in names if n.endswith(".part")]


def connection_error(owner, source_db, expected, **overrides):
    overrides.setdefault("password", PASSWORD_MARK)
    connection = source_db.connection(owner, **overrides)
    code, output = run_export(connection.name, "--tables", "public.good")
    job = ExportJob.objects.get(pk=output["job_id"])
    assert code == 2
    assert job.status == ExportJob.Status.FAILED
    [error] = output["errors"]
    assert expected in error
    assert JobError.objects.get(job=job).message == error
    assert_no_secret(job, json.dumps(output))
    return error


@pytest.mark.django_db(transaction=True)
def test_wrong_password(owner, two_tables):
    message = connection_error(owner, two_tables, "Wrong user name or password")
    assert message == (
        f"Wrong user name or password for '{two_tables.server.user}' on "
        f"{two_tables.server.host}:{two_tables.server.port}."
    )


@pytest.mark.django_db(transaction=True)
def test_unknown_host(owner, two_tables):
    connection_error(
        owner, two_tables, "Unknown host 'no-such-host.invalid'", host="no-such-host.invalid"
    )


@pytest.mark.django_db(transaction=True)
def test_connection_refused(owner, two_tables):
    connection_error(
        owner, two_tables, "Connection refused by 127.0.0.1:", port=free_port(), host="127.0.0.1"
    )


@pytest.mark.django_db(transaction=True)
def test_connect_timeout_within_ten_seconds(owner, two_tables):
    # A listener that never answers: the TCP handshake succeeds, the server never speaks.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    started = time.monotonic()
    try:
        connection_error(
            owner,
            two_tables,
            "No answer from 127.0.0.1:",
            host="127.0.0.1",
            port=silent.getsockname()[1],
            connect_timeout=2,
        )
    finally:
        silent.close()
    assert time.monotonic() - started < 10


@pytest.mark.django_db(transaction=True)
def test_missing_database(owner, two_tables):
    message = connection_error(
        owner,
        two_tables,
        "Database 'nope' does not exist",
        database="nope",
        password=two_tables.server.password,
    )
    assert message.endswith(f"{two_tables.server.host}:{two_tables.server.port}.")


@pytest.mark.django_db(transaction=True)
def test_missing_table_fails_alone(owner, two_tables):
    connection = two_tables.connection(owner)
    code, output = run_export(connection.name, "--tables", "public.good,public.nope")
    assert code == 1
    assert output["status"] == "complete_with_errors"
    tables = {t["table"]: t for t in output["tables"]}
    assert tables["good"]["status"] == "complete" and tables["good"]["rows"] == 1000
    assert tables["nope"]["status"] == "failed"
    assert tables["nope"]["error"] == "Table public.nope does not exist or has no columns."
    job = ExportJob.objects.get(pk=output["job_id"])
    assert_no_final_file(job, "nope")


@pytest.mark.django_db(transaction=True)
def test_no_select_permission_on_one_table(owner, two_tables):
    two_tables.execute(f"CREATE ROLE limited LOGIN PASSWORD '{PASSWORD_MARK}'")
    two_tables.execute("GRANT SELECT ON good TO limited")
    try:
        connection = two_tables.connection(owner, username="limited", password=PASSWORD_MARK)
        code, output = run_export(connection.name, "--tables", "public.good,public.other")
        tables = {t["table"]: t for t in output["tables"]}
        assert code == 1
        assert tables["good"]["status"] == "complete"
        assert tables["other"]["error"] == (
            "User 'limited' lacks permission: permission denied for table other."
        )
        assert_no_secret(ExportJob.objects.get(pk=output["job_id"]), json.dumps(output))
    finally:
        two_tables.execute("DROP OWNED BY limited")
        two_tables.execute("DROP ROLE limited")


@pytest.mark.django_db(transaction=True)
def test_table_dropped_between_discovery_and_export(owner, two_tables, export):
    from exports.engine.run import run_job
    from exports.jobs import create_job

    connection = two_tables.connection(owner)
    job = create_job(owner, connection)  # discovers both tables
    two_tables.execute("DROP TABLE other")
    job = run_job(job.pk)
    assert job.status == ExportJob.Status.COMPLETE_WITH_ERRORS
    error = JobError.objects.get(job=job)
    assert error.message == "Table public.other does not exist or has no columns."
    assert error.context["phase"] == "describe"


def export_while_killing(source_db, copy_like: str, connection, *args):
    """adu_export --sync --json of `args` while the server ends the first session whose
    COPY statement, still running, is LIKE `copy_like` (an idle session shows its last
    statement too): (exit code, output by table, job)."""
    killer_db = source_db.server.connect(source_db.name)
    killed = []

    def kill():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            with killer_db.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'adu' AND state = 'active' AND query LIKE %s "
                    "LIMIT 1",
                    [copy_like],
                )
                killed.extend(row for row in cur.fetchall() if row[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill)
    killer.start()
    code, output = run_export(connection.name, *args)
    killer.join()
    killer_db.close()
    assert killed
    job = ExportJob.objects.get(pk=output["job_id"])
    return code, {t["table"]: t for t in output["tables"]}, job


def assert_ended_by_the_server(table: dict, name: str):
    # libpq reports either the server's termination notice or the lost connection.
    assert table["status"] == "failed"
    assert re.fullmatch(
        rf"The database server ended the session exporting public\.{name} .*|"
        rf"The connection to 127\.0\.0\.1:\d+ was lost while exporting public\.{name}; "
        r"retry the job\.",
        table["error"],
    )


@pytest.mark.django_db(transaction=True)
def test_session_killed_mid_stream(owner, two_tables):
    # A view that streams slowly, so the COPY is surely running when it is killed.
    two_tables.execute(
        "CREATE VIEW slow AS SELECT i FROM generate_series(1, 300000) i "
        "WHERE i % 1000 <> 0 OR pg_sleep(0.01) IS NOT NULL"
    )
    connection = two_tables.connection(owner)
    code, tables, job = export_while_killing(
        two_tables, "COPY%slow%", connection, "--tables", "public.slow,public.good"
    )
    assert code == 1
    assert tables["good"]["status"] == "complete"
    assert_ended_by_the_server(tables["slow"], "slow")
    assert_no_final_file(job, "slow")


@pytest.mark.django_db(transaction=True)
def test_a_range_whose_session_is_killed_fails_its_table_alone(owner, two_tables, monkeypatch):
    """A large table read in ctid ranges: the server ends one range's session mid-COPY.
    The table fails with one sentence and keeps no file (what the other ranges sent proves
    nothing without it); the other table completes."""
    from connections.drivers.postgresql import copy as postgresql_copy

    monkeypatch.setattr(postgresql_copy, "SPLIT_MIN_PAGES", 1)
    two_tables.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS t FROM generate_series(1, 300000) i"
    )
    two_tables.execute("ANALYZE big")
    real_merge = postgresql_copy._merge

    def slow_reader(read, jobs):
        def read_slowly(session, statement):
            for batch in read(session, statement):
                time.sleep(0.1)  # the server waits on its socket: the COPY stays running
                yield batch

        return real_merge(read_slowly, jobs)

    monkeypatch.setattr(postgresql_copy, "_merge", slow_reader)
    connection = two_tables.connection(owner)
    code, tables, job = export_while_killing(
        two_tables,
        "COPY%big%ctid >=%",
        connection,
        "--tables",
        "public.big,public.good",
        "--readers",
        "3",
    )
    assert code == 1
    assert tables["good"]["status"] == "complete"
    assert_ended_by_the_server(tables["big"], "big")
    assert job.tables.get(table="big").rows_expected is None  # no sum of the ranges kept
    assert_no_final_file(job, "big")


def _mount_tmpfs(path, options):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")


@pytest.fixture
def read_only_root(tmp_path, settings):
    root = tmp_path / "readonly"
    if os.geteuid() == 0:
        _mount_tmpfs(root, "ro,size=1m")
    else:
        root.mkdir()
        root.chmod(0o555)
    settings.EXPORT_ROOT = root
    yield root
    if os.geteuid() == 0:
        subprocess.run(["umount", str(root)])


@pytest.fixture
def tiny_disk(tmp_path, settings):
    root = tmp_path / "tiny"
    _mount_tmpfs(root, "size=1m")
    settings.EXPORT_ROOT = root
    yield root
    subprocess.run(["umount", str(root)])


@pytest.mark.django_db(transaction=True)
def test_export_folder_not_writable(owner, two_tables, read_only_root):
    connection = two_tables.connection(owner)
    # The job's folder is made with the job: a root that cannot take it refuses the job.
    with pytest.raises(CommandError, match="^ADU may not write to the export folder .*permissions"):
        call_command("adu_export", connection.name, "--tables", "public.good", "--as", "owner")
    assert not ExportJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_job_folder_not_writable(owner, two_tables):
    from exports.engine.run import run_job
    from exports.jobs import create_job

    job = create_job(owner, two_tables.connection(owner), tables=["public.good"])
    if os.geteuid() == 0:
        _mount_tmpfs(job.folder(), "ro,size=1m")  # root writes through a mode
    else:
        job.folder().chmod(0o555)
    try:
        job = run_job(job.pk)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(job.folder())])
    assert job.status == "failed"
    [error, *_] = JobError.objects.filter(job=job, table_run__isnull=False)
    assert error.message.startswith("ADU may not write to the export folder")
    assert not job.manifest_path().exists()


@pytest.mark.django_db(transaction=True)
def test_disk_full(owner, two_tables, tiny_disk):
    # About 6 MB of incompressible text: more than the 1 MB disk holds.
    two_tables.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS noise "
        "FROM generate_series(1, 100000) i"
    )
    connection = two_tables.connection(owner)
    code, output = run_export(connection.name, "--tables", "public.big,public.other")
    tables = {t["table"]: t for t in output["tables"]}
    assert tables["big"]["status"] == "failed"
    assert tables["big"]["error"].startswith("The disk of the export folder is full")
    assert tables["other"]["status"] == "complete"
    assert code == 1
    job = ExportJob.objects.get(pk=output["job_id"])
    assert_no_final_file(job, "big")
    assert job.manifest_path().exists()


@pytest.mark.django_db
def test_unknown_connection_is_one_sentence(owner):
    with pytest.raises(CommandError, match="There is no connection named 'nope'."):
        call_command("adu_export", "nope", "--sync", "--as", "owner")


@pytest.mark.django_db
def test_existing_output_folder_is_refused(owner, two_tables, export_root):
    connection = two_tables.connection(owner)
    (export_root / "taken").mkdir(parents=True)
    (export_root / "taken" / "x").write_text("keep me")
    with pytest.raises(CommandError, match="The folder 'taken' already exists"):
        call_command("adu_export", connection.name, "--sync", "--out", "taken", "--as", "owner")
    assert (export_root / "taken" / "x").read_text() == "keep me"


@pytest.mark.django_db
@pytest.mark.parametrize("out", ["../escape", "/abs", ".hidden", "a/b"])
def test_output_folder_must_be_a_plain_name(owner, two_tables, out):
    connection = two_tables.connection(owner)
    with pytest.raises(CommandError, match="is not a folder name"):
        call_command("adu_export", connection.name, "--sync", "--out", out, "--as", "owner")


@pytest.mark.django_db(transaction=True)
def test_ssl_required_against_a_server_without_ssl(owner, two_tables):
    connection_error(
        owner,
        two_tables,
        "does not support SSL: set sslmode to 'prefer' or 'disable'.",
        sslmode="require",
        password=two_tables.server.password,
    )


def test_a_server_that_demands_encryption_is_explained():
    # PostgreSQL 15's own text when pg_hba.conf only has hostssl rules for this user.
    from types import SimpleNamespace

    import psycopg2

    from connections.drivers.postgresql import explain

    error = psycopg2.OperationalError(
        'connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  no pg_hba.conf '
        'entry for host "10.0.0.9", user "etl", database "dw", no encryption'
    )
    connection = SimpleNamespace(
        host="db", port=5432, username="etl", database="dw", connect_timeout=5, password="x"
    )
    assert explain(error, connection) == (
        "The server at db:5432 has no pg_hba.conf rule for this user and database without "
        "encryption: set sslmode to 'require', or ask the DBA to allow this address."
    )
