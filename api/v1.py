"""The JSON API under /api/v1/: job history, jobs, their errors and files, new jobs, cancel
and retry, loads of exports into target databases, and the connections' schemas and
tables, with exactly the permissions of the pages (an object the caller may not see is a
404) and errors of one shape."""

import json
import logging
import re
import secrets
from datetime import date, datetime
from functools import wraps
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.urls import reverse
from ninja import Field, NinjaAPI, Path, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import BeforeValidator, ConfigDict, StrictBool, StringConstraints

from accounts import roles
from api.auth import AUTH, ApiError, NotAuthenticated, authenticate
from audit.models import AuditEvent, record
from connections.models import Connection, ConnectionFailed
from exports import options as export_options
from exports.engine import masking
from exports.job_display import job_data, progress_data
from exports.jobs import BadRequest, create_job
from exports.models import MANIFEST, ExportJob, JobStateError, NoSuchFile
from exports.tasks import cancel_job, retry_job, start_job
from loads.creation import create_load
from loads.management.commands.adu_load import load_data
from loads.models import Load, TableLoad
from loads.tasks import cancel_load, start_load
from plans import models as plan_models
from plans.models import DEFAULT_PATTERN, ExportPlan, Notification, PlanRefused, PlanRun
from transfer.bundle import BundleRefused
from transfer.models import Bundle, Receipt
from transfer.tasks import create_bundle, start_bundle

log = logging.getLogger("adu.api")

NAMESPACE = "api-v1"
MAX_ID = 2**63 - 1  # a bigint primary key
PAGE_SIZE = 25
MAX_SCHEMAS = 20
MAX_TABLES = 10_000
# What each answer may be besides success; every error has the ErrorOut shape.
AUTH_ERRORS = (400, 401, 429)

# Names of source objects: what a PostgreSQL or Vertica identifier can be, and never a
# NUL byte, which neither the source nor the metadata database can store.
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
# SCHEMA.TABLE: split at the first dot, each part 1 to 255 characters, no control
# characters, no space at either end (create_job strips them and would find a part empty).
QUALIFIED = (
    r"^[^.\s\x00-\x1f\x7f][^.\x00-\x1f\x7f]{0,254}\.[^\x00-\x1f\x7f]{0,254}[^\s\x00-\x1f\x7f]$"
)
Qualified = Annotated[str, StringConstraints(pattern=QUALIFIED)]
# What create_job accepts as the job's folder; empty: job-<id>.
FOLDER = rf"^({export_options.FOLDER_NAME})?$"
# An export's folder on the server, for a load: an absolute path (a relative one, or ~,
# would be the portal process's), no NUL byte, as long as Load.folder may be.
SERVER_PATH = r"^/[^\x00]*$"
ServerPath = Annotated[str, StringConstraints(max_length=1000, pattern=SERVER_PATH)]
PATTERN_HINTS = {
    QUALIFIED: "must be SCHEMA.TABLE",
    SERVER_PATH: "must be an absolute path on the server",
    FOLDER: "must be a folder name: letters, digits, '_', '-' and '.', starting with a letter or digit",
}
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="Its id.")]

DESCRIPTION = """\
Drive ADU from schedulers and scripts: the job history, one job with its tables (the object
of `manage.py adu_job --json`), its errors, manifest and files, new jobs, cancel and retry;
the load history, new loads of an export's folder into a target database, one load with its
tables and fingerprints (the object of `manage.py adu_load --json`), and cancel; and the
schemas and tables of the connections you may export from.

Authenticate with a personal API token (made on your profile page) in the header
`Authorization: Bearer <token>`, or, from the browser, with your login session (unsafe
methods then need the CSRF token in the `X-CSRFToken` header). You see exactly what the
portal shows you: an object you may not see is a 404.

Every error is `{"error": {"code": ..., "message": ..., "field": ...}}`: 400 bad input
(`field` names it), 401 no, invalid, revoked or expired token, 403 your role may not do
this, 404 no such object (or not yours), 405 wrong method, 409 the job's or the load's
state forbids it, 429 too many requests (see `Retry-After`), 502 the source database could
not be reached.
"""


def _openapi_needs_login(view):
    # The document is a page like any other: it needs a token or a session.
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            authenticate(request)
        except ApiError as error:
            return error_response(error)
        return view(request, *args, **kwargs)

    return wrapped


api = NinjaAPI(
    title="ADU API",
    version="1",
    description=DESCRIPTION,
    urls_namespace=NAMESPACE,
    auth=AUTH,
    docs_url=None,  # ninja's Swagger UI loads from a CDN; the portal's /api/ page vendors it
    docs_decorator=_openapi_needs_login,
)


# Errors -------------------------------------------------------------------------------


class ErrorDetail(Schema):
    code: str = Field(description="Stable and machine-readable, e.g. not_found.")
    message: str = Field(description="One sentence for a person.")
    field: str | None = Field(None, description="The input at fault (400), else null.")


class ErrorOut(Schema):
    error: ErrorDetail


def error_response(error: ApiError) -> HttpResponse:
    body = {"code": error.code, "message": error.message, "field": error.field}
    response = HttpResponse(
        json.dumps({"error": body}), status=error.status, content_type="application/json"
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


@api.exception_handler(ApiError)
def _api_error(request, error: ApiError):
    return error_response(error)


@api.exception_handler(ValidationError)
def _invalid(request, error: ValidationError):
    problems = []
    for item in error.errors:
        # loc is (source, [body parameter,] field, index...): name the field as sent.
        loc = [str(p) for p in item.get("loc", ())]
        loc = loc[2:] if loc[:2] == ["body", "payload"] else loc[1:]
        message = item.get("msg", "is not valid")
        if item.get("type") == "string_pattern_mismatch":
            message = PATTERN_HINTS.get(item.get("ctx", {}).get("pattern"), message)
        problems.append((".".join(loc) or "body", message))
    field, _ = problems[0] if problems else ("body", "")
    message = "; ".join(f"{name}: {msg}" for name, msg in problems) or "The request is not valid."
    return error_response(ApiError(400, "invalid_input", message, field=field))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, error):
    return error_response(
        NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
    )


