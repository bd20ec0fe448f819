"""The connection form: an empty port is the kind's usual one."""

import pytest

from connections.forms import ConnectionForm

FIELDS = {"host": "db.internal", "database": "dw", "username": "etl", "password": "pw-123456",
          "sslmode": "disable", "connect_timeout": 5}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "port", "expected"),
    [
        ("vertica", "", 5433),
        ("postgresql", "", 5432),
        ("greenplum", "", 5432),
        ("vertica", "6000", 6000),
    ],
)
def test_an_empty_port_is_the_kinds_usual_one(owner, kind, port, expected):
    form = ConnectionForm({**FIELDS, "name": f"c-{kind}", "kind": kind, "port": port}, owner=owner)
    assert form.is_valid(), form.errors
    assert form.save().port == expected


@pytest.mark.django_db
def test_a_new_connection_form_shows_no_port_and_says_which_is_used(owner):
    html = str(ConnectionForm(owner=owner)["port"])
    assert 'value="5432"' not in html
    assert "5433 for Vertica" in ConnectionForm(owner=owner).fields["port"].help_text
