"""The Vertica driver: the SQL it sends, what it makes of the catalog's answers, and one
clear sentence for every failure.

No Vertica server can run here: connections.tests.fake_vertica stands in for one (its
catalog rows follow the layout Vertica documents for v_catalog and v_monitor), and a few
tests talk to a tiny socket server that answers vertica-python's start-up like Vertica
does when it refuses a login.
"""

import socket
import struct
import threading

import pytest
import vertica_python
from vertica_python import errors
from vertica_python.datatypes import VerticaType as V
from vertica_python.vertica import messages

from connections.drivers import TableInfo, for_kind, vertica
from connections.localpg import free_port
from connections.models import Connection, ConnectionFailed
from connections.tests import fake_vertica as fv
from connections.tests.fake_vertica import FakeColumn, FakeTable, FakeVertica

SECRET = "Vertica-Secret-Mark"


def connection(**overrides):
    fields = {
        "kind": "vertica", "host": "127.0.0.1", "port": 5433, "database": "dw",
        "username": "etl", "password": SECRET, "sslmode": "disable", "connect_timeout": 2,
        "options": {},
    }  # fmt: skip
    fields.update(overrides)
    return Connection(**fields)  # unsaved: the driver reads only its fields


@pytest.fixture
def server(monkeypatch):
    fake = FakeVertica(
        [
            FakeTable(
                "sales",
                'we"ird',
                [
                    FakeColumn("id", "int", V.INT8, nullable=False, values=[fv.int8(1)]),
                    FakeColumn(
                        "amount", "numeric(15,2)", V.NUMERIC, fv.numeric_modifier(15, 2),
                        values=[fv.numeric(150)],
                    ),
                ],
                constraints=[
                    ("pk_id", "p", "id", True),
                    ("uq_pair", "u", "id", True),
                    ("uq_pair", "u", "amount", True),
                    ("pk_loose", "p", "amount", False),
                ],
            )
        ],
        schemas=["public", "sales", "v_txtindex"],
        catalog_tables=[
            ("public", "ext_logs", "external table", None, None),
            ("sales", "orders", "table", 5000, 123456),
            ("sales", "recent", "view", None, None),
        ],
    )  # fmt: skip
    monkeypatch.setattr(vertica_python, "connect", fake.connect)
    return fake


def test_the_vertica_kind_has_its_driver():
    assert for_kind("vertica") is vertica


@pytest.mark.parametrize(
    "sslmode, tlsmode",
    [
        ("disable", "disable"), ("allow", "prefer"), ("prefer", "prefer"),
        ("require", "require"), ("verify-ca", "verify-ca"), ("verify-full", "verify-full"),
    ],
)  # fmt: skip
def test_sslmode_becomes_vertica_tlsmode(server, sslmode, tlsmode):
    # Options outside the allowlist never reach the driver, even from a row saved
    # before they were checked: the CA comes only from the connection's own certificate.
    vertica.connect(
        connection(sslmode=sslmode, options={"tls_cafile": "/ca.pem", "workload": "etl"})
    )
    [options] = server.connect_options
    assert options["tlsmode"] == tlsmode
    assert "tls_cafile" not in options and options["workload"] == "etl"
    assert options["connection_timeout"] == 2
    assert options["password"] == SECRET


def test_a_session_reads_utc_iso_and_read_only_without_a_read_timeout(server):
    session = vertica.connect(connection())
    assert server.statements == [
        "SET TIME ZONE TO 'UTC'",
        "SET DATESTYLE TO ISO",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    ]
    assert session.db.socket.timeouts == [None]  # the connect timeout does not cut a long count


def test_test_reports_the_version_the_link_and_write_access(server):
    server.tls_state, server.superuser = "Server", True
    report = vertica.test(connection(sslmode="verify-full"))
    assert report.version == "Vertica Analytic Database v24.1.0-0"
    assert report.encrypted and report.verified
    assert report.write_access == "is a superuser (it can change anything)"
    assert server.statements == [
        "SELECT version()",
        vertica.TLS_STATE_SQL,
        vertica.WRITE_ACCESS_SQL,
    ]
    assert server.sessions[0].closed
    server.tls_state, server.superuser = "None", False
    plain = vertica.test(connection(sslmode="disable"))
    assert not plain.encrypted and plain.write_access == ""


