"""Django-Q2 task of a bundle made from the portal or the API: it gets the bundle's id."""

import logging
import shutil
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from audit.models import AuditEvent, record
from exports.models import ExportJob, JobStateError
from transfer.bundle import BundleRefused, parse_size
from transfer.models import Bundle

log = logging.getLogger("adu.transfer")


def create_bundle(user, job: ExportJob, volume_size: str, encrypt_to: str = "") -> Bundle:
    """A queued bundle of the job's export; BundleRefused for a bad size or recipient,
    JobStateError while the job has no finished export."""
    if not job.is_finished or not job.manifest_path().is_file():
        raise JobStateError(f"Job {job.pk} has no finished export to bundle yet.")
    from transfer import keys

    size = parse_size(volume_size)
    recipient = ""
    if encrypt_to.strip():
        try:
            recipient = str(keys.recipient(encrypt_to.strip()))
        except keys.BadKey as error:
            raise BundleRefused(str(error), "encrypt_to") from None
    return Bundle.objects.create(job=job, created_by=user, volume_size=size, recipient=recipient)


def start_bundle(bundle: Bundle):
    async_task(
        "transfer.tasks.run",
        bundle.pk,
        task_name=f"bundle-{bundle.pk}",
        group=f"bundle-{bundle.pk}",
    )


def run(bundle_id: int):
    from transfer import keys
    from transfer.bundle import make_bundle

    taken = Bundle.objects.filter(pk=bundle_id, status=Bundle.Status.QUEUED).update(
        status=Bundle.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not taken:
        return
    bundle = Bundle.objects.select_related("job", "created_by").get(pk=bundle_id)
    try:
        recipient = keys.recipient(bundle.recipient) if bundle.recipient else None
        index = make_bundle(
            bundle.job.folder(),
            bundle.folder(),
            bundle.volume_size,
            recipient,
            progress=lambda written: Bundle.objects.filter(pk=bundle_id).update(
                bytes=written, heartbeat_at=timezone.now()
            ),
        )
    except Exception as error:  # the bundle fails with a sentence; the log has the rest
        shutil.rmtree(bundle.folder(), ignore_errors=True)
        if isinstance(error, (BundleRefused, keys.BadKey)):
            message = str(error)
        elif isinstance(error, OSError):
            message = f"The bundle could not be written to {bundle.folder()} ({error.strerror})."
        else:
            log.exception("bundle %s failed", bundle_id)
            message = "ADU failed to make this bundle; the task cluster's log says why."
        _finish(bundle, Bundle.Status.FAILED, error=message)
        return
    _finish(
        bundle,
        Bundle.Status.DONE,
        name=index["bundle"],
        volumes=len(index["volumes"]),
        bytes=index["bytes"],
    )
    record(
        AuditEvent.Action.BUNDLE_CREATE,
        user=bundle.created_by,
        obj=bundle.job,
        bundle=index["bundle"],
        to=str(bundle.folder()),
        volumes=len(index["volumes"]),
        encrypted=bool(recipient),
    )


def _finish(bundle: Bundle, status: str, **fields):
    Bundle.objects.filter(pk=bundle.pk).update(status=status, finished_at=timezone.now(), **fields)


def sweep_bundles():
    """(exports.tasks.sweep) A bundle whose worker died fails with a sentence, its partial
    volumes removed, rather than running forever."""
    stale = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    for bundle in Bundle.objects.filter(status=Bundle.Status.RUNNING, heartbeat_at__lt=stale):
        shutil.rmtree(bundle.folder(), ignore_errors=True)
        _finish(
            bundle,
            Bundle.Status.FAILED,
            error="Its worker stopped before it ended; start the bundle again.",
        )
