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
