"""Job commands and state rules, without a cluster: cancel, retry, the sweep, logs, redaction."""

import io
import json
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from adu_site.redaction import RedactSecrets, redact
from exports.engine.run import finish_job, run_job, sweep_tables
from exports.joblog import job_log, log_path
from exports.jobs import create_job
from exports.models import ExportJob, StatusChange, TableRun
from exports.tasks import sweep


def command(*args):
    out = io.StringIO()
    call_command(*args, "--as", "owner", stdout=out)
    return out.getvalue()


@pytest.fixture
def job(owner, source_db):
    source_db.execute("CREATE TABLE a AS SELECT generate_series(1, 10) AS i")
    source_db.execute("CREATE TABLE b AS SELECT generate_series(1, 20) AS i")
    return create_job(owner, source_db.connection(owner))


@pytest.mark.django_db(transaction=True)
def test_adu_export_without_sync_queues_the_job(owner, source_db):
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    source_db.execute("CREATE TABLE a AS SELECT 1 AS i")
    source_db.connection(owner, name="src")
    broker = get_broker()  # the ORM queue table, or Redis in the postgres-redis pass
    broker.purge_queue()
    output = command("adu_export", "src")
    job = ExportJob.objects.get()
    assert output.startswith(f"Queued job {job.pk}: 1 table(s) from 'src'.")
    assert job.status == "queued"
    [(_, package)] = broker.dequeue()
    task = SignedPackage.loads(package)
    assert task["func"] == "exports.tasks.coordinate"
    assert task["args"] == (job.pk, "start")  # an id, never an object or a secret


@pytest.mark.django_db(transaction=True)
def test_status_changes_are_recorded_with_their_times(job):
    run_job(job.pk)
    statuses = list(StatusChange.objects.filter(table_run=None).values_list("status", flat=True))
    assert statuses == ["running", "complete"]
    for run in job.tables.all():
        changes = StatusChange.objects.filter(table_run=run).values_list("status", flat=True)
        assert list(changes) == ["running", "complete"]


@pytest.mark.django_db(transaction=True)
def test_adu_jobs_and_adu_job_show_jobs_with_the_export_json_keys(job, outsider):
    run_job(job.pk)
    listing = json.loads(command("adu_jobs", "--json"))
    assert [j["job_id"] for j in listing] == [job.pk]
    assert "No jobs." in command("adu_jobs", "--status", "failed")
    shown = json.loads(command("adu_job", str(job.pk), "--json", "--log"))
    assert set(shown) >= {"job_id", "status", "output_dir", "manifest", "tables", "log"}
    assert "public.a: complete: 10 rows" in shown["log"]
    text = command("adu_job", str(job.pk))
    assert "public.b" in text and "complete" in text
    with pytest.raises(CommandError, match=f"There is no job {job.pk}."):
        call_command("adu_job", str(job.pk), "--as", "outsider")


@pytest.mark.django_db(transaction=True)
def test_cancel_of_a_queued_job_cancels_it_at_once(job):
    output = command("adu_cancel", str(job.pk))
    assert output.startswith(f"Cancelling job {job.pk}")
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert set(job.tables.values_list("status", flat=True)) == {"cancelled"}
    assert run_job(job.pk).status == "cancelled"  # a late coordinator changes nothing


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_refuse_jobs_in_the_wrong_state(job):
    with pytest.raises(CommandError, match=f"Job {job.pk} is still queued; retry it when"):
        command("adu_retry", str(job.pk))
    run_job(job.pk)
    with pytest.raises(CommandError, match=f"Job {job.pk} is already complete; there is"):
        command("adu_cancel", str(job.pk))
    with pytest.raises(CommandError, match="has no failed or cancelled tables to retry"):
        command("adu_retry", str(job.pk))
    job.refresh_from_db()
    assert job.status == "complete" and job.attempt == 1 and not job.cancel_requested


@pytest.mark.django_db(transaction=True)
def test_a_table_whose_worker_died_is_requeued_once_then_failed(job, settings):
    old = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 5)
    run = job.tables.first()
    TableRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=old)
    sweep_tables()
    run.refresh_from_db()
    assert (run.status, run.requeues) == ("queued", 1)

    TableRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=old)
    sweep_tables()
    run.refresh_from_db()
    assert run.status == "failed"
    assert job.errors.get().message == (
        f"The worker exporting {run} stopped twice (process killed or machine restarted); "
        "the table was not exported."
    )


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_coordinator_died_is_resumed_once_then_failed(job, settings, monkeypatch):
    started = []
    monkeypatch.setattr("exports.tasks.start_job", lambda j, reason: started.append(reason))
    old = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 5)
    job.set_status("running")
    ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=old)
    sweep()
    assert started == ["resumed after its coordinator stopped"]
    job.refresh_from_db()
    assert job.status == "queued"  # for the new coordinator to claim

    # The new coordinator claimed it, then died too.
    ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=old, status="running")
    sweep()
    job.refresh_from_db()
    assert job.status == "failed"
    assert "coordinator stopped twice" in job.errors.get().message
    assert len(started) == 1


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_tables_all_ended_is_finished_by_the_sweep(job, settings):
    old = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 5)
    job.set_status("running")
    job.tables.update(status="complete")
    ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=old)
    sweep()
    job.refresh_from_db()
    assert job.status == "complete"
    assert job.manifest_path().exists()


@pytest.mark.django_db(transaction=True)
def test_job_logs_are_files_per_job_and_never_hold_secrets(job, settings, tmp_path):
    settings.JOB_LOG_DIR = tmp_path / "logs"
    job_log(job).warning("connecting with password=hunter2 to postgres://u:pw1234@h/db")
    job_log(job).warning("stored token gAAAAABlZ0123456789abcdefghijklmnopqrstuvwxyz==")
    text = log_path(job).read_text()
    assert f"job {job.pk}: connecting with password=[redacted]" in text
    assert "hunter2" not in text and "pw1234" not in text and "gAAAAAB" not in text


def test_the_redaction_filter_cleans_any_logger_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "dsn %s", ("password='s3 cr3t'",), None)
    try:
        raise ValueError("secret: abc123")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecrets().filter(record)
    assert record.getMessage() == "dsn password=[redacted]"
    assert "abc123" not in record.exc_text
    assert redact("api_key=xyz token: t0k") == "api_key=[redacted] token: [redacted]"


@pytest.mark.django_db(transaction=True)
def test_a_decrypted_password_is_redacted_everywhere_after(owner, source_db):
    connection = source_db.connection(owner, password="Unusual-Secret-99")
    connection.secret()
    assert redact("oops Unusual-Secret-99 leaked") == "oops [redacted] leaked"


@pytest.mark.django_db(transaction=True)
def test_finish_job_leaves_a_job_with_running_tables_running(job):
    job.set_status("running")
    job.tables.filter(table="a").update(status="running")
    assert finish_job(job.pk).status == "running"
