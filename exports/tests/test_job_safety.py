"""One folder, one job; and a download never serves a file from outside its job's folder,
whatever the job's records say (issue 17, points 5 and 7c)."""

import json
import stat

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from api.models import ApiToken
from exports.engine.run import run_job
from exports.joblog import log_path
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob, FolderRefused, NoSuchFile, TableRun
from exports.tasks import retry_job

API = "/api/v1"
SECRET = "TOP-SECRET-OUTSIDE-THE-FOLDER"


@pytest.fixture
def connection(owner, source_db):
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    return source_db.connection(owner, name="warehouse")


def bearer(user):
    _, plaintext = ApiToken.issue(user, "test")
    return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}


def one_sentence(message: str):
    assert message.count(". ") == 0 and message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message, message


# One folder, one job ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_job_reserves_its_folder_0700(owner, connection, export_root):
    default = create_job(owner, connection, tables=["public.t"])
    named = create_job(owner, connection, tables=["public.t"], out="shipment")
    assert default.output_dir == f"job-{default.pk}" and named.output_dir == "shipment"
    for job in (default, named):
        assert job.folder().is_dir()
        assert stat.S_IMODE(job.folder().stat().st_mode) == 0o700


@pytest.mark.django_db
def test_two_jobs_cannot_share_a_folder(owner, connection, export_root):
    first = create_job(owner, connection, tables=["public.t"], out="shared")
    (first.folder() / "keep.txt").write_text("the first job's")
    jobs, runs = ExportJob.objects.count(), TableRun.objects.count()
    with pytest.raises(BadRequest) as refused:
        create_job(owner, connection, tables=["public.t"], out="shared")
    assert refused.value.field == "out" and "'shared'" in str(refused.value)
    one_sentence(str(refused.value))
    assert (ExportJob.objects.count(), TableRun.objects.count()) == (jobs, runs)
    assert [p.name for p in first.folder().iterdir()] == ["keep.txt"]
    assert (first.folder() / "keep.txt").read_text() == "the first job's"
    # Past create_job's check (another process between its check and the insert): the
    # model refuses too, and the database would even if the model did not look.
    with pytest.raises(FolderRefused, match="'shared' belongs to another job"):
        ExportJob.create_with_tables(owner, connection, [("public", "t")], {}, "shared")
    with pytest.raises(IntegrityError), transaction.atomic():
        ExportJob.objects.create(owner=owner, connection=connection, output_dir="shared")
    assert (ExportJob.objects.count(), TableRun.objects.count()) == (jobs, runs)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["empty folder", "non-empty folder", "file", "dangling link"])
def test_an_existing_folder_is_refused(owner, connection, export_root, tmp_path, kind):
    export_root.mkdir(parents=True, exist_ok=True)
    taken = export_root / "taken"
    if kind == "file":
        taken.write_text("a file")
    elif kind == "dangling link":
        taken.symlink_to(tmp_path / "nowhere")
    else:
        taken.mkdir()
        if kind == "non-empty folder":
            (taken / "x").write_text("keep me")
    with pytest.raises(BadRequest) as refused:
        create_job(owner, connection, tables=["public.t"], out="taken")
    assert refused.value.field == "out"
    assert "'taken'" in str(refused.value) and "choose another name" in str(refused.value)
    one_sentence(str(refused.value))
    assert not ExportJob.objects.exists()
    if kind == "non-empty folder":
        assert [p.name for p in taken.iterdir()] == ["x"] and (taken / "x").read_text() == "keep me"
    # The same when the folder appears after create_job looked, before the job is saved.
    taken2 = export_root / "late"
    taken2.mkdir()
    with pytest.raises(FolderRefused, match="'late' already exists"):
        ExportJob.create_with_tables(owner, connection, [("public", "t")], {}, "late")
    assert not ExportJob.objects.exists() and not TableRun.objects.exists()


def _next_id(owner, connection) -> int:
    """The id the next job gets (the one a hostile `--out job-<id>` would aim at)."""
    probe = create_job(owner, connection, tables=["public.t"])
    return probe.pk + 1


