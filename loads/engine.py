"""A load's work: check the export, create what its tables need in the target, and load
each table in a transaction of its own, proven by content fingerprints before it commits.

A table either commits whole, with its rows, keys and a target fingerprint equal to its
file's, or leaves nothing: a failure, a cancel or a dead worker rolls its transaction
back, and a load run again takes only the tables not yet committed.
"""

import collections
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from psycopg2 import sql

from audit.models import AuditEvent, record
from connections.models import ConnectionFailed
from exports import verify as export_verify
from exports.engine import memory
from exports.joblog import job_log
from loads import copy as load_copy
from loads import ddl, fingerprint
from loads.models import Load, TableLoad

# Rows read from a file at once, at most, and about how many bytes: memory holds a few
# such batches (as Arrow, as CSV, as hex) whatever the width of the rows.
BATCH_ROWS = 32_768
BATCH_BYTES = 8 << 20
CANCEL_CHECK_SECONDS = 1.0
PROGRESS_SECONDS = 1.0  # how often a loading table's rows so far are written

memory.return_freed_memory()  # as the export engine does: flat however large the table


def run_load(load_id: int) -> Load:
    """Run the load to its end, in this process; its status says how it went."""
    load = Load.objects.select_related("target", "owner").get(pk=load_id)
    if not load.claim():
        return load  # ended, or another worker runs it
    with _watching(load):
        return _run(load)


# The target sessions of each running load in this process: a cancel interrupts them.
_SESSIONS: dict[int, set] = {}
_SESSIONS_LOCK = threading.Lock()


