"""Passwords are encrypted at rest, keys rotate, and a lost key is one clear error."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

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


@pytest.mark.django_db
def test_the_raw_row_does_not_hold_the_plaintext(owner, stored_token):
    conn = make_connection(owner)
    stored = stored_token(conn.pk)
    assert PASSWORD not in stored
    assert stored.startswith("gAAAA")  # a Fernet token
    assert Connection.objects.get(pk=conn.pk).secret() == PASSWORD


@pytest.mark.django_db
def test_rotation_reencrypts_with_the_first_key(owner, settings, capsys, stored_token):
    old_key = settings.FERNET_KEYS[0]
    conn = make_connection(owner)
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]

    call_command("adu_rotate_keys")

    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out
    assert Fernet(new_key).decrypt(stored_token(conn.pk).encode()).decode() == PASSWORD
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
def test_saving_a_connection_whose_secret_is_undecryptable_keeps_the_token(
    owner, settings, stored_token
):
    conn = make_connection(owner)
    token = stored_token(conn.pk)
    old_keys = settings.FERNET_KEYS
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]

    loaded = Connection.objects.get(pk=conn.pk)
    loaded.connect_timeout = 7
    loaded.save()

    assert stored_token(conn.pk) == token
    settings.FERNET_KEYS = old_keys
    assert Connection.objects.get(pk=conn.pk).secret() == PASSWORD
