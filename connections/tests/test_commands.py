"""adu_connection and adu_discover, as an operator uses them."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import Connection


def command(*args, stdin=None):
    out = io.StringIO()
    if stdin is not None:
        import sys

        old, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        call_command(*args, stdout=out)
    finally:
        if stdin is not None:
            sys.stdin = old
    return out.getvalue()


def add_args(source_db, name="src"):
    server = source_db.server
    return [
        "adu_connection", "add", name, "--host", server.host, "--port", str(server.port),
        "--database", source_db.name, "--user", server.user, "--sslmode", "disable",
        "--as", "owner",
    ]  # fmt: skip


@pytest.mark.django_db
def test_add_reads_the_password_from_stdin_and_stores_it_encrypted(owner, source_db):
    output = command(*add_args(source_db), "--password-stdin", stdin=source_db.server.password)
    assert output.strip() == "Added connection 'src'."
    connection = Connection.objects.get(name="src")
    assert connection.owner == owner
    assert connection.secret() == source_db.server.password


@pytest.mark.django_db
def test_add_reads_the_password_from_an_environment_variable(owner, source_db, monkeypatch):
    monkeypatch.setenv("SRC_PW", source_db.server.password)
    command(*add_args(source_db), "--password-env", "SRC_PW")
    assert Connection.objects.get(name="src").secret() == source_db.server.password


@pytest.mark.django_db
def test_add_refuses_a_missing_variable_and_a_duplicate_name(owner, source_db):
    with pytest.raises(CommandError, match="The variable NOPE_PW is not set."):
        command(*add_args(source_db), "--password-env", "NOPE_PW")
    command(*add_args(source_db))
    with pytest.raises(CommandError, match="You already have a connection named 'src'."):
        command(*add_args(source_db))


@pytest.mark.django_db
def test_the_password_cannot_be_given_on_the_command_line(owner, source_db):
    with pytest.raises(CommandError):
        command(*add_args(source_db), "--password", "visible-in-ps")


@pytest.mark.django_db
def test_list_shows_own_connections_without_passwords(owner, outsider, source_db):
    source_db.connection(owner, name="mine")
    source_db.connection(outsider, name="theirs")
    output = command("adu_connection", "list", "--as", "owner")
    assert "mine" in output and "theirs" not in output
    assert source_db.server.password not in output
    rows = json.loads(command("adu_connection", "list", "--json", "--as", "owner"))
    assert [r["name"] for r in rows] == ["mine"]
    assert "password" not in rows[0]


@pytest.mark.django_db
def test_test_prints_the_server_version(owner, source_db):
    source_db.connection(owner, name="mine")
    assert command("adu_connection", "test", "mine", "--as", "owner").startswith("OK: PostgreSQL")
    result = json.loads(command("adu_connection", "test", "mine", "--json", "--as", "owner"))
    assert result["ok"] is True and result["server_version"].startswith("PostgreSQL")


@pytest.mark.django_db
def test_test_with_a_wrong_password_is_one_sentence(owner, source_db):
    source_db.connection(owner, name="mine", password="Wrong-Pass-Mark")
    with pytest.raises(CommandError) as error:
        command("adu_connection", "test", "mine", "--as", "owner")
    assert str(error.value).startswith("Wrong user name or password for")
    assert "Wrong-Pass-Mark" not in str(error.value)


@pytest.mark.django_db
def test_outsiders_cannot_reach_a_connection(owner, outsider, source_db):
    source_db.connection(owner, name="mine")
    with pytest.raises(CommandError, match="There is no connection named 'mine'."):
        command("adu_connection", "test", "mine", "--as", "outsider")
    with pytest.raises(CommandError, match="There is no connection named 'mine'."):
        command("adu_connection", "remove", "mine", "--as", "outsider")
    assert Connection.objects.filter(name="mine").exists()


@pytest.mark.django_db
def test_remove_deletes_an_unused_connection_and_refuses_a_used_one(owner, source_db):
    from exports.models import ExportJob

    source_db.connection(owner, name="unused")
    used = source_db.connection(owner, name="used")
    ExportJob.objects.create(owner=owner, connection=used, output_dir="x")
    assert command("adu_connection", "remove", "unused", "--as", "owner").strip() == (
        "Removed 'unused'."
    )
    with pytest.raises(CommandError, match="is used by 1 export job"):
        command("adu_connection", "remove", "used", "--as", "owner")


@pytest.mark.django_db
def test_the_acting_user_comes_from_as_then_env_then_the_only_superuser(
    owner, admin_user, monkeypatch
):
    assert "No connections." in command("adu_connection", "list")  # the only superuser
    monkeypatch.setenv("ADU_CLI_USER", "nobody")
    with pytest.raises(CommandError, match="There is no active user 'nobody'."):
        command("adu_connection", "list")
    monkeypatch.delenv("ADU_CLI_USER")
    from django.contrib.auth.models import User

    User.objects.create_superuser("second", password="x-second-123")
    with pytest.raises(CommandError, match="--as USERNAME or ADU_CLI_USER"):
        command("adu_connection", "list")


@pytest.mark.django_db
def test_discover_lists_schemas_tables_estimates_and_sizes(owner, source_db):
    source_db.execute("CREATE SCHEMA sales")
    source_db.execute("CREATE TABLE sales.orders AS SELECT generate_series(1, 5000) AS id")
    source_db.execute("CREATE VIEW sales.recent AS SELECT * FROM sales.orders")
    source_db.execute("CREATE TABLE public.notes (body text)")
    source_db.execute("ANALYZE")
    source_db.connection(owner, name="mine")

    rows = json.loads(command("adu_discover", "mine", "--json", "--as", "owner"))
    found = {(r["schema"], r["table"]): r for r in rows}
    assert set(found) == {("public", "notes"), ("sales", "orders"), ("sales", "recent")}
    assert found[("sales", "orders")]["rows_estimate"] == 5000
    assert found[("sales", "orders")]["bytes"] > 0
    assert found[("sales", "recent")]["kind"] == "view"
    assert not any(r["schema"].startswith("pg_") for r in rows)

    text = command("adu_discover", "mine", "--schema", "sales", "--as", "owner")
    assert "orders" in text and "5,000" in text and "notes" not in text


@pytest.mark.django_db
def test_discover_hides_partitions_behind_their_parent(owner, source_db):
    source_db.execute("CREATE TABLE events (day date, n int) PARTITION BY RANGE (day)")
    source_db.execute(
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') "
        "TO ('2025-01-01')"
    )
    source_db.execute("INSERT INTO events SELECT '2024-03-01', generate_series(1, 100)")
    source_db.execute("ANALYZE")
    source_db.connection(owner, name="mine")
    rows = json.loads(command("adu_discover", "mine", "--json", "--as", "owner"))
    assert [(r["table"], r["kind"], r["rows_estimate"]) for r in rows] == [
        ("events", "partitioned table", 100)
    ]