def test_schemas_leave_out_system_schemas(server):
    assert vertica.schemas(connection()) == ["public", "sales"]
    query = server.statements[-1]
    assert "FROM v_catalog.schemata" in query and "NOT is_system_schema" in query
    assert "HAS_SCHEMA_PRIVILEGE(schema_name, 'USAGE')" in query


def test_tables_come_with_estimates_sizes_and_kinds(server):
    found = vertica.tables(connection(), "sales")
    assert found[1] == TableInfo("sales", "orders", "table", 5000, 123456)
    assert found[0].kind == "external table" and found[2].kind == "view"
    query = server.statements[-1]
    assert "v_monitor.projection_storage" in query and "v_catalog.views" in query
    assert query.count("'sales' IS NULL OR") == 2  # the schema is a literal, not pasted SQL
    vertica.tables(connection())
    assert "NULL IS NULL" in server.statements[-1]


def test_columns_come_from_the_catalog_and_the_result_description(server):
    session = vertica.Session(server.connect(), epoch=41)
    [ident, amount] = vertica.columns(session, "sales", 'we"ird')
    assert (ident.name, ident.source_type, ident.nullable) == ("id", "int", False)
    assert amount.extra["vertica"]["precision"] == 15 and amount.extra["vertica"]["scale"] == 2
    catalog, describe = server.statements[-2:]
    assert (
        "FROM v_catalog.columns WHERE table_schema = 'sales' AND table_name = 'we\"ird'" in catalog
    )
    assert "v_catalog.view_columns" in catalog
    assert describe == 'AT EPOCH 41 SELECT * FROM "sales"."we""ird" LIMIT 0'


def test_a_missing_table_is_one_sentence(server):
    session = vertica.Session(server.connect())
    with pytest.raises(
        ConnectionFailed, match=r"^Table sales.nope does not exist or has no columns\.$"
    ):
        vertica.columns(session, "sales", "nope")


def test_the_job_epoch_is_pinned_and_every_read_uses_it(server):
    leader, snapshot = vertica.open_snapshot(connection())
    assert snapshot == "41"
    assert server.statements[-1] == "SELECT GET_CURRENT_EPOCH() - 1"
    session = vertica.join_snapshot(connection(), snapshot)
    assert vertica.count_rows(session, "sales", 'we"ird') == 1
    assert server.statements[-1] == 'AT EPOCH 41 SELECT COUNT(*) FROM "sales"."we""ird"'
    leader.close()
    assert server.sessions[0].closed


def test_constraints_are_the_enforced_keys_only(server):
    session = vertica.Session(server.connect())
    assert vertica.constraints(session, "sales", 'we"ird') == [
        {"name": "pk_id", "kind": "primary key", "columns": ["id"], "definition": "PRIMARY KEY (id)"},
        {"name": "uq_pair", "kind": "unique", "columns": ["id", "amount"],
         "definition": "UNIQUE (id, amount)"},
    ]  # fmt: skip
    assert "is_enabled" in server.statements[-1]


def test_a_cancel_reaches_the_server_session(server):
    session = vertica.join_snapshot(connection(), "41")
    session.cancel()
    assert session.db.cancels == 1


# One sentence per failure, never the password ------------------------------------------


def _error_response(message, sqlstate, severity="ERROR"):
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", severity), (b"M", message), (b"C", sqlstate))
    )
    return fields + b"\0"


def query_error(message, sqlstate):
    response = messages.ErrorResponse(_error_response(message, sqlstate))
    return errors.QueryError.from_error_response(response, "SELECT 1")


