"""The audit trail: each action leaves one event with who, what, when and from where."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from exports.engine.run import run_job
from exports.jobs import create_job
from exports.models import ExportJob
from tests.factories import user_with_role

PASSWORD = "Audit-Secret-Pw-7781"
AGENT = "AuditTest/1.0"


def actions(**match):
    return list(AuditEvent.objects.filter(**match).order_by("id").values_list("action", flat=True))


@pytest.fixture
def browser(client):
    client.defaults["HTTP_USER_AGENT"] = AGENT
    return client


@pytest.mark.django_db
def test_logins_logouts_and_failed_logins(browser, owner):
    browser.post(reverse("login"), {"username": "owner", "password": "wrong"})
    browser.post(reverse("login"), {"username": "owner", "password": "owner-pass-123"})
    browser.post(reverse("logout"))
    assert actions() == ["login_failed", "login", "logout"]
    failed, login, _ = AuditEvent.objects.order_by("id")
    assert failed.username == "owner" and failed.user is None
    assert failed.ip_address == "127.0.0.1" and failed.user_agent == AGENT
    assert login.user == owner
    assert "wrong" not in str(failed.details)


@pytest.mark.django_db
def test_five_failures_lock_the_pair_out_with_a_clear_message_until_unlocked(browser, owner):
    for _ in range(5):
        browser.post(reverse("login"), {"username": "owner", "password": "wrong"})
    response = browser.post(reverse("login"), {"username": "owner", "password": "owner-pass-123"})
    assert response.status_code == 429
    assert "Too many failed logins for this user from this address: try again in 15 minutes" in (
        response.content.decode()
    )
    assert "_auth_user_id" not in browser.session
    assert "lockout" in actions()
    # Another user from the same address is not locked out.
    user_with_role(owner.__class__, "other", "ADU Operator")
    other = browser.post(reverse("login"), {"username": "other", "password": "other-pass-123"})
    assert other.status_code == 302
    browser.post(reverse("logout"))
    call_command("axes_reset_username", "owner", stdout=io.StringIO())
    unlocked = browser.post(reverse("login"), {"username": "owner", "password": "owner-pass-123"})
    assert unlocked.status_code == 302 and browser.session["_auth_user_id"] == str(owner.pk)


@pytest.mark.django_db(transaction=True)
def test_connection_and_job_actions_are_on_the_trail_without_secrets(
    browser, owner, source_db, settings
):
    from django.contrib.auth.models import Group

    Group.objects.create(name="team").user_set.add(owner)
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS i")
    browser.force_login(owner)
    fields = {
        "name": "src",
        "kind": "postgresql",
        "host": source_db.server.host,
        "port": source_db.server.port,
        "database": source_db.name,
        "username": source_db.server.user,
        "password": source_db.server.password,
        "sslmode": "disable",
        "connect_timeout": 5,
    }
    browser.post(reverse("connection_create"), fields)
    connection = owner.connections.get()
    team = Group.objects.get(name="team")
    browser.post(
        reverse("connection_edit", args=[connection.pk]),
        {**fields, "password": "", "connect_timeout": 7, "shared_with": [team.pk]},
    )
    browser.post(reverse("connection_test", args=[connection.pk]))
    browser.get(reverse("connection_tables") + f"?connection={connection.pk}")
    job = run_job(create_job(owner, connection, tables=["public.t"]).pk)
    browser.get(reverse("job_file", args=[job.pk, "manifest.json"]))
    browser.get(reverse("job_log_download", args=[job.pk]))
    browser.post(reverse("job_retry", args=[job.pk]))  # refused: nothing to retry
    assert actions() == [
        "login",
        "connection_create",
        "connection_update",
        "connection_share",
        "connection_test",
        "discovery",
        "job_create",
        "file_download",
        "log_download",
    ]
    update = AuditEvent.objects.get(action="connection_update")
    assert update.details == {"changed": ["connect_timeout"]}
    assert update.object_type == "connections.connection" and update.object_id == str(connection.pk)
    assert AuditEvent.objects.get(action="connection_share").details == {"shared_with": ["team"]}
    assert AuditEvent.objects.get(action="file_download").details["path"] == "manifest.json"
    for event in AuditEvent.objects.all():
        assert source_db.server.password not in str(event.details)
        assert event.user == owner


@pytest.mark.django_db
def test_the_admin_changes_are_on_the_trail_and_the_trail_is_read_only(client, admin_user):
    client.force_login(admin_user)
    client.post(
        reverse("admin:auth_group_add"),
        {"name": "auditors"},
    )
    [event] = AuditEvent.objects.filter(action="admin_change")
    assert event.details["change"] == "add" and event.details["object"] == "auditors"
    assert event.object_type == "auth.group"
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    assert client.post(change, {"action": "x"}).status_code == 403
    delete = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    listing = client.get(reverse("admin:audit_auditevent_changelist") + "?action=admin_change")
    assert listing.status_code == 200
    assert f"/admin/audit/auditevent/{event.pk}/change/" in listing.content.decode()
    exported = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [event.pk]},
    )
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0][:3] == ["at", "username", "action"]
    assert rows[1][1:3] == ["root", "admin_change"]


@pytest.mark.django_db(transaction=True)
def test_cleanup_deletes_old_finished_jobs_with_their_files_and_never_a_running_one(
    owner, admin_user, source_db
):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS i")
    connection = source_db.connection(owner)
    old = run_job(create_job(owner, connection, tables=["public.t"]).pk)
    recent = run_job(create_job(owner, connection, tables=["public.t"]).pk)
    running = create_job(owner, connection, tables=["public.t"])
    ExportJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    ExportJob.objects.filter(pk=running.pk).update(
        status="running", created_at=timezone.now() - timedelta(days=90)
    )
    assert old.folder().is_dir()

    out = io.StringIO()
    call_command("adu_cleanup", "--older-than", "30d", "--dry-run", "--as", "root", stdout=out)
    assert f"job {old.pk}" in out.getvalue() and "Would delete 1 job(s)" in out.getvalue()
    assert ExportJob.objects.filter(pk=old.pk).exists() and old.folder().is_dir()

    out = io.StringIO()
    call_command("adu_cleanup", "--older-than", "30d", "--as", "root", stdout=out)
    assert "Deleted 1 job(s)" in out.getvalue()
    assert not ExportJob.objects.filter(pk=old.pk).exists()
    assert not old.folder().exists()
    assert ExportJob.objects.filter(pk__in=[recent.pk, running.pk]).count() == 2
    [deleted] = AuditEvent.objects.filter(action="job_delete")
    assert deleted.object_id == str(old.pk) and deleted.details["bytes_freed"] > 0
    assert AuditEvent.objects.get(action="cleanup").details["jobs"] == 1

    with pytest.raises(CommandError, match="is not an ADU Admin"):
        call_command("adu_cleanup", "--older-than", "1d", "--as", "owner")
    with pytest.raises(CommandError, match="is not an age: write it as 30d"):
        call_command("adu_cleanup", "--older-than", "soon", "--as", "root")


@pytest.mark.django_db
def test_key_rotation_is_on_the_trail(owner, source_db):
    source_db.connection(owner)
    call_command("adu_rotate_keys", stdout=io.StringIO())
    [event] = AuditEvent.objects.filter(action="key_rotation")
    assert event.details == {"rotated": 1, "failed": 0}


@pytest.mark.django_db(transaction=True)
def test_cancel_retry_and_connection_delete_are_on_the_trail(browser, owner, source_db):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS i")
    connection = source_db.connection(owner)
    browser.force_login(owner)
    queued = create_job(owner, connection, tables=["public.t"])
    browser.post(reverse("job_cancel", args=[queued.pk]))
    failed = run_job(create_job(owner, connection, tables=["public.gone"]).pk)
    assert failed.status == "failed"
    call_command("adu_retry", str(failed.pk), "--as", "owner", stdout=io.StringIO())
    spare = source_db.connection(owner, name="spare")
    browser.post(reverse("connection_delete", args=[spare.pk]))
    cancel = AuditEvent.objects.get(action="job_cancel")
    assert cancel.object_id == str(queued.pk) and cancel.ip_address == "127.0.0.1"
    retry = AuditEvent.objects.get(action="job_retry")
    assert retry.object_id == str(failed.pk) and retry.details == {"attempt": 2}
    assert retry.ip_address is None and retry.user == owner  # from a command
    deleted = AuditEvent.objects.get(action="connection_delete")
    assert deleted.details == {"name": "spare"} and deleted.user_agent == AGENT


@pytest.mark.django_db
def test_details_that_look_like_a_secret_are_redacted_and_stay_json(owner):
    """A query such as `... ON c.secret = p.ssn` in an event's details: the pattern for
    "secret = value" once ran over the JSON text and past the closing quote (not JSON)."""
    from audit.models import record

    event = record(
        AuditEvent.Action.QUERY_PREVIEW,
        user=owner,
        query="SELECT p.id FROM people AS p JOIN canary AS c ON c.secret = p.ssn",
        nested={"password": "x", "list": ["token=abc123", 3, None, True]},
    )
    event.refresh_from_db()
    assert (
        event.details["query"]
        == "SELECT p.id FROM people AS p JOIN canary AS c ON c.secret = [redacted]"
    )
    assert event.details["nested"]["list"] == ["token=[redacted]", 3, None, True]


@pytest.mark.django_db(transaction=True)
def test_a_jobs_tables_filters_masks_and_queries_are_on_the_trail(owner, source_db):
    from connections.models import SavedQuery, SensitiveColumn

    source_db.execute(
        "CREATE TABLE people AS SELECT i AS id, 'n' || i AS name, 'e' || i AS email, "
        "'s' || i AS ssn FROM generate_series(1, 3) AS i"
    )
    connection = source_db.connection(owner)
    SensitiveColumn.objects.create(connection=connection, pattern="*ssn*", action="null")
    query = SavedQuery.objects.create(
        connection=connection, name="few", sql="SELECT id FROM people WHERE id < 3"
    )
    job = create_job(
        owner,
        connection,
        tables=["public.people"],
        selections={
            ("public", "people"): {
                "exclude": ["name"],
                "filter": "id > 1",
                "masks": {"email": {"method": "redact"}},
            }
        },
        queries=[query],
    )
    event = AuditEvent.objects.get(action="job_create", object_id=str(job.pk))
    assert event.details["tables"] == 2
    people, few = sorted(event.details["selection"], key=lambda table: table["table"])
    assert people["table"] == "public.people"
    assert people["columns"] == ["id", "email", "ssn"]
    assert people["filter"] and "id" in people["filter"] and "1" in people["filter"]
    assert people["masks"] == {"email": {"method": "redact"}, "ssn": {"method": "null"}}
    assert people["sensitive"] == {"ssn": "sensitive (*ssn*): masked (null)"}
    assert few == {"table": "queries.few", "query": "SELECT id FROM people WHERE id < 3"}


@pytest.mark.django_db(transaction=True)
def test_sensitive_column_rules_changed_in_the_admin_are_on_the_trail(
    browser, admin_user, owner, source_db
):
    from connections.models import SensitiveColumn

    connection = source_db.connection(owner, name="hr")
    browser.force_login(admin_user)
    add = reverse("admin:connections_sensitivecolumn_add")
    fields = {"connection": connection.pk, "pattern": "*salary*", "action": "exclude"}
    assert browser.post(add, fields).status_code == 302
    rule = SensitiveColumn.objects.get()
    change = reverse("admin:connections_sensitivecolumn_change", args=[rule.pk])
    assert browser.post(change, {**fields, "action": "hash"}).status_code == 302
    delete = reverse("admin:connections_sensitivecolumn_delete", args=[rule.pk])
    assert browser.post(delete, {"post": "yes"}).status_code == 302
    assert not SensitiveColumn.objects.exists()

    created, updated, deleted = AuditEvent.objects.filter(
        action__startswith="sensitive_column_"
    ).order_by("id")
    assert created.action == "sensitive_column_create"
    assert created.details == {"connection": "hr", "pattern": "*salary*", "policy": "exclude"}
    assert updated.action == "sensitive_column_update"
    assert updated.details == {
        "connection": "hr", "pattern": "*salary*", "policy": "hash",
        "changed": ["policy"], "before": {"policy": "exclude"},
    }  # fmt: skip
    assert deleted.action == "sensitive_column_delete"
    assert deleted.details == {"connection": "hr", "pattern": "*salary*", "policy": "hash"}
    for event in (created, updated, deleted):
        assert event.user == admin_user and event.user_agent == AGENT
        assert event.object_type == "connections.sensitivecolumn"
        assert event.object_id == str(rule.pk)


@pytest.mark.django_db(transaction=True)
def test_saved_queries_changed_in_the_portal_are_on_the_trail(browser, owner, source_db):
    from connections.models import SavedQuery

    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS i")
    connection = source_db.connection(owner, name="dw")
    browser.force_login(owner)
    fields = {"connection": connection.pk, "name": "small", "sql": "SELECT i FROM t"}
    assert browser.post(reverse("query_create"), fields).status_code == 302
    query = SavedQuery.objects.get()
    edit = reverse("query_edit", args=[query.pk])
    assert browser.post(edit, {**fields, "sql": "SELECT i FROM t WHERE i > 1"}).status_code == 302
    assert browser.post(edit, {**fields, "sql": "SELECT i FROM t WHERE i > 1"}).status_code == 302
    assert browser.post(reverse("query_delete", args=[query.pk])).status_code == 302

    events = list(AuditEvent.objects.filter(action__startswith="saved_query_").order_by("id"))
    assert [e.action for e in events] == [  # the save that changed nothing is not an event
        "saved_query_create",
        "saved_query_update",
        "saved_query_delete",
    ]
    created, updated, deleted = events
    assert created.details == {"connection": "dw", "name": "small", "sql": "SELECT i FROM t"}
    assert updated.details["changed"] == ["sql"]
    assert updated.details["before"] == {"sql": "SELECT i FROM t"}
    assert updated.details["sql"] == "SELECT i FROM t WHERE i > 1"
    assert deleted.details["name"] == "small"
    assert all(e.user == owner and e.object_id == str(query.pk) for e in events)


@pytest.mark.django_db
def test_the_csv_export_writes_details_as_json(client, admin_user):
    from audit.models import record

    details = {"tables": 2, "selection": [{"table": "public.t", "filter": "a = 'x'"}],
               "ok": True, "none": None, "name": "Zoë"}  # fmt: skip
    event = record(AuditEvent.Action.JOB_CREATE, user=admin_user, **details)
    client.force_login(admin_user)
    exported = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [event.pk]},
    )
    header, row = list(csv.reader(io.StringIO(exported.content.decode())))
    assert json.loads(row[header.index("details")]) == details
