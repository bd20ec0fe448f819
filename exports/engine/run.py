"""Runs an export job: pins one snapshot, exports its tables in parallel, writes the manifest."""

import functools
import itertools
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import pyarrow as pa
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import F
from django.utils import timezone

from connections import drivers
from connections.drivers.base import DoesNotFit, IncrementalDriver, TableDescription
from connections.models import ConnectionFailed
from exports import manifest, selection
from exports.engine import column_kinds, masking, memory
from exports.engine.anomaly import anomalies, last_complete_runs
from exports.engine.parquet import TableWriter
from exports.engine.profile import Profiler
from exports.joblog import job_log
from exports.models import (
    ExportJob,
    JobError,
    StatusChange,
    TableRun,
    explain_os_error,
)
from exports.signals import job_finished
from quality import validation
from quality.models import Rule
from quality.validation import Validator

PROGRESS_SECONDS = 2.0
MAX_REQUEUES = 1
# pyarrow's CSV block size is an int32; a row longer than this cannot be read.
MAX_BLOCK_BYTES = (1 << 31) - 1
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")

memory.return_freed_memory()


class Cancelled(Exception):
    pass


class TableFailed(Exception):
    """A table could not be exported; the message is one sentence for the user."""

    def __init__(self, message: str, phase: str):
        super().__init__(message)
        self.phase = phase


class ValidationFailed(TableFailed):
    """The rows broke a check that fails the table: an outcome the report explains, not a
    fault of ADU, so no traceback is kept."""

    def __init__(self, message: str):
        super().__init__(message, "validate")


def run_job(job_id: int) -> ExportJob:
    """Run the job in this process (`--sync`): its helpers are threads, not cluster tasks."""
    return coordinate(job_id, spawn=_spawn_thread)


def coordinate(job_id: int, spawn, reason: str = "start") -> ExportJob:
    """Pin the job's snapshot, export its tables with `parallel - 1` helpers, finish the job.

    The coordinator works on tables itself, so it never idles while holding the snapshot.
    It keeps the snapshot's session open until no table is queued or running (a table
    whose worker died comes back to the queue and is taken here), then writes the manifest.
    `spawn(job_id, snapshot_id)` starts one helper that runs `work`, and returns something
    to `join()`, or None.
    """
    job = ExportJob.objects.select_related("connection").get(pk=job_id)
    if job.is_finished:
        return job
    if job.cancel_requested:
        return finish_job(job.pk)
    if not job.claim():
        return job  # another coordinator has it
    log = job_log(job)
    connection = job.connection
    job.set_status(ExportJob.Status.RUNNING, note=reason)
    driver = connection.driver()
    try:
        leader, snapshot_id = driver.open_snapshot(
            connection, lock_timeout=job.option("lock_timeout")
        )
        xids = ""
        if (
            connection.kind == "postgresql"
            and job.tables.filter(spec__has_key="incremental").exists()
        ):
            incremental = cast(IncrementalDriver, driver)
            xids = _phase("connect", connection, incremental.snapshot_xids, leader)
    except (ConnectionFailed, TableFailed) as error:
        log.error("%s", error)
        job.fail_all(str(error), phase="connect")
        return finish_job(job.pk)
    job.begin_attempt(snapshot_id, reason, xids)
    log.info("attempt %s: snapshot %s pinned (%s)", job.attempt, snapshot_id, reason)
    # Saved queries and views are checked again now: what they read may have changed
    # since the job was created.
    for run, message in selection.recheck(job).items():
        if run.finish(TableRun.Status.FAILED, only_if="queued"):
            job_log(job, run).error("refused: %s", message)
            JobError.record(job, run, message, phase="check")
    try:
        with heartbeat(job.beat):
            parallel = max(1, int(job.option("parallel")))
            helpers = [spawn(job.pk, snapshot_id) for _ in range(parallel - 1)]
            # The last tables are often small ones about to end: look again soon, then
            # less and less often (a helper's table may take hours).
            for wait in itertools.chain([0.05, 0.1, 0.2, 0.5], itertools.repeat(1.0)):
                work(job.pk, snapshot_id)
                sweep_tables(job.pk)
                if not job.tables.filter(status__in=ACTIVE).exists():
                    break
                _wait_for(helpers, wait)
            for helper in helpers:
                if helper is not None:
                    helper.join()
    finally:
        leader.close()  # the snapshot may end only when every table has imported it
    return finish_job(job.pk)


