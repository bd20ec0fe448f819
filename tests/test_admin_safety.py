"""An ADU Admin is not root on the host (issue 17, point 7): Django-Q2's pages are a
superuser's, a schedule calls only ADU's tasks, and a job's paths are read-only."""

import pytest
from django.contrib.auth.models import Group
from django_q.models import Failure, OrmQ, Schedule, Success

from accounts import roles
from exports.models import ExportJob, TableRun

Q_PAGES = ["schedule", "success", "failure", "ormq"]


@pytest.fixture
def boss(django_user_model):
    """An ADU Admin by group: staff, every model permission, not a superuser."""
    user = django_user_model.objects.create_user("boss", password="boss-pass-123")
    user.groups.add(Group.objects.get(name=roles.ADMIN))
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert user.has_perm("django_q.add_schedule")  # the group grants it: the admin must not
    return user


def schedule_form(func, **changes):
    return {
        "name": "attack",
        "func": func,
        "hook": "",
        "args": "",
        "kwargs": "",
        "schedule_type": "I",
        "minutes": "1",
        "repeats": "-1",
        "next_run_0": "2030-01-01",
        "next_run_1": "00:00:00",
        "cron": "",
        "cluster": "",
        "intended_date_kwarg": "",
        **changes,
    }


@pytest.mark.django_db
def test_an_adu_admin_cannot_reach_django_q(client, boss):
    from django.contrib import admin

    assert admin.site.is_registered(Schedule) and admin.site.is_registered(Success)
    client.force_login(boss)
    assert client.get("/admin/exports/exportjob/").status_code == 200  # the rest is theirs
    for page in Q_PAGES:
        if page == "ormq" and not admin.site.is_registered(OrmQ):
            continue
        assert client.get(f"/admin/django_q/{page}/").status_code == 403, page
    assert client.get("/admin/django_q/schedule/add/").status_code == 403
    response = client.post("/admin/django_q/schedule/add/", schedule_form("os.system"))
    assert response.status_code == 403
    assert not Schedule.objects.filter(name="attack").exists()
    sweep = Schedule.objects.create(name="adu-sweep", func="exports.tasks.sweep", minutes=1)
    change = f"/admin/django_q/schedule/{sweep.pk}/change/"
    assert client.get(change).status_code == 403
    assert client.post(change, schedule_form("os.system", name="adu-sweep")).status_code == 403
    assert (
        client.post(f"/admin/django_q/schedule/{sweep.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    sweep.refresh_from_db()
    assert sweep.func == "exports.tasks.sweep"
    index = client.get("/admin/").content.decode()
    assert "django_q" not in index and "Scheduled tasks" not in index


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes, field",
    [
        ({"func": "os.system", "args": "'id > /tmp/owned'"}, "func"),
        ({"func": "subprocess.run", "args": "['id']"}, "func"),
        ({"func": "builtins.exec"}, "func"),
        ({"func": "exports.tasks.sweep ; os.system"}, "func"),
        ({"hook": "os.system"}, "hook"),
        ({"kwargs": "q_options={'hook': 'os.system'}"}, "kwargs"),
        ({"kwargs": "{'chain': [('os.system', ('id',))]}"}, "kwargs"),
        ({"kwargs": "hook='subprocess.run'"}, "kwargs"),
        ({"kwargs": "**{'hook': 'os.system'}"}, "kwargs"),
        ({"args": "__import__('os')"}, "args"),
    ],
)
def test_a_schedule_calls_only_adu_tasks(client, admin_user, changes, field):
    client.force_login(admin_user)
    form = schedule_form(**{"func": "exports.tasks.sweep", **changes})
    response = client.post("/admin/django_q/schedule/add/", form)
    assert response.status_code == 200, response.status_code  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert not Schedule.objects.filter(name="attack").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "func, args, kwargs",
    [
        ("exports.tasks.sweep", "", ""),
        ("exports.tasks.coordinate", "12", "reason='nightly'"),
        ("exports.tasks.work", "12, 'snap'", ""),
    ],
)
def test_a_superuser_schedules_an_adu_task(client, admin_user, func, args, kwargs):
    client.force_login(admin_user)
    form = schedule_form(func, args=args, kwargs=kwargs)
    response = client.post("/admin/django_q/schedule/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Schedule.objects.get(name="attack").func == func
    assert client.get("/admin/django_q/schedule/").status_code == 200


@pytest.mark.django_db
def test_resubmitting_runs_only_adu_tasks(client, admin_user, monkeypatch):
    from django_q import admin as q_admin

    submitted = []
    monkeypatch.setattr(q_admin, "async_task", lambda func, *a, **k: submitted.append(func))
    common = {"started": "2030-01-01T00:00Z", "stopped": "2030-01-01T00:00Z", "success": False}
    bad = Failure.objects.create(id="a" * 32, name="bad", func="os.system", args=("id",), **common)
    good = Failure.objects.create(id="b" * 32, name="good", func="exports.tasks.sweep", **common)
    client.force_login(admin_user)
    client.post(
        "/admin/django_q/failure/",
        {"action": "resubmit_adu_tasks", "_selected_action": [bad.pk, good.pk]},
    )
    assert submitted == ["exports.tasks.sweep"]


@pytest.fixture
def job(admin_user):
    from connections.models import Connection

    connection = Connection.objects.create(
        owner=admin_user, name="dw", host="db.internal", database="dw", username="etl",
        password="x",
    )  # fmt: skip
    job = ExportJob.objects.create(owner=admin_user, connection=connection, output_dir="job-1")
    TableRun.objects.create(
        job=job, schema="public", table="t", files=[{"path": "public/t.parquet"}]
    )
    return job


def inline_management(prefixes=("tables", "errors", "changes")):
    return {
        f"{prefix}-{name}": value
        for prefix in prefixes
        for name, value in (
            ("TOTAL_FORMS", "0"),
            ("INITIAL_FORMS", "0"),
            ("MIN_NUM_FORMS", "0"),
            ("MAX_NUM_FORMS", "1000"),
        )
    }


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["superuser", "adu admin"])
def test_a_jobs_paths_are_read_only_in_the_admin(client, admin_user, boss, job, who):
    client.force_login(admin_user if who == "superuser" else boss)
    url = f"/admin/exports/exportjob/{job.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "job-1" in html and 'name="output_dir"' not in html
    response = client.post(
        url,
        {"output_dir": "../../../../proc/self", "status": "complete", "owner": boss.pk,
         **inline_management()},
    )  # fmt: skip
    assert response.status_code == 403  # history: nothing of a job is changed by hand
    job.refresh_from_db()
    assert job.output_dir == "job-1" and job.status == "queued" and job.owner == admin_user
    assert client.get("/admin/exports/exportjob/add/").status_code == 403

    run = job.tables.get()
    url = f"/admin/exports/tablerun/{run.pk}/change/"
    html = client.get(url).content.decode()
    assert 'name="files"' not in html and 'name="spec"' not in html
    response = client.post(
        url,
        {"files": '[{"path": "../../../../proc/self/environ"}]', "spec": '{"filter": "true"}',
         "schema": "pg_catalog", "table": "pg_authid", "job": job.pk},
    )  # fmt: skip
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.files == [{"path": "public/t.parquet"}] and run.spec == {}
    assert (run.schema, run.table) == ("public", "t")
    assert client.get("/admin/exports/tablerun/add/").status_code == 403


