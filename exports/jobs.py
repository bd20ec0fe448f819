"""Creating an export job: what to export is resolved and checked against the source and
the user's rights, then recorded as a queued job with its tables (exports.engine.run runs it)."""

import re
from pathlib import Path

from django.conf import settings

from accounts import roles
from audit.models import AuditEvent, record
from connections.models import Connection
from exports import options as export_options
from exports.models import ExportJob, FolderRefused, explain_os_error, reserved_folder_name
from exports.selection import BadRequest, resolve


def create_job(
    owner,
    connection,
    schemas=(),
    tables=(),
    exclude=(),
    options: dict | None = None,
    out: str = "",
    selections: dict | None = None,
    queries=(),
    allow_sensitive=(),
) -> ExportJob:
    """Resolve what to export and record the job with its queued tables (nothing runs yet).

    With no tables named, every table of the chosen schemas (default: all non-system
    schemas); `queries` adds saved queries. A named table that does not exist still gets
    its TableRun, which then fails with a clear message, so the other tables go on.
    `selections` ({(schema, table): {"columns", "exclude", "filter", "masks"}}) and the
    connection's sensitive-column policies are checked against the source first (see
    exports.selection); `allow_sensitive` ("s.t.c" or "*") is for ADU Admins only.
    """
    if not Connection.objects.usable_by(owner).filter(pk=connection.pk).exists():
        raise BadRequest(f"There is no connection named '{connection.name}'.", "connection")
    try:
        options = export_options.checked(options).model_dump()
    except export_options.BadOption as error:
        raise BadRequest(str(error), error.field) from None
    if options["masking_key"] == "site" and not roles.is_admin(owner):
        raise BadRequest(
            "Only an ADU Admin may hash with the site's key (tokens that match across "
            "connections); use 'connection' or 'job'.",
            "options.masking_key",
        )
    if out:
        if not re.fullmatch(export_options.FOLDER_NAME, out):
            raise BadRequest(
                f"'{out}' is not a folder name: use letters, digits, '_', '-' and '.', "
                "starting with a letter or digit.",
                "out",
            )
        if reserved_folder_name(out):
            raise BadRequest(
                f"'{out}': names of the form job-<number> are reserved for jobs without a "
                "folder name; choose another name.",
                "out",
            )
        root = Path(settings.EXPORT_ROOT).resolve()
        folder = root / out
        if folder.is_symlink() or not folder.resolve().is_relative_to(root):
            raise BadRequest(f"'{out}' leads outside the export root: choose another name.", "out")
        # One folder, one job: an existing folder (even empty) is never shared.
        if folder.exists():
            raise BadRequest(
                f"The folder '{out}' already exists under the export root; choose another name.",
                "out",
            )
    chosen = [_split_name(name) for name in tables]
    if not chosen and not queries:
        found = []
        for schema in schemas or [None]:
            found += connection.driver().tables(connection, schema, sizes=False)
        chosen = [(t.schema, t.name) for t in found if t.kind != "external table"]
        if schemas and not chosen:
            raise BadRequest(f"No tables found in schema(s) {', '.join(schemas)}.", "schemas")
    excluded = {_split_name(name) for name in exclude}
    chosen = list(dict.fromkeys(t for t in chosen if t not in excluded))
    if not chosen and not queries:
        raise BadRequest("There is nothing to export: no table was selected.")
    chosen, specs = resolve(owner, connection, chosen, selections or {}, queries, allow_sensitive)
    try:
        job = ExportJob.create_with_tables(owner, connection, chosen, options, out, specs)
    except FolderRefused as error:
        raise BadRequest(str(error), "out") from None
    except OSError as error:  # the export root cannot take the job's folder
        raise BadRequest(explain_os_error(error), "out") from None
    allowed = {
        f"{schema}.{table}.{column}": note
        for (schema, table), spec in specs.items()
        for column, note in spec.get("sensitive", {}).items()
        if "allowed" in note  # unmasked, or read by a filter or query
    }
    record(
        AuditEvent.Action.JOB_CREATE,
        user=owner,
        obj=job,
        tables=len(chosen),
        # What leaves, table by table: columns, filter, masks, query, policies applied
        # (each table's spec as its TableRun got it, in the job's order of tables).
        selection=[
            {"table": f"{schema}.{table}", **specs.get((schema, table), {})}
            for schema, table in sorted(chosen)
        ],
        options=options,
        **({"sensitive_allowed_unmasked": sorted(allowed)} if allowed else {}),
    )
    return job


def job_arguments(connection, definition: dict) -> dict:
    """create_job's arguments (after owner and connection) from an export's definition as
    stored and typed: {"schemas", "tables", "exclude", "options", "selections": {"s.t":
    request}, "queries": [names], "allow_sensitive"} (exports.cli, plans)."""
    queries = []
    for name in definition.get("queries", []):
        query = connection.queries.filter(name=name).first()
        if query is None:
            raise BadRequest(
                f"Connection '{connection.name}' has no saved query '{name}'.", "queries"
            )
        queries.append(query)
    return {
        "schemas": definition.get("schemas", []),
        "tables": definition.get("tables", []),
        "exclude": definition.get("exclude", []),
        "options": definition.get("options", {}),
        "selections": {
            _split_name(name): request for name, request in definition.get("selections", {}).items()
        },
        "queries": queries,
        "allow_sensitive": definition.get("allow_sensitive", []),
    }


def _split_name(name: str) -> tuple[str, str]:
    schema, dot, table = name.strip().partition(".")
    if not dot or not schema or not table:
        raise BadRequest(f"'{name}' is not SCHEMA.TABLE.")
    return schema, table