@contextmanager
def _watching(load: Load):
    """While the load runs: beat for it, so the sweep knows its worker lives, and on a
    cancel interrupt its COPYs (a table stops within a second, not at its next batch)."""
    stop = threading.Event()
    _SESSIONS[load.pk] = set()

    def watch():
        beaten = time.monotonic()
        while not stop.wait(CANCEL_CHECK_SECONDS):
            if time.monotonic() - beaten >= settings.HEARTBEAT_SECONDS:
                beaten = time.monotonic()
                Load.objects.filter(pk=load.pk, status=Load.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
            if Load.objects.filter(pk=load.pk, cancel_requested=True).exists():
                with _SESSIONS_LOCK:
                    for db in _SESSIONS[load.pk]:
                        db.cancel()
        close_old_connections()

    thread = threading.Thread(target=watch, daemon=True, name=f"adu-load-{load.pk}-watch")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with _SESSIONS_LOCK:
            del _SESSIONS[load.pk]


def _run(load: Load) -> Load:
    job_log(load).info("started: %s into '%s' (%s)", load.folder, load.target.name, load.options)
    if load.cancel_requested:
        load.finish()
        return load
    try:
        manifest = export_verify.read_manifest(Path(load.folder))
        if manifest[export_verify.CHECKSUM_KEY] != load.manifest_sha256:
            raise ddl.LoadRefused(
                f"The manifest in {load.folder} is not the one this load was made for (its "
                "checksum changed): make a new load of the export that is there now."
            )
        checked = {
            (t["schema"], t["table"]): t for t in export_verify.verify(Path(load.folder))["tables"]
        }
        entries = {(t["schema"], t["table"]): t for t in manifest["tables"]}
        runs = list(load.tables.exclude(status__in=TableLoad.DONE))
        types = _prepare(load, [entries[(r.schema, r.table)] for r in runs])
    except (export_verify.BadManifest, ddl.LoadRefused, ConnectionFailed) as error:
        return _fail(load, str(error))
    except psycopg2.Error as error:
        return _fail(load, load.target.driver().explain(error, load.target))
    with futures.ThreadPoolExecutor(max(1, int(load.option("parallel"))), "adu-load") as pool:
        for run in runs:
            entry = entries[(run.schema, run.table)]
            run.notes, refused = types.of(entry)
            if refused:
                _finish(run, TableLoad.Status.FAILED, error=refused)
                continue
            pool.submit(_table_in_thread, load, run, entry, checked)
    load.refresh_from_db(fields=["cancel_requested"])
    load.finish()
    job_log(load).info("%s: %s", load.status, load.counts())
    record(AuditEvent.Action.LOAD_FINISH, user=load.owner, obj=load, status=load.status)
    return load


def _fail(load: Load, message: str) -> Load:
    load.error = message
    load.tables.filter(status=TableLoad.Status.QUEUED).update(
        status=TableLoad.Status.FAILED, error=message
    )
    load.save(update_fields=["error"])
    load.finish()
    job_log(load).error("%s: %s", load.status, message)
    record(
        AuditEvent.Action.LOAD_FINISH, user=load.owner, obj=load, status=load.status, error=message
    )
    return load


def _prepare(load: Load, entries: list[dict]) -> "_Types":
    """The target schemas and user types the tables need, in one transaction before any
    table: tables loading side by side must not each create them."""
    schema_map = load.option("schema_map") or {}
    definitions: dict[tuple[str, str], dict] = {}
    for entry in entries:
        for definition in (entry.get("types") or {}).get("definitions", []):
            definitions.setdefault((definition["schema"], definition["name"]), definition)
    schemas = {load.target_schema(e["schema"]) for e in entries}
    schemas |= {schema_map.get(s, s) for s, _ in definitions}
    db = load.target.driver().connect_target(load.target)
    try:
        with db.cursor() as cur:
            for schema in sorted(schemas):
                cur.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            cur.execute(
                "SELECT n.nspname, t.typname FROM pg_type t "
                "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY(%s)",
                [sorted(schemas)],
            )
            existing = set(cur.fetchall())
            made = _Types()
            for (schema, name), definition in definitions.items():
                if (schema_map.get(schema, schema), name) in existing:
                    continue  # made by an earlier load, or by the target's owner
                cur.execute("SAVEPOINT adu_type")
                try:
                    statement, made.left_out[(schema, name)] = ddl.create_type(
                        definition, schema_map
                    )
                    cur.execute(statement)
                except (ddl.LoadRefused, psycopg2.Error) as error:
                    cur.execute("ROLLBACK TO SAVEPOINT adu_type")
                    made.refused[(schema, name)] = (
                        str(error)
                        if isinstance(error, ddl.LoadRefused)
                        else f"Type {schema}.{name} cannot be created in the target: "
                        + load.target.driver().explain(error, load.target)
                    )
        db.commit()
        return made
    finally:
        db.close()


@dataclass
class _Types:
    """What making the user types found: per type, what its definition left out, or why
    the target would not take it (its tables then fail before any row moves)."""

    left_out: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)

    def of(self, entry: dict) -> tuple[list[str], str]:
        """The notes of a table's types, and the first refusal among them ("" if none)."""
        keys = [(d["schema"], d["name"]) for d in (entry.get("types") or {}).get("definitions", [])]
        notes = [note for key in keys for note in self.left_out.get(key, [])]
        refusals = [self.refused[key] for key in keys if key in self.refused]
        return notes, refusals[0] if refusals else ""


def _table_in_thread(load: Load, run: TableLoad, entry: dict, checked: dict):
    try:
        _load_table(load, run, entry, checked.get((run.schema, run.table), {}))
    except Exception:  # the table fails, the others go on; the log has the traceback
        job_log(load, f"{run.schema}.{run.table}").exception("failed")
        _finish(
            run, TableLoad.Status.FAILED, error="ADU failed to load this table; its log says why."
        )
    finally:
        close_old_connections()


