"""What of each table may leave: columns, a row filter, masking, saved queries, and the
connection's sensitive-column policies. Checked against the source before a job exists.

A request per table, as the portal, the commands and the API give it:
    {"columns": [...], "exclude": [...], "filter": "SQL condition", "masks": {column: spec}}
becomes the TableRun's `spec`: the columns that leave (empty: all), the filter, the masks
(policies included) and, under "sensitive", what each policy did and who allowed what.
"""

from accounts import roles
from connections.drivers import BadSelection
from connections.models import ConnectionFailed, SensitiveColumn, policy_for
from exports.engine import masking

QUERY_SCHEMA = "queries"  # TableRuns of saved queries: queries.<name>


class BadRequest(Exception):
    """The export asked for cannot start; the message says what to change, and `field`
    which input it is about (as the API names it: "out", "options.parallel"...). Raised
    by the checks here and by exports.jobs.create_job."""

    def __init__(self, message: str, field: str = "tables"):
        super().__init__(message)
        self.field = field


def resolve(owner, connection, tables, requests: dict, queries=(), allow_sensitive=()):
    """(tables, specs): `tables` plus the saved queries as ("queries", name), and the spec
    of each (schema, table) that has one. BadRequest if anything is wrong."""
    policies = list(SensitiveColumn.objects.filter(connection=connection))
    allowed = set(allow_sensitive)
    if allowed and not roles.is_admin(owner):
        raise BadRequest(
            "Only an ADU Admin may allow sensitive columns to leave unmasked.", "allow_sensitive"
        )
    unknown = set(requests) - set(tables)
    if unknown:
        schema, table = sorted(unknown)[0]
        raise BadRequest(
            f"Columns or a filter were given for {schema}.{table}, which is not exported.",
            "selections",
        )
    names = {(QUERY_SCHEMA, q.name) for q in queries}
    if names & set(tables):
        raise BadRequest(
            f"A table {QUERY_SCHEMA}.{sorted(names & set(tables))[0][1]} and a saved query "
            "have the same name; export one of them in another job.",
            "queries",
        )
    driver = connection.driver()
    needs_source = bool(queries or policies or requests)
    try:
        db = driver.connect(connection)
    except ConnectionFailed as error:
        if needs_source:
            raise BadRequest(str(error), "selections") from None
        return list(tables), {}  # each table then fails in its own run
    try:
        # A view is held to the policies of what it reads, and runs only safe functions.
        views = driver.views(db, tables)
        family = driver.relatives(db, tables)
        work = [
            (t, requests.get(t, {}), None)
            for t in tables
            if t in requests or t in views or policies
        ]
        work += [((QUERY_SCHEMA, q.name), {}, q.sql) for q in queries]
        specs = {}
        for name, request, query in work:
            specs[name] = _spec(
                driver, db, name, request, query, policies, allowed, owner,
                view=views.get(name), relatives=family.get(name, []),
            )  # fmt: skip
    finally:
        db.close()
    return list(tables) + [(QUERY_SCHEMA, q.name) for q in queries], specs


def recheck(job) -> dict:
    """{TableRun: refusal} for the job's queued saved queries and views that no longer
    pass the checks of `resolve` (a view may be redefined between the job's creation and
    its run); the others are as they were."""
    runs = list(job.tables.filter(status="queued"))
    if not runs:
        return {}
    policies = list(SensitiveColumn.objects.filter(connection=job.connection))
    driver = job.connection.driver()
    try:
        db = driver.connect(job.connection)
    except ConnectionFailed:
        return {}  # each table fails to connect in its own run, with this sentence
    refused = {}
    try:
        views = driver.views(db, [(r.schema, r.table) for r in runs])
        for run in runs:
            spec = run.spec or {}
            query = spec.get("query")
            name = (run.schema, run.table)
            if not query and name not in views:
                continue
            label = f"query '{run.table}'" if query else f"{run.schema}.{run.table}"
            try:
                reads = (
                    driver.check_query(db, query).reads
                    if query
                    else _check_relation(driver, db, run.schema, run.table, views[name])
                )
                _hold_reads(label, reads, policies, spec.get("sensitive", {}), job.owner)
            except (BadSelection, BadRequest) as error:
                refused[run] = (
                    f"{label}: {error}" if isinstance(error, BadSelection) else str(error)
                )
            finally:
                db.rollback()
    finally:
        db.close()
    return refused


