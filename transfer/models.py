from django.conf import settings
from django.db import models


class Receipt(models.Model):
    """An export received across the gap, once: by its manifest's checksum."""

    manifest_sha256 = models.CharField(max_length=64, unique=True)
    bundle = models.CharField(max_length=200)
    folder = models.CharField(max_length=1000, help_text="Where it was unpacked.")
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The job on the far side.")
    signed_by = models.CharField(max_length=300)
    volumes = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    encrypted = models.BooleanField(default=False)
    tables = models.PositiveIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-received_at", "-pk"]

    def __str__(self):
        return f"{self.bundle} ({self.received_at:%Y-%m-%d %H:%M})"


class Bundle(models.Model):
    """A bundle of a job's export made from the portal or the API, on the task cluster,
    into BUNDLE_ROOT (a folder of its own: the media is mounted or copied from there)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    FINISHED = (Status.DONE, Status.FAILED)

    job = models.ForeignKey("exports.ExportJob", on_delete=models.CASCADE, related_name="bundles")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    volume_size = models.PositiveBigIntegerField()
    # The far side's age recipient (a public key: not a secret); blank: not encrypted.
    recipient = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    name = models.CharField(max_length=200, blank=True)
    volumes = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # its worker lives

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"bundle {self.pk} of job {self.job_id}"

    def folder(self):
        from pathlib import Path

        return Path(settings.BUNDLE_ROOT) / f"job-{self.job_id}-bundle-{self.pk}"

    def as_dict(self) -> dict:
        return {
            "id": self.pk,
            "job_id": self.job_id,
            "status": self.status,
            "error": self.error,
            "name": self.name,
            "folder": str(self.folder()),
            "volume_size": self.volume_size,
            "encrypted": bool(self.recipient),
            "volumes": self.volumes,
            "bytes": self.bytes,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
