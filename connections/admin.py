from django.contrib import admin

from connections.forms import FIELDS, ConnectionForm, SavedQueryForm, SensitiveColumnForm
from connections.models import Connection, SavedQuery, SensitiveColumn


class AdminConnectionForm(ConnectionForm):
    class Meta(ConnectionForm.Meta):
        fields = ["owner", *FIELDS, "options"]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = AdminConnectionForm
    list_display = ["name", "kind", "host", "port", "database", "username", "owner", "updated_at"]
    list_filter = ["kind", "sslmode", "owner"]
    search_fields = ["name", "host", "database", "username"]
    readonly_fields = ["created_at", "updated_at"]


class _CreatedBy(admin.ModelAdmin):
    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(SavedQuery)
class SavedQueryAdmin(_CreatedBy):
    form = SavedQueryForm
    list_display = ["name", "connection", "created_by", "updated_at"]
    list_filter = ["connection"]
    search_fields = ["name", "sql"]


@admin.register(SensitiveColumn)
class SensitiveColumnAdmin(_CreatedBy):
    """Columns that may not leave as they are: left out or masked in every export of the
    connection, unless an ADU Admin allows them for one job."""

    form = SensitiveColumnForm
    list_display = ["pattern", "action", "connection", "created_by", "created_at"]
    list_filter = ["action", "connection"]
    search_fields = ["pattern"]
