"""A loaded database checked again, later: each table of an export fingerprinted in the
target and in its files, and compared with the source's fingerprint where the export
took one. Reads only: the session is read-only like any source's."""

from pathlib import Path

import psycopg2

from connections.models import ConnectionFailed
from exports import verify as export_verify
from loads import fingerprint

SAME, DIFFERENT, MISSING, NOT_LOADED = "ok", "differs", "missing in target", "not exported"


def verify_against(folder: Path, target, schema_map: dict[str, str] | None = None) -> dict:
    """{"ok", "tables": [{schema, table, target, status, detail, file, target_fp, source}]};
    ConnectionFailed or BadManifest with one sentence when nothing can be compared."""
    schema_map = schema_map or {}
    folder = Path(folder).resolve()
    manifest = export_verify.read_manifest(folder)
    db = target.driver().connect(target, long_reads=True)
    tables = []
    try:
        for entry in manifest["tables"]:
            tables.append(_table(db, folder, entry, schema_map, target))
    finally:
        db.close()
    return {"ok": all(t["status"] == SAME for t in tables), "tables": tables}


def _table(db, folder: Path, entry: dict, schema_map: dict, target) -> dict:
    schema = schema_map.get(entry["schema"], entry["schema"])
    result = {
        "schema": entry["schema"],
        "table": entry["table"],
        "target": f"{schema}.{entry['table']}",
    }
    if entry["status"] != "complete":
        return {**result, "status": NOT_LOADED, "detail": f"the export {entry['status']}"}
    with db.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s)",
            [schema, entry["table"]],
        )
        if not cur.fetchone()[0]:
            db.rollback()
            return {**result, "status": MISSING, "detail": "no such table in the target"}
        try:
            in_target = fingerprint.of_table(cur, schema, entry["table"], entry["columns"])
        except psycopg2.Error as error:
            if not db.closed:
                db.rollback()
            raise ConnectionFailed(
                target.driver().explain(error, target, result["target"])
            ) from None
    db.rollback()  # one transaction a table: a long check holds no snapshot for the rest
    in_file = fingerprint.of_files([folder / f["path"] for f in entry["files"]], entry["columns"])
    source = entry.get("source_fingerprint") or {}
    source = source if "digest" in source else {}
    found = {"file": in_file.as_dict(), "target_fp": in_target.as_dict(), "source": source}
    if in_target != in_file:
        detail = f"target {in_target.rows} rows {in_target.digest}, file {in_file.rows} rows {in_file.digest}"
        return {**result, **found, "status": DIFFERENT, "detail": detail}
    if source and source != in_file.as_dict():
        return {
            **result,
            **found,
            "status": DIFFERENT,
            "detail": "the file differs from the source",
        }
    proof = "target = file = source" if source else "target = file"
    return {**result, **found, "status": SAME, "detail": f"{in_file.rows} rows, {proof}"}
