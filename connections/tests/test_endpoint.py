"""A stored password stays with its endpoint, and a connection's options cannot point it
elsewhere (issue 17, point 6).

The attack: someone who may edit a connection but does not know its password (its owner's
colleague with an ADU Admin role, or anyone with the owner's session) points the host or
port at a server of their own, leaves the password empty, and clicks Test: ADU would log
in there with the stored password. A fake PostgreSQL server (PasswordTrap, in
tests/factories.py) asks every client for its password in clear text and keeps what it gets,
so the tests can show what reached it.
"""

import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts import roles
from connections.forms import ConnectionForm
from connections.models import ENDPOINT_FIELDS, Connection, check_options
from tests.factories import PasswordTrap, portal_data


@pytest.fixture
def trap():
    listener = PasswordTrap()
    yield listener
    listener.close()


def admin_data(connection, **changes):
    return {
        **portal_data(connection),
        "owner": connection.owner_id,
        "options": json.dumps(connection.options),
        **changes,
    }


def stored(connection) -> dict:
    return Connection.objects.filter(pk=connection.pk).values(*ENDPOINT_FIELDS).get()


# The portal ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_port_with_no_password_is_refused_and_test_never_reaches_it(
    client, owner, source_db, trap
):
    connection = source_db.connection(owner)
    secret = source_db.server.password
    assert secret  # the attack needs a stored password
    before = stored(connection)
    client.force_login(owner)

    page = client.post(
        reverse("connection_edit", args=[connection.pk]),
        portal_data(connection, port=trap.port, connect_timeout=3),
    )

    assert page.status_code == 200
    html = page.content.decode()
    assert "Enter the password again: the port changed." in html
    assert f'value="{trap.port}"' in html  # what was typed stays in the form
    assert 'value="3"' in html
    assert stored(connection) == before
    # Test, after the refusal, goes where the connection still points: the real server.
    result = client.post(reverse("connection_test", args=[connection.pk])).content.decode()
    assert "Connected" in result
    assert trap.connections == 0
    assert secret.encode() not in trap.received


@pytest.mark.django_db
def test_the_password_typed_again_goes_to_the_new_host_and_only_it(client, owner, source_db, trap):
    # The control of the test above: the trap does catch a password sent to it.
    connection = source_db.connection(owner)
    client.force_login(owner)
    response = client.post(
        reverse("connection_edit", args=[connection.pk]),
        portal_data(connection, port=trap.port, password="Typed-For-The-New-Port"),
    )
    assert response.status_code == 302
    result = client.post(reverse("connection_test", args=[connection.pk])).content.decode()
    assert "Connected" not in result
    assert trap.connections >= 1
    assert b"Typed-For-The-New-Port" in trap.received
    assert source_db.server.password.encode() not in trap.received


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("kind", "greenplum", "kind"),
        ("host", "127.0.0.2", "host"),
        ("port", 6543, "port"),
        ("database", "other", "database"),
        ("username", "someone", "user name"),
        ("sslmode", "disable", "sslmode"),
    ],
)
def test_each_endpoint_field_needs_the_password_again(owner, field, value, named):
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl",
        password="Stored-Pw-55", sslmode="require",
    )  # fmt: skip
    form = ConnectionForm(portal_data(connection, **{field: value}), instance=connection)
    assert not form.is_valid()
    assert form.errors["password"] == [f"Enter the password again: the {named} changed."]
    again = ConnectionForm(
        portal_data(connection, password="Stored-Pw-55", **{field: value}), instance=connection
    )
    assert again.is_valid(), again.errors  # the same password, typed: fine
    assert getattr(again.save(), field) == value


@pytest.mark.django_db
def test_several_changes_are_named_in_one_sentence(owner):
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl", password="pw"
    )
    form = ConnectionForm(
        portal_data(connection, host="evil.example", port=5439, username="x"), instance=connection
    )
    assert form.errors["password"] == [
        "Enter the password again: the host, port and user name changed."
    ]


@pytest.mark.django_db
def test_other_changes_keep_the_stored_password(client, owner):
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl", password="pw"
    )
    client.force_login(owner)
    response = client.post(
        reverse("connection_edit", args=[connection.pk]),
        portal_data(connection, name="renamed", connect_timeout=20),
    )
    assert response.status_code == 302
    connection = Connection.objects.get(pk=connection.pk)
    assert (connection.name, connection.connect_timeout, connection.secret()) == (
        "renamed",
        20,
        "pw",
    )