def _check_relation(driver, db, schema, table, kind) -> frozenset:
    """What a relation read as a table reads of other tables, for the policies: a view's
    columns are other tables' ("view"); a table under row security has its policies'
    code checked, and its columns are its own ("table"); nothing to check (None)."""
    if kind is None:
        return frozenset()
    checked = driver.check_view(db, schema, table)
    return checked.reads if kind == "view" else frozenset()


def _hold_reads(label, reads, policies, allowed, owner) -> dict:
    """{"s.t.c": note} of the sensitive table columns a query or view reads, whatever it
    names them; refused unless each is in `allowed` ("s.t.c", "*", or the notes of an
    earlier check)."""
    what = "query" if label.startswith("query") else "view"
    notes = {}
    for read in sorted(reads):
        policy = policy_for(policies, *read)
        if policy is None:
            continue
        key = ".".join(read)
        if "*" not in allowed and key not in allowed:
            raise BadRequest(
                f"The {label} reads {key}, which is sensitive ({policy.pattern}); "
                "only an ADU Admin may allow that for a job (allow_sensitive).",
                "queries" if what == "query" else "selections",
            )
        notes[key] = (
            f"sensitive ({policy.pattern}): read by the {what}, allowed by {owner.username}"
        )
    return notes


# How strong each way of withholding a column is: a mask or choice on a column under a
# sensitive-column policy must be at least as strong as the policy's own action.
STRENGTH = {"exclude": 4, "null": 3, "redact": 2, "hash": 1, "truncate": 0}
STRENGTH_ORDER = "leave out > null > redact > hash > truncate"