@pytest.mark.django_db
def test_the_next_default_folder_cannot_be_taken_by_the_command(owner, connection):
    target = f"job-{_next_id(owner, connection)}"
    for out in (target, target.upper(), f"{target}-2", "job-0"):
        with pytest.raises(CommandError, match="reserved for jobs without a folder name"):
            call_command(
                "adu_export", connection.name, "--tables", "public.t", "--out", out, "--as", "owner"
            )
    assert ExportJob.objects.count() == 1  # the probe
    victim = create_job(owner, connection, tables=["public.t"])
    assert victim.output_dir == target
    # Names that only look alike are fine.
    assert create_job(owner, connection, tables=["public.t"], out="job-x").output_dir == "job-x"
    assert create_job(owner, connection, tables=["public.t"], out="jobs-1").output_dir == "jobs-1"


@pytest.mark.django_db
def test_the_next_default_folder_cannot_be_taken_through_the_api(client, owner, connection):
    target = f"job-{_next_id(owner, connection)}"
    data = {"connection": connection.pk, "tables": ["public.t"], "out": target}
    response = client.post(
        f"{API}/jobs/", json.dumps(data), content_type="application/json", **bearer(owner)
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "out" and "reserved for jobs without a folder name" in error["message"]
    assert ExportJob.objects.count() == 1


@pytest.mark.django_db
def test_the_next_default_folder_cannot_be_taken_from_the_page(client, owner, connection):
    target = f"job-{_next_id(owner, connection)}"
    client.force_login(owner)
    form = {"connection": connection.pk, "out": target, "parallel": 2, "compression_level": 3,
            "batch_rows": 100000, "validation": "sample", "tables": ["public.t"]}  # fmt: skip
    page = client.post(reverse("job_new"), form)
    assert page.status_code == 200
    assert b"reserved for jobs without a folder name" in page.content
    assert ExportJob.objects.count() == 1


@pytest.mark.django_db
def test_a_stray_default_folder_is_stepped_over_and_kept(owner, connection, export_root):
    nxt = _next_id(owner, connection)
    # Left by an earlier database: job-<id> for the next few ids.
    for n in range(nxt, nxt + 20):
        (export_root / f"job-{n}").mkdir()
        (export_root / f"job-{n}" / "old.txt").write_text("old")
    job = create_job(owner, connection, tables=["public.t"])
    assert job.pk < nxt + 20
    assert job.output_dir == f"job-{job.pk}-2" and job.folder().is_dir()
    assert not any(job.folder().iterdir())
    assert (export_root / f"job-{job.pk}" / "old.txt").read_text() == "old"


@pytest.mark.django_db
def test_a_job_that_fails_to_be_saved_leaves_no_folder(owner, connection, export_root, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(TableRun.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        create_job(owner, connection, tables=["public.t"], out="never")
    assert not ExportJob.objects.exists()
    assert not (export_root / "never").exists()


@pytest.mark.django_db(transaction=True)
def test_a_retry_reuses_its_own_folder(owner, connection, source_db):
    job = run_job(create_job(owner, connection, tables=["public.t", "public.late"], out="mine").pk)
    assert job.status == "complete_with_errors"
    source_db.execute("CREATE TABLE late AS SELECT 1 AS i")  # the retry can export it now
    retry_job(job, by=owner)
    job = run_job(job.pk)
    assert job.status == "complete" and job.output_dir == "mine"
    assert (job.folder() / "public" / "late.parquet").is_file()
    assert (job.folder() / "public" / "t.parquet").is_file()
    assert json.loads(job.manifest_path().read_text())["attempt"] == 2


# Downloads stay inside the job's folder ---------------------------------------------------


@pytest.fixture
def planted(owner, connection, export_root, tmp_path, settings):
    """A job whose records were tampered with (as an admin could, before 7b): its table
    lists a real file of its own, and paths that lead out of its folder."""
    (tmp_path / "secret.txt").write_text(SECRET)
    job = create_job(owner, connection, tables=["public.t"])
    ExportJob.objects.filter(pk=job.pk).update(status="complete")
    job.refresh_from_db()
    folder = job.folder()
    (folder / "public").mkdir()
    (folder / "public" / "t.parquet").write_bytes(b"PAR1 fine PAR1")
    (folder / "public" / "link.parquet").symlink_to(tmp_path / "secret.txt")
    (folder / "up").symlink_to(tmp_path)  # a folder link: up/secret.txt
    depth = len(folder.parts)
    attacks = [
        "../" * depth + "proc/self/environ",
        "../../secret.txt",
        str(tmp_path / "secret.txt"),
        "public/link.parquet",
        "up/secret.txt",
        "public/../../../secret.txt",
        "public",
        "",
    ]
    job.tables.update(files=[{"path": "public/t.parquet"}] + [{"path": p} for p in attacks])
    settings.JOB_LOG_DIR = tmp_path / "logs"
    return job, attacks


def portal_get(client, job, path):
    return client.get(
        reverse("job_file", args=[job.pk, path]) if path else f"/jobs/{job.pk}/files/"
    )


@pytest.mark.django_db
def test_a_listed_path_out_of_the_folder_is_a_404_on_the_portal(client, owner, planted):
    job, attacks = planted
    # The attacks are real: joined naively to the folder, these reach the secret or /proc.
    reach = [path for path in attacks if path and (job.folder() / path).is_file()]
    assert len(reach) == 6, reach
    for path in attacks:
        with pytest.raises(NoSuchFile):
            job.file_path(path)
    client.force_login(owner)
    good = portal_get(client, job, "public/t.parquet")
    assert good.status_code == 200 and b"".join(good.streaming_content) == b"PAR1 fine PAR1"
    for path in attacks:
        response = portal_get(client, job, path)
        assert response.status_code == 404, path
        assert SECRET.encode() not in response.content


@pytest.mark.django_db
def test_a_listed_path_out_of_the_folder_is_a_404_through_the_api(client, owner, planted):
    job, attacks = planted
    headers = bearer(owner)
    good = client.get(f"{API}/jobs/{job.pk}/files/public/t.parquet", **headers)
    assert good.status_code == 200 and b"".join(good.streaming_content) == b"PAR1 fine PAR1"
    for path in attacks:
        response = client.get(f"{API}/jobs/{job.pk}/files/{path}", **headers)
        assert response.status_code == 404, path
        assert SECRET.encode() not in response.content


@pytest.mark.django_db
def test_a_manifest_or_log_that_is_a_link_is_a_404(client, owner, planted, tmp_path, settings):
    job, _ = planted
    job.manifest_path().symlink_to(tmp_path / "secret.txt")
    log_path(job).parent.mkdir(exist_ok=True)
    log_path(job).symlink_to(tmp_path / "secret.txt")
    client.force_login(owner)
    for response in (
        client.get(f"{API}/jobs/{job.pk}/manifest/", **bearer(owner)),
        portal_get(client, job, "manifest.json"),
        client.get(reverse("job_log_download", args=[job.pk])),
    ):
        assert response.status_code == 404
        assert SECRET.encode() not in response.content
    page = client.get(reverse("job_log", args=[job.pk]))
    assert page.status_code == 200 and SECRET.encode() not in page.content


@pytest.mark.django_db
@pytest.mark.parametrize("folder", ["..", "", "escape", "a/../.."])
def test_a_job_folder_moved_out_of_the_root_serves_nothing(
    client, owner, planted, tmp_path, export_root, folder
):
    job, _ = planted
    outside = tmp_path / "outside"
    (outside / "public").mkdir(parents=True)
    (outside / "public" / "t.parquet").write_text(SECRET)
    (export_root / "escape").symlink_to(outside)
    ExportJob.objects.filter(pk=job.pk).update(output_dir=folder)
    job.refresh_from_db()
    job.tables.update(files=[{"path": "public/t.parquet"}, {"path": "exports/job-1/x"}])
    client.force_login(owner)
    assert portal_get(client, job, "public/t.parquet").status_code == 404
    api = client.get(f"{API}/jobs/{job.pk}/files/public/t.parquet", **bearer(owner))
    assert api.status_code == 404 and SECRET.encode() not in api.content
