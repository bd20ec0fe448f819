"""A connection's own page and its parts, without a browser: who may open which, Test of
the values typed in a form (the stored password only where the form would keep it), the
audit trail of such a test, and an error libpq words in its own terms told in one plain
sentence."""

import socket
import threading

import psycopg2
import pytest
from django.contrib.auth.models import Group
from django.db import connection as django_db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from connections.drivers import LinkReport, postgresql
from connections.models import Connection, ConnectionFailed
from exports.jobs import create_job
from tests.factories import PasswordTrap, portal_data, user_with_role


@pytest.fixture
def shared(source_db, owner, django_user_model):
    """owner's connection shared with "analysts" (teammate: an operator in it), one job."""
    source_db.execute("CREATE TABLE t AS SELECT 1 AS i")
    connection = source_db.connection(owner, name="warehouse")
    analysts = Group.objects.create(name="analysts")
    connection.shared_with.add(analysts)
    teammate = user_with_role(django_user_model, "teammate", "ADU Operator")
    teammate.groups.add(analysts)
    job = create_job(owner, connection, tables=["public.t"])
    return connection, teammate, job


def pages(connection):
    """(url, the method that works) of every page and partial about one connection."""
    return [
        (reverse("connection_detail", args=[connection.pk]), "GET"),
        (reverse("connection_discovery", args=[connection.pk]), "GET"),
        (reverse("connection_test", args=[connection.pk]), "POST"),
        (reverse("connection_test_typed", args=[connection.pk]), "POST"),
    ]


@pytest.mark.django_db
def test_the_owner_opens_every_part_and_the_page_shows_where_it_points(client, owner, shared):
    connection, _, job = shared
    client.force_login(owner)
    for url, method in pages(connection):
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 200, url
    page = client.get(reverse("connection_detail", args=[connection.pk])).content.decode()
    assert f"{connection.host}:{connection.port}" in page and connection.username in page
    assert reverse("job_detail", args=[job.pk]) in page


@pytest.mark.django_db
def test_a_teammate_sees_the_page_and_tests_it_but_not_where_it_points(client, shared):
    connection, teammate, job = shared
    client.force_login(teammate)
    page = client.get(reverse("connection_detail", args=[connection.pk])).content.decode()
    assert f"{connection.host}:{connection.port}" not in page and connection.database not in page
    assert reverse("job_detail", args=[job.pk]) in page and "test-button" in page
    ok = client.post(reverse("connection_test", args=[connection.pk])).content.decode()
    assert "Connected: PostgreSQL" in ok
    # The form's values are for those who may edit it.
    typed = reverse("connection_test_typed", args=[connection.pk])
    assert client.post(typed, portal_data(connection)).status_code == 404


