"""Export plans: a saved export definition run by hand or on a schedule, with the history
of its runs; and who hears of a job's end (notifications)."""

import re
import string
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from accounts import roles
from audit.models import AuditEvent, record
from connections.crypto import EncryptedTextField
from exports import options as export_options

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
PATTERN_FIELDS = ("plan", "date", "time", "run")
DEFAULT_PATTERN = "{plan}-{date}-{time}"
LAG = r"\d+(\.\d+)?( (second|minute|hour|day)s?)?"


class PlanRefused(Exception):
    """A plan or its schedule cannot be saved or run as asked; one sentence, and the
    field it is about."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def check_schedule(cron: str, every_minutes, zone: str) -> None:
    """PlanRefused unless exactly one of a cron expression and an interval is given, valid,
    in a known time zone."""
    from croniter import croniter

    if bool(cron) == (every_minutes is not None):
        raise PlanRefused(
            "Give a plan either a cron expression (--cron '0 2 * * *') or an interval in "
            "minutes (--every 60), not both and not neither; pause it to stop its runs.",
            "cron",
        )
    if cron and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
        raise PlanRefused(
            f"'{cron}' is not a cron expression of five fields (minute hour day month "
            "weekday), such as '0 2 * * *' for 02:00 every day.",
            "cron",
        )
    if every_minutes is not None and not 1 <= int(every_minutes) <= 60 * 24 * 366:
        raise PlanRefused("The interval is in minutes, from 1 to a year.", "every_minutes")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PlanRefused(
            f"'{zone}' is not a time zone: use a name such as UTC or Europe/Paris.", "timezone"
        ) from None


class ExportPlanQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Plans of jobs the user may see (accounts.roles.visible)."""
        return roles.visible(self, user, "connection")

    def actionable_by(self, user):
        """Plans the user may run, pause or remove: an operator's own; an admin's: all."""
        return roles.actionable(self, user)


