"""Rows out of PostgreSQL as `COPY (SELECT ...) TO STDOUT`, in one of two forms.

A table of plain types (integers, floats, numeric, text, dates and times, bytea, uuid) comes in
binary and is decoded by ADU's C extension (native/adu_pgcopy.c) straight into Arrow
buffers, with the GIL released. Any other table comes as CSV, the server's text output,
which is exact for every type, parsed by pyarrow's streaming CSV reader in C++. Either
way memory is bounded by the batch size. A large table is read as several ctid ranges
over several connections that all import the job's snapshot, as `pg_dump -j` does.
"""

import fcntl
import functools
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator

import adu_pgcopy
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from connections.drivers import interrupt
from connections.drivers.arrays import read_schema
from connections.drivers.base import NATIVE, DoesNotFit, is_small
from connections.drivers.postgresql import selection

REPORTS_ROWS_SENT = True  # each COPY's "COPY n" (see read_batches)
CSV_BLOCK_BYTES = 2 << 20
PIPE_BYTES = 1 << 20
# Below this many pages (8 kB each) one reader is as fast as several.
SPLIT_MIN_PAGES = 4096
_F_SETPIPE_SZ = 1031


def read_batches(
    open_session: Callable[[], object],
    schema: str,
    table: str,
    plans: list,
    readers: int = 1,
    pages: int | None = None,
    block_bytes: int = CSV_BLOCK_BYTES,
    sent: list[int | None] | None = None,
    row_filter: str = "",
    query: str = "",
    xid_window: dict | None = None,
    watermark: dict | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Arrow batches of the table (or of `query`'s result) for its column plans, read over
    `readers` sessions opened by `open_session`, keeping only rows that meet `row_filter`
    (checked before) and are in the incremental window (`xid_window` or `watermark`). As each COPY ends
    well, the rows the server reports it sent ("COPY n", or None from a server or pooler
    that leaves it out) are appended to `sent`.

    The COPYs together read each row of the snapshot once: one reads the whole table, or
    each reads a ctid range, the ranges running from the first page to past the last one
    with no gap or overlap. So once every COPY has ended, the sum of `sent` is the rows of
    the table in the snapshot, as a count(*) beside it would find, with no second scan.

    Each session must already see the job's snapshot. Batches of several readers
    interleave; their order carries no meaning. A row longer than `block_bytes` raises
    ArrowInvalid ("straddling object"): read again with larger blocks.
    """
    relation = selection.from_clause(schema, table, query)
    ranges = [] if query or pages is None else ctid_ranges(readers, pages)
    kinds = [binary_kind(p) for p in plans]
    if None in kinds:
        # A column only the server's text output carries exactly: every column as CSV.
        read = _read_csv(read_schema(plans), block_bytes, sent)
        form = "csv"
    else:
        read = _read_binary(plans, kinds, block_bytes, sent)
        form = "binary"
    statements = [
        sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT {})").format(
            sql.SQL(", ").join(p.expression for p in plans),
            relation,
            selection.where_clause(row_filter, conditions, xid_window, watermark),
            sql.SQL(form),
        )
        for conditions in ranges or [[]]
    ]
    if len(statements) == 1 and is_small(pages):
        # Read here: its rows are one batch, with nothing to overlap a thread with.
        yield from read(open_session(), statements[0])
        return
    # Otherwise even one reader gets a thread: the server keeps sending while batches
    # are written.
    yield from _merge(read, [(open_session, statement) for statement in statements])


def ctid_ranges(readers: int, pages: int) -> list[list[sql.Composed]]:
    """The conditions of each reader's ctid range, or [] when one COPY reads the table.

    Between two neighbours lies one bound, the end of one range and the start of the next;
    the first range starts at the first page and the last has no end (pages is an estimate
    and the table may have grown), so every row is in exactly one range."""
    if readers <= 1 or pages < SPLIT_MIN_PAGES:
        return []
    bounds = [sql.Literal(f"({pages * i // readers},0)") for i in range(1, readers)]
    starts = [[sql.SQL("ctid >= {}::tid").format(bound)] for bound in bounds]
    ends = [[sql.SQL("ctid < {}::tid").format(bound)] for bound in bounds]
    return [a + b for a, b in zip([[], *starts], [*ends, []], strict=True)]


# The types decoded from COPY's binary form by adu_pgcopy (native/). On lineitem that
# takes about 1 cpu-s where receiving and parsing CSV took about 5.
_BINARY_KINDS = {
    "bool": adu_pgcopy.BOOL,
    "int2": adu_pgcopy.INT16,
    "int4": adu_pgcopy.INT32,
    "int8": adu_pgcopy.INT64,
    "oid": adu_pgcopy.OID,
    "float4": adu_pgcopy.FLOAT32,
    "float8": adu_pgcopy.FLOAT64,
    "date": adu_pgcopy.DATE,
    "timestamp": adu_pgcopy.TIMESTAMP,
    "timestamptz": adu_pgcopy.TIMESTAMP,
    "time": adu_pgcopy.TIME,
    "numeric": adu_pgcopy.DECIMAL,
    "money": adu_pgcopy.DECIMAL,  # read as numeric
    "text": adu_pgcopy.STRING,
    "varchar": adu_pgcopy.STRING,
    "bpchar": adu_pgcopy.STRING,
    "name": adu_pgcopy.STRING,
    "bytea": adu_pgcopy.BINARY,
    "uuid": adu_pgcopy.UUID,
}
BINARY_BATCH_ROWS = 32_768


def binary_kind(column_plan) -> tuple[int, int, int] | None:
    """(kind, precision, scale) for adu_pgcopy, or None: the column needs the text form."""
    source, arrow_type = column_plan.source, column_plan.arrow_type
    kind = _BINARY_KINDS.get(source.base_type)
    if (
        kind is None
        or column_plan.representation != NATIVE
        or source.category == "A"
        or source.type_kind == "e"
    ):
        return None
    if kind == adu_pgcopy.DECIMAL:
        if not pa.types.is_decimal128(arrow_type):
            return None
        return kind, arrow_type.precision, arrow_type.scale
    return kind, 0, 0


class CopyFailed(Exception):
    """The server ended a binary COPY with an error (`pgcode` is its SQLSTATE)."""

    def __init__(self, pgcode: str | None, message: str):
        super().__init__(message)
        self.pgcode = pgcode


@functools.cache
def _libpq() -> str:
    """The file of the libpq psycopg2 runs on: adu_pgcopy must call that very copy."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if "/libpq" in path and ".so" in path:
                return path
    raise RuntimeError("psycopg2's libpq is not loaded")


def _read_binary(plans, kinds, block_bytes: int, sent: list[int | None] | None):
    names = [p.name for p in plans]
    arrow_types = [p.arrow_type for p in plans]

    def read(db, statement) -> Iterator[pa.RecordBatch]:
        if db.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            with db.cursor() as cur:  # psycopg2 begins its transaction on a first statement
                cur.execute("SELECT 1")
        decoder = adu_pgcopy.Decoder(_libpq(), db.pgconn_ptr, kinds)
        try:
            decoder.start(statement.as_string(db))
            while batch := decoder.read(BINARY_BATCH_ROWS, block_bytes * 8, pa.allocate_buffer):
                columns, rows = batch
                yield pa.RecordBatch.from_arrays(
                    [_array(t, rows, *c) for t, c in zip(arrow_types, columns, strict=True)],
                    names=names,
                )
            if sent is not None:
                sent.append(decoder.sent())
        except adu_pgcopy.DoesNotFit as error:
            column, reason = error.args
            raise DoesNotFit(plans[column].name, reason) from None
        except adu_pgcopy.CopyFailed as error:
            state, message = error.args if len(error.args) == 2 else (None, error.args[0])
            raise CopyFailed(state, message) from None

    return read


def _array(arrow_type, rows: int, validity, values, offsets, nulls: int) -> pa.Array:
    if isinstance(arrow_type, pa.BaseExtensionType):  # uuid: over fixed_size_binary(16)
        storage = pa.Array.from_buffers(arrow_type.storage_type, rows, [validity, values], nulls)
        return pa.ExtensionArray.from_storage(arrow_type, storage)
    buffers = [validity, values] if offsets is None else [validity, offsets, values]
    return pa.Array.from_buffers(arrow_type, rows, buffers, nulls)


def _read_csv(arrow_types: pa.Schema, block_bytes: int, sent: list[int | None] | None):
    def read(db, statement) -> Iterator[pa.RecordBatch]:
        return _read_copy(db, statement, arrow_types, block_bytes, sent)

    return read


def _read_copy(
    db, statement, arrow_types: pa.Schema, block_bytes: int, sent: list[int | None] | None
):
    """Stream one COPY through an OS pipe into pyarrow's CSV reader.

    psycopg2 pushes COPY data into a file object; pyarrow pulls from one. A pipe joins
    them with bounded memory: when the reader falls behind, the COPY thread blocks.
    """
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # a smaller pipe is only slower
    source = os.fdopen(read_fd, "rb", buffering=PIPE_BYTES)
    sink = os.fdopen(write_fd, "wb", buffering=PIPE_BYTES)
    failure: list[BaseException] = []

    def copy():
        try:
            with db.cursor() as cur:
                cur.copy_expert(statement, sink)
                if sent is not None:  # from the server's "COPY n"
                    sent.append(cur.rowcount if cur.rowcount >= 0 else None)
        except BaseException as error:  # handed to the reading thread
            failure.append(error)
        finally:
            try:
                sink.close()
            except OSError as error:  # the reader went away
                failure.append(error)

    copier = threading.Thread(target=copy, daemon=True, name="adu-copy")
    copier.start()
    try:
        yield from _parse(source, arrow_types, block_bytes)
    except pa.ArrowInvalid:
        # A COPY that died mid-stream leaves a truncated CSV: its error is the real one.
        # (Look before stopping it: stopping makes the COPY fail with a broken pipe.)
        copy_failed = list(failure)
        _stop_copy(db, copier, source)
        if copy_failed:
            raise copy_failed[0] from None
        raise
    except BaseException:
        _stop_copy(db, copier, source)
        raise
    copier.join()
    source.close()
    if failure:
        raise failure[0]


def _parse(source, arrow_types: pa.Schema, block_bytes: int) -> Iterator[pa.RecordBatch]:
    # use_threads=False: the threaded reader reads ahead up to 32 blocks whenever the
    # Parquet writer is slower than the network, and memory grows with the table.
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=arrow_types.names, block_size=block_bytes, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=arrow_types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                # The session's client_encoding is UTF8: the server checks every byte it
                # sends (even from a SQL_ASCII database) and fails the COPY on a bad one.
                check_utf8=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    except pa.ArrowInvalid as error:
        if str(error) == "Empty CSV file":
            return  # an empty table, or a COPY that failed at once (the caller checks)
        raise
    yield from reader


def _stop_copy(db, copier, source):
    try:
        db.cancel()
    except psycopg2.Error:
        pass
    source.close()  # unblocks a COPY thread waiting on a full pipe
    copier.join(timeout=30)


_DONE = object()


def _merge(read_one, jobs) -> Iterator[pa.RecordBatch]:
    """Batches from several COPY streams, read by one thread each, through a bounded queue."""
    batches: queue.Queue = queue.Queue(maxsize=len(jobs))
    stop = threading.Event()
    failure: list[BaseException] = []
    sessions = []

    def read(open_session, statement):
        try:
            sessions.append(open_session())
            for batch in read_one(sessions[-1], statement):
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:
            failure.append(error)
            stop.set()
        finally:
            batches.put(_DONE)

    threads = [
        threading.Thread(target=read, args=job, daemon=True, name="adu-range") for job in jobs
    ]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            batch = batches.get()
            if batch is _DONE:
                finished += 1
                if failure:
                    raise failure[0]
                continue
            yield batch
    finally:
        # No reader may outlive this generator: its caller closes the sessions next, and a
        # reader in the middle of a batch still uses its session's connection. Cancelling
        # their COPY ends a reader that waits on the server at once.
        stop.set()
        if any(thread.is_alive() for thread in threads):
            interrupt(sessions)
        while any(thread.is_alive() for thread in threads):
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass
        for thread in threads:
            thread.join()
