"""Creating a load: the export's manifest read and the user's choices checked, then a
queued load recorded with its tables (loads.engine.run_load runs it)."""

import re
from pathlib import Path

from audit.models import AuditEvent, record
from connections.models import Connection
from exports.selection import BadRequest
from loads.models import Load, TableLoad

# A schema map, as the command and the API take it: "src=dst".
_MAPPING = re.compile(r"^([^=\s][^=]*)=([^=\s][^=]*)$")


def parse_schema_map(pairs) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        found = _MAPPING.match(pair.strip())
        if not found:
            raise BadRequest(f"--schema-map takes SOURCE=TARGET, not {pair!r}.", "schema_map")
        mapping[found[1].strip()] = found[2].strip()
    return mapping


def readable_folder(owner, folder) -> Path:
    """The folder, if a load by this user may read it: under the receive root (exports
    carried across the gap), or under the export root as an export job's folder that the
    user may see (an operator must not load another's export they cannot download)."""
    from django.conf import settings

    from exports.models import ExportJob

    try:
        given = Path(folder).expanduser()
        resolved = given.resolve()
    except (RuntimeError, OSError, ValueError):  # ~nobody, a name the system refuses
        raise BadRequest(f"{str(folder)[:200]} is not a folder ADU can read.", "folder") from None
    receive, exports = Path(settings.RECEIVE_ROOT), Path(settings.EXPORT_ROOT)
    if resolved.is_relative_to(receive) and resolved != receive:
        return resolved
    if resolved.is_relative_to(exports) and resolved != exports:
        name = resolved.relative_to(exports).parts[0]
        if ExportJob.objects.visible_to(owner).filter(output_dir=name).exists():
            return exports / name
        raise BadRequest(f"There is no export of yours in {given}.", "folder")
    raise BadRequest(
        f"{given} is not under the receive root ({receive}) or the export root ({exports}): "
        "a load reads an export from one of them.",
        "folder",
    )


def _not_loaded_before(manifest: dict, target: Connection, destinations: set[tuple[str, str]]):
    """BadRequest if a load of this export (its manifest's checksum) into this target,
    not failed or cancelled, put one of these tables there already: the same rows twice
    is a mistake unless asked for (--if-exists). The same export into other schemas or
    other tables of the target is another load."""
    earlier = (
        TableLoad.objects.filter(
            load__manifest_sha256=manifest["manifest_sha256"],
            load__target=target,
            status__in=TableLoad.DONE,
        )
        .exclude(load__status__in=[Load.Status.FAILED, Load.Status.CANCELLED])
        .select_related("load")
        .order_by("load__created_at")
    )
    for run in earlier:
        if (run.target_schema, run.table) in destinations:
            raise BadRequest(
                f"This export (job {manifest.get('job_id')}) was loaded into "
                f"'{target.name}' on {run.load.created_at:%Y-%m-%d %H:%M} UTC as load "
                f"{run.load.pk} ({run.load.status}, {run.target_schema}.{run.table} among "
                "its tables); choose --if-exists replace or append to load it again.",
                "folder",
            )


def _check_signer(folder: Path):
    """On an instance that trusts keys (ADU_TRUSTED_KEYS), an export loads only when one of
    them signed its manifest, unchanged since: as adu_receive and adu_verify require."""
    from django.conf import settings

    if not settings.TRUSTED_KEYS:
        return
    from exports.models import MANIFEST
    from transfer import keys, signing

    try:
        signing.check(folder / MANIFEST, keys.trusted_keys())
    except (keys.BadKey, signing.BadSignature) as error:
        raise BadRequest(str(error), "folder") from None


def create_load(owner, folder, target: Connection, tables=(), **options) -> Load:
    """Check the export and the user's choices and record the queued load; BadRequest with
    one sentence otherwise. The same export already loaded into the same target (by its
    manifest's checksum) is refused unless `if_exists` is replace or append."""
    from exports.verify import BadManifest, read_manifest  # pyarrow: not at a command's start

    if not Connection.objects.usable_by(owner).filter(pk=target.pk).exists():
        raise BadRequest(f"There is no connection named '{target.name}'.", "target")
    if not Connection.objects.editable_by(owner).filter(pk=target.pk).exists():
        # Reading a shared connection is not writing to it: a load changes the database.
        raise BadRequest(
            f"Connection '{target.name}' is shared with you to export from; only its owner "
            "or an ADU Admin may load into it.",
            "target",
        )
    if not target.is_target:
        raise BadRequest(
            f"Connection '{target.name}' is not marked as a load target: ADU writes only to a "
            "connection marked so (adu_connection ... --target, or its page).",
            "target",
        )
    if target.kind == Connection.Kind.VERTICA:
        raise BadRequest(
            "ADU loads into PostgreSQL and Greenplum; Vertica is not supported yet.", "target"
        )
    folder = readable_folder(owner, folder)
    try:
        manifest = read_manifest(folder)
    except BadManifest as error:
        raise BadRequest(str(error), "folder") from None
    except OSError as error:
        raise BadRequest(f"{folder} cannot be read: {error.strerror}.", "folder") from None
    _check_signer(folder)
    if_exists = options.get("if_exists") or Load.IfExists.FAIL
    if if_exists not in Load.IfExists.values:
        raise BadRequest(f"--if-exists is one of {', '.join(Load.IfExists.values)}.", "if_exists")
    exported = [(t["schema"], t["table"]) for t in manifest["tables"]]
    chosen = exported
    if tables:
        chosen = []
        for name in tables:
            schema, _, table = name.strip().partition(".")
            if (schema, table) not in exported:
                raise BadRequest(f"The export has no table {name.strip()}.", "tables")
            chosen.append((schema, table))
    schema_map = options.get("schema_map") or {}
    unknown = sorted(set(schema_map) - {s for s, _ in exported})
    if unknown:
        raise BadRequest(
            f"--schema-map names schema {unknown[0]}, which the export does not have.", "schema_map"
        )
    if if_exists == Load.IfExists.FAIL:
        _not_loaded_before(manifest, target, {(schema_map.get(s, s), t) for s, t in chosen})
    parallel = options.get("parallel")
    parallel = 2 if parallel is None else int(parallel)
    if not 1 <= parallel <= 32:
        raise BadRequest("--parallel is between 1 and 32.", "parallel")
    load = Load.objects.create(
        owner=owner,
        target=target,
        folder=str(folder),
        manifest_sha256=manifest["manifest_sha256"],
        source_job_id=manifest.get("job_id"),
        options={
            "schema_map": schema_map,
            "tables": [f"{s}.{t}" for s, t in chosen] if tables else [],
            "if_exists": if_exists,
            "parallel": parallel,
            "create_only": bool(options.get("create_only")),
        },
    )
    TableLoad.objects.bulk_create(
        TableLoad(load=load, schema=s, table=t, target_schema=schema_map.get(s, s))
        for s, t in dict.fromkeys(chosen)
    )
    record(
        AuditEvent.Action.LOAD_CREATE,
        user=owner,
        obj=load,
        folder=str(folder),
        manifest_sha256=load.manifest_sha256,
        source_job=load.source_job_id,
        target=target.name,
        tables=len(chosen),
        options=load.options,
    )
    return load
