"""The manifest of a job: what crosses the air gap beside the files, sealed with its own
checksum so that the receiving side (exports.verify) notices an edit."""

import hashlib
import json

import adu_site
from connections import drivers
from exports import options as export_options
from exports.engine.parquet import sync_folders, write_atomically
from exports.models import ExportJob

FORMAT = "adu-manifest/1"
CHECKSUM_KEY = "manifest_sha256"


def build(job: ExportJob) -> dict:
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
        **drivers.consistency(job.snapshot_id),
        "attempts": job.attempts,
        "options": {name: job.option(name) for name in export_options.ExportOptions.model_fields},
        "tables": [
            {
                "schema": run.schema,
                "table": run.table,
                "status": run.status,
                "attempt": run.attempt,
                "source_rows": run.rows_expected,
                # "sent": the rows COPY reported sending; "count": a count(*) in the snapshot.
                "source_rows_proof": run.rows_proof or None,
                "rows_written": run.rows_written,
                "columns": run.columns,
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
                "validation": run.validation or None,
            }
            for run in job.tables.all()
        ],
    }


def write(job: ExportJob):
    """Write the job's sealed manifest into its folder, whole or not at all."""
    path = job.manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    sync_folders(job.folder())
    write_atomically(path, dumps(seal(build(job))).encode())


def dumps(manifest: dict) -> str:
    """The manifest as JSON a person can read: a line for each key, and for each table.

    Not json.dumps(indent=...): with an indent it encodes in Python, not C, and for a job
    of 2,000 tables that took longer than exporting a tenth of them.
    """

    def encoded(value) -> str:
        # Only inside strings, where JSON may escape them: a reader that splits lines
        # at U+2028 and U+2029 (Python's splitlines) still finds a table a line.
        text = json.dumps(value, ensure_ascii=False)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

    lines = []
    for key, value in manifest.items():
        if key == "tables":
            rows = ",\n".join(f"    {encoded(table)}" for table in value)
            lines.append(f'  "tables": [\n{rows}\n  ]' if rows else '  "tables": []')
        else:
            lines.append(f"  {encoded(key)}: {encoded(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def seal(manifest: dict) -> dict:
    """The manifest with its own checksum, so that an edit after export is noticed."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: checksum(body)}


def checksum(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso(value):
    return value.isoformat() if value else None
