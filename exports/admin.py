from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from adu_site.commands import human_bytes
from audit.models import AuditEvent, record
from exports import q_admin
from exports.models import ExportJob, JobError, JobStateError, StatusChange, TableRun

q_admin.register()


class RecordOnly:
    """Jobs, their tables, errors and status changes are the history of what ran: the admin
    shows them and never adds or changes one (status, counts, config, attempts, the paths
    downloads serve...). Jobs come from create_job, which checks them; the engine alone
    moves them on. A finished job may go, with its files (ExportJobAdmin)."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TableRunInline(RecordOnly, admin.TabularInline):
    model = TableRun
    extra = 0
    fields = ["schema", "table", "status", "rows_expected", "rows_written", "bytes_written"]
    show_change_link = True


class JobErrorInline(RecordOnly, admin.TabularInline):
    model = JobError
    extra = 0
    fields = ["created_at", "table_run", "message"]
    readonly_fields = ["created_at"]


class StatusChangeInline(RecordOnly, admin.TabularInline):
    model = StatusChange
    extra = 0
    fields = ["at", "table_run", "status", "note"]


@admin.register(ExportJob)
class ExportJobAdmin(RecordOnly, admin.ModelAdmin):
    list_display = [
        "id",
        "connection",
        "owner",
        "status",
        "tables_total",
        "tables_complete",
        "tables_failed",
        "rows_written",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "connection", "owner", "created_at"]
    search_fields = ["id", "output_dir", "connection__name", "snapshot_id"]
    date_hierarchy = "created_at"
    inlines = [TableRunInline, JobErrorInline, StatusChangeInline]
    actions = ["delete_with_files"]

    def get_actions(self, request):
        # Django's own bulk delete would leave the files on disk and skip the audit trail.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        # The one deletion: clean-up of a finished job with its files (delete_with_files).
        # A queued or running job keeps its record: its workers still write to it.
        allowed = admin.ModelAdmin.has_delete_permission(self, request, obj)
        return allowed and (obj is None or obj.is_finished)

    def get_deleted_objects(self, objs, request):
        # The job's tables, errors and status changes go with it, though none may be
        # deleted alone: they are not permissions the Delete button needs.
        deleted, counts, needed, protected = super().get_deleted_objects(objs, request)
        needed -= {TableRun._meta.verbose_name, JobError._meta.verbose_name}
        return deleted, counts, needed, protected

    def delete_model(self, request, obj):
        # The Delete button too takes the job's folder and log, on the audit trail.
        obj.delete_with_files(by=request.user)

    @admin.action(
        description="Delete the selected finished jobs with their files",
        permissions=["delete"],
    )
    def delete_with_files(self, request, queryset):
        freed, deleted, skipped = 0, 0, []
        for job in queryset:
            try:
                freed += job.delete_with_files(by=request.user)
                deleted += 1
            except JobStateError:
                skipped.append(str(job.pk))
        if deleted:
            record(AuditEvent.Action.CLEANUP, jobs=deleted, bytes_freed=freed, via="admin")
            self.message_user(request, f"Deleted {deleted} job(s), {human_bytes(freed)} freed.")
        if skipped:
            self.message_user(
                request,
                f"Not deleted, not finished: job(s) {', '.join(skipped)}.",
                level=messages.WARNING,
            )


@admin.register(TableRun)
class TableRunAdmin(RecordOnly, admin.ModelAdmin):
    list_display = [
        "job",
        "schema",
        "table",
        "status",
        "rows_written",
        "bytes_written",
        "attempt",
        "validation_result",
    ]
    list_filter = ["status"]
    search_fields = ["schema", "table"]
    raw_id_fields = ["job"]
    exclude = ["validation"]
    readonly_fields = ["validation_report"]

    @admin.display(description="Validation")
    def validation_result(self, run):
        return run.validation_summary() or "-"

    @admin.display(description="Validation report")
    def validation_report(self, run):
        if not run.validation:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    c["description"],
                    c["origin"],
                    c["severity"],
                    f"{c['status']} {c['note']}".strip(),
                    c["failures"],
                    "; ".join(
                        f"{e['row']}: {e['value']}" if e["row"] is not None else str(e["value"])
                        for e in c["examples"]
                    ),
                )
                for c in run.validation["checks"]
            ),
        )
        return format_html(
            "<p>{}</p><table><thead><tr><th>Check</th><th>From</th><th>Severity</th>"
            "<th>Result</th><th>Failures</th><th>Examples (row: value)</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            run.validation_summary(),
            rows,
        )


@admin.register(JobError)
class JobErrorAdmin(RecordOnly, admin.ModelAdmin):
    list_display = ["created_at", "job", "table_run", "message"]
    list_filter = ["created_at"]
    search_fields = ["message"]
    raw_id_fields = ["job", "table_run"]