def _spec(driver, db, name, request, query, policies, allowed, owner, view, relatives) -> dict:
    schema, table = name
    label = f"query '{table}'" if query else f"{schema}.{table}"

    def policy_of(schema, table, column):
        return policy_for(policies, schema, table, column, relatives)

    def is_allowed(schema, table, column):
        return "*" in allowed or f"{schema}.{table}.{column}" in allowed

    try:
        if query:
            reads = driver.check_query(db, query).reads
            columns = driver.query_columns(db, query)
        else:
            reads = _check_relation(driver, db, schema, table, view)
            columns = driver.columns(db, schema, table)
    except BadSelection as error:
        raise BadRequest(f"{label}: {error}", "queries" if query else "selections") from None
    except ConnectionFailed as error:
        if not request and not query:
            return {}  # a missing table fails in its own run, with the others going on
        raise BadRequest(str(error), "queries" if query else "selections") from None
    finally:
        db.rollback()
    sensitive = _hold_reads(label, reads, policies, allowed, owner)
    types = {c.name: driver.plan(c).arrow_type for c in columns}
    include, exclude = request.get("columns") or [], request.get("exclude") or []
    missing = [c for c in [*include, *exclude] if c not in types]
    if missing:
        raise BadRequest(f"{label} has no column {', '.join(missing)}.", "selections")
    selected = [
        c.name for c in columns if (not include or c.name in include) and c.name not in exclude
    ]
    masks = dict(request.get("masks") or {})
    for column, mask in masks.items():
        if column not in selected:
            raise BadRequest(f"{label}: {column} is masked but not exported.", "selections")
        problem = masking.problem(mask, types[column])
        if problem:
            raise BadRequest(f"{label}, column {column}: {problem}", "selections")
    for column in list(selected):
        policy = policy_of(schema, table, column)
        if policy is None:
            continue
        if is_allowed(schema, table, column):
            sensitive[column] = (
                f"sensitive ({policy.pattern}): allowed unmasked by {owner.username}"
            )
        elif column in masks:
            method = masks[column]["method"]
            if STRENGTH[method] < STRENGTH[policy.action]:
                raise BadRequest(
                    f"{label}, column {column}: its policy ({policy.pattern}) asks for "
                    f"'{policy.action}', and a mask may only be as strong or stronger "
                    f"({STRENGTH_ORDER}).",
                    "selections",
                )
            sensitive[column] = f"sensitive ({policy.pattern}): masked ({method})"
        elif policy.action == SensitiveColumn.Action.EXCLUDE:
            selected.remove(column)
            sensitive[column] = f"sensitive ({policy.pattern}): left out"
        else:
            masks[column] = {"method": policy.action}
            sensitive[column] = f"sensitive ({policy.pattern}): masked ({policy.action})"
    if not selected:
        raise BadRequest(f"{label}: no column is left to export.", "selections")
    row_filter = (request.get("filter") or "").strip()
    if row_filter:
        if query:
            raise BadRequest(f"{label}: write the condition into the query itself.", "selections")
        try:
            checked_filter = driver.check_filter(db, schema, table, row_filter)
        except BadSelection as error:
            raise BadRequest(f"{label}: {error}", "selections") from None
        finally:
            db.rollback()
        # A filter that names a sensitive column tells its values row by row.
        for column in sorted(checked_filter.columns):
            policy = policy_of(schema, table, column)
            if policy is None:
                continue
            if not is_allowed(schema, table, column):
                raise BadRequest(
                    f"The filter of {label} reads {column}, which is sensitive "
                    f"({policy.pattern}); only an ADU Admin may allow that for a job "
                    "(allow_sensitive).",
                    "selections",
                )
            sensitive.setdefault(
                column,
                f"sensitive ({policy.pattern}): read by the filter, allowed by {owner.username}",
            )
        row_filter = checked_filter.sql
    spec = {
        "columns": selected if len(selected) < len(columns) else [],
        "filter": row_filter,
        "masks": masks,
        "sensitive": sensitive,
    }
    if query:
        spec["query"] = query
    return {key: value for key, value in spec.items() if value}


def parse_requests(columns=(), exclude_columns=(), filters=(), masks=()) -> dict:
    """The per-table requests of command-line options:
    --columns s.t:a,b  --exclude-columns s.t:c  --where "s.t:condition"
    --mask s.t:column=method[:precision]"""
    requests: dict = {}

    def table_of(text: str, option: str):
        name, colon, rest = text.partition(":")
        schema, dot, table = name.strip().partition(".")
        if not colon or not dot or not schema or not table or not rest.strip():
            raise BadRequest(f"{option} takes SCHEMA.TABLE:..., not '{text}'.", "selections")
        return requests.setdefault((schema, table), {}), rest.strip()

    for text in columns:
        request, rest = table_of(text, "--columns")
        request.setdefault("columns", []).extend(c.strip() for c in rest.split(",") if c.strip())
    for text in exclude_columns:
        request, rest = table_of(text, "--exclude-columns")
        request.setdefault("exclude", []).extend(c.strip() for c in rest.split(",") if c.strip())
    for text in filters:
        request, rest = table_of(text, "--where")
        request["filter"] = rest
    for text in masks:
        request, rest = table_of(text, "--mask")
        column, equals, how = rest.partition("=")
        method, _, precision = how.partition(":")
        if not equals or not column.strip() or not method.strip():
            raise BadRequest(
                f"--mask takes SCHEMA.TABLE:COLUMN=METHOD, not '{text}'.", "selections"
            )
        mask = {"method": method.strip()}
        if precision.strip():
            try:
                mask["precision"] = int(precision)
            except ValueError:
                raise BadRequest(
                    f"The precision in '{text}' is not a whole number.", "selections"
                ) from None
        request.setdefault("masks", {})[column.strip()] = mask
    return requests