@api.exception_handler(HttpError)
def _http_error(request, error: HttpError):
    # Ninja's own: a body that is not JSON (400), ...
    status = error.status_code
    code = {400: "invalid_input", 403: "permission_denied", 429: "rate_limited"}.get(
        status, "error"
    )
    message = "The body is not valid JSON." if status == 400 else str(error)
    return error_response(ApiError(status, code, message, field="body" if status == 400 else None))


@api.exception_handler(Http404)
def _not_found(request, error):
    return error_response(ApiError(404, "not_found", "Not found."))


@api.exception_handler(Exception)
def _server_error(request, error):
    # Logged (through the redaction filter) for the operator; the caller gets one sentence
    # and never a traceback.
    log.exception("API error on %s %s", request.method, request.path)
    return error_response(
        ApiError(500, "server_error", "ADU could not answer this request; the error is logged.")
    )


def answers(ok: dict, *codes: int) -> dict:
    return {**ok, **dict.fromkeys((*AUTH_ERRORS, *codes), ErrorOut)}


def _not_found_error(what: str, pk, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", f"There is no {what} {pk}.", field=field)


# Jobs ---------------------------------------------------------------------------------

JobStatus = Literal[tuple(ExportJob.Status.values)]


class JobProgress(Schema):
    """The counts the job page and the history show (ExportJob.progress): each table is in
    exactly one of complete, failed, cancelled, running and queued."""

    tables_total: int
    tables_complete: int
    tables_failed: int
    tables_cancelled: int
    tables_running: int
    tables_queued: int
    rows_written: int = Field(
        description="Rows of complete tables and what running tables have written so far."
    )
    bytes_written: int
    rows_expected: int | None = Field(
        description="Rows counted at the source for the tables not failed or cancelled; "
        "null while one is still being counted."
    )
    percent: int = Field(description="100 only once the job has finished.")


class JobSummary(JobProgress):
    id: int
    url: str = Field(description="This job in the API.")
    status: JobStatus
    connection: int = Field(description="The connection's id.")
    connection_name: str
    owner: str
    output_dir: str = Field(description="The job's folder under the export root.")
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(Schema):
    count: int = Field(description="Jobs that match, on all pages.")
    page: int
    pages: int
    next: str | None = Field(description="URL of the next page, or null.")
    previous: str | None = Field(description="URL of the previous page, or null.")
    results: list[JobSummary]


def _iso_day(value):
    # pydantic would also take a number of seconds since 1970 as a date; the document says
    # YYYY-MM-DD, so that alone is accepted.
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


class JobFilters(Schema):
    status: JobStatus | None = Field(None, description="Only jobs in this state.")
    connection: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only jobs of this connection id."
    )
    since: Day | None = Field(None, description="Created on or after this day (YYYY-MM-DD).")
    until: Day | None = Field(None, description="Created on or before this day (YYYY-MM-DD).")
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(PAGE_SIZE, ge=1, le=100)


class FileOut(Schema):
    model_config = ConfigDict(extra="allow")
    path: str = Field(description="Relative to the job's folder: GET /jobs/{id}/files/{path}.")
    rows: int
    bytes: int
    sha256: str


class TableReport(Schema):
    schema_: str = Field(alias="schema")
    table: str
    status: str
    rows: int
    files: list[FileOut]
    warnings: list[str]
    validation: dict[str, Any] | None = Field(description="Validation report (see the README).")
    error: str | None


class JobDetail(Schema):
    """The object of `manage.py adu_job --json`."""

    job_id: int
    status: JobStatus
    progress: JobProgress
    output_dir: str = Field(description="The job's folder on the server.")
    manifest: str | None = Field(description="Path of manifest.json on the server, once written.")
    tables: list[TableReport]
    errors: list[str] = Field(description="Errors of the job itself (not of one table).")


class JobErrorOut(Schema):
    message: str
    time: datetime
    table: str | None = Field(description="SCHEMA.TABLE, or null for an error of the job.")
    phase: str | None
    attempt: int | None
    context: dict[str, Any]
    traceback: str | None = Field(description="Only for ADU Admins; null for others.")


class Mask(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)
    method: Literal[tuple(masking.METHODS)] = Field(description="How the column is masked.")
    precision: int | None = Field(
        None, ge=-18, le=18, description="truncate: digits after the point (negative: tens...)."
    )


class TableSelection(Schema):
    """What of one table leaves: its columns (all by default), a row filter, masks."""

    model_config = ConfigDict(extra="forbid")
    columns: list[Name] = Field([], max_length=MAX_TABLES, description="Only these columns.")
    exclude: list[Name] = Field([], max_length=MAX_TABLES, description="Leave these out.")
    filter: str = Field(
        "", max_length=10_000, pattern=r"^[^\x00]*$", description="A SQL condition on its rows."
    )
    masks: dict[Name, Mask] = Field({}, max_length=MAX_TABLES, description="Column: mask.")


