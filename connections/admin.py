from django.contrib import admin

from connections.forms import FIELDS, ConnectionForm
from connections.models import Connection


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
