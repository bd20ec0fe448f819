from django.contrib import admin

from exports.admin import RecordOnly
from loads.models import Load, TableLoad


class TableLoadInline(RecordOnly, admin.TabularInline):
    model = TableLoad
    extra = 0
    fields = [
        "schema",
        "table",
        "target_schema",
        "status",
        "rows",
        "file_fingerprint",
        "target_fingerprint",
        "source_fingerprint",
        "error",
        "notes",
    ]


@admin.register(Load)
class LoadAdmin(RecordOnly, admin.ModelAdmin):
    """Loads are the history of what went into the targets: shown, never changed here
    (create_load checks a load, the engine alone moves it on)."""

    list_display = ["id", "target", "owner", "status", "source_job_id", "created_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["folder", "manifest_sha256", "target__name", "owner__username"]
    readonly_fields = [f.name for f in Load._meta.fields]
    inlines = [TableLoadInline]