@pytest.mark.django_db
def test_a_password_no_key_opens_stays_with_its_endpoint_too(owner, settings):
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl", password="pw"
    )
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]  # the stored token is Sealed now
    loaded = Connection.objects.get(pk=connection.pk)
    form = ConnectionForm(portal_data(loaded, host="evil.example"), instance=loaded)
    assert form.errors["password"] == ["Enter the password again: the host changed."]


# The admin -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_refuses_a_new_host_without_the_password(client, admin_user, source_db, trap):
    connection = source_db.connection(admin_user)
    before = stored(connection)
    client.force_login(admin_user)
    url = f"/admin/connections/connection/{connection.pk}/change/"
    page = client.post(url, admin_data(connection, host="localhost", port=trap.port))
    assert page.status_code == 200
    assert "Enter the password again: the host and port changed." in page.content.decode()
    assert stored(connection) == before
    Connection.objects.get(pk=connection.pk).test_link(by=admin_user)
    assert trap.connections == 0


# Every other path: the model itself ---------------------------------------------------


@pytest.mark.django_db
def test_saving_the_model_refuses_a_moved_stored_password(owner, source_db, trap):
    connection = Connection.objects.get(pk=source_db.connection(owner).pk)
    connection.port = trap.port
    with pytest.raises(ValidationError, match="Enter the password again: the port changed."):
        connection.save()
    with pytest.raises(ValidationError):
        connection.save(update_fields=["port"])
    assert stored(connection)["port"] == source_db.server.port
    connection.connect_timeout = 9
    connection.port = source_db.server.port
    connection.save(update_fields=["connect_timeout"])  # no endpoint field: fine
    connection.refresh_from_db()  # a reloaded password is still the stored one
    connection.port = trap.port
    with pytest.raises(ValidationError):
        connection.save()
    connection.password = "New-Pw-For-The-Trap"
    connection.save()
    assert stored(connection)["port"] == trap.port
    assert trap.connections == 0


@pytest.mark.django_db
def test_the_command_cannot_edit_a_connection():
    # adu_connection adds, lists, tests and removes; it has no way to change an endpoint.
    from connections.management.commands.adu_connection import Command

    parser = Command().create_parser("manage.py", "adu_connection")
    actions = next(a for a in parser._actions if a.dest == "action")
    assert set(actions.choices) == {"add", "list", "test", "remove"}


# Options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"hostaddr": "127.0.0.2"},  # connect elsewhere than the host shown
        {"options": "-c default_transaction_read_only=off"},
        {"passfile": "/etc/shadow"},
        {"sslkey": "/proc/self/environ"},
        {"sslcert": "/tmp/x"},
        {"sslrootcert": "system"},
        {"service": "prod"},
        {"servicefile": "/tmp/pg_service.conf"},
        {"krbsrvname": "x"},
        {"gssencmode": "disable"},
        {"sslnegotiation": "direct"},
        {"require_auth": "password"},
        {"channel_binding": "disable"},
        {"keepalives_idle": 30, "host": "evil.example"},
    ],
)
def test_options_outside_the_allowlist_are_refused_by_name(options):
    refused = next(key for key in options if key != "keepalives_idle")
    with pytest.raises(ValueError, match=f"The option '{refused}' is not allowed"):
        check_options("postgresql", options)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("postgresql", {"keepalives": "yes"}, "must be one of 0, 1"),
        ("postgresql", {"keepalives_idle": True}, "must be a string or a whole number"),
        ("postgresql", {"keepalives_idle": -1}, "must be a whole number of seconds"),
        ("postgresql", {"keepalives_count": {"x": 1}}, "must be a string or a whole number"),
        ("postgresql", {"application_name": "x\n host=evil"}, "printable ASCII"),
        ("postgresql", {"target_session_attrs": "whatever"}, "must be one of any"),
        ("vertica", {"backup_server_node": ["evil:5433"]}, "'backup_server_node' is not allowed"),
        ("vertica", {"log_path": "/tmp/x"}, "'log_path' is not allowed"),
        ("postgresql", ["keepalives"], "must be a JSON object"),
    ],
)
def test_option_values_are_checked(kind, options, message):
    with pytest.raises(ValueError, match=message):
        check_options(kind, options)


def test_harmless_options_pass():
    check_options(
        "postgresql",
        {"application_name": "adu-nightly", "keepalives": 1, "keepalives_idle": "30",
         "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 60000,
         "target_session_attrs": "read-only", "fallback_application_name": "adu"},
    )  # fmt: skip
    check_options("vertica", {"workload": "reporting"})
    check_options("greenplum", {})


