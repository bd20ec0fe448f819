"""Connections to source databases, with their credentials encrypted at rest."""

import dataclasses
import fnmatch
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from accounts import roles
from adu_site import redaction
from connections.crypto import EncryptedTextField, Sealed

if TYPE_CHECKING:
    from connections.drivers.base import Driver

DEFAULT_PORTS = {"postgresql": 5432, "greenplum": 5432, "vertica": 5433}

# Where a stored password goes. Change any of these and the password must be typed again
# (portal, admin, and Connection.save itself): else whoever may edit a connection could
# point it at a server of their own, or turn its encryption off, and have ADU hand that
# server the password on the next test or export.
ENDPOINT_FIELDS = ("kind", "host", "port", "database", "username", "sslmode")
_ENDPOINT_NAMES = {"username": "user name"}

# The driver options a connection may carry (connection.options, merged into the driver's
# connect call): only keys that cannot name another server, a file, a service, a
# credential or server settings, nor weaken TLS. Each maps to how its value is checked.
_SECONDS = "a whole number of seconds"
LIBPQ_OPTIONS = {
    "application_name": "name",
    "fallback_application_name": "name",
    "keepalives": ("0", "1"),
    "keepalives_idle": _SECONDS,
    "keepalives_interval": _SECONDS,
    "keepalives_count": "a whole number",
    "tcp_user_timeout": "a whole number of milliseconds",
    "target_session_attrs": (
        "any", "read-write", "read-only", "primary", "standby", "prefer-standby",
    ),
}  # fmt: skip
DRIVER_OPTIONS = {
    "postgresql": LIBPQ_OPTIONS,
    "greenplum": LIBPQ_OPTIONS,
    "vertica": {"workload": "name"},
}


class ConnectionFailed(Exception):
    """A source database could not be reached or used; the message is one sentence for the user."""


class NoSuchTable(ConnectionFailed):
    """The source answered, and has no such table: the table's name is wrong, not the source."""


class ConnectionQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Connections the user may see and whose jobs they may see: their own and those
        shared with one of their groups (an ADU Admin: all)."""
        if roles.is_admin(user):
            return self.all()
        shared = models.Q(shared_with__in=roles.teams(user))
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

    # libpq's sslmode values, named as DBAs know them, with what each one checks.
    class SSLMode(models.TextChoices):
        DISABLE = "disable", "disable (no SSL)"
        ALLOW = "allow", "allow (SSL only if the server requires it)"
        PREFER = "prefer", "prefer (SSL if the server offers it)"
        REQUIRE = "require", "require (SSL; certificate not checked)"
        VERIFY_CA = "verify-ca", "verify-ca (SSL; Verify CA: certificate signed by the CA)"
        VERIFY_FULL = "verify-full", "verify-full (SSL; Verify CA and the host name)"

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
    sslmode = models.CharField("SSL mode", max_length=20, choices=SSLMode, default=SSLMode.PREFER)
    connect_timeout = models.PositiveIntegerField(
        "connect timeout (seconds)",
        default=10,
        help_text="How long to wait for the server to answer.",
    )
    # PEM of the CA that signed the server's certificate, for sslmode verify-ca/verify-full.
    # Encrypted like the password: which CA a site trusts is nobody else's business.
    ca_certificate = EncryptedTextField(blank=True)
    shared_with = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="shared_connections",
        help_text="Operators of these groups may export from it; viewers see its jobs.",
    )
    options = models.JSONField(
        default=dict, blank=True, help_text="Extra driver options, e.g. application_name."
    )
    # Every session of an export is read-only whatever this says; a load writes only to
    # a connection someone marked so, on purpose.
    is_target = models.BooleanField(
        "load target",
        default=False,
        help_text="ADU may create schemas and tables here and load exports into them.",
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

    def save(self, *args, **kwargs):
        """Save; refuses (ValidationError) options outside the allowlist, and a stored
        password kept while the endpoint changed (the forms say so first, by the field)."""
        fields = kwargs.get("update_fields")
        try:
            check_options(self.kind, self.options)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        if fields is None or set(fields) & set(ENDPOINT_FIELDS):
            changed = self._moved_with_stored_password()
            if changed:
                raise ValidationError(password_again(changed))
        super().save(*args, **kwargs)
        self._remember_password()

    # A form that had the password typed (even the same one) sets this before saving.
    password_entered = False

    @classmethod
    def from_db(cls, db, field_names, values):
        connection = super().from_db(db, field_names, values)
        connection._remember_password()
        return connection

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._remember_password()

    def _remember_password(self):
        # The object read from the database: a password assigned since is another object.
        if "password" in self.__dict__:
            self._stored_password = self.password
        self.password_entered = False

    def ca_description(self) -> str:
        """The stored CA certificate in words, for those who may edit it ('' for none)."""
        return describe_ca(self.ca_certificate)

    def has_password(self) -> bool:
        """A password is stored (one no configured key can open counts)."""
        return isinstance(self.password, Sealed) or bool(self.password)

    def endpoint_changed(self, old) -> list[str]:
        """The ENDPOINT_FIELDS in which this connection differs from `old` (a Connection or
        a mapping; a field a mapping lacks counts as unchanged)."""
        return endpoint_changes(old, self)

    def _password_was_entered(self) -> bool:
        if self.password_entered or not hasattr(self, "_stored_password"):
            return True  # typed in a form, or given when the object was made
        return self.password is not self._stored_password

    def clean(self):
        # Not tied to the options field: a form without it (the portal's) must still show it.
        super().clean()
        try:
            check_options(self.kind, self.options)
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def _moved_with_stored_password(self) -> list[str]:
        if self._state.adding or not self.pk or self._password_was_entered():
            return []
        if not self.has_password():
            return []  # nothing to send anywhere
        stored = type(self).objects.filter(pk=self.pk).values(*ENDPOINT_FIELDS).first()
        return endpoint_changes(stored, self) if stored else []

    def driver_options(self) -> dict:
        """The stored options the driver may pass on: only DRIVER_OPTIONS' keys, whatever
        a row saved before they were checked (or by a bulk update) holds."""
        allowed = DRIVER_OPTIONS.get(self.kind, {})
        return {k: v for k, v in (self.options or {}).items() if k in allowed}

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

    def test_link(self, by, typed: bool = False):
        """Connect and report the link (a drivers.LinkReport: server version, encryption,
        verification, write access), on the audit trail; ConnectionFailed if it fails.

        `typed`: these are a form's values, not saved (the connection may not exist yet);
        the trail then says where the test went."""
        from audit.models import AuditEvent, record

        about = {"obj": self} if self.pk else {"object_type": self._meta.label_lower}
        if typed:
            about.update(typed=True, address=f"{self.host}:{self.port}")
        try:
            report = self.driver().test(self)
        except ConnectionFailed as error:
            record(AuditEvent.Action.CONNECTION_TEST, user=by, ok=False, error=str(error), **about)
            raise
        record(
            AuditEvent.Action.CONNECTION_TEST,
            user=by,
            ok=True,
            encrypted=report.encrypted,
            verified=report.verified,
            **about,
        )
        return report

    def describe_table(self, schema: str, table: str) -> list:
        """The table's columns (drivers.SourceColumn), asked from the source.

        NoSuchTable when the source answers that there is no such table; ConnectionFailed
        with one sentence when it cannot answer.
        """
        try:
            driver = self.driver()
        except NotImplementedError as error:  # a kind without a driver yet
            raise ConnectionFailed(str(error)) from None
        db = driver.connect(self)
        try:
            columns = driver.columns(db, schema, table)
        except ConnectionFailed:
            columns = []  # how a driver says the table is not there
        except Exception as error:
            raise ConnectionFailed(driver.explain(error, self)) from None
        finally:
            db.close()
        if not columns:
            raise NoSuchTable(f"There is no table {schema}.{table} on this connection.")
        return columns

    def describe_query(self, query: str):
        """Check a query on the source (BadSelection if it is not one read-only SELECT with
        distinct column names) and return its columns."""
        driver = self.driver()
        db = driver.connect(self)
        try:
            driver.check_query(db, query)
            return driver.query_columns(db, query)
        finally:
            db.close()

    def preview_query(self, query: str, by, rows: int) -> tuple[list, list[tuple]]:
        """(columns, first `rows` rows as text) of a query, for someone who may edit the
        connection, on the audit trail. The connection's sensitive-column policies hold as
        in an export, with no one's allowance: a query that reads such a column is
        refused (BadSelection), a result column named like one is masked or left out.
        Values are cut at PREVIEW_CHARS; the source's statement timeout applies."""
        from audit.models import AuditEvent, record
        from connections.drivers import BadSelection

        if not Connection.objects.editable_by(by).filter(pk=self.pk).exists():
            raise BadSelection("Only those who may edit the connection may preview its queries.")
        driver = self.driver()
        policies = list(self.sensitive_columns.all())
        try:
            db = driver.connect(self)
            try:
                checked = driver.check_query(db, query)
                for read in sorted(checked.reads):
                    policy = policy_for(policies, *read)
                    if policy is not None:
                        raise BadSelection(
                            f"The query reads {'.'.join(read)}, which is sensitive "
                            f"({policy.pattern}); a preview never shows it."
                        )
                columns = driver.query_columns(db, query)
                found = driver.preview(db, query, rows)
            finally:
                db.close()
        except (BadSelection, ConnectionFailed) as error:
            # Refused or failed, it may have run on the source: on the trail all the same.
            record(AuditEvent.Action.QUERY_PREVIEW, user=by, obj=self, ok=False,
                   refused=str(error)[:500], query=query[:2000])  # fmt: skip
            raise
        actions = []
        for column in columns:
            policy = policy_for(policies, "", "", column.name)
            actions.append(policy.action if policy else None)
        keep = [i for i, action in enumerate(actions) if action != SensitiveColumn.Action.EXCLUDE]
        shown = [tuple(_preview_value(row[i], actions[i]) for i in keep) for row in found]
        record(
            AuditEvent.Action.QUERY_PREVIEW, user=by, obj=self, ok=True, rows=len(shown),
            query=checked.sql[:2000],
        )  # fmt: skip
        return [columns[i] for i in keep], shown

    @contextmanager
    def ca_file(self):
        """The stored CA certificate as a file only its owner reads, for the time of a
        connect (libpq and vertica-python take a path); None when there is none."""
        if isinstance(self.ca_certificate, Sealed):
            raise ConnectionFailed(
                f"The stored CA certificate of connection '{self.name}' cannot be decrypted "
                "with any key in ADU_FERNET_KEYS; upload it again."
            )
        if not self.ca_certificate:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="adu-ca-") as folder:
            path = Path(folder) / "ca.pem"
            path.touch(mode=0o600)
            path.write_text(self.ca_certificate)
            yield str(path)

    def list_schemas(self, by) -> list[str]:
        """The schemas (system schemas left out), on the audit trail as a discovery."""
        from audit.models import AuditEvent, record

        found = self.driver().schemas(self)
        record(AuditEvent.Action.DISCOVERY, user=by, obj=self, schemas=len(found))
        return found

    def discover(self, by, schema: str | None = None) -> list:
        """The tables (and views) of one schema or all, on the audit trail."""
        from audit.models import AuditEvent, record

        tables = self.driver().tables(self, schema)
        record(AuditEvent.Action.DISCOVERY, user=by, obj=self, schema=schema, tables=len(tables))
        return tables

    def inventory(self, by) -> list["SchemaInventory"]:
        """Every schema (system schemas left out) with its tables, their estimated rows and
        sizes, for the connection's page; on the audit trail as one discovery."""
        from audit.models import AuditEvent, record

        driver = self.driver()
        found = {name: SchemaInventory(name) for name in driver.schemas(self)}
        tables = driver.tables(self)
        for table in tables:
            found.setdefault(table.schema, SchemaInventory(table.schema)).tables.append(table)
        record(
            AuditEvent.Action.DISCOVERY, user=by, obj=self, schemas=len(found), tables=len(tables)
        )
        return sorted(found.values(), key=lambda schema: schema.name)

    def recent_jobs(self, user, limit: int = 20):
        """The latest export jobs of this connection that the user may see, newest first,
        with what their progress needs fetched for the lot."""
        # Through the reverse relation: connections imports nothing of exports.
        jobs = self.export_jobs.visible_to(user)
        return jobs.select_related("connection").with_progress()[:limit]

    def driver(self) -> "Driver":
        """The driver module for this connection's kind."""
        from connections import drivers

        return drivers.for_kind(self.kind)