class ExportPlan(models.Model):
    """What to export (as exports.jobs.create_job takes it), where, and when."""

    name = models.CharField(max_length=64, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="export_plans"
    )
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.PROTECT, related_name="export_plans"
    )
    # {"schemas": [...], "tables": ["s.t"], "exclude": ["s.t"], "selections": {"s.t":
    # {"columns", "exclude", "filter", "masks"}}, "queries": [names], "options": {...},
    # "allow_sensitive": [...]}: the API's job body, without connection and folder.
    definition = models.JSONField(default=dict, blank=True)
    # "schema.table" names exported incrementally (connections.drivers.postgresql.incremental), or ["*"]: all.
    incremental = models.JSONField(default=list, blank=True)
    # {"schema.table": {"column": ..., "lag": ...}}: tables exported incrementally by a
    # column that only grows (an id, a timestamp), less a safety lag, instead of by xmin.
    watermarks = models.JSONField(default=dict, blank=True)
    folder_pattern = models.CharField(max_length=200, default=DEFAULT_PATTERN)
    cron = models.CharField(max_length=100, blank=True)
    every_minutes = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ExportPlanQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def create(cls, notify=(), notify_on=None, **fields) -> "ExportPlan":
        """Check and save a plan, with its notifications [(channel, address, secret)];
        PlanRefused names what is wrong. Its first run is the schedule's next time."""
        from django.core.validators import URLValidator, validate_email

        plan = cls(**fields)
        plan.refuse_unless_valid()
        if cls.objects.filter(name=plan.name).exists():
            raise PlanRefused(f"A plan named '{plan.name}' already exists.", "name")
        for channel, address, _ in notify:
            try:
                if channel == Notification.Channel.EMAIL:
                    validate_email(address)
                else:
                    URLValidator(schemes=["http", "https"])(address)
            except ValidationError:
                what = "an e-mail address" if channel == "email" else "an http(s) URL"
                raise PlanRefused(f"'{address}' is not {what}.", channel) from None
        plan.next_run_at = None if plan.paused else plan.next_after(timezone.now())
        with transaction.atomic():
            plan.save()
            for channel, address, secret in notify:
                plan.notifications.create(
                    channel=channel,
                    address=address,
                    secret=secret,
                    when=notify_on or Notification.When.PROBLEMS,
                )
            record(
                AuditEvent.Action.PLAN_CREATE,
                user=plan.owner,
                obj=plan,
                schedule=plan.schedule_text,
                definition=plan.definition,
                incremental=plan.incremental,
                notify=[f"{channel} {address}" for channel, address, _ in notify],
            )
        return plan

    def set_paused(self, paused: bool, by=None):
        self.paused = paused
        self.next_run_at = None if paused else self.next_after(timezone.now())
        self.save(update_fields=["paused", "next_run_at"])
        record(AuditEvent.Action.PLAN_UPDATE, user=by, obj=self, paused=paused)

    def remove(self, by=None):
        record(AuditEvent.Action.PLAN_DELETE, user=by, obj=self, name=self.name)
        self.delete()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def schedule_text(self) -> str:
        when = f"cron '{self.cron}'" if self.cron else f"every {self.every_minutes} min"
        return f"{when} ({self.timezone})"

    def refuse_unless_valid(self):
        """PlanRefused unless the plan can be saved as it is."""
        if not re.fullmatch(NAME, self.name or ""):
            raise PlanRefused(
                f"'{self.name}' is not a plan name: letters, digits, '_', '-' and '.', "
                "starting with a letter or digit, at most 64.",
                "name",
            )
        check_schedule(self.cron, self.every_minutes, self.timezone)
        try:
            self.folder_name(timezone.now(), 1)
        except (KeyError, ValueError, IndexError):
            raise PlanRefused(
                f"'{self.folder_pattern}' is not a folder pattern: use text and "
                + ", ".join("{" + f + "}" for f in PATTERN_FIELDS)
                + ".",
                "folder_pattern",
            ) from None
        try:
            export_options.checked(self.definition.get("options"))
        except export_options.BadOption as error:
            raise PlanRefused(str(error), error.field) from None
        if (self.incremental or self.watermarks) and self.connection.kind != "postgresql":
            raise PlanRefused(
                "Incremental exports read PostgreSQL tables by the transaction that wrote "
                f"each row; '{self.connection.name}' is {self.connection.get_kind_display()}.",
                "incremental",
            )
        for name in self.incremental:
            schema, dot, table = str(name).partition(".")
            if name != "*" and not (dot and schema.strip() and table.strip()):
                raise PlanRefused(f"'{name}' is not SCHEMA.TABLE (or '*').", "incremental")
        for name, mark in self.watermarks.items():
            schema, dot, table = str(name).partition(".")
            if not (dot and schema.strip() and table.strip()):
                raise PlanRefused(f"'{name}' is not SCHEMA.TABLE.", "watermarks")
            if not re.fullmatch(LAG, str(mark.get("lag", ""))) or not mark.get("column"):
                raise PlanRefused(
                    f"The watermark of {name} needs a column and a lag: a number of the column's "
                    "unit for numbers (0, 100), a duration for dates and timestamps ('5 minutes').",
                    "watermarks",
                )

    def folder_name(self, at: datetime, number: int) -> str:
        """ValueError unless the pattern's fields are exactly {plan}, {date}, {time} and
        {run}: no attribute or index of them ("{plan.__class__}"), no format spec."""
        for _, field, spec, conversion in string.Formatter().parse(self.folder_pattern):
            if field is not None and (field not in PATTERN_FIELDS or spec or conversion):
                raise ValueError(field)
        local = at.astimezone(ZoneInfo(self.timezone))
        name = self.folder_pattern.format(
            plan=self.name, date=f"{local:%Y-%m-%d}", time=f"{local:%H%M}", run=number
        )
        if not re.fullmatch(export_options.FOLDER_NAME, name):
            raise ValueError(name)
        return name

    def next_after(self, moment: datetime) -> datetime:
        """The first run due after `moment`: missed runs are not made up one by one."""
        from croniter import croniter

        if self.cron:
            local = moment.astimezone(ZoneInfo(self.timezone))
            return croniter(self.cron, local).get_next(datetime).astimezone(ZoneInfo("UTC"))
        step = timedelta(minutes=self.every_minutes)
        due = self.next_run_at or moment
        if due > moment:
            return due
        return due + step * ((moment - due) // step + 1)

    def is_incremental(self, schema: str, table: str) -> bool:
        name = f"{schema}.{table}"
        return "*" in self.incremental or name in self.incremental or name in self.watermarks


class PlanRun(models.Model):
    """One time a plan was due or run by hand, and what came of it."""

    class Outcome(models.TextChoices):
        STARTED = "started"
        SKIPPED = "skipped", "Skipped: the last run was still running"
        REFUSED = "refused", "Could not start"

    plan = models.ForeignKey(ExportPlan, on_delete=models.CASCADE, related_name="runs")
    job = models.ForeignKey(
        "exports.ExportJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="plan_runs",
    )
    trigger = models.CharField(max_length=20)  # "schedule", or "manual" (who, in the audit)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    note = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self):
        return f"{self.plan} at {self.at:%Y-%m-%d %H:%M}: {self.outcome}"


class Notification(models.Model):
    """Who hears of a job's end: for a plan's jobs, or for all of a user's jobs."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class When(models.TextChoices):
        FAILURE = "failure", "When a job fails"
        PROBLEMS = "problems", "When a job fails or ends with errors or warnings"
        ALWAYS = "always", "When a job ends"

    plan = models.ForeignKey(
        ExportPlan, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=500, help_text="An e-mail address, or the webhook's URL.")
    # The webhook's HMAC-SHA-256 key, encrypted at rest like passwords; never shown again.
    secret = EncryptedTextField(blank=True)
    when = models.CharField(max_length=10, choices=When.choices, default=When.PROBLEMS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(plan__isnull=False) ^ models.Q(user__isnull=False),
                name="notification_for_a_plan_or_a_user",
            )
        ]

    def __str__(self):
        return f"{self.get_channel_display()} to {self.address}"


class Delivery(models.Model):
    """One message of a notification about one job's end, retried with back-off."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The job that ended, or the plan's run that could not start one.
    job = models.ForeignKey(
        "exports.ExportJob",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    plan_run = models.ForeignKey(PlanRun, null=True, blank=True, on_delete=models.CASCADE)
    attempt = models.PositiveIntegerField(default=0, help_text="The job's attempt that ended.")
    event = models.CharField(max_length=30)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    tries = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "job", "attempt"], name="one_delivery_per_job_end"
            )
        ]

    def __str__(self):
        return f"{self.notification}: {self.event} ({self.status})"
