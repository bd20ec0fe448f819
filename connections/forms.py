"""The connection form of the portal and the admin: the password is write-only."""

from django import forms
from django.contrib.auth.models import Group

from accounts import roles
from audit.models import AuditEvent, record
from connections.models import (
    DEFAULT_PORTS,
    MAX_CA_BYTES,
    Connection,
    ConnectionFailed,
    SavedQuery,
    SensitiveColumn,
    check_options,
    describe_ca,
    endpoint_changes,
    parse_ca_certificate,
    password_again,
)

FIELDS = [
    "name",
    "kind",
    "host",
    "port",
    "database",
    "username",
    "password",
    "sslmode",
    "connect_timeout",
    "is_target",
    "shared_with",
]


class ConnectionForm(forms.ModelForm):
    # Never sent to the browser, not even masked; left empty, the stored one stays.
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored password.",
    )

    ca_certificate_file = forms.FileField(
        label="CA certificate (PEM)",
        required=False,
        help_text="The CA that signed the server's certificate, for SSL mode verify-ca or "
        "verify-full. Stored encrypted.",
    )
    clear_ca_certificate = forms.BooleanField(
        label="Remove the stored CA certificate", required=False
    )

    class Meta:
        model = Connection
        fields = FIELDS

    def __init__(self, *args, owner=None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("password", None)
        shared = self.fields["shared_with"]
        shared.widget = forms.CheckboxSelectMultiple()
        # A role is not a team: sharing with "ADU Operator" would open the connection to
        # every operator. Role groups are neither offered nor accepted.
        shared.queryset = Group.objects.exclude(name__in=roles.ROLES)
        if user is not None and not roles.is_admin(user):
            # Share only with groups one belongs to, never with strangers.
            shared.queryset = shared.queryset.filter(user=user)
        if owner is not None:
            self.instance.owner = owner
        self.fields["port"].required = False
        self.fields[
            "port"
        ].help_text = "Empty: 5432 for PostgreSQL and Greenplum, 5433 for Vertica."
        if not self.instance.pk:
            self.fields["password"].help_text = ""
            self.initial.pop("port", None)
            self.fields["port"].initial = None
        stored = describe_ca(self.instance.ca_certificate)
        if stored:
            self.fields["ca_certificate_file"].help_text = f"Stored: {stored}. Upload to replace."

    def clean_ca_certificate_file(self):
        upload = self.cleaned_data.get("ca_certificate_file")
        if not upload:
            return None
        try:
            return parse_ca_certificate(upload.read(MAX_CA_BYTES + 1))
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_port(self):
        # Left empty, the port is the kind's usual one (Vertica listens on 5433).
        port = self.cleaned_data.get("port")
        return port if port else DEFAULT_PORTS.get(self.cleaned_data.get("kind"), 5432)

    def clean_password(self):
        typed = self.cleaned_data.get("password")
        self.password_typed = bool(typed)
        if not typed and self.instance.pk:
            return self.instance.password
        return typed

    def clean_options(self):
        # Only the admin's form has the field; the portal's is checked by Connection.clean.
        options = self.cleaned_data.get("options")
        try:
            check_options(self.cleaned_data.get("kind", self.instance.kind), options)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
        return options

    def clean(self):
        cleaned = super().clean()
        connection = self.instance
        if connection.pk and connection.has_password() and "password" in cleaned:
            if self.password_typed:
                connection.password_entered = True  # even if it is the same one
            else:
                # The stored password stays with the server it was typed for: it is never
                # sent to a new host, port, database, user, kind or sslmode.
                changed = endpoint_changes(connection, cleaned)
                if changed:
                    self.add_error("password", password_again(changed))
        return cleaned

    def clean_name(self):
        name = self.cleaned_data["name"]
        owner_id = self.instance.owner_id
        taken = Connection.objects.filter(owner_id=owner_id, name=name)
        if owner_id and taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("You already have a connection with this name.")
        return name

    def save(self, commit=True):
        """Save, and put on the audit trail what changed (the password only as 'changed')."""
        created = self.instance.pk is None
        if self.cleaned_data.get("ca_certificate_file"):
            self.instance.ca_certificate = self.cleaned_data["ca_certificate_file"]
            self.changed_data.append("ca_certificate")
        elif self.cleaned_data.get("clear_ca_certificate"):
            self.instance.ca_certificate = ""
            self.changed_data.append("ca_certificate")
        connection = super().save(commit=commit)
        if commit:
            hidden = {"shared_with", "ca_certificate_file", "clear_ca_certificate"}
            changed = [name for name in self.changed_data if name not in hidden]
            action = (
                AuditEvent.Action.CONNECTION_CREATE
                if created
                else AuditEvent.Action.CONNECTION_UPDATE
            )
            if created or changed:
                record(action, obj=connection, changed=changed)
            if "shared_with" in self.changed_data:
                groups = sorted(g.name for g in connection.shared_with.all())
                record(AuditEvent.Action.CONNECTION_SHARE, obj=connection, shared_with=groups)
        return connection


class SavedQueryForm(forms.ModelForm):
    """A saved query, checked on the source when saved: one read-only SELECT whose columns
    have distinct names. The portal and the admin use this same form."""

    class Meta:
        model = SavedQuery
        fields = ["connection", "name", "sql"]
        widgets = {"sql": forms.Textarea(attrs={"rows": 10, "spellcheck": "false"})}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            self.fields["connection"].queryset = Connection.objects.editable_by(user)

    def clean(self):
        cleaned = super().clean()
        connection, query = cleaned.get("connection"), cleaned.get("sql")
        if connection and query:
            # The drivers are imported when a query is checked, not with the admin's forms
            # at every start-up (as connections.models does).
            from connections.drivers import BadSelection

            try:
                connection.describe_query(query)
            except BadSelection as error:
                self.add_error("sql", str(error))
            except ConnectionFailed as error:
                self.add_error(None, f"ADU could not check the query on the source: {error}")
        return cleaned


class SensitiveColumnForm(forms.ModelForm):
    class Meta:
        model = SensitiveColumn
        fields = ["connection", "pattern", "action"]

    def clean_pattern(self):
        pattern = self.cleaned_data["pattern"].strip()
        if not pattern.strip("*?"):
            raise forms.ValidationError("A pattern of wildcards alone would mark every column.")
        return pattern