def _load_table(load: Load, run: TableLoad, entry: dict, check: dict):
    if entry["status"] != "complete":
        return _finish(
            run, TableLoad.Status.SKIPPED, error=f"The export of this table {entry['status']}."
        )
    if check.get("status") != export_verify.OK:
        detail = check.get("detail", "")
        return _finish(
            run,
            TableLoad.Status.FAILED,
            error=f"The export's files of this table do not check out ({check.get('status')}: {detail}).",
        )
    if Load.objects.filter(pk=load.pk, cancel_requested=True).exists():
        return _finish(run, TableLoad.Status.CANCELLED, error="Cancelled before it started.")
    run.status, run.started_at = TableLoad.Status.LOADING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    target = load.target
    try:
        db = target.driver().connect_target(target)
    except ConnectionFailed as error:
        return _finish(run, TableLoad.Status.FAILED, error=str(error))
    with _SESSIONS_LOCK:
        _SESSIONS[load.pk].add(db)
    try:
        _load_in_transaction(load, run, entry, db)
    except (ddl.LoadRefused, ConnectionFailed) as error:
        db.rollback()
        _finish(run, TableLoad.Status.FAILED, error=str(error))
    except psycopg2.Error as error:
        if not db.closed:
            db.rollback()
        if Load.objects.filter(pk=load.pk, cancel_requested=True).exists():
            return _finish(run, TableLoad.Status.CANCELLED, error=CANCELLED)
        _finish(
            run,
            TableLoad.Status.FAILED,
            error=target.driver().explain_load(error, target, f"{run.target_schema}.{run.table}"),
        )
    finally:
        with _SESSIONS_LOCK:
            _SESSIONS[load.pk].discard(db)
        db.close()


CANCELLED = "Cancelled before it committed: nothing of it is in the target."


def _load_in_transaction(load: Load, run: TableLoad, entry: dict, db):
    schema, table, columns = run.target_schema, run.table, entry["columns"]
    schema_map = load.option("schema_map") or {}
    user_columns = (entry.get("types") or {}).get("columns", {})
    name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if_exists = load.option("if_exists")
    with db.cursor() as cur:
        # Names in a domain's default or check resolve in the target's schema first.
        path = sql.SQL("{}, public").format(sql.Identifier(schema)).as_string(cur)
        cur.execute("SELECT set_config('search_path', %s, true)", [path])
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s)",
            [schema, table],
        )
        exists = cur.fetchone()[0]
        if exists and if_exists == Load.IfExists.FAIL:
            raise ddl.LoadRefused(
                f"Table {schema}.{table} is already in the target; choose --if-exists replace "
                "or append to load it anyway."
            )
        if exists and if_exists == Load.IfExists.REPLACE:
            cur.execute(sql.SQL("DROP TABLE {}").format(name))
        before = fingerprint.Fingerprint(0, "0" * 16)
        if exists and if_exists == Load.IfExists.APPEND:
            before = fingerprint.of_table(cur, schema, table, columns)
        else:
            cur.execute(ddl.create_table(schema, table, columns, user_columns, schema_map))
        if load.option("create_only"):
            after = ddl.after_rows(schema, table, entry)
            for statement in after.statements:
                cur.execute(statement)
            db.commit()
            return _finish(run, TableLoad.Status.CREATED, notes=run.notes + after.notes)
        accumulator = fingerprint.Accumulator(columns)
        counting = _Beside(accumulator.add)
        batches = _file_batches(load, run, entry, counting.submit)
        form = _copy_form(cur, Path(load.folder), entry, schema, table)
        stream = load_copy.CopyStream(batches, form)
        try:
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
                    name,
                    sql.SQL(", ").join(sql.Identifier(c["name"]) for c in columns),
                    sql.SQL(form.name),
                ),
                stream,
                size=1 << 20,
            )
        except psycopg2.Error:
            failure = stream.failure  # ADU's side failed, not the target
            if isinstance(failure, (OSError, pa.ArrowException)):
                raise ddl.LoadRefused(
                    f"Reading the export's files of {run.schema}.{run.table} failed ({failure}):"
                    " nothing of it was kept."
                ) from None
            if failure is not None:
                raise failure from None
            raise
        finally:
            counting.wait()
        added = not exists or if_exists != Load.IfExists.APPEND
        after = ddl.after_rows(schema, table, entry) if added else ddl.AfterRows()
        for statement in after.statements:
            cur.execute(statement)
        in_file = accumulator.result()
        in_target = _added(fingerprint.of_table(cur, schema, table, columns), before)
        source = entry.get("source_fingerprint") or {}
        if "digest" not in source:  # not taken, or skipped: the table is proven to its file
            source = {}
        problem = ""
        if in_target != in_file:
            problem = (
                f"The rows in the target differ from the file ({in_target.rows} rows, digest "
                f"{in_target.digest}; the file: {in_file.rows}, {in_file.digest}): nothing was kept."
            )
        elif source and source != in_file.as_dict():
            problem = (
                "The file's rows differ from what the source held when it was exported: "
                "nothing was kept."
            )
        if problem:
            db.rollback()
            return _finish(
                run,
                TableLoad.Status.FAILED,
                error=problem,
                file_fingerprint=in_file.as_dict(),
                target_fingerprint=in_target.as_dict(),
                source_fingerprint=source,
            )
    db.commit()
    _finish(
        run,
        TableLoad.Status.VERIFIED if source else TableLoad.Status.LOADED,
        rows=in_file.rows,
        file_fingerprint=in_file.as_dict(),
        target_fingerprint=in_target.as_dict(),
        source_fingerprint=source,
        notes=run.notes + after.notes,
    )