class ExportIn(Schema):
    """What to export: the body of a job, and of a plan. Strict: a `true` is not a 1."""

    model_config = ConfigDict(extra="forbid", strict=True)
    connection: int = Field(ge=1, le=MAX_ID, description="The connection's id (GET /connections/).")
    tables: list[Qualified] = Field(
        [], max_length=MAX_TABLES, description="SCHEMA.TABLE names to export."
    )
    schemas: list[Name] = Field(
        [],
        # Each schema is one discovery on the source: a long list would hold the request
        # (and a connection to the source) for minutes.
        max_length=MAX_SCHEMAS,
        description="Export every table of these schemas (when no tables are named; neither: all schemas).",
    )
    exclude: list[Qualified] = Field(
        [], max_length=MAX_TABLES, description="SCHEMA.TABLE names to leave out."
    )
    selections: dict[Qualified, TableSelection] = Field(
        {},
        max_length=1000,
        description="Per SCHEMA.TABLE (one of `tables`): columns, a row filter and masks, "
        "checked against the source before the job starts.",
    )
    queries: list[Name] = Field(
        [], max_length=100, description="Saved queries of the connection to export too, by name."
    )
    allow_sensitive: list[Name] = Field(
        [],
        max_length=MAX_TABLES,
        description="ADU Admins only: SCHEMA.TABLE.COLUMN of sensitive columns that may leave "
        "unmasked ('*': all).",
    )
    options: export_options.ExportOptions = Field(default_factory=export_options.ExportOptions)

    def definition(self) -> dict:
        """The export's definition as plans store it (exports.jobs.job_arguments)."""
        return {
            "schemas": list(dict.fromkeys(self.schemas)),
            "tables": self.tables,
            "exclude": self.exclude,
            "selections": {f"{s}.{t}": r for (s, t), r in _requests(self.selections).items()},
            "queries": self.queries,
            "allow_sensitive": self.allow_sensitive,
            "options": self.options.model_dump(exclude_none=True),
        }


class JobIn(ExportIn):
    out: str = Field(
        "",
        pattern=FOLDER,
        description="The folder under the export root (default job-<id>); it must not exist "
        "yet, and names of the form job-<number> are reserved for jobs without one.",
    )


class JobAccepted(Schema):
    id: int
    url: str = Field(description="Poll this for the job's state.")
    status: JobStatus
    attempt: int
    tables: int = Field(description="Tables in the job.")


def _job_url(request, pk: int) -> str:
    return request.build_absolute_uri(reverse(f"{NAMESPACE}:job", kwargs={"job_id": pk}))


def _summary(request, job: ExportJob) -> dict:
    return {
        "id": job.pk,
        "url": _job_url(request, job.pk),
        "status": job.status,
        "connection": job.connection_id,
        "connection_name": job.connection.name,
        "owner": job.owner.get_username(),
        "output_dir": job.output_dir,
        "attempt": job.attempt,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        **progress_data(job.progress()),
    }


def _visible_job(request, job_id: int) -> ExportJob:
    jobs = ExportJob.objects.visible_to(request.user).select_related("connection")
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise _not_found_error("job", job_id)
    return job


def _accepted(request, job: ExportJob) -> dict:
    return {
        "id": job.pk,
        "url": _job_url(request, job.pk),
        "status": job.status,
        "attempt": job.attempt,
        "tables": job.tables_total,
    }


@api.get(
    "/jobs/",
    response=answers({200: JobPage}),
    url_name="jobs",
    operation_id="listJobs",
    summary="The job history",
    tags=["jobs"],
)
def list_jobs(request, filters: Query[JobFilters]):
    """The job history, newest first: the jobs you may see, filtered and paginated."""
    jobs: QuerySet = (
        ExportJob.objects.visible_to(request.user)
        .select_related("connection", "owner")
        .with_progress()
    )
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.connection:
        jobs = jobs.filter(connection_id=filters.connection)
    return _page(request, jobs, filters, lambda job: _summary(request, job))