@pytest.mark.parametrize(
    "error, sentence",
    [
        (query_error('Permission denied for relation orders', "42501"),
         "User 'etl' lacks permission: Permission denied for relation orders."),
        (query_error('Relation "sales.orders" does not exist', "42V01"),
         "The table does not exist (dropped or renamed?)."),
        (query_error("Can't run historical queries at epochs prior to the Ancient History Mark", "22V03"),
         "Vertica purged the job's epoch before this table was read (its Ancient History Mark "
         "moved on): raise HistoryRetentionTime, or retry the job."),
        (query_error("Execution canceled by operator", "57014"), "The export was cancelled."),
        (errors.ConnectionError("Connection closed by Vertica"),
         "The connection to 127.0.0.1:5433 was lost while exporting sales.orders; retry the job."),
        (errors.SSLNotSupported("SSL requested but disabled on the server"),
         "The server at 127.0.0.1:5433 does not support TLS: set sslmode to 'prefer' or 'disable'."),
        (errors.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
         "The TLS certificate of 127.0.0.1:5433 could not be verified against this "
         "connection's CA certificate: upload the CA that signed it, or set sslmode to "
         "'require'."),
        (errors.ConnectionError("timed out"),
         "No answer from 127.0.0.1:5433 within 2 s: check the host, port and firewall."),
        (query_error(f"Something odd near '{SECRET}'", "XX000"), "Something odd near '[redacted]'"),
    ],
)  # fmt: skip
def test_errors_are_explained_in_one_sentence(error, sentence):
    assert vertica.explain(error, connection(), "sales.orders") == sentence


class RefusingServer:
    """Answers vertica-python's start-up like Vertica refusing it: an ErrorResponse."""

    def __init__(self, message, sqlstate, tls_answer=None):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(5)
        self.port = self.listener.getsockname()[1]
        self.reply = b"E" + struct.pack("!I", 4 + len(_error_response(message, sqlstate, "FATAL")))
        self.reply += _error_response(message, sqlstate, "FATAL")
        self.tls_answer = tls_answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        with client:
            first = _packet(client)
            if first[4:8] == struct.pack("!I", 80877103):  # SSLRequest
                client.sendall(self.tls_answer or b"N")
                if self.tls_answer is None:
                    return
                _packet(client)
            client.sendall(self.reply)
            client.recv(1024)

    def close(self):
        self.listener.close()


def _packet(client):
    size = struct.unpack("!I", client.recv(4))[0]
    body = b""
    while len(body) < size - 4:
        body += client.recv(size - 4 - len(body))
    return struct.pack("!I", size) + body


def failure_of(**overrides):
    with pytest.raises(ConnectionFailed) as error:
        vertica.connect(connection(**overrides))
    assert SECRET not in str(error.value)
    return str(error.value)


def test_a_wrong_password_is_one_sentence():
    refusing = RefusingServer("Invalid username or password", "28000")
    try:
        assert failure_of(port=refusing.port) == (
            f"Wrong user name or password for 'etl' on 127.0.0.1:{refusing.port}."
        )
    finally:
        refusing.close()


def test_a_missing_database_is_one_sentence():
    refusing = RefusingServer('Database "dw" does not exist', "3D000")
    try:
        assert failure_of(port=refusing.port) == (
            f"Database 'dw' does not exist on 127.0.0.1:{refusing.port}."
        )
    finally:
        refusing.close()


def test_tls_required_against_a_server_without_tls():
    refusing = RefusingServer("unused", "00000")
    try:
        assert failure_of(port=refusing.port, sslmode="require") == (
            f"The server at 127.0.0.1:{refusing.port} does not support TLS: set sslmode to "
            "'prefer' or 'disable'."
        )
    finally:
        refusing.close()


def test_an_unknown_host_is_one_sentence():
    assert failure_of(host="no-such-host.invalid") == (
        "Unknown host 'no-such-host.invalid': check the host name."
    )


def test_a_refused_connection_is_one_sentence():
    port = free_port()
    assert failure_of(port=port) == (
        f"Connection refused by 127.0.0.1:{port}: check that the server runs and listens on that port."
    )


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_a_server_that_never_answers_times_out_in_one_sentence(sslmode):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    port = silent.getsockname()[1]
    try:
        assert failure_of(port=port, sslmode=sslmode, connect_timeout=1) == (
            f"No answer from 127.0.0.1:{port} within 1 s: check the host, port and firewall."
        )
    finally:
        silent.close()
