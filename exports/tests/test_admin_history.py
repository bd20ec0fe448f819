"""A job's history is not edited by hand (issue 18, point 9): in the admin, an ADU Admin
reads jobs, table runs and errors, and may only delete a finished job with its files."""

import pytest
from django.contrib.auth.models import Group
from django.forms.models import model_to_dict

from accounts import roles
from exports.models import ExportJob, JobError, StatusChange, TableRun


@pytest.fixture
def boss(django_user_model):
    """An ADU Admin by group: staff with every model permission, not a superuser."""
    user = django_user_model.objects.create_user("boss", password="boss-pass-123")
    user.groups.add(Group.objects.get(name=roles.ADMIN))
    user.refresh_from_db()
    assert user.is_staff and user.has_perm("exports.change_exportjob")
    return user


@pytest.fixture
def history(boss):
    from connections.models import Connection

    connection = Connection.objects.create(
        owner=boss, name="dw", host="db.internal", database="dw", username="etl", password="x"
    )
    job = ExportJob.objects.create(
        owner=boss, connection=connection, output_dir="job-1", status="failed",
        config={"parallel": 2}, attempts=[{"attempt": 1, "snapshot_id": "s1"}],
        tables_total=1, tables_failed=1,
    )  # fmt: skip
    run = TableRun.objects.create(job=job, schema="public", table="t", status="failed")
    error = JobError.objects.create(job=job, table_run=run, message="The table does not exist.")
    StatusChange.objects.create(job=job, status="failed")
    return job, run, error


def as_stored(obj) -> dict:
    return model_to_dict(type(obj).objects.get(pk=obj.pk))


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["exportjob", "tablerun", "joberror"])
def test_an_adu_admin_reads_but_cannot_change_a_record(client, boss, history, model):
    job, run, error = history
    record = {"exportjob": job, "tablerun": run, "joberror": error}[model]
    before = as_stored(record)
    client.force_login(boss)
    url = f"/admin/exports/{model}/{record.pk}/change/"

    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert 'name="status"' not in html and 'name="message"' not in html
    forged = {
        "status": "complete", "tables_failed": "0", "attempts": "[]", "config": "{}",
        "message": "all fine", "rows_written": "999", "job": job.pk,
    }  # fmt: skip
    assert client.post(url, forged).status_code == 403
    assert as_stored(record) == before


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["exportjob", "tablerun", "joberror"])
def test_an_adu_admin_cannot_add_a_record(client, boss, history, model):
    job, run, _ = history
    client.force_login(boss)
    url = f"/admin/exports/{model}/add/"
    counts = [ExportJob.objects.count(), TableRun.objects.count(), JobError.objects.count()]
    assert client.get(url).status_code == 403
    forged = {"job": job.pk, "table_run": run.pk, "schema": "s", "table": "x", "message": "m",
              "owner": job.owner_id, "connection": job.connection_id, "output_dir": "x"}  # fmt: skip
    assert client.post(url, forged).status_code == 403
    assert [ExportJob.objects.count(), TableRun.objects.count(), JobError.objects.count()] == counts
    assert f'href="/admin/exports/{model}/add/"' not in client.get("/admin/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["tablerun", "joberror"])
def test_a_table_run_or_error_is_not_deleted_alone(client, boss, history, model):
    _, run, error = history
    record = {"tablerun": run, "joberror": error}[model]
    client.force_login(boss)
    url = f"/admin/exports/{model}/{record.pk}/delete/"
    assert client.post(url, {"post": "yes"}).status_code == 403
    listing = f"/admin/exports/{model}/"
    client.post(
        listing, {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"}
    )
    assert type(record).objects.filter(pk=record.pk).exists()


@pytest.mark.django_db
def test_a_finished_job_is_deleted_with_its_history_and_files(client, boss, history):
    job, run, error = history
    job.folder().mkdir(parents=True)
    client.force_login(boss)
    listing = client.get("/admin/exports/exportjob/").content.decode()
    assert "delete_with_files" in listing and "delete_selected" not in listing
    assert (
        client.post(f"/admin/exports/exportjob/{job.pk}/delete/", {"post": "yes"}).status_code
        == 302
    )
    assert not ExportJob.objects.filter(pk=job.pk).exists() and not job.folder().exists()
    assert not TableRun.objects.filter(pk=run.pk).exists()
    assert not JobError.objects.filter(pk=error.pk).exists()
