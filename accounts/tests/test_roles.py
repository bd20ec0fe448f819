"""Each role against each page, partial, download and command: who may do what.

The cast: `owner` (an ADU Operator) owns a connection shared with the group "analysts";
`mate` (Operator) and `reader` (Viewer) are analysts; `stranger` (Operator) and
`onlooker` (Viewer) are not; `boss` is an ADU Admin by group (not a superuser); `nobody`
has no role. A page about an object the user may not see or change is a 404.
"""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts import roles
from quality.models import Rule
from tests.factories import role_cast

OK = "ok"  # 200, or a redirect after a successful POST
USERS = ("boss", "owner", "mate", "reader", "stranger", "onlooker", "nobody")


@pytest.fixture
def cast(django_user_model, source_db):
    people, connection, job = role_cast(django_user_model, source_db)
    rule = Rule.objects.create(
        connection=connection, schema="public", table="t", column="i", kind="not_null"
    )
    return {"people": people, "connection": connection, "job": job, "rule": rule}


# (name, method, url builder, who gets OK, who gets 403; everyone else gets 404)
EVERYONE = set(USERS)
OPERATORS = {"boss", "owner", "mate", "stranger"}
SEE_JOB = {"boss", "owner", "mate", "reader"}
USE_CONNECTION = {"boss", "owner", "mate"}
CHANGE = {"boss", "owner"}
NOT_OPERATORS = EVERYONE - OPERATORS

MATRIX = [
    ("dashboard", "GET", lambda c: reverse("dashboard"), EVERYONE, set()),
    ("running partial", "GET", lambda c: reverse("dashboard_running"), EVERYONE, set()),
    ("job list", "GET", lambda c: reverse("job_list"), EVERYONE, set()),
    ("new export", "GET", lambda c: reverse("job_new"), OPERATORS, NOT_OPERATORS),
    ("job", "GET", lambda c: reverse("job_detail", args=[c["job"].pk]), SEE_JOB, set()),
    ("job live", "GET", lambda c: reverse("job_live", args=[c["job"].pk]), SEE_JOB, set()),
    ("log", "GET", lambda c: reverse("job_log", args=[c["job"].pk]), SEE_JOB, set()),
    ("log lines", "GET", lambda c: reverse("job_log_lines", args=[c["job"].pk]), SEE_JOB, set()),
    (
        "log download",
        "GET",
        lambda c: reverse("job_log_download", args=[c["job"].pk]),
        SEE_JOB,
        set(),
    ),
    (
        "file download",
        "GET",
        lambda c: reverse("job_file", args=[c["job"].pk, c["job"].tables.get().files[0]["path"]]),
        SEE_JOB,
        set(),
    ),
    (
        "manifest",
        "GET",
        lambda c: reverse("job_file", args=[c["job"].pk, "manifest.json"]),
        SEE_JOB,
        set(),
    ),
    ("retry", "POST", lambda c: reverse("job_retry", args=[c["job"].pk]), CHANGE, set()),
    ("connections", "GET", lambda c: reverse("connection_list"), EVERYONE, set()),
    ("new connection", "GET", lambda c: reverse("connection_create"), OPERATORS, NOT_OPERATORS),
    (
        "edit connection",
        "GET",
        lambda c: reverse("connection_edit", args=[c["connection"].pk]),
        CHANGE,
        set(),
    ),
    (
        "delete connection",
        "GET",
        lambda c: reverse("connection_delete", args=[c["connection"].pk]),
        CHANGE,
        set(),
    ),
    (
        "test connection",
        "POST",
        lambda c: reverse("connection_test", args=[c["connection"].pk]),
        USE_CONNECTION,
        set(),
    ),
    (
        "discovery partial",
        "GET",
        lambda c: reverse("connection_tables") + f"?connection={c['connection'].pk}",
        USE_CONNECTION,
        set(),
    ),
    (
        "columns partial",
        "GET",
        lambda c: (
            reverse("connection_columns")
            + f"?connection={c['connection'].pk}&schema=public&table=t"
        ),
        USE_CONNECTION,
        set(),
    ),
    ("queries", "GET", lambda c: reverse("query_list"), EVERYONE, set()),
    ("new query", "GET", lambda c: reverse("query_create"), OPERATORS, NOT_OPERATORS),
    ("rules", "GET", lambda c: reverse("rule_list"), EVERYONE, set()),
    ("new rule", "GET", lambda c: reverse("rule_create"), OPERATORS, NOT_OPERATORS),
    ("edit rule", "GET", lambda c: reverse("rule_edit", args=[c["rule"].pk]), CHANGE, set()),
    ("delete rule", "GET", lambda c: reverse("rule_delete", args=[c["rule"].pk]), CHANGE, set()),
]


