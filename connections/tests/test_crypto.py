"""Passwords are encrypted at rest, keys rotate, and a lost key is one clear error."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection as db

from connections.models import Connection, ConnectionFailed

PASSWORD = "s3cret-Pa55word!"


def make_connection(owner, name="warehouse", password=PASSWORD):
    return Connection.objects.create(
        owner=owner,
        name=name,
        host="db.internal",
        database="dw",
        username="etl",
        password=password,
    )


def raw_password(pk):
    with db.cursor() as cursor:
        cursor.execute("SELECT password FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_raw_row_does_not_hold_the_plaintext(owner):
    conn = make_connection(owner)
    stored = raw_password(conn.pk)
    assert PASSWORD not in stored
    assert stored.startswith("gAAAA")  # a Fernet token
    assert Connection.objects.get(pk=conn.pk).secret() == PASSWORD


@pytest.mark.django_db
def test_rotation_reencrypts_with_the_first_key(owner, settings, capsys):
    old_key = settings.FERNET_KEYS[0]
    conn = make_connection(owner)
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]

    call_command("adu_rotate_keys")

    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out
    assert Fernet(new_key).decrypt(raw_password(conn.pk).encode()).decode() == PASSWORD
    settings.FERNET_KEYS = [new_key]  # the old key can now go
    assert Connection.objects.get(pk=conn.pk).secret() == PASSWORD


@pytest.mark.django_db
def test_a_secret_no_key_opens_is_a_clear_error_naming_the_connection(owner, settings):
    conn = make_connection(owner)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]

    loaded = Connection.objects.get(pk=conn.pk)
    with pytest.raises(ConnectionFailed, match="connection 'warehouse' cannot be decrypted"):
        loaded.secret()
    with pytest.raises(CommandError, match="connection 'warehouse'"):
        call_command("adu_rotate_keys")


@pytest.mark.django_db
def test_saving_a_connection_whose_secret_is_undecryptable_keeps_the_token(owner, settings):
    conn = make_connection(owner)
    token = raw_password(conn.pk)
    old_keys = settings.FERNET_KEYS
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]

    loaded = Connection.objects.get(pk=conn.pk)
    loaded.host = "db2.internal"
    loaded.save()

    assert raw_password(conn.pk) == token
    settings.FERNET_KEYS = old_keys
    assert Connection.objects.get(pk=conn.pk).secret() == PASSWORD
