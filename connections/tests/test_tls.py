"""Safe links to the source: TLS up to verify-full with a CA stored per connection, and a
"Test connection" that says whether the link is encrypted, verified, and able to write.

A second throwaway PostgreSQL server runs with ssl=on and a certificate signed by a CA
made here; another CA stands for the wrong one.
"""

import datetime
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from connections.localpg import LocalPostgres
from connections.models import Connection, ConnectionFailed
from exports.engine.run import run_job
from exports.jobs import create_job


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(subject, issuer, key, signing_key, ca: bool, hosts=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        import ipaddress

        names = [
            x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h)
            for h in hosts
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def tls_server():
    root = Path(tempfile.mkdtemp(prefix="adu-test-tls-"))
    root.chmod(0o755)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("ADU Test CA", "ADU Test CA", ca_key, ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("Another CA", "Another CA", other_key, other_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "localhost", "ADU Test CA", server_key, ca_key, ca=False, hosts=("localhost", "127.0.0.1")
    )
    (root / "server.crt").write_text(_pem(server))
    key_file = root / "server.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pg = LocalPostgres(
        root,
        fast_unsafe=True,
        settings={
            "ssl": "on",
            "ssl_cert_file": str(root / "server.crt"),
            "ssl_key_file": str(key_file),
        },
    )
    try:
        pg.ensure_started()
        db = pg.connect()
        with db.cursor() as cur:
            cur.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pass-991'")
            cur.execute("CREATE TABLE t AS SELECT generate_series(1, 10) AS i")
            cur.execute("GRANT SELECT ON t TO reader")
        db.close()
        yield {"pg": pg, "ca": _pem(ca), "other_ca": _pem(other_ca)}
    finally:
        pg.destroy()


def _connection(owner, tls_server, name="tls", **fields):
    pg = tls_server["pg"]
    values = {
        "host": "localhost",
        "port": pg.port,
        "database": "postgres",
        "username": "postgres",
        "password": pg.password,
        "sslmode": "verify-full",
        "ca_certificate": tls_server["ca"],
        "connect_timeout": 5,
        **fields,
    }
    return Connection.objects.create(owner=owner, name=name, **values)


@pytest.mark.django_db
def test_verify_full_with_the_stored_ca_is_encrypted_and_verified(
    owner, tls_server, monkeypatch, tmp_path
):
    # A temporary folder of this test's own: other tests running at the same time (under
    # pytest-xdist) make and remove their adu-ca-* folders in the shared one.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    report = _connection(owner, tls_server).test_link(by=owner)
    assert report.encrypted and report.verified
    assert report.protocol.startswith("TLSv1.")
    assert "server certificate verified" in report.summary()
    assert report.warning().startswith("This login is a superuser (it can change anything)")
    assert not list(tmp_path.glob("adu-ca-*"))  # the CA file is gone


@pytest.mark.django_db
def test_require_is_encrypted_but_not_verified_and_disable_is_not_encrypted(owner, tls_server):
    report = _connection(owner, tls_server, sslmode="require", ca_certificate="").test_link(
        by=owner
    )
    assert report.encrypted and not report.verified
    assert "not verified (sslmode verify-full checks it)" in report.summary()
    plain = _connection(owner, tls_server, name="plain", sslmode="disable", host="127.0.0.1")
    assert "not encrypted" in plain.test_link(by=owner).summary()


@pytest.mark.django_db
def test_a_read_only_login_gets_no_write_warning(owner, tls_server):
    reader = _connection(owner, tls_server, username="reader", password="reader-pass-991")
    report = reader.test_link(by=owner)
    assert report.write_access == "" and report.warning() == ""


@pytest.mark.django_db
def test_the_wrong_ca_or_none_is_one_clear_sentence(owner, tls_server):
    wrong = _connection(owner, tls_server, ca_certificate=tls_server["other_ca"])
    with pytest.raises(ConnectionFailed) as failure:
        wrong.test_link(by=owner)
    assert str(failure.value).startswith(
        f"The certificate of the server at localhost:{tls_server['pg'].port} is not signed "
        "by this connection's CA certificate"
    )
    missing = _connection(owner, tls_server, name="no-ca", ca_certificate="")
    with pytest.raises(ConnectionFailed, match="upload the CA that signed it"):
        missing.test_link(by=owner)


@pytest.mark.django_db(transaction=True)
def test_an_export_runs_over_verify_full(owner, tls_server):
    connection = _connection(owner, tls_server)
    job = run_job(create_job(owner, connection, tables=["public.t"]).pk)
    assert job.status == "complete" and job.rows_written == 10


@pytest.mark.django_db
def test_the_portal_stores_an_uploaded_ca_encrypted_and_never_shows_it(client, owner, tls_server):
    pg = tls_server["pg"]
    client.force_login(owner)
    fields = {
        "name": "tls",
        "kind": "postgresql",
        "host": "localhost",
        "port": pg.port,
        "database": "postgres",
        "username": "postgres",
        "password": pg.password,
        "sslmode": "verify-full",
        "connect_timeout": 5,
    }
    bad = client.post(
        reverse("connection_create"),
        {**fields, "ca_certificate_file": SimpleUploadedFile("ca.pem", b"not a certificate")},
    )
    assert "This is not a certificate in PEM form" in bad.content.decode()
    assert not Connection.objects.exists()

    upload = SimpleUploadedFile("ca.pem", tls_server["ca"].encode())
    client.post(reverse("connection_create"), {**fields, "ca_certificate_file": upload})
    connection = Connection.objects.get()
    assert connection.ca_certificate == tls_server["ca"]
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute("SELECT ca_certificate FROM connections_connection")
        assert cursor.fetchone()[0].startswith("gAAAAA")
    page = client.get(reverse("connection_edit", args=[connection.pk])).content.decode()
    assert "Stored: CN=ADU Test CA, valid until" in page
    assert "BEGIN CERTIFICATE" not in page
    result = client.post(reverse("connection_test", args=[connection.pk])).content.decode()
    assert "server certificate verified" in result
    assert "an export needs only read access" in result