def _copy_form(cur, folder: Path, entry: dict, schema: str, table: str) -> load_copy.CopyForm:
    """The COPY form for the table's files into the target table as it now is (made by
    this load, or already there for an append): binary only into columns of the very
    types the file's values are encoded for."""
    if not entry["files"]:
        return load_copy.copy_form(pa.schema([]), [])
    cur.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
        " AND t.typtype = 'b' AND t.typnamespace = 'pg_catalog'::regnamespace",
        [schema, table],
    )
    types = dict(cur.fetchall())
    return load_copy.copy_form(
        pq.read_schema(folder / entry["files"][0]["path"]),
        [types.get(column["name"]) for column in entry["columns"]],
    )


def _added(
    after: fingerprint.Fingerprint, before: fingerprint.Fingerprint
) -> fingerprint.Fingerprint:
    """The fingerprint of the rows a load appended: a sum of the rows' hashes, so the
    table's after less its before."""
    digest = (int(after.digest, 16) - int(before.digest, 16)) % 2**64
    return fingerprint.Fingerprint(after.rows - before.rows, f"{digest:016x}")


class _Beside:
    """Calls `function` on each item in a thread of its own, beside the caller, a few
    items behind at most (memory holds those): the file's fingerprint is taken while the
    COPY sends the same batches."""

    def __init__(self, function, behind: int = 2):
        self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="adu-fingerprint")
        self._function = function
        self._pending: collections.deque[futures.Future] = collections.deque()
        self._behind = behind

    def submit(self, item):
        self._pending.append(self._pool.submit(self._function, item))
        while len(self._pending) > self._behind:
            self._pending.popleft().result()

    def wait(self):
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(cancel_futures=True)


def _file_batches(load: Load, run: TableLoad, entry: dict, count):
    """The table's rows from its files, row group by row group, each handed to `count`
    (the file's fingerprint) on the way, with the rows so far on the table's page. (A
    cancel interrupts the COPY that reads them: see _watching.)"""
    folder = Path(load.folder)
    reported = time.monotonic()
    rows = 0
    for file in entry["files"]:
        parquet = pq.ParquetFile(folder / file["path"])
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet), use_threads=False):
            count(batch)
            rows += batch.num_rows
            yield batch
            memory.trim()
            if time.monotonic() - reported >= PROGRESS_SECONDS:
                reported = time.monotonic()
                TableLoad.objects.filter(pk=run.pk).update(rows=rows)


def _batch_rows(parquet: pq.ParquetFile) -> int:
    """BATCH_ROWS, or fewer where the file's rows are wide (a table of documents or
    images): its first row group says how wide, uncompressed."""
    metadata = parquet.metadata
    if not metadata.num_row_groups or not metadata.row_group(0).num_rows:
        return BATCH_ROWS
    group = metadata.row_group(0)
    width = max(1, group.total_byte_size // group.num_rows)
    return max(1, min(BATCH_ROWS, BATCH_BYTES // width))


def _finish(run: TableLoad, status: str, **fields):
    run.status = status
    for key, value in fields.items():
        setattr(run, key, value)
    run.finished_at = timezone.now()
    run.save()
    said = f"{status}: {run.rows} rows into {run.target_schema}.{run.table}"
    level = "error" if status == TableLoad.Status.FAILED else "info"
    getattr(job_log(run.load, f"{run.schema}.{run.table}"), level)(
        "%s%s", said, f" ({run.error})" if run.error else ""
    )