@pytest.mark.django_db
def test_the_admin_refuses_an_option_naming_it(client, admin_user):
    connection = Connection.objects.create(
        owner=admin_user, name="dw", host="db.internal", database="dw", username="etl",
        password="pw",
    )  # fmt: skip
    client.force_login(admin_user)
    url = f"/admin/connections/connection/{connection.pk}/change/"
    page = client.post(url, admin_data(connection, options='{"hostaddr": "127.0.0.2"}'))
    assert page.status_code == 200
    assert "The option &#x27;hostaddr&#x27; is not allowed" in page.content.decode()
    assert Connection.objects.get(pk=connection.pk).options == {}
    ok = client.post(url, admin_data(connection, options='{"keepalives_idle": 30}'))
    assert ok.status_code == 302
    assert Connection.objects.get(pk=connection.pk).options == {"keepalives_idle": 30}


@pytest.mark.django_db
def test_the_model_refuses_bad_options_on_any_path(owner):
    with pytest.raises(ValidationError, match="The option 'sslkey' is not allowed"):
        Connection.objects.create(
            owner=owner, name="dw", host="h", database="d", username="u",
            options={"sslkey": "/proc/self/environ"},
        )  # fmt: skip
    connection = Connection.objects.create(
        owner=owner, name="dw", host="h", database="d", username="u"
    )
    connection.options = {"passfile": "/etc/passwd"}
    with pytest.raises(ValidationError, match="'passfile'"):
        connection.full_clean()
    # A row saved with such options before this check (the portal's form has no options
    # field) cannot be saved again until they are fixed: the form says why.
    Connection.objects.filter(pk=connection.pk).update(options={"service": "prod"})
    loaded = Connection.objects.get(pk=connection.pk)
    form = ConnectionForm(portal_data(loaded, connect_timeout=4), instance=loaded)
    assert not form.is_valid()
    assert form.non_field_errors()[0].startswith("The option 'service' is not allowed")


@pytest.mark.django_db
def test_options_stored_around_the_checks_never_reach_the_session(owner, source_db):
    """A row written by a bulk update (or before the checks) with libpq's `options`
    cannot turn the read-only session off: the driver passes only allowed keys."""
    from connections.drivers import postgresql

    connection = source_db.connection(owner)
    Connection.objects.filter(pk=connection.pk).update(
        options={
            "options": "-c default_transaction_read_only=off",
            "hostaddr": "127.0.0.2",  # another server than the one the host names
            "keepalives_idle": 30,
        }
    )
    db = postgresql.connect(Connection.objects.get(pk=connection.pk))
    try:
        with db.cursor() as cur:
            cur.execute("SHOW default_transaction_read_only")
            assert cur.fetchone() == ("on",)
        used = db.get_dsn_parameters()
        assert "hostaddr" not in used and used["keepalives_idle"] == "30"  # allowed ones arrive
    finally:
        db.close()


# Sharing -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_role_groups_are_neither_offered_nor_accepted_as_share_targets(client, owner, admin_user):
    team = Group.objects.create(name="team")
    owner.groups.add(team)
    operators = Group.objects.get(name=roles.OPERATOR)
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl", password="pw"
    )
    for user in (owner, admin_user):
        offered = ConnectionForm(instance=connection, user=user).fields["shared_with"].queryset
        assert set(offered.values_list("name", flat=True)).isdisjoint(roles.ROLES)
        assert team in offered
    client.force_login(owner)
    page = client.post(
        reverse("connection_edit", args=[connection.pk]),
        {**portal_data(connection), "shared_with": [operators.pk]},
    )
    assert page.status_code == 200
    assert "Select a valid choice" in page.content.decode()
    assert not connection.shared_with.exists()
    client.force_login(admin_user)
    admin_page = client.post(
        f"/admin/connections/connection/{connection.pk}/change/",
        {**admin_data(connection), "shared_with": [operators.pk]},
    )
    assert admin_page.status_code == 200
    assert not connection.shared_with.exists()


@pytest.mark.django_db
def test_a_connection_already_shared_with_a_role_is_not_open_to_that_role(
    owner, outsider, django_user_model
):
    connection = Connection.objects.create(
        owner=owner, name="dw", host="db.internal", database="dw", username="etl", password="pw"
    )
    connection.shared_with.add(Group.objects.get(name=roles.OPERATOR))  # made before the check
    assert not Connection.objects.visible_to(outsider).exists()
    assert not Connection.objects.usable_by(outsider).exists()
    # Nor are its jobs: the job side and the connection side ask roles.teams alike.
    from exports.models import ExportJob

    job = ExportJob.create_with_tables(owner, connection, [("public", "t")], {})
    assert not ExportJob.objects.visible_to(outsider).exists()
    team = Group.objects.create(name="analysts")
    outsider.groups.add(team)
    connection.shared_with.add(team)
    assert list(ExportJob.objects.visible_to(outsider)) == [job]
