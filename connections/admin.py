from django import forms
from django.contrib import admin

from connections.models import Connection


class ConnectionForm(forms.ModelForm):
    # Write-only: the stored password is never sent to the browser, not even masked.
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored password.",
    )

    class Meta:
        model = Connection
        fields = [
            "owner",
            "name",
            "kind",
            "host",
            "port",
            "database",
            "username",
            "password",
            "sslmode",
            "connect_timeout",
            "options",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("password", None)

    def clean_password(self):
        typed = self.cleaned_data.get("password")
        if not typed and self.instance.pk:
            return self.instance.password
        return typed


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "kind", "host", "port", "database", "username", "owner", "updated_at"]
    list_filter = ["kind", "sslmode", "owner"]
    search_fields = ["name", "host", "database", "username"]
    readonly_fields = ["created_at", "updated_at"]