def _page(request, items: QuerySet, filters, summary) -> dict:
    """One page of a history (jobs, loads), newest first: those created between `since` and
    `until` of the filters, with links to the pages next to it."""
    if filters.since:
        items = items.filter(created_at__date__gte=filters.since)
    if filters.until:
        items = items.filter(created_at__date__lte=filters.until)
    count = items.count()
    size, page = filters.page_size, filters.page
    pages = max(1, -(-count // size))
    start = (page - 1) * size
    results = list(items[start : start + size]) if start < count else []

    def link(number):
        query = request.GET.copy()
        query["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

    return {
        "count": count,
        "page": page,
        "pages": pages,
        "next": link(page + 1) if page < pages else None,
        "previous": link(min(page - 1, pages)) if page > 1 else None,
        "results": [summary(item) for item in results],
    }


@api.post(
    "/jobs/",
    response=answers({202: JobAccepted}, 403, 404, 502),
    url_name="job_create",
    operation_id="createJob",
    summary="Start an export job",
    tags=["jobs"],
)
def create(request, response: HttpResponse, payload: JobIn):
    """Start an export: a connection and tables (or schemas), with options. Answers 202 with
    the job's URL (also in `Location`); poll it until `status` is finished."""
    user = request.user
    if not roles.is_operator(user):
        raise ApiError(403, "permission_denied", "Your role cannot start exports.")
    connection = Connection.objects.usable_by(user).filter(pk=payload.connection).first()
    if connection is None:
        raise _not_found_error("connection", payload.connection, field="connection")
    queries = []
    for name in payload.queries:
        query = connection.queries.filter(name=name).first()
        if query is None:
            raise ApiError(
                400,
                "invalid_input",
                f"Connection '{connection.name}' has no saved query '{name}'.",
                field="queries",
            )
        queries.append(query)
    try:
        job = create_job(
            user,
            connection,
            schemas=list(dict.fromkeys(payload.schemas)),
            tables=payload.tables,
            exclude=payload.exclude,
            options=payload.options.model_dump(exclude_none=True),
            out=payload.out,
            selections=_requests(payload.selections),
            queries=queries,
            allow_sensitive=payload.allow_sensitive,
        )
    except BadRequest as error:
        raise ApiError(400, "invalid_input", str(error), field=error.field) from None
    except ConnectionFailed as error:
        raise ApiError(502, "source_unavailable", str(error)) from None
    start_job(job)
    response["Location"] = _job_url(request, job.pk)
    return Status(202, _accepted(request, job))


def _requests(selections: dict[str, TableSelection]) -> dict:
    """The per-table requests of exports.selection, as adu_export makes them."""
    requests = {}
    for name, chosen in selections.items():
        schema, _, table = name.strip().partition(".")
        request = {
            "columns": chosen.columns,
            "exclude": chosen.exclude,
            "filter": chosen.filter,
            "masks": {c: m.model_dump(exclude_none=True) for c, m in chosen.masks.items()},
        }
        requests[(schema, table)] = {key: value for key, value in request.items() if value}
    return requests


@api.get(
    "/jobs/{int:job_id}/",
    response=answers({200: JobDetail}, 404),
    url_name="job",
    operation_id="getJob",
    summary="One job with its tables",
    tags=["jobs"],
    by_alias=True,
)
def get_job(request, job_id: Id):
    """One job with its tables: the object of `manage.py adu_job --json`."""
    return job_data(_visible_job(request, job_id))


@api.get(
    "/jobs/{int:job_id}/errors/",
    response=answers({200: list[JobErrorOut]}, 404),
    url_name="job_errors",
    operation_id="getJobErrors",
    summary="A job's errors",
    tags=["jobs"],
)
def job_errors(request, job_id: Id):
    """Every error of the job, oldest first, of every attempt; tracebacks for ADU Admins only."""
    job = _visible_job(request, job_id)
    tracebacks = roles.is_admin(request.user)
    return [
        {
            "message": error.message,
            "time": error.created_at,
            "table": error.context.get("table"),
            "phase": error.context.get("phase"),
            "attempt": error.context.get("attempt"),
            "context": error.context,
            "traceback": (error.traceback or None) if tracebacks else None,
        }
        for error in job.errors.all()
    ]


@api.post(
    "/jobs/{int:job_id}/cancel/",
    response=answers({202: JobAccepted}, 403, 404, 409),
    url_name="job_cancel",
    operation_id="cancelJob",
    summary="Cancel a job",
    tags=["jobs"],
)
def cancel(request, job_id: Id):
    """Cancel a queued or running job (yours, or any for an ADU Admin); 409 once finished."""
    return Status(202, _accepted(request, _act(request, job_id, cancel_job)))


@api.post(
    "/jobs/{int:job_id}/retry/",
    response=answers({202: JobAccepted}, 403, 404, 409),
    url_name="job_retry",
    operation_id="retryJob",
    summary="Retry a job's failed tables",
    tags=["jobs"],
)
def retry(request, job_id: Id):
    """Run the failed and cancelled tables of a finished job again, as a new attempt under a
    new snapshot; 409 while it runs or when nothing failed."""
    return Status(202, _accepted(request, _act(request, job_id, retry_job)))


def _act(request, job_id: int, action) -> ExportJob:
    jobs = ExportJob.objects.actionable_by(request.user).select_related("connection")
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise _not_found_error("job", job_id)
    try:
        return action(job, by=request.user)
    except JobStateError as error:
        raise ApiError(409, "invalid_state", str(error)) from None


class BundleIn(Schema):
    model_config = ConfigDict(extra="forbid")
    volume_size: str = Field(
        "4G",
        max_length=20,
        pattern=r"^[0-9]+(\.[0-9]+)?[KMGTkmgt]?([iI]?[bB])?$",
        description="The most bytes a volume holds, 64K to 1024T: 4G, 700M, or bytes.",
    )
    encrypt_to: str = Field(
        "",
        max_length=200,
        description="The far side's age recipient (age1..., from its `adu_keys recipient`); "
        "empty: not encrypted.",
    )


class BundleOut(Schema):
    id: int
    job_id: int
    status: Literal[tuple(Bundle.Status.values)]
    error: str = Field(description="Why it failed, in one sentence; empty otherwise.")
    name: str = Field(description="The bundle's name: its volumes are NAME.001, NAME.002...")
    folder: str = Field(description="Where on the server its volumes and signed index are.")
    volume_size: int
    encrypted: bool
    volumes: int
    bytes: int
    created_at: str | None
    finished_at: str | None


@api.get(
    "/jobs/{int:job_id}/bundles/",
    response=answers({200: list[BundleOut]}, 404),
    url_name="job_bundles",
    operation_id="listJobBundles",
    summary="A job's bundles",
    tags=["transfer"],
)
def job_bundles(request, job_id: Id):
    """The bundles made of the job's export, newest first."""
    return [b.as_dict() for b in _visible_job(request, job_id).bundles.all()]


@api.post(
    "/jobs/{int:job_id}/bundles/",
    response=answers({202: BundleOut}, 400, 403, 404, 409),
    url_name="job_bundle_create",
    operation_id="createJobBundle",
    summary="Prepare a transfer of a job's export",
    tags=["transfer"],
)
def create_job_bundle(request, job_id: Id, payload: BundleIn):
    """Queue a bundle of the finished job's export: numbered volumes of at most
    `volume_size` bytes and a signed index, optionally encrypted to the far side's age
    recipient, written under the server's bundle root; 409 while the job has no finished
    export. Poll the job's bundles until its `status` is done or failed."""
    if not roles.is_operator(request.user):
        raise ApiError(403, "permission_denied", "Your role cannot prepare transfers.")
    job = _visible_job(request, job_id)
    try:
        bundle = create_bundle(request.user, job, payload.volume_size, payload.encrypt_to)
    except BundleRefused as error:
        raise ApiError(400, "invalid_input", str(error), field=error.field) from None
    except JobStateError as error:
        raise ApiError(409, "invalid_state", str(error)) from None
    start_bundle(bundle)
    return Status(202, bundle.as_dict())


class ReceiptOut(Schema):
    id: int
    bundle: str
    folder: str = Field(description="The received export's folder: load it from there.")
    manifest_sha256: str
    job_id: int | None = Field(description="The job on the exporting side.")
    signed_by: str
    volumes: int
    bytes: int
    encrypted: bool
    tables: int
    rows: int
    received_at: str


@api.get(
    "/receipts/",
    response=answers({200: list[ReceiptOut]}),
    url_name="receipts",
    operation_id="listReceipts",
    summary="Exports received across the gap",
    tags=["transfer"],
)
def receipts(request):
    """What `manage.py adu_receive` received on this instance, newest first (at most 500)."""
    return [
        {
            **{f: getattr(r, f) for f in ReceiptOut.model_fields if f != "received_at"},
            "received_at": r.received_at.isoformat(),
        }
        for r in Receipt.objects.all()[:500]
    ]


# Plans ---------------------------------------------------------------------------------


class NotifyIn(Schema):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["email", "webhook"]
    address: str = Field(
        max_length=500, description="An e-mail address, or the webhook's http(s) URL."
    )
    when: Literal[tuple(Notification.When.values)] = Field(
        "problems",
        description="failure: when a job fails; problems: also with errors or warnings; "
        "always: when a job ends.",
    )


class WatermarkIn(Schema):
    model_config = ConfigDict(extra="forbid")
    column: Name
    lag: str = Field(
        "0",
        pattern=rf"^{plan_models.LAG}$",
        description="A number for numbers (0, 100); a duration for dates and timestamps ('5 minutes').",
    )


class PlanIn(ExportIn):
    name: str = Field(pattern=rf"^{plan_models.NAME}$", description="The plan's name.")
    cron: str = Field(
        "",
        max_length=100,
        description="When, as cron ('0 2 * * *': 02:00 daily); or `every_minutes`.",
    )
    every_minutes: int | None = Field(None, ge=1, le=60 * 24 * 366)
    timezone: str = Field("UTC", max_length=64, description="The cron's time zone.")
    folder_pattern: str = Field(
        DEFAULT_PATTERN,
        max_length=200,
        description="Each run's folder under the export root: text with {plan}, {date}, {time}, {run}.",
    )
    incremental: list[Annotated[str, StringConstraints(pattern=rf"^(\*|{QUALIFIED[1:-1]})$")]] = (
        Field(
            [],
            max_length=MAX_TABLES,
            description="SCHEMA.TABLE names (or '*') exported by their changes since the plan's "
            "last export (PostgreSQL: by the transaction that wrote each row).",
        )
    )
    watermarks: dict[Qualified, WatermarkIn] = Field(
        {},
        max_length=MAX_TABLES,
        description="Per SCHEMA.TABLE: exported by a column that only grows (an id, a "
        "timestamp), up to its highest value less `lag`, instead of by xmin.",
    )
    paused: StrictBool = False
    notify: list[NotifyIn] = Field([], max_length=20)


class PlanRunOut(Schema):
    at: str
    trigger: str
    outcome: Literal[tuple(PlanRun.Outcome.values)]
    job_id: int | None
    note: str = Field(description="Why it was skipped or could not start; empty otherwise.")


class PlanOut(Schema):
    id: int
    name: str
    connection: int
    cron: str
    every_minutes: int | None
    timezone: str
    paused: bool
    next_run_at: str | None
    folder_pattern: str
    incremental: list[str]
    watermarks: dict[str, dict[str, str]]
    definition: dict[str, Any]
    notify: list[NotifyIn] = Field(
        description="Who hears of its jobs' ends (never the webhook's secret)."
    )
    history: list[PlanRunOut] = Field(description="Its last 20 runs, newest first.")


class PlanCreated(PlanOut):
    webhook_secrets: dict[str, str] = Field(
        description="Each webhook's HMAC-SHA-256 key, shown only in this answer: each POST "
        "carries X-ADU-Signature: sha256=<hex of the body's HMAC with it>."
    )


PLAN_FIELDS = ("id", "name", "cron", "every_minutes", "timezone", "paused", "folder_pattern")
PLAN_FIELDS += ("incremental", "watermarks", "definition")


def _plan_data(plan: ExportPlan) -> dict:
    return {
        **{f: getattr(plan, f) for f in PLAN_FIELDS},
        "connection": plan.connection_id,
        "next_run_at": plan.next_run_at.isoformat() if plan.next_run_at else None,
        "notify": [
            {"channel": n.channel, "address": n.address, "when": n.when}
            for n in plan.notifications.all()
        ],
        "history": [_run_data(r) for r in plan.runs.all()[:20]],
    }


def _run_data(run: PlanRun) -> dict:
    return {
        "at": run.at.isoformat(),
        "trigger": run.trigger,
        "outcome": run.outcome,
        "job_id": run.job_id,
        "note": run.note,
    }


def _plan(request, plan_id: int, change: bool = False) -> ExportPlan:
    plans = ExportPlan.objects.visible_to(request.user)
    plan = plans.filter(pk=plan_id).first()
    if plan is None:
        raise _not_found_error("plan", plan_id)
    if change and not ExportPlan.objects.actionable_by(request.user).filter(pk=plan_id).exists():
        raise ApiError(403, "permission_denied", "Your role cannot run or change this plan.")
    return plan


@api.get(
    "/plans/",
    response=answers({200: list[PlanOut]}),
    url_name="plans",
    operation_id="listPlans",
    summary="Export plans",
    tags=["plans"],
)
def plans(request):
    """The plans the caller may see, by name (at most 500)."""
    return [_plan_data(p) for p in ExportPlan.objects.visible_to(request.user)[:500]]


@api.post(
    "/plans/",
    response=answers({201: PlanCreated}, 400, 403, 404),
    url_name="plan_create",
    operation_id="createPlan",
    summary="Save an export plan",
    tags=["plans"],
)
def create_plan(request, payload: PlanIn):
    """Save a plan: what to export (as a job's body, without `out`), when (`cron` in
    `timezone`, or `every_minutes`), and who hears of its jobs' ends. The task cluster runs
    it when due; a run never overlaps the one before."""
    if not roles.is_operator(request.user):
        raise ApiError(403, "permission_denied", "Your role cannot save plans.")
    connection = Connection.objects.usable_by(request.user).filter(pk=payload.connection).first()
    if connection is None:
        raise _not_found_error("connection", payload.connection, field="connection")
    notify = [
        (n.channel, n.address, secrets.token_urlsafe(32) if n.channel == "webhook" else "")
        for n in payload.notify
    ]
    try:
        plan = ExportPlan.create(
            name=payload.name,
            owner=request.user,
            connection=connection,
            definition=payload.definition(),
            incremental=payload.incremental,
            watermarks={name: mark.model_dump() for name, mark in payload.watermarks.items()},
            folder_pattern=payload.folder_pattern,
            cron=payload.cron,
            every_minutes=payload.every_minutes,
            timezone=payload.timezone,
            paused=payload.paused,
            notify=notify,
            notify_on=payload.notify[0].when if payload.notify else None,
        )
    except PlanRefused as error:
        raise ApiError(400, "invalid_input", str(error), field=error.field) from None
    created = {**_plan_data(plan), "webhook_secrets": {a: s for c, a, s in notify if s}}
    return Status(201, created)


@api.get(
    "/plans/{int:plan_id}/",
    response=answers({200: PlanOut}, 404),
    url_name="plan",
    operation_id="getPlan",
    summary="An export plan and its history",
    tags=["plans"],
)
def plan(request, plan_id: Id):
    return _plan_data(_plan(request, plan_id))


@api.post(
    "/plans/{int:plan_id}/run/",
    response=answers({202: PlanRunOut}, 400, 403, 404, 409),
    url_name="plan_run",
    operation_id="runPlan",
    summary="Run an export plan now",
    tags=["plans"],
)
def run_plan(request, plan_id: Id):
    """Start a job of the plan now; 409 while its last job is still at work (the skipped
    run is recorded), 400 if the job cannot start (its sentence says why)."""
    from plans import runs

    run = runs.run_plan(_plan(request, plan_id, change=True), trigger="manual", by=request.user)
    if run.outcome == PlanRun.Outcome.SKIPPED:
        raise ApiError(409, "invalid_state", run.note)
    if run.outcome == PlanRun.Outcome.REFUSED:
        raise ApiError(400, "invalid_input", run.note)
    return Status(202, _run_data(run))


@api.post(
    "/plans/{int:plan_id}/{action}/",
    response=answers({200: PlanOut}, 403, 404),
    url_name="plan_pause",
    operation_id="pauseOrResumePlan",
    summary="Pause or resume an export plan",
    tags=["plans"],
)
def pause_plan(request, plan_id: Id, action: Literal["pause", "resume"]):
    plan = _plan(request, plan_id, change=True)
    plan.set_paused(action == "pause", by=request.user)
    return _plan_data(plan)


@api.delete(
    "/plans/{int:plan_id}/",
    response=answers({204: None}, 403, 404),
    url_name="plan_delete",
    operation_id="deletePlan",
    summary="Remove an export plan",
    tags=["plans"],
)
def delete_plan(request, plan_id: Id):
    """Remove the plan, its schedule and its history; its jobs stay."""
    _plan(request, plan_id, change=True).remove(by=request.user)
    return Status(204, None)


@api.get(
    "/jobs/{int:job_id}/manifest/",
    response=answers({200: dict[str, Any]}, 404),
    url_name="job_manifest",
    operation_id="getJobManifest",
    summary="A job's manifest",
    tags=["jobs"],
)
def manifest(request, job_id: Id):
    """The job's manifest.json, as written next to its files (404 until the job finishes)."""
    job = _visible_job(request, job_id)
    try:
        path = job.file_path(MANIFEST)
    except NoSuchFile:
        raise ApiError(
            404, "not_found", f"Job {job.pk} has no manifest yet: it has not finished."
        ) from None
    record(AuditEvent.Action.FILE_DOWNLOAD, obj=job, path=MANIFEST, bytes=path.stat().st_size)
    return FileResponse(open(path, "rb"), content_type="application/json")


@api.get(
    "/jobs/{int:job_id}/files/{path:path}",
    response=answers({200: None}, 404),
    url_name="job_file",
    operation_id="downloadJobFile",
    summary="Download a file of a job",
    tags=["jobs"],
    openapi_extra={
        "responses": {
            200: {
                "description": "The file, streamed.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        }
    },
)
def download(request, job_id: Id, path: str):
    """A file the job lists (a table's Parquet file or part, by the `path` of its `files`, or
    manifest.json once finished), streamed; any other path is a 404."""
    job = _visible_job(request, job_id)
    try:
        full = job.file_path(path)  # listed by the job, and inside its folder
    except NoSuchFile:
        raise ApiError(404, "not_found", f"Job {job.pk} has no file {path[:200]!r}.") from None
    record(AuditEvent.Action.FILE_DOWNLOAD, obj=job, path=path, bytes=full.stat().st_size)
    return FileResponse(
        open(full, "rb"),
        as_attachment=True,
        filename=full.name,
        content_type="application/octet-stream",
    )


# Loads --------------------------------------------------------------------------------

LoadStatus = Literal[tuple(Load.Status.values)]
IfExists = Literal[tuple(Load.IfExists.values)]
Fingerprint = Annotated[
    dict[str, Any],
    Field(
        description="{rows, digest} of the table's content (loads.fingerprint); {} when none "
        "was taken ({skipped: why} for a source the export could not fingerprint)."
    ),
]


class LoadCounts(Schema):
    """What every page and command shows of a load (Load.counts)."""

    tables_total: int
    tables_done: int = Field(description="Tables verified, loaded or created.")
    tables_failed: int
    rows: int = Field(description="Rows loaded so far.")


class LoadSummary(LoadCounts):
    id: int
    url: str = Field(description="This load in the API.")
    status: LoadStatus
    target: int = Field(description="The target connection's id.")
    target_name: str
    owner: str
    folder: str = Field(description="The export's folder on the server.")
    source_job_id: int | None = Field(description="The export job, by its manifest.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class LoadPage(Schema):
    count: int = Field(description="Loads that match, on all pages.")
    page: int
    pages: int
    next: str | None = Field(description="URL of the next page, or null.")
    previous: str | None = Field(description="URL of the previous page, or null.")
    results: list[LoadSummary]


class LoadFilters(Schema):
    status: LoadStatus | None = Field(None, description="Only loads in this state.")
    target: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only loads into this connection id."
    )
    since: Day | None = Field(None, description="Created on or after this day (YYYY-MM-DD).")
    until: Day | None = Field(None, description="Created on or before this day (YYYY-MM-DD).")
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(PAGE_SIZE, ge=1, le=100)


class TableLoadOut(Schema):
    schema_: str = Field(alias="schema", description="At the source, as in the manifest.")
    table: str
    target: str = Field(description="SCHEMA.TABLE in the target.")
    status: Literal[tuple(TableLoad.Status.values)]
    rows: int
    file_fingerprint: Fingerprint
    target_fingerprint: Fingerprint
    source_fingerprint: Fingerprint
    error: str
    notes: list[str] = Field(description="What of the table was left out of the target, and why.")


class LoadDetail(Schema):
    """The object of `manage.py adu_load --json`."""

    load_id: int
    status: LoadStatus
    folder: str = Field(description="The export's folder on the server.")
    target: str = Field(description="The target connection's name.")
    manifest_sha256: str = Field(description="What identifies the export, whatever its folder.")
    source_job_id: int | None
    error: str = Field(description="Why the whole load failed, or empty.")
    tables: list[TableLoadOut]


class LoadIn(Schema):
    model_config = ConfigDict(extra="forbid")
    folder: ServerPath = Field(
        description="The export's folder on the server (the one holding manifest.json): "
        "under the receive root, or the folder of an export job you may see under the "
        "export root."
    )
    target: int = Field(
        ge=1,
        le=MAX_ID,
        description="The id of a connection marked as a load target (GET /connections/).",
    )
    tables: list[Qualified] = Field(
        [],
        max_length=MAX_TABLES,
        description="Only these SCHEMA.TABLE of the export (default: all).",
    )
    schema_map: dict[Name, Name] = Field(
        {},
        max_length=1000,
        description="Source schema: target schema; the tables of the one go into the other.",
    )
    if_exists: IfExists = Field(
        Load.IfExists.FAIL.value,
        description="A table already in the target: fail, replace it, or append to it. An "
        "export that put one of these tables there before is refused unless replace or append.",
    )
    parallel: int = Field(2, ge=1, le=32, description="Tables loaded at once.")
    create_only: StrictBool = Field(False, description="Create the tables and their keys, empty.")


def _load_url(request, pk: int) -> str:
    return request.build_absolute_uri(reverse(f"{NAMESPACE}:load", kwargs={"load_id": pk}))


def _load_summary(request, load: Load) -> dict:
    return {
        "id": load.pk,
        "url": _load_url(request, load.pk),
        "status": load.status,
        "target": load.target_id,
        "target_name": load.target.name,
        "owner": load.owner.get_username(),
        "folder": load.folder,
        "source_job_id": load.source_job_id,
        "created_at": load.created_at,
        "started_at": load.started_at,
        "finished_at": load.finished_at,
        **load.counts(),
    }


def _load_of(request, load_id: int, act: bool = False) -> Load:
    try:
        return Load.objects.for_user(request.user, load_id, act=act)
    except LookupError as error:
        raise ApiError(404, "not_found", str(error)) from None


@api.get(
    "/loads/",
    response=answers({200: LoadPage}),
    url_name="loads",
    operation_id="listLoads",
    summary="The load history",
    tags=["loads"],
)
def list_loads(request, filters: Query[LoadFilters]):
    """The loads you may see (yours, and those into targets shared with one of your
    groups), newest first, filtered and paginated."""
    loads: QuerySet = Load.objects.visible_to(request.user).select_related("target", "owner")
    if filters.status:
        loads = loads.filter(status=filters.status)
    if filters.target:
        loads = loads.filter(target_id=filters.target)
    return _page(request, loads, filters, lambda load: _load_summary(request, load))


@api.post(
    "/loads/",
    response=answers({201: LoadDetail}, 403, 404),
    url_name="load_create",
    operation_id="createLoad",
    summary="Load an export into a target",
    tags=["loads"],
    by_alias=True,
)
def create_a_load(request, response: HttpResponse, payload: LoadIn):
    """Load an export's folder into a connection marked as a load target: the manifest is
    checked and the load queued. Answers 201 with the load (its URL in `Location`); poll
    it until `status` is finished. Each table commits only when a fingerprint of its rows
    in the target equals its file's."""
    user = request.user
    if not roles.is_operator(user):
        raise ApiError(403, "permission_denied", "Your role cannot start loads.")
    target = Connection.objects.usable_by(user).filter(pk=payload.target).first()
    if target is None:
        raise _not_found_error("connection", payload.target, field="target")
    try:
        load = create_load(
            user,
            payload.folder,
            target,
            tables=payload.tables,
            schema_map=payload.schema_map,
            if_exists=payload.if_exists,
            parallel=payload.parallel,
            create_only=payload.create_only,
        )
    except BadRequest as error:  # a folder ADU may not read among them: create_load says
        raise ApiError(400, "invalid_input", str(error), field=error.field) from None
    start_load(load)
    response["Location"] = _load_url(request, load.pk)
    return Status(201, load_data(load))


@api.get(
    "/loads/{int:load_id}/",
    response=answers({200: LoadDetail}, 404),
    url_name="load",
    operation_id="getLoad",
    summary="One load with its tables",
    tags=["loads"],
    by_alias=True,
)
def get_load(request, load_id: Id):
    """One load with its tables and their fingerprints (file, target and source): the
    object of `manage.py adu_load --json`."""
    return load_data(_load_of(request, load_id))


@api.post(
    "/loads/{int:load_id}/cancel/",
    response=answers({202: LoadDetail}, 403, 404, 409),
    url_name="load_cancel",
    operation_id="cancelLoad",
    summary="Cancel a load",
    tags=["loads"],
    by_alias=True,
)
def cancel_a_load(request, load_id: Id):
    """Cancel a queued or running load (yours, or any for an ADU Admin): a queued one ends
    now, a running one once its tables notice, each leaving nothing it had not committed;
    409 once it has ended."""
    load = _load_of(request, load_id, act=True)
    if load.status in Load.FINISHED:
        raise ApiError(
            409,
            "invalid_state",
            f"Load {load.pk} has already ended ({load.status}): there is nothing to cancel.",
        )
    return Status(202, load_data(cancel_load(load, by=request.user)))


# Connections --------------------------------------------------------------------------


class ConnectionOut(Schema):
    id: int
    name: str
    kind: Literal[tuple(Connection.Kind.values)]
    owner: str
    shared_with: list[str] = Field(description="Groups it is shared with.")
    can_edit: bool = Field(description="You may change it (then you see where it points).")
    can_export: bool = Field(description="You may start jobs and discover tables on it.")
    host: str | None = Field(description="Only for those who may edit it; else null.")
    port: int | None
    database: str | None
    username: str | None
    sslmode: str | None


class TableOut(Schema):
    schema_: str = Field(alias="schema")
    name: str
    kind: str = Field(
        description="table, view, materialized view, partitioned table, foreign table or external table"
    )
    rows_estimate: int | None
    bytes: int | None


@api.get(
    "/connections/",
    response=answers({200: list[ConnectionOut]}),
    url_name="connections",
    operation_id="listConnections",
    summary="The connections you may see",
    tags=["connections"],
)
def list_connections(request):
    """The connections you may see, as on the Connections page: never a password or a CA
    certificate, and where one points only if you may edit it."""
    user = request.user
    editable = set(Connection.objects.editable_by(user).values_list("pk", flat=True))
    usable = set(Connection.objects.usable_by(user).values_list("pk", flat=True))
    connections = (
        Connection.objects.visible_to(user).select_related("owner").prefetch_related("shared_with")
    )
    result = []
    for c in connections:
        mine = c.pk in editable
        result.append(
            {
                "id": c.pk,
                "name": c.name,
                "kind": c.kind,
                "owner": c.owner.get_username(),
                "shared_with": [g.name for g in c.shared_with.all()],
                "can_edit": mine,
                "can_export": c.pk in usable,
                "host": c.host if mine else None,
                "port": c.port if mine else None,
                "database": c.database if mine else None,
                "username": c.username if mine else None,
                "sslmode": c.sslmode if mine else None,
            }
        )
    return result


def _usable_connection(request, connection_id: int) -> Connection:
    connection = Connection.objects.usable_by(request.user).filter(pk=connection_id).first()
    if connection is None:
        raise _not_found_error("connection", connection_id)
    return connection


@api.get(
    "/connections/{int:connection_id}/schemas/",
    response=answers({200: list[str]}, 404, 502),
    url_name="connection_schemas",
    operation_id="listSchemas",
    summary="A connection's schemas",
    tags=["connections"],
)
def schemas(request, connection_id: Id):
    """The schemas of a connection you may export from, system schemas left out."""
    connection = _usable_connection(request, connection_id)
    try:
        return connection.list_schemas(request.user)
    except ConnectionFailed as error:
        raise ApiError(502, "source_unavailable", str(error)) from None


@api.get(
    "/connections/{int:connection_id}/tables/",
    response=answers({200: list[TableOut]}, 404, 502),
    url_name="connection_tables",
    operation_id="listTables",
    summary="A connection's tables",
    tags=["connections"],
    by_alias=True,
)
def tables(
    request,
    connection_id: Id,
    # Named schema_ in Python: pydantic models already have a `schema` attribute.
    schema_: Annotated[
        Name | None, Query(alias="schema", description="Only this schema's tables.")
    ] = None,
):
    """The tables and views of a connection you may export from (of one schema, or all),
    with estimated rows and size."""
    connection = _usable_connection(request, connection_id)
    try:
        found = connection.discover(request.user, schema_)
    except ConnectionFailed as error:
        raise ApiError(502, "source_unavailable", str(error)) from None
    return [
        {
            "schema": t.schema,
            "name": t.name,
            "kind": t.kind,
            "rows_estimate": t.rows_estimate,
            "bytes": t.bytes,
        }
        for t in found
    ]
