"""Telling people a job ended: e-mail (Django's mail, over the site's SMTP server) and
webhooks (a JSON body signed with HMAC-SHA-256, retried with back-off).

A message says which job, its status, its counts and its errors' sentences (which never
hold a password: exports.engine explains errors without them), and nothing more: no
connection details, no rows, no secret.
"""

import hashlib
import hmac
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from exports.models import ExportJob, JobError, TableRun
from plans.models import Delivery, Notification, PlanRun

log = logging.getLogger(__name__)

# Seconds before each retry of a failed delivery: 5 tries in about 45 minutes.
BACKOFF = [30, 120, 480, 1920]
SIGNATURE_HEADER = "X-ADU-Signature"
WEBHOOK_TIMEOUT = 10
EVENTS = {
    Notification.When.FAILURE: {"failed"},
    Notification.When.PROBLEMS: {"failed", "errors", "warnings"},
    Notification.When.ALWAYS: {"failed", "errors", "warnings", "complete", "cancelled"},
}


def event_of(job: ExportJob) -> str:
    if job.status == ExportJob.Status.FAILED:
        return "failed"
    if job.status == ExportJob.Status.CANCELLED:
        return "cancelled"
    if job.status == ExportJob.Status.COMPLETE_WITH_ERRORS:
        return "errors"
    if job.tables.exclude(warnings=[]).exists():
        return "warnings"
    return "complete"


def on_job_finished(sender, job: ExportJob, **kwargs):
    """exports.signals.job_finished: a delivery per notification that wants this end. A
    notification that cannot be queued is logged; it never fails the job."""
    try:
        _queue_deliveries(job)
    except Exception:
        log.exception("notifications of job %s could not be queued", job.pk)


def _queue_deliveries(job: ExportJob):
    event = event_of(job)
    plan_run = PlanRun.objects.filter(job=job).select_related("plan").first()
    wanted = Notification.objects.filter(user=job.owner)
    if plan_run is not None:
        wanted = wanted | Notification.objects.filter(plan=plan_run.plan)
    for notification in wanted:
        if event in EVENTS[notification.when]:
            _deliver_later(notification, event, job=job, attempt=job.attempt)


def plan_refused(plan, run: PlanRun):
    """A plan's run could not start a job (its source refused, a table is gone...)."""
    for notification in plan.notifications.all():
        _deliver_later(notification, "failed", plan_run=run)


def _deliver_later(notification: Notification, event: str, **about):
    from django_q.tasks import async_task

    try:
        delivery = Delivery.objects.create(notification=notification, event=event, **about)
    except IntegrityError:  # this end of this attempt was already told
        return
    async_task("plans.tasks.deliver", delivery.pk, task_name=f"delivery-{delivery.pk}")


def deliver(delivery_id: int) -> bool:
    """Send one delivery; on failure, try again later (BACKOFF), then give up recorded."""
    delivery = Delivery.objects.select_related("notification", "job", "plan_run__plan").get(
        pk=delivery_id
    )
    if delivery.status != Delivery.Status.PENDING:
        return delivery.status == Delivery.Status.SENT
    notification = delivery.notification
    body = message(delivery)
    delivery.tries += 1
    try:
        if notification.channel == Notification.Channel.EMAIL:
            _email(notification.address, body)
        else:
            _webhook(notification, delivery, body)
    except Exception as error:  # noqa: BLE001 - any failure of the far end is retried
        delivery.last_error = _reason(error)
        if delivery.tries > len(BACKOFF):
            delivery.status = Delivery.Status.FAILED
            log.warning(
                "notification %s: gave up after %s tries: %s",
                delivery.pk,
                delivery.tries,
                delivery.last_error,
            )
        else:
            _retry(delivery, BACKOFF[delivery.tries - 1])
        delivery.save()
        return False
    delivery.status, delivery.sent_at, delivery.last_error = (
        Delivery.Status.SENT,
        timezone.now(),
        "",
    )
    delivery.save()
    return True


def _retry(delivery: Delivery, seconds: int):
    from django_q.models import Schedule

    Schedule.objects.create(
        name=f"adu-delivery-{delivery.pk}-{delivery.tries}",
        func="plans.tasks.deliver",
        args=repr((delivery.pk,)),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=timezone.now() + timedelta(seconds=seconds),
    )


def message(delivery: Delivery) -> dict:
    """What a delivery says, the same for e-mail and webhooks."""
    job = delivery.job
    run = delivery.plan_run or (
        PlanRun.objects.filter(job=job).select_related("plan").first() if job else None
    )
    said = {
        "event": f"job.{delivery.event}",
        "delivery": delivery.pk,
        "plan": run.plan.name if run else None,
        "sent_at": timezone.now().isoformat(timespec="seconds"),
    }
    if job is None:
        said["job"] = None
        said["errors"] = [delivery.plan_run.note]
        return said
    progress = job.progress()
    said["job"] = {
        "id": job.pk,
        "status": job.status,
        "attempt": delivery.attempt,
        "folder": job.output_dir,
        "tables": progress["tables_total"],
        "tables_complete": progress["tables_complete"],
        "tables_failed": progress["tables_failed"],
        "rows": progress["rows_written"],
        "warnings": TableRun.objects.filter(job=job).exclude(warnings=[]).count(),
        "finished_at": job.finished_at.isoformat(timespec="seconds") if job.finished_at else None,
        "url": f"{settings.PORTAL_URL.rstrip('/')}/jobs/{job.pk}/" if settings.PORTAL_URL else None,
    }
    said["errors"] = list(JobError.objects.filter(job=job).values_list("message", flat=True)[:10])
    return said


def subject(said: dict) -> str:
    what = {
        "job.failed": "failed",
        "job.errors": "ended with errors",
        "job.warnings": "ended with warnings",
        "job.complete": "is complete",
        "job.cancelled": "was cancelled",
    }[said["event"]]
    job = f"Job {said['job']['id']}" if said["job"] else "A run"
    return f"ADU: {job}{' of plan ' + said['plan'] if said['plan'] else ''} {what}"


def _email(address: str, said: dict):
    from django.core.mail import send_mail

    lines = [subject(said).removeprefix("ADU: ") + "."]
    if said["job"]:
        job = said["job"]
        lines += [
            f"Status: {job['status']}",
            f"Tables: {job['tables_complete']} complete, {job['tables_failed']} failed, "
            f"{job['warnings']} with warnings",
            f"Rows: {job['rows']}",
            f"Folder: {job['folder']}",
        ]
        if job["url"]:
            lines.append(f"Details: {job['url']}")
    if said["errors"]:
        lines += ["", "Errors:", *(f"- {e}" for e in said["errors"])]
    send_mail(subject(said), "\n".join(lines) + "\n", None, [address], fail_silently=False)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(notification: Notification, delivery: Delivery, said: dict):
    import urllib.request

    body = json.dumps(said, sort_keys=True).encode()
    request = urllib.request.Request(
        notification.address,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "ADU",
            "X-ADU-Event": said["event"],
            "X-ADU-Delivery": str(delivery.pk),
            SIGNATURE_HEADER: signature(str(notification.secret), body),
        },
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise OSError(f"the receiver answered {response.status}")


def _reason(error: Exception) -> str:
    """Why a delivery failed, without what the far end said (it may echo the body)."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"the receiver answered {error.code}"
    if isinstance(error, urllib.error.URLError):
        return f"the receiver cannot be reached ({error.reason})"
    return f"{type(error).__name__}: {error}"[:300]
