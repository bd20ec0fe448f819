"""A load: an export's folder, checked, written into a target database on the far side of
the gap, each table proven equal to its file (and to its source, where the export took
the source's fingerprint) by content fingerprints (loads.fingerprint)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts import roles
from exports.models import new_log_token


class LoadQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Loads the user may see: their own and those into targets shared with one of
        their groups (an ADU Admin: all), as for export jobs."""
        return roles.visible(self, user, "target")

    def actionable_by(self, user):
        """Loads the user may cancel: an operator's own (an admin: all)."""
        return roles.actionable(self, user)

    def for_user(self, user, load_id, act: bool = False) -> "Load":
        """The load if this user may see it (or, with `act`, cancel it); the same error
        whether it is missing or not theirs."""
        loads = self.actionable_by(user) if act else self.visible_to(user)
        try:
            return loads.select_related("target").get(pk=int(load_id))
        except (ValueError, Load.DoesNotExist):
            raise LookupError(f"There is no load {load_id}.") from None


class Load(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        # Every table loaded, each equal to its file and to its source.
        VERIFIED = "verified"
        # Every table loaded and equal to its file; the export carried no source fingerprint
        # for some table, so nothing compares them with the source.
        COMPLETE = "complete"
        COMPLETE_WITH_ERRORS = "complete_with_errors", "Complete with errors"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = {
        Status.VERIFIED,
        Status.COMPLETE,
        Status.COMPLETE_WITH_ERRORS,
        Status.FAILED,
        Status.CANCELLED,
    }

    class IfExists(models.TextChoices):
        FAIL = "fail", "Fail: a table that is already there fails"
        REPLACE = "replace", "Replace: drop the table that is there and load it again"
        APPEND = "append", "Append: add the rows to the table that is there"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="loads"
    )
    target = models.ForeignKey(
        "connections.Connection", on_delete=models.PROTECT, related_name="loads"
    )
    folder = models.CharField(max_length=1000, help_text="The export's folder on this side.")
    # What identifies the export whatever folder it sits in: its sealed manifest.
    manifest_sha256 = models.CharField(max_length=64)
    source_job_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=24, choices=Status, default=Status.QUEUED)
    # {"schema_map": {src: dst}, "tables": [...], "if_exists", "parallel", "create_only"}
    options = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Part of its log file's name (exports.joblog.log_path), as a job's.
    log_token = models.CharField(max_length=16, default=new_log_token, editable=False)
    # The worker running it beats; a load whose beat stopped is resumed once (tasks.sweep).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)  # one sentence when the whole load failed
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = LoadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["manifest_sha256", "target"], name="loads_of_an_export")]

    def __str__(self) -> str:
        return f"load {self.pk} of job {self.source_job_id} into {self.target}"

    def counts(self) -> dict:
        """Tables by status and rows loaded so far, as every page and command shows them."""
        return counts_of([self])[self.pk]

    def option(self, name: str):
        return (self.options or {}).get(name, DEFAULTS[name])

    def target_schema(self, schema: str) -> str:
        return (self.option("schema_map") or {}).get(schema, schema)

    def claim(self) -> bool:
        """Take the queued load for this worker; False if another has it or it ended."""
        from django.utils import timezone

        now = timezone.now()
        taken = Load.objects.filter(pk=self.pk, status=Load.Status.QUEUED).update(
            status=Load.Status.RUNNING, heartbeat_at=now
        )
        if taken:
            self.status, self.heartbeat_at = Load.Status.RUNNING, now
            if self.started_at is None:
                self.started_at = now
                self.save(update_fields=["started_at"])
        return bool(taken)

    def request_cancel(self) -> bool:
        """Ask the load to stop; its tables that have not committed leave nothing. False
        if it had already ended."""
        return bool(
            Load.objects.filter(pk=self.pk)
            .exclude(status__in=Load.FINISHED)
            .update(cancel_requested=True)
        )

    def finish(self):
        """The load's status from its tables'."""
        from django.utils import timezone

        statuses = list(self.tables.values_list("status", flat=True))
        if self.cancel_requested and not all(s in TableLoad.DONE for s in statuses):
            self.status = Load.Status.CANCELLED
        elif statuses and all(s == TableLoad.Status.VERIFIED for s in statuses):
            self.status = Load.Status.VERIFIED
        elif statuses and all(s in TableLoad.DONE for s in statuses):
            self.status = Load.Status.COMPLETE
        elif any(s in TableLoad.DONE for s in statuses):
            self.status = Load.Status.COMPLETE_WITH_ERRORS
        else:
            self.status = Load.Status.FAILED
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "finished_at"])


def counts_of(loads) -> dict[int, dict]:
    """Load.counts() of each of `loads`, in one query for them all (a list of loads)."""
    from django.db.models import Count, Sum

    found = {
        row.pop("load_id"): row
        for row in TableLoad.objects.filter(load__in=[load.pk for load in loads])
        .values("load_id")
        .annotate(
            tables_total=Count("pk"),
            tables_done=Count("pk", filter=Q(status__in=TableLoad.DONE)),
            tables_failed=Count("pk", filter=Q(status=TableLoad.Status.FAILED)),
            rows=Sum("rows"),
        )
    }
    empty = {"tables_total": 0, "tables_done": 0, "tables_failed": 0, "rows": 0}
    return {load.pk: found.get(load.pk, empty) for load in loads}


DEFAULTS = {
    "schema_map": {},
    "tables": [],
    "if_exists": Load.IfExists.FAIL,
    "parallel": 2,
    "create_only": False,
}


class TableLoad(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        LOADING = "loading"
        VERIFIED = "verified"  # target = file = source
        LOADED = "loaded"  # target = file; no source fingerprint in the manifest
        CREATED = "created"  # --create-only: the table, empty
        FAILED = "failed"
        CANCELLED = "cancelled"  # nothing of it in the target
        SKIPPED = "skipped"  # not exported (the manifest says why)

    DONE = {Status.VERIFIED, Status.LOADED, Status.CREATED}

    load = models.ForeignKey(Load, on_delete=models.CASCADE, related_name="tables")
    schema = models.CharField(max_length=255)  # at the source, as in the manifest
    table = models.CharField(max_length=255)
    target_schema = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    rows = models.BigIntegerField(default=0)
    # {"rows", "digest"} each (loads.fingerprint.Fingerprint.as_dict), or empty
    file_fingerprint = models.JSONField(default=dict, blank=True)
    target_fingerprint = models.JSONField(default=dict, blank=True)
    source_fingerprint = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Constraints left out of the target, and why (a masked column's key, say).
    notes = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["load", "schema", "table"], name="one_table_per_load")
        ]

    def __str__(self) -> str:
        return f"{self.schema}.{self.table} -> {self.target_schema}.{self.table}"

    def proof(self) -> dict:
        """What the table's fingerprints show, read from the fingerprints themselves rather
        than from its status: {"text", "ok"}, or {} when there is nothing to compare yet."""
        file, target, source = (
            self.file_fingerprint,
            self.target_fingerprint,
            self.source_fingerprint,
        )
        if not file:
            return {}
        if target and target != file:
            return {"text": "target ≠ file", "ok": False}
        if source and source != file:
            return {"text": "file ≠ source", "ok": False}
        if not target:
            return {}
        return {"text": "target = file = source" if source else "target = file", "ok": True}