ACTIVE = [TableRun.Status.QUEUED, TableRun.Status.RUNNING]


def work(job_id: int, snapshot_id: str):
    """Claim and export queued tables of the job, until none is left."""
    pool = SessionPool(ExportJob.objects.select_related("connection").get(pk=job_id), snapshot_id)
    try:
        while (queued := pool.next_queued()) is not None:
            _run_claimed(TableRun.claim(queued, job_id), pool)
    finally:
        pool.close()


LOOK_AHEAD = 100
# Small tables are claimed and recorded this many at once: each claim and each record is a
# commit, which costs a table of a few pages more than its rows.
GROUP_TABLES = 32


class SessionPool:
    """What a worker keeps from one table to the next in the job's snapshot: its sessions
    and what the catalog says. Joining the snapshot costs a connection and its set-up
    (most of a small table's export). A session goes back only after a table that ended
    well and only while the driver says it still sees the snapshot with nothing left
    running; any other is closed."""

    def __init__(self, job: ExportJob, snapshot_id: str):
        self.connection = job.connection
        self.driver = job.connection.driver()
        self.snapshot_id = snapshot_id
        self.lock_timeout = job.option("lock_timeout")
        # Without an exported snapshot, a table's count and rows share its own transaction.
        self.per_table = drivers.consistency(snapshot_id)["consistency"] == "per table"
        self.job_id = job.pk
        self._idle: list = []
        self._lock = threading.Lock()
        self._described: dict[tuple[str, str], TableDescription] = {}
        self._money_scale: int | None = None
        self._rules: dict[tuple[str, str], list] | None = None
        self._last_runs: dict[tuple[str, str], TableRun | None] = {}

    def description(self, session, run: TableRun) -> TableDescription:
        """The table as the snapshot's catalog shows it, read with those of the next tables
        queued (see _ahead). Without a snapshot each table reads its own, in its own
        transaction."""
        name = (run.schema, run.table)
        if name not in self._described:
            at_once = 1 if self.per_table else self.driver.TABLES_PER_DESCRIBE
            names = list(self._ahead(run))[:at_once] if at_once > 1 else [name]
            self._described = self.driver.describe(session, names)
        return self._described.pop(name)

    def last_complete_run(self, run: TableRun) -> TableRun | None:
        """The table's last complete export in another job (for its anomaly checks), looked
        up with those of the next tables queued (see _ahead)."""
        name = (run.schema, run.table)
        if name not in self._last_runs:
            ahead = self._ahead(run)
            found = last_complete_runs(run.job, list(ahead.values()))
            self._last_runs = {table: found.get(table) for table in ahead}
        return self._last_runs.pop(name)

    def _ahead(self, run: TableRun) -> dict[tuple[str, str], int]:
        """The table and the next LOOK_AHEAD the job still has to export, by name: what a table
        needs from the source's catalog and from earlier jobs is asked for them all at
        once, where a schema of small tables would otherwise spend more on those questions
        than on its rows."""
        # From the table on, in queue order; running ones too: those this worker claimed
        # with it are exported next.
        after = TableRun.objects.filter(job_id=self.job_id, pk__gt=run.pk, status__in=ACTIVE)
        next_ones = after.order_by("pk").values_list("pk", "schema", "table")[:LOOK_AHEAD]
        return {(run.schema, run.table): run.pk, **{(s, t): pk for pk, s, t in next_ones}}

    def next_queued(self) -> list[int] | None:
        """The next queued table of the job, with the small ones right after it when it is
        small too (sizes from the catalog read ahead, see description); None when none is
        queued, or the job no longer runs this attempt (a helper that outlived it stops)."""
        queued = TableRun.objects.filter(
            job_id=self.job_id,
            job__status=ExportJob.Status.RUNNING,
            job__snapshot_id=self.snapshot_id,
            status=TableRun.Status.QUEUED,
        )
        group: list[int] = []
        for pk, schema, table in queued.order_by("pk").values_list("pk", "schema", "table")[
            :GROUP_TABLES
        ]:
            known = self._described.get((schema, table))
            small = known is not None and known.is_small
            if group and not small:
                break
            group.append(pk)
            if not small:
                break
        return group or None

    def rules(self, name: tuple[str, str]) -> list:
        """The table's enabled quality rules, from the connection's read once per worker:
        every table of the job is checked against the rules as the job found them."""
        if self._rules is None:
            self._rules = {}
            for rule in Rule.objects.filter(connection=self.connection, enabled=True):
                self._rules.setdefault((rule.schema, rule.table), []).append(rule)
        return self._rules.get(name, [])

    def money_scale(self, session) -> int:
        if self._money_scale is None:
            self._money_scale = self.driver.money_scale(session)
        return self._money_scale

    def take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.driver.join_snapshot(
            self.connection, self.snapshot_id, lock_timeout=self.lock_timeout
        )

    def give_back(self, sessions: list, ended_well: bool):
        for session in sessions:
            if ended_well and not self.per_table and self.driver.may_reuse(session):
                with self._lock:
                    self._idle.append(session)
            else:
                _close([session])

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        _close(idle)


