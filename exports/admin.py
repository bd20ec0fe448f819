from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from adu_site.commands import human_bytes
from audit.models import AuditEvent, record
from exports import q_admin
from exports.models import ExportJob, JobError, JobStateError, StatusChange, TableRun

q_admin.register()


class RecordOnly:
    """A job and its tables are records of what ran: every field is read-only here (the
    folder and file paths that downloads serve, the connection, the selection a table ran
    with...), and none is added by hand: jobs come from create_job, which checks them."""

    def get_readonly_fields(self, request, obj=None):
        hidden = {"id", *(self.exclude or ())}
        fields = [f.name for f in self.model._meta.fields if f.name not in hidden]
        return list(dict.fromkeys([*super().get_readonly_fields(request, obj), *fields]))

    def has_add_permission(self, request, *args):
        return False


class TableRunInline(admin.TabularInline):
    model = TableRun
    extra = 0
    can_delete = False
    fields = ["schema", "table", "status", "rows_expected", "rows_written", "bytes_written"]
    readonly_fields = fields
    show_change_link = True


class JobErrorInline(admin.TabularInline):
    model = JobError
    extra = 0
    can_delete = False
    fields = ["created_at", "table_run", "message"]
    readonly_fields = fields


class StatusChangeInline(admin.TabularInline):
    model = StatusChange
    extra = 0
    can_delete = False
    fields = ["at", "table_run", "status", "note"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


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
    readonly_fields = ["created_at", "started_at", "finished_at"]
    inlines = [TableRunInline, JobErrorInline, StatusChangeInline]
    actions = ["delete_with_files"]

    def get_actions(self, request):
        # Django's own bulk delete would leave the files on disk and skip the audit trail.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        # A queued or running job keeps its record: its workers still write to it.
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_finished)

    def delete_model(self, request, obj):
        # The Delete button too takes the job's folder and log, on the audit trail.
        obj.delete_with_files(by=request.user)

    @admin.action(description="Delete the selected finished jobs with their files")
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