@pytest.mark.django_db
def test_an_outsider_gets_404_for_every_part(client, outsider, shared):
    connection, _, _ = shared
    client.force_login(outsider)
    for url, method in pages(connection):
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 404, url


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(client, shared):
    connection, _, _ = shared
    for url, method in [*pages(connection), (reverse("connection_test_typed"), "POST")]:
        response = client.get(url) if method == "GET" else client.post(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.django_db
def test_the_wrong_method_gets_405(client, owner, shared):
    connection, _, _ = shared
    client.force_login(owner)
    for url, method in [*pages(connection), (reverse("connection_test_typed"), "POST")]:
        response = client.post(url) if method == "GET" else client.get(url)
        assert response.status_code == 405, url


@pytest.mark.django_db
def test_a_viewer_may_not_test_values_for_a_new_connection(client, viewer, source_db):
    client.force_login(viewer)
    response = client.post(reverse("connection_test_typed"), {"host": "127.0.0.1"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_the_page_costs_the_same_queries_with_more_jobs(client, owner, shared):
    connection, _, _ = shared
    client.force_login(owner)
    url = reverse("connection_detail", args=[connection.pk])
    with CaptureQueriesContext(django_db) as one:
        client.get(url)
    for _ in range(3):
        create_job(owner, connection, tables=["public.t"])
    with CaptureQueriesContext(django_db) as four:
        client.get(url)
    assert len(four) == len(one)


@pytest.mark.django_db
def test_a_typed_test_of_a_new_connection_saves_nothing_and_is_on_the_trail(
    client, owner, source_db
):
    server = source_db.server
    client.force_login(owner)
    data = {"name": "", "kind": "postgresql", "host": server.host, "port": server.port,
            "database": source_db.name, "username": server.user, "password": server.password,
            "sslmode": "disable", "connect_timeout": 5}  # fmt: skip
    answer = client.post(reverse("connection_test_typed"), data).content.decode()
    assert "Connected: PostgreSQL" in answer  # an empty name does not stop a test
    assert not Connection.objects.exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.CONNECTION_TEST)
    assert event.object_id == "" and event.user == owner
    assert event.details["typed"] is True and event.details["ok"] is True
    assert event.details["address"] == f"{server.host}:{server.port}"


@pytest.mark.django_db
def test_a_typed_test_never_sends_the_stored_password_to_a_new_port(client, owner, source_db):
    connection = source_db.connection(owner)
    client.force_login(owner)
    trap = PasswordTrap()
    try:
        url = reverse("connection_test_typed", args=[connection.pk])
        kept = client.post(url, portal_data(connection, port=trap.port)).content.decode()
        assert "Enter the password again: the port changed." in kept
        assert trap.connections == 0
        typed = portal_data(connection, port=trap.port, password="Typed-For-The-Trap")
        client.post(url, typed)
        assert b"Typed-For-The-Trap" in trap.received
        assert source_db.server.password.encode() not in trap.received
    finally:
        trap.close()
    connection.refresh_from_db()
    assert connection.port == source_db.server.port  # a test saves nothing


@pytest.mark.django_db
def test_discovery_errors_are_one_sentence_in_place(client, owner, source_db):
    client.force_login(owner)
    bad = source_db.connection(owner, name="bad", database="nope")
    page = client.get(reverse("connection_discovery", args=[bad.pk])).content.decode()
    assert "Database &#x27;nope&#x27; does not exist" in page


class Babbler:
    """A listening socket that answers whatever it is sent with text that is not
    PostgreSQL's protocol, as a web server on the wrong port does."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.mark.django_db
@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_an_error_libpq_words_its_own_way_is_one_plain_sentence(owner, sslmode):
    babbler = Babbler()
    connection = Connection.objects.create(
        owner=owner, name="web", host="127.0.0.1", port=babbler.port, database="dw",
        username="etl", password="Secret-Pass-4242", sslmode=sslmode, connect_timeout=3,
    )  # fmt: skip
    try:
        with pytest.raises(ConnectionFailed) as failure:
            connection.test_link(by=owner)
    finally:
        babbler.close()
    sentence = str(failure.value)
    assert sentence.startswith(f"ADU could not connect to 127.0.0.1:{babbler.port} (")
    assert sentence.endswith(
        "): check the host, port and SSL mode, and that the server runs and accepts this "
        "user from this machine."
    )
    assert "\n" not in sentence and "connection to server at" not in sentence
    assert "Secret-Pass-4242" not in sentence and "Traceback" not in sentence


def test_libpq_text_is_cut_to_its_reason_and_never_carries_the_password():
    from types import SimpleNamespace

    connection = SimpleNamespace(
        host="db", port=5432, username="etl", database="dw", connect_timeout=5, password="pw-77x"
    )
    error = psycopg2.OperationalError(
        'connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  something new '
        "about pw-77x\nHINT:  a second line"
    )
    assert postgresql.explain(error, connection) == (
        "ADU could not connect to db:5432 (something new about [redacted]): check the host, "
        "port and SSL mode, and that the server runs and accepts this user from this machine."
    )
    lost = psycopg2.OperationalError("SSL SYSCALL error: EOF detected\n")
    assert postgresql.explain(lost, connection, "sales.orders") == (
        "The link to db:5432 failed while exporting sales.orders (SSL SYSCALL error: EOF "
        "detected); retry the job."
    )


def test_the_summary_is_one_short_line():
    report = LinkReport(
        version="PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu, ...",
        product="PostgreSQL 15.18",
        encrypted=True,
        protocol="TLSv1.3",
        verified=True,
    )
    assert report.summary() == "PostgreSQL 15.18 · TLS 1.3 · server certificate verified"
    plain = LinkReport(version="Vertica Analytic Database v24.1.0-0", encrypted=False)
    assert plain.summary() == "Vertica Analytic Database v24.1.0-0 · not encrypted"
