"""A job's log is the job's alone (issue 18, point 2): its name carries a token no other
job has, so a new database's job 1 never shows, appends to or deletes an older job 1's
log; and the tests never write into the checkout's var/."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from exports.joblog import log_path

CHECKOUT_VAR = Path(__file__).resolve().parent.parent.parent / "var"


def plant_older_job_1_logs(folder: Path) -> list[Path]:
    """What a job 1 of an earlier database (or test run) left: a log under the old name and
    one under the new."""
    folder.mkdir(parents=True, exist_ok=True)
    planted = [folder / "job-1.log", folder / "job-1-0123456789abcdef.log"]
    for path in planted:
        path.write_text("2026-01-01 00:00:00,000 ERROR adu.job: job 1: an older job's error\n")
    return planted


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_a_fresh_databases_job_1_log_holds_only_its_own_lines(
    client, owner, source_db, export, settings
):
    planted = plant_older_job_1_logs(Path(settings.JOB_LOG_DIR))
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    job = export(source_db.connection(owner), tables=["public.t"])
    assert job.pk == 1 and job.status == "complete"

    own = log_path(job)
    assert own not in planted and own.name.startswith("job-1-")
    text = own.read_text()
    assert "job 1" in text and "an older job's error" not in text
    client.force_login(owner)
    for name in ("job_log", "job_log_lines", "job_log_download"):
        response = client.get(reverse(name, args=[job.pk]))
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"job 1" in body and b"an older job's error" not in body, name
    files = [p for p in job.folder().rglob("*") if p.is_file()]
    assert job.disk_bytes() == sum(p.stat().st_size for p in files) + own.stat().st_size

    job.delete_with_files(by=owner)
    assert not own.exists()
    assert all(path.read_text().endswith("an older job's error\n") for path in planted)


@pytest.mark.django_db
def test_two_jobs_never_share_a_log_even_with_the_same_id(owner, source_db):
    from exports.models import ExportJob

    connection = source_db.connection(owner)
    first = ExportJob.objects.create(owner=owner, connection=connection, output_dir="a")
    second = ExportJob(pk=first.pk, log_token=ExportJob().log_token)  # the same id, elsewhere
    assert first.log_token != second.log_token
    assert log_path(first) != log_path(second)


@pytest.mark.django_db(transaction=True)
def test_running_a_job_changes_nothing_under_the_checkouts_var(client, owner, source_db, export):
    def snapshot():
        if not CHECKOUT_VAR.is_dir():
            return {}
        return {
            str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in CHECKOUT_VAR.rglob("*")
            if not p.is_symlink()
        }

    for path in (
        django_settings.VAR_DIR,
        django_settings.STATIC_ROOT,
        django_settings.EXPORT_ROOT,
        django_settings.JOB_LOG_DIR,
        Path(django_settings.DATABASES["default"]["NAME"]),
    ):
        assert not Path(path).resolve().is_relative_to(CHECKOUT_VAR.resolve()), path
    before = snapshot()
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    job = export(source_db.connection(owner), tables=["public.t"])
    assert job.status == "complete" and log_path(job).is_file()
    client.force_login(owner)
    assert client.get(reverse("job_log_download", args=[job.pk])).status_code == 200
    assert snapshot() == before
