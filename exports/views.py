"""Portal pages for exports: dashboard, history, new export, job detail, logs, downloads."""

import collections
from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from audit.models import AuditEvent, record
from connections.models import Connection
from exports.engine.run import BadRequest, create_job
from exports.forms import NewExportForm
from exports.models import ExportJob, JobStateError, NoSuchFile, TableRun
from exports.tasks import cancel_job, retry_job, start_job

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
    return render(request, "exports/_running.html", _dashboard_context(request))


def _dashboard_context(request):
    jobs = _jobs(request)
    running = [
        (job, job.progress())
        for job in jobs.filter(status__in=[ExportJob.Status.QUEUED, ExportJob.Status.RUNNING])
    ]
    return {"running": running, "recent": jobs[:10]}


@require_GET
def job_list(request):
    jobs = _jobs(request)
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
    context = {
        "page": page,
        "statuses": ExportJob.Status.choices,
        "connections": Connection.objects.visible_to(request.user),
        "filters": {"status": status, "connection": connection,
                    "since": request.GET.get("since", ""), "until": request.GET.get("until", "")},
    }  # fmt: skip
    return render(request, "exports/list.html", context)


def _selections(post, tables: list[str]) -> dict:
    """Columns, masks and a row filter per table, from the "Columns and rows…" parts of
    the page that were opened (a table whose part stayed closed is exported whole)."""
    requests = {}
    for name in post.getlist("detail"):
        if name not in tables:
            continue
        schema, _, table = name.partition(".")
        columns = post.getlist(f"col:{name}")
        if not columns:
            raise BadRequest(f"{name}: no column is checked; check at least one.")
        request = {"columns": columns}
        masks = {}
        prefix = f"mask:{name}:"
        for key in post:
            method = post.get(key)
            if key.startswith(prefix) and method:
                column = key[len(prefix) :]
                mask = {"method": method}
                precision = post.get(f"precision:{name}:{column}", "").strip()
                if method == "truncate" and precision:
                    mask["precision"] = (
                        int(precision) if precision.lstrip("-").isdigit() else precision
                    )
                masks[column] = mask
        request["masks"] = masks
        request["filter"] = post.get(f"where:{name}", "")
        requests[(schema, table)] = request
    return requests


def _date(value):
    try:
        return datetime.strptime(value, "%Y-%m-%d").date() if value else None
    except ValueError:
        return None


@require_http_methods(["GET", "POST"])
def job_new(request):
    if not roles.is_operator(request.user):
        raise PermissionDenied("Your role cannot start exports.")
    form = NewExportForm(request.POST or None, user=request.user,
                         initial={"connection": request.GET.get("connection")})  # fmt: skip
    tables = request.POST.getlist("tables")
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if not tables and not request.POST.getlist("queries"):
            form.add_error(None, "Select at least one table or saved query to export.")
        else:
            try:
                job = create_job(
                    request.user,
                    data["connection"],
                    tables=tables,
                    selections=_selections(request.POST, tables),
                    queries=data["connection"].queries.filter(
                        pk__in=[q for q in request.POST.getlist("queries") if q.isdigit()]
                    ),
                    options={
                        k: data[k]
                        for k in ("parallel", "compression_level", "batch_rows", "validation")
                    },
                    out=data["out"],
                )
            except BadRequest as error:
                form.add_error("out" if error.field == "out" else None, str(error))
            else:
                start_job(job)
                messages.success(request, f"Job {job.pk} started: {job.tables_total} table(s).")
                return redirect("job_detail", pk=job.pk)
    return render(request, "exports/new.html", {"form": form, "selected": tables})


@require_GET
def job_detail(request, pk):
    job = _job(request, pk)
    return render(request, "exports/detail.html", _detail_context(job))


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
        "manifest_ready": job.is_finished and (job.folder() / "manifest.json").exists(),
        "can_retry": job.is_finished and any(r.status in RETRYABLE for r in runs),
    }


RETRYABLE = {TableRun.Status.FAILED, TableRun.Status.CANCELLED}


@require_POST
def job_cancel(request, pk):
    return _job_action(request, pk, cancel_job, "Job {job.pk} is being cancelled.")


@require_POST
def job_retry(request, pk):
    return _job_action(request, pk, retry_job, "Job {job.pk}: attempt {job.attempt} started.")


def _job_action(request, pk, action, done: str):
    """Cancel or retry: the outcome, or why not, as a message on the job's page."""
    job = get_object_or_404(ExportJob.objects.actionable_by(request.user), pk=pk)
    try:
        job = action(job, by=request.user)
        messages.success(request, done.format(job=job))
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
    return {"job": job, "lines": list(lines), "level": level, "limit": limit,
            "follow": follow, "levels": list(LOG_LEVELS)}  # fmt: skip


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
