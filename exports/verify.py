"""Checks an export on the receiving side of the air gap: every file, hash, row count and schema.

Needs only the export folder: no source database and nothing from ADU's own database.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from exports.manifest import CHECKSUM_KEY, FORMAT, checksum
from exports.models import MANIFEST, MANIFEST_SIGNATURE
from transfer.signing import sha256_of

OK, MISSING, CORRUPT, COUNT, SCHEMA, NOT_EXPORTED = (
    "ok",
    "missing",
    "corrupt",
    "count mismatch",
    "schema mismatch",
    "not exported",
)


class BadManifest(Exception):
    """The manifest cannot be trusted; the message says why in one sentence."""


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise BadManifest(f"There is no {MANIFEST} in {folder}.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadManifest(f"{path} is truncated or is not JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadManifest(f"{path} is not an ADU manifest.")
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    if manifest.get(CHECKSUM_KEY) != checksum(body):
        raise BadManifest(f"{path} was edited after ADU wrote it: its checksum does not match.")
    return manifest


def verify(folder: Path, hashed: dict[str, str] | None = None) -> dict:
    """{"manifest": path, "ok": bool, "tables": [{schema, table, status, detail}],
    "unlisted": [paths of files the manifest does not list, relative to the folder]}.
    `hashed`: the SHA-256 of files by their path in the folder, taken while they were
    written (a receiver's), which are not read again."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    hashed = hashed or {}
    with ThreadPoolExecutor(4) as pool:  # hashing releases the GIL: files go in parallel
        tables = list(pool.map(lambda t: _verify_table(folder, t, hashed), manifest["tables"]))
    unlisted = _unlisted(folder, manifest)
    return {
        "manifest": str(folder / MANIFEST),
        "job_id": manifest.get("job_id"),
        "ok": all(t["status"] == OK for t in tables) and not unlisted,
        "tables": tables,
        "unlisted": unlisted,
    }


def verify_chain(folders: list[Path]) -> dict:
    """A chain of incremental exports, oldest first (connections.drivers.postgresql.incremental): each export
    checked as verify() does, each naming the one before as its predecessor (by its
    manifest's checksum), from the same source, and each incremental table's window
    starting where that table's last window ended. {"ok", "exports": [verify's reports],
    "problems": [sentences]}."""
    reports, problems = [], []
    last_window: dict[tuple[str, str], int] = {}
    previous = None
    for folder in [Path(f).resolve() for f in folders]:
        manifest = read_manifest(folder)
        reports.append(verify(folder))
        if previous is not None:
            named = (manifest.get("predecessor") or {}).get(CHECKSUM_KEY)
            if named != previous[1][CHECKSUM_KEY]:
                problems.append(
                    f"{folder.name} does not follow {previous[0].name}: it names "
                    f"{(manifest.get('predecessor') or {}).get('folder') or 'no export'} as the one before."
                )
            if manifest.get("source") != previous[1].get("source"):
                problems.append(f"{folder.name} comes from another source than {previous[0].name}.")
        for table in manifest["tables"]:
            window, name = table.get("incremental"), (table["schema"], table["table"])
            if not window or table["status"] != "complete":
                continue
            if window["mode"] == "incremental" and last_window.get(name) != window["after"]:
                problems.append(
                    f"{name[0]}.{name[1]} in {folder.name} starts at transaction "
                    f"{window['after']}, but the chain's last export of it ended at "
                    f"{last_window.get(name, 'none')}: rows are missing or twice."
                )
            last_window[name] = window["before"]
        previous = (folder, manifest)
    return {
        "ok": not problems and all(r["ok"] for r in reports),
        "exports": reports,
        "problems": problems,
    }


def _unlisted(folder: Path, manifest: dict) -> list[str]:
    """Files in the folder that no table of the manifest lists: a reader of a table's
    folder (part-*.parquet) would take one for the table's rows."""
    listed = {
        MANIFEST,
        MANIFEST_SIGNATURE,
        *(e["path"] for t in manifest["tables"] for e in t.get("files", [])),
    }
    found = []
    for parent, folders, names in os.walk(folder):  # links to folders are not followed,
        links = [name for name in folders if os.path.islink(os.path.join(parent, name))]
        for name in [*names, *links]:  # but named like files
            path = Path(parent, name).relative_to(folder).as_posix()
            if path not in listed:
                found.append(path)
    return sorted(found)


def _verify_table(folder: Path, table: dict, hashed: dict[str, str]) -> dict:
    result = {"schema": table["schema"], "table": table["table"]}
    if table["status"] != "complete":
        return {**result, "status": NOT_EXPORTED, "detail": f"the export {table['status']}"}
    rows = 0
    for entry in table["files"]:
        path = (folder / entry["path"]).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            return {**result, "status": MISSING, "detail": entry["path"]}
        if (
            path.stat().st_size != entry["bytes"]
            or (hashed.get(entry["path"]) or sha256_of(path)) != entry["sha256"]
        ):
            return {**result, "status": CORRUPT, "detail": f"{entry['path']}: hash differs"}
        try:
            parquet = pq.ParquetFile(path)
        except Exception:
            return {**result, "status": CORRUPT, "detail": f"{entry['path']}: unreadable"}
        if parquet.metadata.num_rows != entry["rows"]:
            return {**result, "status": COUNT, "detail": f"{entry['path']}: footer rows differ"}
        expected = [(c["name"], c["arrow_type"]) for c in table["columns"]]
        actual = [(f.name, str(f.type)) for f in parquet.schema_arrow]
        if actual != expected:
            return {**result, "status": SCHEMA, "detail": entry["path"]}
        rows += entry["rows"]
    if rows != table["rows_written"] or rows != table["source_rows"]:
        detail = f"{rows} rows in files, {table['source_rows']} at the source"
        return {**result, "status": COUNT, "detail": detail}
    return {**result, "status": OK, "detail": f"{rows} rows"}
