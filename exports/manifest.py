"""The manifest of a job: what crosses the air gap beside the files, sealed with its own
checksum so that the receiving side (exports.verify) notices an edit, and signed with the
instance's key (transfer.signing) so that it can tell who made it."""

import hashlib
import json
from collections.abc import Iterable, Iterator

import adu_site
from adu_site.durable import sync_folders, write_atomically
from connections import drivers
from exports import options as export_options
from exports.models import ExportJob
from transfer import signing

FORMAT = "adu-manifest/1"
CHECKSUM_KEY = "manifest_sha256"


def header(job: ExportJob) -> dict:
    """Everything the manifest says but its tables (table_entry) and its checksum."""
    connection = job.connection
    return {
        "format": FORMAT,
        "adu_version": adu_site.__version__,
        "job_id": job.pk,
        "attempt": job.attempt,
        "status": job.status,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "source": {
            "kind": connection.kind,
            "host": connection.host,
            "port": connection.port,
            "database": connection.database,
        },
        "snapshot_id": job.snapshot_id,
        # Incremental tables: the snapshot's transaction ids, and the export this one
        # follows (connections.drivers.postgresql.incremental; adu_verify --chain).
        "snapshot_xids": job.snapshot_xids or None,
        "predecessor": _predecessor(job),
        **drivers.consistency(job.snapshot_id),
        "attempts": job.attempts,
        "options": {name: job.option(name) for name in export_options.OPTIONS},
    }


def table_entry(run) -> dict:
    return {
        "schema": run.schema,
        "table": run.table,
        "status": run.status,
        "attempt": run.attempt,
        "source_rows": run.rows_expected,
        # "sent": the rows the COPYs reported sending; "count": a count(*) in the snapshot.
        "source_rows_proof": run.rows_proof or None,
        "rows_written": run.rows_written,
        "columns": run.columns,
        # Keys, checks and the definitions of user types: what a load recreates.
        "constraints": (run.catalog or {}).get("constraints", []),
        "types": (run.catalog or {}).get("types", {}),
        "defaults": (run.catalog or {}).get("defaults", {}),
        # The source's rows in the snapshot, fingerprinted: what a load proves against.
        "source_fingerprint": run.fingerprint or None,
        "profile": run.profile,
        "warnings": run.warnings,
        # What of the source this is: columns, filter, masking, query text.
        "selection": {
            "columns": [c["name"] for c in run.columns],
            "filter": (run.spec or {}).get("filter", ""),
            "masks": (run.spec or {}).get("masks", {}),
            "query": (run.spec or {}).get("query", ""),
            "sensitive": (run.spec or {}).get("sensitive", {}),
        },
        "files": run.files,
        # {"mode": "base" or "incremental", "after", "before", "reason"}: the transactions
        # whose rows it holds (connections.drivers.postgresql.incremental); null for a table exported whole.
        "incremental": (run.spec or {}).get("window"),
        "validation": run.validation or None,
    }


def write(job: ExportJob):
    """Write the job's sealed manifest into its folder, whole or not at all."""
    path = job.manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    sync_folders(job.folder())
    # The tables a hundred at a time: memory stays flat whatever their number.
    runs = job.tables.all().iterator(chunk_size=100)
    text = lines(header(job), (table_entry(run) for run in runs))
    digest = hashlib.sha256()
    write_atomically(path, (_hashed(digest, line.encode()) for line in text))
    signing.sign(path, digest.hexdigest())
    job.manifest_sha256 = _checksum_of(path)
    type(job).objects.filter(pk=job.pk).update(manifest_sha256=job.manifest_sha256)


def _checksum_of(path) -> str:
    """The checksum the manifest ends with (its last lines, not the whole file read)."""
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, 2) - 200))
        tail = file.read().decode()
    return tail.rsplit(f'"{CHECKSUM_KEY}": "', 1)[1][:64]


def _predecessor(job: ExportJob) -> dict | None:
    before = job.predecessor
    if before is None:
        return None
    return {"job_id": before.pk, "folder": before.output_dir, CHECKSUM_KEY: before.manifest_sha256}


def _hashed(digest, data: bytes) -> bytes:
    digest.update(data)
    return data


def lines(head: dict, tables: Iterable[dict]) -> Iterator[str]:
    """The sealed manifest as JSON a person can read, a line for each key and for each
    table, made as the tables come; its checksum (see checksum) is taken on the way.

    Not json.dumps(indent=...): with an indent it encodes in Python, not C, and for a job
    of 2,000 tables that took longer than exporting a tenth of them.
    """
    # The canonical form, in sorted keys: the head's keys around "tables".
    digest = hashlib.sha256()
    before = {k: v for k, v in head.items() if k < "tables"}
    after = {k: v for k, v in head.items() if k > "tables"}
    digest.update(_canonical(before)[:-1].encode())
    digest.update((',"tables":[' if before else '"tables":[').encode())
    yield "{\n"
    for key, value in head.items():
        yield f"  {_readable(key)}: {_readable(value)},\n"
    yield '  "tables": ['
    for n, table in enumerate(tables):
        digest.update(("," if n else "").encode() + _canonical(table).encode())
        yield f"{',' if n else ''}\n    {_readable(table)}"
    digest.update(b"]" + (("," + _canonical(after)[1:]) if after else "}").encode())
    yield f"\n  ],\n  {_readable(CHECKSUM_KEY)}: {_readable(digest.hexdigest())}\n}}\n"


def _readable(value) -> str:
    # Only inside strings, where JSON may escape them: a reader that splits lines at
    # U+2028 and U+2029 (Python's splitlines) still finds a table a line.
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def checksum(body: dict) -> str:
    """SHA-256 of the manifest without its checksum, in canonical JSON (sorted keys)."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _iso(value):
    return value.isoformat() if value else None