@dataclasses.dataclass
class SchemaInventory:
    """One schema of a source and its tables (drivers.TableInfo), as discovery found them."""

    name: str
    tables: list = dataclasses.field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(table.bytes or 0 for table in self.tables)


class SavedQuery(models.Model):
    """A named SELECT on a connection, exported like a table (in the job's snapshot)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="queries")
    name = models.SlugField(
        max_length=100, help_text="Letters, digits, - and _: the name of its Parquet file."
    )
    sql = models.TextField("SQL", help_text="One SELECT; it runs read-only.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connection", "name"]
        verbose_name_plural = "saved queries"
        constraints = [
            models.UniqueConstraint(fields=["connection", "name"], name="one_query_name")
        ]

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.name}"


PREVIEW_CHARS = 200


def _preview_value(value, action):
    if value is None:
        return None
    if action is not None:
        return None if action == SensitiveColumn.Action.NULL else f"[{action}]"
    return value if len(value) <= PREVIEW_CHARS else value[:PREVIEW_CHARS] + "…"


class SensitiveColumn(models.Model):
    """Columns of a connection that may not leave as they are, by name pattern.

    `pattern` is matched (case-insensitive, * and ? as wildcards) against the column name
    and against schema.table.column, so "*ssn*", "*email*" and "hr.people.salary" work.
    """

    class Action(models.TextChoices):
        EXCLUDE = "exclude", "Leave the column out"
        NULL = "null", "Mask: keep the column, drop its values"
        HASH = "hash", "Mask: keyed hash (joins still work)"
        REDACT = "redact", "Mask: a fixed string"

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="sensitive_columns"
    )
    pattern = models.CharField(max_length=300)
    action = models.CharField(max_length=10, choices=Action, default=Action.EXCLUDE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connection", "pattern"]

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.pattern} ({self.get_action_display().lower()})"

    def matches(self, schema: str, table: str, column: str) -> bool:
        pattern = self.pattern.lower()
        return fnmatch.fnmatchcase(column.lower(), pattern) or fnmatch.fnmatchcase(
            f"{schema}.{table}.{column}".lower(), pattern
        )


def policy_for(policies, schema: str, table: str, column: str, relatives=()):
    """The first of `policies` that holds for the column: one on its table, or on one of
    its `relatives` (the partitioned tables it is a partition of, its own partitions);
    None if none does."""
    for owner_schema, owner_table in [(schema, table), *relatives]:
        for policy in policies:
            if policy.matches(owner_schema, owner_table, column):
                return policy
    return None


def endpoint_changes(old, new) -> list[str]:
    """The ENDPOINT_FIELDS whose values differ between old and new (each a Connection or a
    mapping of field values; a field a mapping lacks counts as unchanged)."""
    changed = []
    for name in ENDPOINT_FIELDS:
        values = []
        for side in (old, new):
            if isinstance(side, dict):
                if name not in side:
                    break
                values.append(side[name])
            else:
                values.append(getattr(side, name))
        else:
            field = Connection._meta.get_field(name)
            try:
                before, after = (field.to_python(v) for v in values)
            except ValidationError:
                before, after = values
            if before != after:
                changed.append(name)
    return changed


def password_again(changed: list[str]) -> str:
    """The one sentence that asks for the password again after an endpoint change."""
    names = [_ENDPOINT_NAMES.get(name, name) for name in changed]
    what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Enter the password again: the {what} changed."


def check_options(kind: str, options) -> None:
    """ValueError with one sentence naming the first option a connection of this kind may
    not carry (see DRIVER_OPTIONS), or whose value is not one it takes."""
    allowed = DRIVER_OPTIONS.get(kind, {})
    if options in (None, ""):
        return
    if not isinstance(options, dict):
        raise ValueError('Options must be a JSON object, e.g. {"keepalives_idle": 30}.')
    for key, value in options.items():
        if key not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"The option '{str(key)[:60]}' is not allowed on a {kind} connection "
                f"(allowed: {accepted})."
            )
        rule = allowed[key]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"The option '{key}' must be a string or a whole number.")
        text = str(value)
        if isinstance(rule, tuple):
            ok = text in rule
            wanted = "one of " + ", ".join(rule)
        elif rule == "name":
            ok = len(text) <= 64 and text.isprintable() and text.isascii()
            wanted = "at most 64 printable ASCII characters"
        else:
            ok = text.isascii() and text.isdigit() and int(text) <= 2**31 - 1
            wanted = rule
        if not ok:
            raise ValueError(f"The option '{key}' must be {wanted}.")


MAX_CA_BYTES = 64 * 1024


def parse_ca_certificate(data: bytes) -> str:
    """The PEM text of an uploaded CA certificate; ValueError with one sentence if it is not."""
    from cryptography import x509

    if len(data) > MAX_CA_BYTES:
        raise ValueError("This file is too large for a CA certificate (64 kB at most).")
    try:
        text = data.decode("ascii")
        x509.load_pem_x509_certificates(text.encode())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(
            "This is not a certificate in PEM form (-----BEGIN CERTIFICATE-----)."
        ) from None
    return text


def describe_ca(pem) -> str:
    """'CN=Example CA, valid until 2030-01-01' for a stored PEM ('' for none)."""
    from cryptography import x509

    if not pem or isinstance(pem, Sealed):
        return "a certificate no configured key can decrypt" if pem else ""
    try:
        [first, *_] = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return "a certificate ADU cannot read"
    return f"{first.subject.rfc4514_string()}, valid until {first.not_valid_after_utc:%Y-%m-%d}"
