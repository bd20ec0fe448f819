"""Portal pages for exports: dashboard, history, new export, job detail, logs, downloads."""

import collections
import re
from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from audit.models import AuditEvent, record
from connections.models import Connection
from exports.forms import (
    NewExportForm,
    SubmittedSelection,
    column_panel,
    filter_refusal,
    table_picker,
)
from exports.jobs import BadRequest, create_job
from exports.models import ExportJob, JobStateError, NoSuchFile, TableRun
from exports.tasks import cancel_job, retry_job, start_job
from transfer.views import bundles_context

LOG_LEVELS = {"INFO": 20, "WARNING": 30, "ERROR": 40}


def _jobs(request):
    return ExportJob.objects.visible_to(request.user).select_related("connection")


def _job(request, pk) -> ExportJob:
    # A job the user may not see is a 404, never a 403 that confirms it exists.
    return get_object_or_404(_jobs(request), pk=pk)


@require_GET
def dashboard(request):
    return render(request, "exports/dashboard.html", _dashboard_context(request))


@require_GET
def dashboard_running(request):
    """The dashboard's live part, polled even when nothing runs: the running jobs and the
    recent ones, so a job started elsewhere shows up without a reload."""
    return render(request, "exports/_running.html", _dashboard_context(request))


def _dashboard_context(request):
    jobs = _jobs(request).with_progress()
    return {
        "running": jobs.exclude(status__in=ExportJob.FINISHED),
        "recent": jobs[:10],
    }


@require_GET
def job_list(request):
    return render(request, "exports/list.html", _list_context(request))


@require_GET
def job_list_rows(request):
    """The history's table alone, with the same filters and page: polled while a job it
    shows has not finished."""
    return render(request, "exports/_job_table.html", _list_context(request))


def _list_context(request):
    jobs = _jobs(request).with_progress()
    status = request.GET.get("status", "")
    connection = request.GET.get("connection", "")
    since = _date(request.GET.get("since"))
    until = _date(request.GET.get("until"))
    if status in ExportJob.Status.values:
        jobs = jobs.filter(status=status)
    if connection.isdigit():
        jobs = jobs.filter(connection_id=int(connection))
    if since:
        jobs = jobs.filter(created_at__date__gte=since)
    if until:
        jobs = jobs.filter(created_at__date__lte=until)
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    return {
        "page": page,
        "unfinished": any(not job.is_finished for job in page),
        "statuses": ExportJob.Status.choices,
        "connections": Connection.objects.visible_to(request.user),
        "filters": {"status": status, "connection": connection,
                    "since": request.GET.get("since", ""), "until": request.GET.get("until", "")},
    }  # fmt: skip


def _date(value):
    try:
        return datetime.strptime(value, "%Y-%m-%d").date() if value else None
    except ValueError:
        return None


