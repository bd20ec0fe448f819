import csv
import json

from django.contrib import admin
from django.http import HttpResponse

from audit.models import AuditEvent

CSV_FIELDS = [
    "at",
    "username",
    "action",
    "object_type",
    "object_id",
    "details",
    "ip_address",
    "user_agent",
]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is evidence."""

    list_display = ["at", "username", "action", "object_type", "object_id", "ip_address"]
    list_filter = ["action", "user", "at"]
    search_fields = ["username", "object_id", "ip_address"]
    date_hierarchy = "at"
    readonly_fields = [*CSV_FIELDS, "user"]
    actions = ["export_csv"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Export the selected events as CSV")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="adu-audit.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_FIELDS)
        for event in queryset.order_by("at", "id").iterator():
            writer.writerow([_cell(event, name) for name in CSV_FIELDS])
        return response


def _cell(event, name: str) -> str:
    value = getattr(event, name)
    if name == "details":  # JSON, as the event's page shows it (str() would give Python's repr)
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula is written as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