@pytest.mark.django_db(transaction=True)
def test_every_role_against_every_page(client, cast):
    wrong = []
    for username in USERS:
        client.force_login(cast["people"][username])
        for name, method, url, allowed, forbidden in MATRIX:
            response = client.get(url(cast)) if method == "GET" else client.post(url(cast))
            got = OK if response.status_code in (200, 302) else response.status_code
            expected = OK if username in allowed else (403 if username in forbidden else 404)
            if got != expected:
                wrong.append(f"{username} {name}: {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.django_db(transaction=True)
def test_lists_show_only_what_the_role_may_see(client, cast):
    job, connection = cast["job"], cast["connection"]
    for username in USERS:
        client.force_login(cast["people"][username])
        jobs = client.get(reverse("job_list")).content.decode()
        connections = client.get(reverse("connection_list")).content.decode()
        sees = username in SEE_JOB
        assert (f"/jobs/{job.pk}/" in jobs) == sees, username
        assert ("warehouse" in connections) == sees, username
        # Only those who may change the connection see where it points.
        assert (connection.host + ":" in connections) == (username in CHANGE), username
        assert ('href="/jobs/new/"' in client.get("/").content.decode()) == (
            username in OPERATORS
        ), username


@pytest.mark.django_db(transaction=True)
def test_only_an_adu_admin_enters_the_admin_site(client, cast):
    for username in USERS:
        client.force_login(cast["people"][username])
        response = client.get("/admin/exports/exportjob/")
        assert (response.status_code == 200) == (username == "boss"), username
    boss = cast["people"]["boss"]
    boss.groups.remove(Group.objects.get(name=roles.ADMIN))
    boss.refresh_from_db()
    assert not boss.is_staff
    client.force_login(boss)
    assert client.get("/admin/exports/exportjob/").status_code == 302


def _command(name, *args, user):
    out = io.StringIO()
    call_command(name, *args, "--as", user, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_every_role_against_every_command(cast):
    job = cast["job"]
    # (command, args, who may run it); the others get one sentence and a non-zero exit
    matrix = [
        ("adu_job", [str(job.pk)], SEE_JOB),
        ("adu_connection", ["test", "warehouse"], USE_CONNECTION),
        ("adu_discover", ["warehouse"], USE_CONNECTION),
        ("adu_export", ["warehouse", "--sync", "--out", "x-{user}"], USE_CONNECTION),
        ("adu_retry", [str(job.pk)], CHANGE),
        (
            "adu_connection",
            ["add", "mine-{user}", "--host", "h", "--database", "d", "--user", "u"],
            OPERATORS,
        ),
    ]
    wrong = []
    for command, args, allowed in matrix:
        for username in USERS:
            argv = [a.format(user=username) for a in args]
            try:
                _command(command, *argv, user=username)
                ok = True
            except SystemExit as exit:
                ok = exit.code == 0
            except CommandError as error:
                # Refused for the role, or allowed and refused for the job's state
                # (a complete job has nothing to retry).
                ok = "has no failed or cancelled tables to retry" in str(error)
                assert "Traceback" not in str(error)
            if ok != (username in allowed):
                wrong.append(f"{username} {command} {argv[0]}: {'ran' if ok else 'refused'}")
    assert not wrong, "\n".join(wrong)

    listed = {u: _command("adu_jobs", "--json", user=u) for u in USERS}
    for username in USERS:
        assert (f'"job_id": {job.pk}' in listed[username]) == (username in SEE_JOB), username
    assert "warehouse" not in _command("adu_connection", "list", user="stranger")
    assert "warehouse" in _command("adu_connection", "list", user="reader")