@require_http_methods(["GET", "POST"])
def job_new(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot start exports.")
    if request.method == "GET":
        form = NewExportForm(
            user=request.user, initial={"connection": request.GET.get("connection")}
        )
        return render(request, "exports/new.html", {"form": form})
    form = NewExportForm(request.POST, user=request.user)
    chosen = SubmittedSelection(request.POST)
    refusal = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            if not chosen.tables and not chosen.queries:
                raise BadRequest("Select at least one table or saved query to export.")
            job = create_job(
                request.user,
                data["connection"],
                tables=chosen.tables,
                selections=chosen.requests(),
                queries=data["connection"].queries.filter(pk__in=chosen.queries),
                options={
                    k: data[k]
                    for k in ("parallel", "compression_level", "batch_rows", "validation")
                },
                out=data["out"],
            )
        except BadRequest as error:
            refusal = error
        else:
            start_job(job)
            messages.success(request, f"Job {job.pk} started: {job.tables_total} table(s).")
            return redirect("job_detail", pk=job.pk)
    # A refused export comes back as it was sent: nothing chosen or typed is lost.
    context = {"form": form}
    connection = form.cleaned_data.get("connection")
    if connection:
        context["picker"] = table_picker(connection, request.user, chosen=chosen)
    if refusal:
        _show_refusal(request.user, form, context.get("picker"), refusal)
    return render(request, "exports/new.html", context)


@require_POST
def job_new_filter_check(request):
    """What the export would say of the row filter being typed in a table's "Columns and
    rows…" part: its refusal, or OK."""
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot start exports.")
    pk = request.POST.get("connection", "")
    if not pk.isdigit():
        raise Http404("Choose a connection.")
    connection = get_object_or_404(Connection.objects.usable_by(request.user), pk=int(pk))
    name = request.POST.get("table", "")
    schema, _, table = name.partition(".")
    row_filter = request.POST.get(f"where:{name}", "")
    context = {"checked": bool(row_filter.strip()), "refusal": ""}
    if context["checked"]:
        context["refusal"] = filter_refusal(request.user, connection, schema, table, row_filter)
    return render(request, "exports/_filter_check.html", context)


def _show_refusal(user, form, picker, error: BadRequest) -> None:
    """The refusal, once, next to what it is about: an option or the folder, a table (its
    filter, when the filter's own check says the same), the saved queries; else on top."""
    message = str(error)
    field = error.field.removeprefix("options.")
    if field in form.fields:
        form.add_error(field, message)
        return
    if picker and field == "queries" and picker["queries"]:
        picker["queries_refusal"] = message
        return
    row = _table_named(picker["tables"] if picker else [], message)
    if row is None:
        form.add_error(None, message)
    elif row.panel is None:
        row.refusal = message
    elif row.panel["filter"].strip() and message == filter_refusal(
        user, picker["connection"], row.table.schema, row.table.name, row.panel["filter"]
    ):
        row.panel["filter_check"] = message
    else:
        row.panel["refusal"] = message


def _table_named(rows, message: str):
    """The row of the table a refusal names (they name it schema.table), if any."""
    named = [
        row for row in rows if re.search(rf"(?<![\w.]){re.escape(row.name)}(?!\.?\w)", message)
    ]
    return max(named, key=lambda row: len(row.name), default=None)


@require_GET
def job_detail(request, pk):
    job = _job(request, pk)
    return render(request, "exports/detail.html", {**_detail_context(job), **bundles_context(job)})


@require_GET
def job_live(request, pk):
    job = _job(request, pk)
    return render(request, "exports/_job_live.html", _detail_context(job))


def _detail_context(job):
    runs = list(job.tables.all())
    return {
        "job": job,
        "progress": job.progress(runs),
        "tables": runs,
        "warned": sum(1 for run in runs if run.warnings),
        "errors": job.errors.select_related("table_run"),
        "manifest_ready": job.is_finished and job.manifest_path().exists(),
        "can_retry": job.is_finished and any(r.status in TableRun.STOPPED for r in runs),
    }


@require_POST
def job_cancel(request, pk):
    # Said as it stands: "being cancelled" would outlive a job that stopped at once.
    return _job_action(
        request,
        pk,
        cancel_job,
        lambda job: f"Job {job.pk} " + ("cancelled." if job.is_finished else "is being cancelled."),
    )


@require_POST
def job_retry(request, pk):
    return _job_action(
        request, pk, retry_job, lambda job: f"Job {job.pk}: attempt {job.attempt} started."
    )


def _job_action(request, pk, action, done):
    """Cancel or retry: the outcome, or why not, as a message on the job's page."""
    job = get_object_or_404(ExportJob.objects.actionable_by(request.user), pk=pk)
    try:
        job = action(job, by=request.user)
        messages.success(request, done(job))
    except JobStateError as error:
        messages.error(request, str(error))
    return redirect("job_detail", pk=job.pk)


@require_GET
def job_log(request, pk):
    job = _job(request, pk)
    return render(request, "exports/log.html", _log_context(request, job))


@require_GET
def job_log_lines(request, pk):
    job = _job(request, pk)
    return render(request, "exports/_log_lines.html", _log_context(request, job))


def _log_context(request, job):
    level = request.GET.get("level", "INFO")
    level = level if level in LOG_LEVELS else "INFO"
    try:
        limit = min(1000, max(50, int(request.GET.get("limit", 200))))
    except ValueError:
        limit = 200
    follow = request.GET.get("follow") == "on" and not job.is_finished
    lines = collections.deque(maxlen=limit)
    total = 0  # lines at this level, for the page to say which of them it shows
    try:
        path = job.log_file()
    except NoSuchFile:
        path = None  # no log yet
    if path is not None:
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                parts = line.split(" ", 3)
                if len(parts) > 2 and LOG_LEVELS.get(parts[2], 20) >= LOG_LEVELS[level]:
                    lines.append(line.rstrip("\n"))
                    total += 1
    return {"job": job, "lines": list(lines), "level": level, "limit": limit,
            "follow": follow, "levels": list(LOG_LEVELS), "total": total,
            "first": total - len(lines) + 1}  # fmt: skip


@require_GET
def job_log_download(request, pk):
    job = _job(request, pk)
    path = job.log_file()  # a 404 if there is none (yet)
    record(AuditEvent.Action.LOG_DOWNLOAD, obj=job)
    return FileResponse(open(path, "rb"), as_attachment=True, filename=f"job-{job.pk}.log")


@require_GET
def job_file(request, pk, path):
    """A file of the job, only if the job lists it and it lies in the job's folder: any
    other path is a 404."""
    job = _job(request, pk)
    full = job.file_path(path)
    record(AuditEvent.Action.FILE_DOWNLOAD, obj=job, path=path, bytes=full.stat().st_size)
    return FileResponse(open(full, "rb"), as_attachment=True, filename=full.name)


@require_GET
def connection_tables(request):
    """The tables of one schema (or all) of ?connection=ID, for the new-export form."""
    pk = request.GET.get("connection", "")
    if not pk.isdigit():
        raise Http404("Choose a connection.")
    connection = get_object_or_404(Connection.objects.usable_by(request.user), pk=int(pk))
    picker = table_picker(connection, request.user, request.GET.get("schema", ""))
    return render(request, "connections/_tables.html", {"picker": picker})


@require_GET
def connection_columns(request):
    """The columns of ?connection=ID&schema=S&table=T with their types, for choosing the
    columns, masks and row filter of one table on the new-export page."""
    pk = request.GET.get("connection", "")
    if not pk.isdigit():
        raise Http404("Choose a connection.")
    connection = get_object_or_404(Connection.objects.usable_by(request.user), pk=int(pk))
    schema, table = request.GET.get("schema", ""), request.GET.get("table", "")
    panel = column_panel(connection, schema, table)
    return render(request, "connections/_columns.html", {"panel": panel})
