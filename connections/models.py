"""Connections to source databases, with their credentials encrypted at rest."""

from django.conf import settings
from django.db import models

from accounts import roles
from adu_site import redaction
from connections.crypto import EncryptedTextField, Sealed

DEFAULT_PORTS = {"postgresql": 5432, "greenplum": 5432, "vertica": 5433}


class ConnectionFailed(Exception):
    """A source database could not be reached or used; the message is one sentence for the user."""


class ConnectionQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Connections the user may see and whose jobs they may see: their own and those
        shared with one of their groups (an ADU Admin: all)."""
        if roles.is_admin(user):
            return self.all()
        shared = models.Q(shared_with__in=user.groups.all()) if user.pk else models.Q()
        return self.filter(models.Q(owner_id=user.pk) | shared).distinct()

    def usable_by(self, user):
        """Connections the user may export from and discover: an operator's visible ones."""
        return self.visible_to(user) if roles.is_operator(user) else self.none()

    def editable_by(self, user):
        """Connections whose settings, sharing and rules the user may change."""
        if roles.is_admin(user):
            return self.all()
        return self.filter(owner_id=user.pk) if roles.is_operator(user) else self.none()

    def named(self, user, name: str) -> "Connection":
        """The connection of that name in this queryset, the user's own first."""
        found = sorted(self.filter(name=name), key=lambda c: c.owner_id != user.pk)
        if not found:
            raise ConnectionFailed(f"There is no connection named '{name}'.")
        return found[0]


class Connection(models.Model):
    class Kind(models.TextChoices):
        POSTGRESQL = "postgresql", "PostgreSQL"
        GREENPLUM = "greenplum", "Greenplum"
        VERTICA = "vertica", "Vertica"

    class SSLMode(models.TextChoices):
        DISABLE = "disable"
        ALLOW = "allow"
        PREFER = "prefer"
        REQUIRE = "require"
        VERIFY_CA = "verify-ca"
        VERIFY_FULL = "verify-full"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="connections"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind, default=Kind.POSTGRESQL)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=5432)
    database = models.CharField(max_length=255)
    username = models.CharField(max_length=255)
    password = EncryptedTextField(blank=True)
    sslmode = models.CharField(max_length=20, choices=SSLMode, default=SSLMode.PREFER)
    connect_timeout = models.PositiveIntegerField(
        default=10, help_text="Seconds to wait for the server to answer."
    )
    shared_with = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="shared_connections",
        help_text="Operators of these groups may export from it; viewers see its jobs.",
    )
    options = models.JSONField(
        default=dict, blank=True, help_text="Extra driver options, e.g. application_name."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="connection_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name

    def secret(self) -> str:
        """The plaintext password, or one clear error if no configured key can open it."""
        if isinstance(self.password, Sealed):
            raise ConnectionFailed(
                f"The stored password of connection '{self.name}' cannot be decrypted with "
                "any key in ADU_FERNET_KEYS; add the key it was saved with, or enter the "
                "password again."
            )
        redaction.remember(self.password)
        return self.password

    def test_link(self, by) -> str:
        """Connect and ask the server's version, on the audit trail; ConnectionFailed if not."""
        from audit.models import AuditEvent, record

        try:
            version = self.driver().test(self)
        except ConnectionFailed as error:
            record(AuditEvent.Action.CONNECTION_TEST, user=by, obj=self, ok=False, error=str(error))
            raise
        record(AuditEvent.Action.CONNECTION_TEST, user=by, obj=self, ok=True)
        return version

    def discover(self, by, schema: str | None = None) -> list:
        """The tables (and views) of one schema or all, on the audit trail."""
        from audit.models import AuditEvent, record

        tables = self.driver().tables(self, schema)
        record(AuditEvent.Action.DISCOVERY, user=by, obj=self, schema=schema, tables=len(tables))
        return tables

    def driver(self):
        """The driver module for this connection's kind."""
        from connections import drivers

        return drivers.for_kind(self.kind)