@pytest.mark.django_db
def test_the_delete_button_takes_a_finished_jobs_folder_and_spares_a_running_job(client, boss, job):
    from audit.models import AuditEvent

    client.force_login(boss)
    job.folder().mkdir(parents=True)
    (job.folder() / "data.parquet").write_bytes(b"x" * 10)
    url = f"/admin/exports/exportjob/{job.pk}/delete/"
    assert client.get(url).status_code == 403  # queued: its workers still write there
    ExportJob.objects.filter(pk=job.pk).update(status="complete")
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not ExportJob.objects.filter(pk=job.pk).exists() and not job.folder().exists()
    assert AuditEvent.objects.filter(action="job_delete", object_id=str(job.pk)).exists()


@pytest.mark.django_db
def test_job_errors_are_records_in_the_admin(client, boss, job):
    from exports.models import JobError

    error = JobError.objects.create(job=job, message="The table does not exist.")
    client.force_login(boss)
    url = f"/admin/exports/joberror/{error.pk}/change/"
    assert 'name="message"' not in client.get(url).content.decode()
    assert client.post(url, {"message": "all fine", "job": job.pk}).status_code == 403
    error.refresh_from_db()
    assert error.message == "The table does not exist."
    assert client.get("/admin/exports/joberror/add/").status_code == 403


def user_form(user, **changes):
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "groups": [g.pk for g in user.groups.all()],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        **changes,
    }


@pytest.mark.django_db
def test_an_adu_admin_cannot_make_a_superuser(client, boss, admin_user, django_user_model):
    client.force_login(boss)
    mine = f"/admin/auth/user/{boss.pk}/change/"
    assert 'name="is_superuser"' not in client.get(mine).content.decode()
    response = client.post(mine, user_form(boss, is_superuser="on", first_name="Boss"))
    assert response.status_code == 302
    boss.refresh_from_db()
    assert boss.first_name == "Boss" and not boss.is_superuser  # the rest saves
    # Nor take a superuser's account: no change, no new password, no delete.
    root = f"/admin/auth/user/{admin_user.pk}/"
    view = client.get(root + "change/")  # a page to read, not a form
    assert view.status_code == 200 and 'name="email"' not in view.content.decode()
    assert client.post(root + "change/", user_form(admin_user, email="x@y")).status_code == 403
    new_password = {"password1": "Taken-Over-2026", "password2": "Taken-Over-2026"}
    assert client.post(root + "password/", new_password).status_code == 403
    assert client.post(root + "delete/", {"post": "yes"}).status_code == 403
    admin_user.refresh_from_db()
    assert admin_user.check_password("root-pass-123") and admin_user.email == ""
    # A superuser still makes superusers.
    client.force_login(admin_user)
    clerk = django_user_model.objects.create_user("clerk", password="clerk-pass-123")
    url = f"/admin/auth/user/{clerk.pk}/change/"
    assert client.post(url, user_form(clerk, is_superuser="on")).status_code == 302
    clerk.refresh_from_db()
    assert clerk.is_superuser