def _wait_for(helpers: list, seconds: float):
    """Until a helper of this process ends (it ends when no table is left: the job may be
    done at once), or for `seconds`: the tables of helpers elsewhere are looked at again."""
    alive = [helper for helper in helpers if helper is not None and helper.is_alive()]
    if alive:
        alive[0].join(seconds)
    else:
        time.sleep(seconds)


def _spawn_thread(job_id: int, snapshot_id: str):
    thread = threading.Thread(
        target=_in_thread, args=(work, job_id, snapshot_id), name="adu-table", daemon=True
    )
    thread.start()
    return thread


def _in_thread(function, *args):
    try:
        return function(*args)
    finally:
        connections.close_all()  # each thread has its own Django database connection


@contextmanager
def heartbeat(beat: Callable[[], None], job: ExportJob | None = None, on_cancel=None):
    """Call `beat` (refresh a heartbeat_at) from a thread of its own, so that a long step (a
    count on a huge table) does not look like a dead worker. With `on_cancel`, also check
    every second whether `job` was cancelled, and call it once if so (to stop a long query)."""
    stop = threading.Event()

    def beating():
        last = time.monotonic()
        try:
            while not stop.wait(1.0):
                if time.monotonic() - last >= settings.HEARTBEAT_SECONDS:
                    beat()
                    last = time.monotonic()
                if on_cancel and job is not None and job.cancel_requested_now():
                    on_cancel()
                    return
        finally:
            connections.close_all()

    thread = threading.Thread(target=beating, daemon=True, name="adu-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def sweep_tables(job_id: int | None = None):
    """Queue again (once) a running table whose worker stopped beating; fail it the next time."""
    stale = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    runs = TableRun.objects.filter(status=TableRun.Status.RUNNING, heartbeat_at__lt=stale)
    if job_id is not None:
        runs = runs.filter(job_id=job_id)
    for run in runs.select_related("job__connection"):
        log = job_log(run.job, run)
        if run.requeues < MAX_REQUEUES:
            requeued = TableRun.objects.filter(
                pk=run.pk, status=TableRun.Status.RUNNING, heartbeat_at__lt=stale
            ).update(status=TableRun.Status.QUEUED, requeues=F("requeues") + 1, rows_written=0)
            if requeued:
                StatusChange.objects.create(
                    job_id=run.job_id, table_run=run, status="queued", note="worker stopped"
                )
                log.warning("its worker stopped beating; queued again")
        elif run.finish(TableRun.Status.FAILED, note="worker stopped", only_if="running"):
            message = (
                f"The worker exporting {run} stopped twice (process killed or machine "
                "restarted); the table was not exported."
            )
            log.error("%s", message)
            JobError.record(run.job, run, message, phase="export")


def run_table(run_id: int, snapshot_id: str, pool: SessionPool | None = None) -> bool:
    """Claim one queued table and export it; False if another worker had claimed it.
    Sessions come from `pool` and go back to it (without one: opened and closed here)."""
    if pool is None:
        job = ExportJob.objects.select_related("connection").get(tables__pk=run_id)
        own = SessionPool(job, snapshot_id)
        try:
            return run_table(run_id, snapshot_id, own)
        finally:
            own.close()
    claimed = TableRun.claim([run_id], pool.job_id)
    _run_claimed(claimed, pool)
    return bool(claimed)


# A table's fields its export sets before they are saved (or its failure clears).
WRITTEN_ANEW = ("files", "columns", "profile", "warnings", "validation")


def _run_claimed(pks: list[int], pool: SessionPool):
    """Export tables this worker claimed, one after another. A table that fails or is
    cancelled is recorded at once; those that complete are recorded together at the end
    (until then they stay running, beaten, and a dead worker's are queued again)."""
    if not pks:
        return
    memory.freeze_startup_objects()
    # What an export writes anew is not read (six JSON documents a table), and the job is
    # read once for all its tables (its cancel request with them).
    runs = TableRun.objects.defer(*WRITTEN_ANEW).in_bulk(pks)
    job = ExportJob.objects.get(pk=pool.job_id)
    job.connection = pool.connection  # the worker's, its password decrypted once
    sessions: list = []  # the driver's sessions the current table reads with
    cancel = threading.Event()

    def stop():
        cancel.set()
        drivers.interrupt(sessions)

    complete: list[TableRun] = []
    try:
        with heartbeat(functools.partial(TableRun.beat, pks), job, on_cancel=stop):
            for pk in pks:
                run = runs[pk]
                run.job = job
                if _run_one(run, sessions, pool, cancel):
                    complete.append(run)
                sessions.clear()
    finally:
        TableRun.finish_all(complete, TableRun.Status.COMPLETE)


def _run_one(run: TableRun, sessions: list, pool: SessionPool, cancel: threading.Event) -> bool:
    """Export one claimed table; True when it is complete (for the caller to record)."""
    job = run.job
    # When its export starts, not when its group was claimed: saved with its outcome.
    run.started_at = timezone.now()
    log = job_log(job, run)
    log.info("started (attempt %s)", job.attempt)
    ended_well = False
    try:
        if cancel.is_set() or job.cancel_requested:  # read with the group, or seen since
            raise Cancelled()
        _export(run, sessions, pool)
        run.finished_at = timezone.now()  # its group is recorded later
        ended_well = True
        log.info("complete: %s rows, %s bytes", run.rows_written, run.bytes_written)
        return True
    except Exception as error:  # a failure fails only this table
        if isinstance(error, Cancelled) or job.cancel_requested_now():
            cancel.set()
            run.finish(TableRun.Status.CANCELLED)
            log.info("cancelled")
            return False
        close_old_connections()
        phase = error.phase if isinstance(error, TableFailed) else "export"
        message = _explain(error, job.connection, run)
        run.finish(TableRun.Status.FAILED)
        trace = "" if isinstance(error, ValidationFailed) else traceback.format_exc()
        JobError.record(job, run, message, phase=phase, trace=trace)
        log.error("failed while %s: %s", PHASES.get(phase, phase), message)
        return False
    finally:
        pool.give_back(sessions, ended_well)


PHASES = {
    "check": "checking what it reads",
    "connect": "connecting",
    "describe": "reading its definition",
    "count": "counting its rows",
    "read": "reading",
    "verify": "checking the row count",
    "validate": "validating its rows",
    "fingerprint": "taking its fingerprint",
    "export": "exporting",
}


def _export(run: TableRun, sessions: list, pool: SessionPool):
    job = run.job
    connection = job.connection
    driver = connection.driver()
    target = job.folder() / safe_name(run.schema) / safe_name(run.table)
    name = (run.schema, run.table)
    per_table = pool.per_table

    def open_session():
        if per_table and sessions:
            return sessions[0]  # the count and the rows in the table's own transaction
        session = pool.take()
        sessions.append(session)
        return session

    spec = run.spec or {}
    query = spec.get("query", "")
    # Only what was asked reaches the driver: a kind without filters or queries still
    # exports whole tables.
    narrowing = {
        "row_filter": spec.get("filter", ""),
        "query": query,
        "xid_window": _window(run, job, spec),
    }
    narrowing = {key: value for key, value in narrowing.items() if value}
    counting: futures.Future | None = None
    try:
        first = _phase("connect", connection, open_session)
        if query:
            columns = _phase("describe", connection, driver.query_columns, first, query)
            described = TableDescription(columns=columns)
        else:
            described = _phase("describe", connection, pool.description, first, run)
            if described.problem:
                raise TableFailed(described.problem, "describe")
            if per_table:
                described.pages = None  # one reader: its transaction is the table's own
        source_columns = described.columns
        watermark = _watermark(run, cast(IncrementalDriver, driver), first, source_columns, spec)
        if watermark:
            narrowing["watermark"] = watermark
        chosen = _selected(source_columns, spec)
        # What stays behind is named on the job page and in the manifest, beside what left.
        left_out = [c.name for c in source_columns if c not in chosen]
        run.spec = {
            key: value for key, value in {**(run.spec or {}), "left_out": left_out}.items() if value
        }
        source_columns = chosen
        money_scale = _phase("describe", connection, pool.money_scale, first)
        run.rows_expected = None  # a count of an earlier attempt saw another snapshot
        # What proves every row arrived: the rows the COPYs that read the table in the
        # snapshot report having sent, or else a count(*) of its own. That count runs on
        # the describe session, beside the read and in the same snapshot; without a
        # snapshot, the read's session is this one: count first.
        sends = driver.REPORTS_ROWS_SENT
        run.rows_proof = TableRun.RowsProof.SENT if sends else TableRun.RowsProof.COUNT
        count = functools.partial(
            _phase, "count", connection, driver.count_rows, first, *name, **narrowing
        )
        if not sends:
            counter = futures.ThreadPoolExecutor(1, thread_name_prefix="adu-count")
            counting = counter.submit(count)
            counter.shutdown(wait=False)
            if per_table:
                counting.result()  # before the read, which takes the same session
        source = _Source(
            driver, open_session, described, pool.rules(name), narrowing, count, counting
        )
        fallback: dict[str, str] = {}
        block_bytes = driver.CSV_BLOCK_BYTES
        while True:
            plans = [
                driver.plan(c, fallback=c.name in fallback, money_scale=money_scale)
                for c in source_columns
            ]
            try:
                writer = _write(run, plans, target, source, block_bytes)
                break
            except (pa.ArrowInvalid, DoesNotFit) as error:
                _close(sessions[1:])  # this attempt's readers; `first` serves the next one
                del sessions[1:]
                if "straddl" in str(error) and block_bytes < MAX_BLOCK_BYTES:
                    # One row is longer than a read block: read again with room for it.
                    block_bytes = min(block_bytes * 16, MAX_BLOCK_BYTES)
                    continue
                if "straddl" in str(error):
                    raise TableFailed(
                        "A row of this table is longer than ADU can read in one piece (2 GB).",
                        "read",
                    ) from None
                plan = _column_of(error, plans)
                if plan is None or not column_kinds.can_fall_back(plan):
                    raise TableFailed(_explain(error, connection, run), "read") from None
                fallback[plan.name] = _reason(error)
                job_log(job, run).info("column %s falls back to text", plan.name)
    except BaseException as error:
        if counting is not None:
            if counting.done() and isinstance(failure := counting.exception(), TableFailed):
                raise failure from error  # it failed first, on its own
            drivers.interrupt(sessions[:1])  # the count has no reason to go on
        raise
    if writer.rows != run.rows_expected:
        writer.abort()
        raise TableFailed(
            f"Wrote {writer.rows} rows but the table holds {run.rows_expected} in the snapshot.",
            "verify",
        )
    run.columns = [
        {
            "name": p.name,
            "source_type": p.source.source_type,
            "arrow_type": str(p.arrow_type),
            "nullable": p.source.nullable,
            "representation": p.representation,
            **({"fallback": fallback[p.name]} if p.name in fallback else {}),
            **({"masking": spec["masks"][p.name]} if p.name in spec.get("masks", {}) else {}),
        }
        for p in plans
    ]
    run.catalog = {
        "constraints": described.constraints,
        "types": described.types,
        "defaults": described.defaults,
    }
    run.files = [
        {
            "path": str(f.path.relative_to(job.folder())),
            "rows": f.rows,
            "bytes": f.bytes,
            "sha256": f.sha256,
        }
        for f in writer.files
    ]
    run.rows_written = writer.rows
    run.bytes_written = sum(f.bytes for f in writer.files)
    if job.option("fingerprint") == "on":
        try:
            run.fingerprint = _phase(
                "fingerprint", connection, _source_fingerprint, run, driver, first, narrowing
            )
        except BaseException:
            writer.abort()  # a table that fails keeps no file
            raise
    run.warnings = anomalies(run, pool.last_complete_run(run)) + [
        {"check": "validation", "message": message}
        for message in validation.warning_messages(run.validation)
    ]
    for warning in run.warnings:
        job_log(job, run).warning("%s", warning["message"])
    return writer


@dataclass
class _Source:
    """What a table's export learned of its source: the same for each attempt to read it."""

    driver: drivers.Driver  # one of connections/drivers
    open_session: Callable[[], object]  # a session that sees the job's snapshot
    described: TableDescription
    rules: list  # quality.models.Rule, the table's enabled ones
    narrowing: dict  # row_filter, query: only those the table's spec has
    count: Callable[[], int]  # the rows of the table (with its filter) in the snapshot
    counting: futures.Future | None  # that count, running beside the read; None: COPY's


def _write(run, plans, target, source: _Source, block_bytes: int) -> TableWriter:
    job = run.job
    masks = (run.spec or {}).get("masks", {})
    key = masking.job_key(job, job.option("masking_key")) if masks else b""
    for p in plans:
        # A column that fell back to text (a date 'infinity', say) has nothing to truncate.
        problem = masking.problem(masks[p.name], p.arrow_type) if p.name in masks else ""
        if problem:
            raise TableFailed(
                f"Column {p.name} holds values that only text can carry exactly, so it cannot "
                f"be masked as asked ({problem}) Mask it another way or filter those rows out.",
                "read",
            )
    fields = [
        masking.masked_field(p.field(), masks[p.name]) if p.name in masks else p.field()
        for p in plans
    ]
    schema = pa.schema(fields, metadata={"adu.table": f"{run.schema}.{run.table}"})
    max_mb = job.option("max_file_mb")
    profiler = Profiler(schema, {p.name for p in plans if column_kinds.is_ordered(p)})
    writer = TableWriter(
        schema,
        target,
        compression_level=int(job.option("compression_level")),
        max_file_bytes=int(max_mb) << 20 if max_mb else None,
        distinct=source.described.distinct,
        rows_estimate=source.described.rows_estimate,
        profiler=profiler,
    )
    batch_rows = max(1, int(job.option("batch_rows")))
    validator = Validator(
        schema,
        {p.name: p.source.nullable for p in plans},
        source.described.constraints,
        source.rules,
        mode=job.option("validation"),
        rows_estimate=source.described.rows_estimate,
        masked=set(masks),
    )
    reported = time.monotonic()
    sent: list[int | None] = []  # the rows each COPY reports having sent
    try:
        batches = source.driver.read_batches(
            source.open_session,
            run.schema,
            run.table,
            plans,
            readers=int(job.option("readers")),
            pages=source.described.pages,
            block_bytes=block_bytes,
            sent=sent,
            **source.narrowing,
        )
        counting = source.counting
        try:
            for batch in batches:
                if run.rows_expected is None and counting and counting.done():
                    _expect(run, counting.result(), validator, show=True)
                finished = pa.RecordBatch.from_arrays(
                    [
                        masking.mask(p.finish(column), masks[p.name], key)
                        if p.name in masks
                        else p.finish(column)
                        for p, column in zip(plans, batch.columns, strict=True)
                    ],
                    schema=schema,
                )
                profiler.update(finished)
                validator.update(finished)
                for offset in range(0, finished.num_rows, batch_rows):
                    writer.write(finished.slice(offset, batch_rows))
                if time.monotonic() - reported >= PROGRESS_SECONDS:
                    reported = time.monotonic()
                    run.report_progress(writer.rows, writer.bytes_written)
                    if job.cancel_requested_now():
                        raise Cancelled()
        finally:
            batches.close()  # its readers stop before their sessions close
        said = [n for n in sent if n is not None]  # by the COPYs that said how many
        if run.rows_expected is None and counting:
            _expect(run, counting.result(), validator)
        elif run.rows_expected is None and sent and len(said) == len(sent):
            _expect(run, sum(said), validator)
        elif run.rows_expected is None:
            # A server (or a pooler before it) that does not say how many rows its COPY
            # sent: the table is counted after all, in the same snapshot.
            run.rows_proof = TableRun.RowsProof.COUNT
            _expect(run, source.count(), validator)
        run.validation = validator.finish(writer.rows)
        failed = validator.errors()
        if failed:
            run.save(update_fields=["validation"])
            raise ValidationFailed(_validation_failure(failed))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    run.profile = profiler.result()
    return writer


def _source_fingerprint(run: TableRun, driver, session, narrowing: dict) -> dict:
    """The content fingerprint of what the table's file holds, taken from the source in
    the job's snapshot: a load on the far side compares its target with it. Rows a mask
    changed or a query made have none to compare with at the source."""
    if (run.spec or {}).get("masks"):
        return {"skipped": "masked columns differ from the source by design"}
    if narrowing.get("query"):
        return {"skipped": "a query's rows have no table to fingerprint"}
    found = driver.fingerprint(session, run.schema, run.table, run.columns, **narrowing)
    if found is None:
        return {"skipped": "this kind of source has no fingerprint yet"}
    rows, digest = found
    if rows != run.rows_written:
        raise TableFailed(
            f"The fingerprint of the source saw {rows} rows where the file has "
            f"{run.rows_written} in the same snapshot.",
            "fingerprint",
        )
    return {"rows": int(rows), "digest": digest}


def _expect(run, rows: int, validator: Validator, show: bool = False):
    """The rows the table must have; with `show`, the job's page shows them at once (a
    count that arrives while the rows are still being read)."""
    run.rows_expected = rows
    if show:
        run.save(update_fields=["rows_expected", "rows_proof"])
    validator.expect(rows)


def _validation_failure(failed: list) -> str:
    first = failed[0]
    more = f" (and {len(failed) - 1} more failed check(s))" if len(failed) > 1 else ""
    return (
        f"Validation failed: {first.description} ({first.origin}): {first.summary()}{more}; "
        "the table's file was not kept."
    )


def _window(run: TableRun, job: ExportJob, spec: dict) -> dict | None:
    """An incremental table's window by xmin in this attempt's snapshot, kept in its spec
    for the manifest (connections.drivers.postgresql.incremental)."""
    if "incremental" not in spec or "watermark" in spec["incremental"]:
        return None
    if spec["incremental"].get("refused"):
        raise TableFailed(
            f"{run.schema}.{run.table} is a {spec['incremental']['refused']}: its rows carry no "
            "transaction to export its changes by. Leave it out of the plan's incremental "
            "tables (it is then exported whole each time), or give it a watermark column.",
            "describe",
        )
    if job.connection.kind != "postgresql" or spec.get("query") or not job.snapshot_xids:
        raise TableFailed(
            "Incremental exports read PostgreSQL tables by the transaction that wrote each "
            "row: export this one in full.",
            "describe",
        )
    asked = spec["incremental"]
    driver = cast(IncrementalDriver, job.connection.driver())
    found = driver.xid_window(job.snapshot_xids, asked.get("after"), asked.get("reason", ""))
    run.spec = {**spec, "window": {"by": "xmin", **{k: v for k, v in found.items() if k != "xmax"}}}
    return found


def _watermark(
    run: TableRun, driver: IncrementalDriver, session, columns: list, spec: dict
) -> dict | None:
    """An incremental table's window by the watermark column the plan names: (the last
    end, its highest value less the lag] in the snapshot, kept in its spec."""
    asked = (spec.get("incremental") or {}).get("watermark")
    if not asked:
        return None
    column = next((c for c in columns if c.name == asked["column"]), None)
    kinds = driver.WATERMARK_TYPES if run.job.connection.kind == "postgresql" else {}
    if column is None or column.base_type not in kinds:
        raise TableFailed(
            f"The watermark column {asked['column']} is not "
            + ("a column of this table" if column is None else "a number, a date or a timestamp")
            + ": name another in the plan.",
            "describe",
        )
    after = spec["incremental"].get("after")
    try:
        before = driver.watermark_upper(
            session, run.schema, run.table, column.name, column.base_type, asked["lag"], after
        )
    except Exception as error:
        if (getattr(error, "pgcode", None) or "")[:2] not in ("22", "42"):
            raise TableFailed(_explain(error, run.job.connection), "describe") from error
        # A data or a type error: a lag the column's type cannot take.
        raise TableFailed(
            f"The watermark's lag '{asked['lag']}' does not fit column {column.name} "
            f"({column.source_type}): give a number for numbers, and a duration such as "
            "'5 minutes' for dates and timestamps.",
            "describe",
        ) from error
    window = {
        "column": column.name,
        "base_type": column.base_type,
        "after": after,
        "before": before,
    }
    run.spec = {
        **(run.spec or {}),
        "window": {
            "by": "watermark",
            "mode": "base" if after is None else "incremental",
            "column": column.name,
            "lag": asked["lag"],
            "after": after,
            "before": before,
            "reason": spec["incremental"].get("reason", "") if after is None else "",
        },
    }
    return window


def _selected(columns: list, spec: dict) -> list:
    """The source's columns that leave, in the source's order; a chosen column gone since
    the job was created fails the table rather than shrink it silently."""
    chosen = spec.get("columns")
    if not chosen:
        return columns
    present = {c.name for c in columns}
    gone = [name for name in chosen if name not in present]
    if gone:
        raise TableFailed(
            f"Column {', '.join(gone)} is no longer in the table; create the job again.",
            "describe",
        )
    return [c for c in columns if c.name in set(chosen)]


def _phase(phase: str, connection, function, *args, **kwargs):
    """Run one step of a table's export; a failure names the step in the JobError."""
    try:
        return function(*args, **kwargs)
    except Exception as error:
        raise TableFailed(_explain(error, connection), phase) from error


def _close(sessions):
    for session in sessions:
        try:
            session.close()
        except Exception:
            pass  # already broken: nothing to release


def _column_of(error, plans):
    """The plan of the column whose value did not fit, from either kind of error."""
    if isinstance(error, DoesNotFit):
        return next(p for p in plans if p.name == error.column)
    match = _CSV_COLUMN.search(str(error))
    return plans[int(match.group(1))] if match else None


def _reason(error) -> str:
    # The parser quotes the offending value; the manifest must not carry data.
    text = error.reason if isinstance(error, DoesNotFit) else str(error)
    text = re.sub(r"'.*'", "a value", _CSV_COLUMN.sub("", text)).strip(": ")
    return f"a value does not fit the native type ({text})"


def _explain(error: BaseException, connection, table="") -> str:
    if isinstance(error, (ConnectionFailed, TableFailed)):
        return str(error)
    if isinstance(error, OSError):
        return explain_os_error(error)
    return connection.driver().explain(error, connection, str(table))


def finish_job(job_id: int) -> ExportJob:
    """Derive the job's status from its tables, total it up and write the manifest."""
    job = ExportJob.objects.select_related("connection").get(pk=job_id)
    job.update_totals()
    job.save()
    status = job.derived_status()
    if status == ExportJob.Status.RUNNING:
        return job  # tables are still at work
    # The manifest is in place before the status says the job ended: whoever sees it
    # ended finds the folder complete.
    job.status, job.finished_at = status, timezone.now()
    log = job_log(job)
    note = ""
    try:
        manifest.write(job)
    except OSError as error:
        JobError.record(job, None, explain_os_error(error), phase="manifest")
        status, note = ExportJob.Status.FAILED, "manifest"
        log.error("the manifest could not be written: %s", explain_os_error(error))
    job.set_status(status, note=note)
    log.info(
        "%s: %s of %s table(s), %s rows",
        job.get_status_display().lower(),
        job.tables_complete,
        job.tables_total,
        job.rows_written,
    )
    job_finished.send(ExportJob, job=job)
    return job


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(name: str) -> str:
    """A file name for a schema or table name: never a path, never hidden, reversible."""
    encoded = _UNSAFE.sub(lambda m: "%" + "%".join(f"{b:02X}" for b in m.group().encode()), name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded or "%00"
