"""Rows out of Vertica: every read runs `AT EPOCH n SELECT ...`; rows travel in Vertica's
binary format, are taken from the cursor one by one into batches bounded by bytes and rows,
and each batch becomes Arrow (connections.drivers.vertica.types)."""

from collections.abc import Callable, Generator

import pyarrow as pa

from connections.drivers.arrays import read_schema
from connections.drivers.vertica.catalog import relation
from connections.drivers.vertica.session import Session
from connections.drivers.vertica.types import Read, build_batch

# A batch ends at about BATCH_BYTES of values or MAX_BATCH_ROWS rows, whichever comes
# first: Python holds a batch's values as objects (about 60 bytes each) until it becomes
# Arrow, so both stay small whatever the table's size, even with 32 MB LONG values.
BATCH_BYTES = 4 << 20
MAX_BATCH_ROWS = 16384
CSV_BLOCK_BYTES = BATCH_BYTES  # the engine's name for a driver's read budget
# vertica-python does not say how many rows a SELECT sent: count_rows proves the export
# complete.
REPORTS_ROWS_SENT = False


def count_rows(db: Session, schema: str, table: str) -> int:
    with db.cursor() as cur:
        cur.execute(f"{db.at()}SELECT COUNT(*) FROM {relation(schema, table)}")
        return int(cur.fetchone()[0])


def read_batches(
    open_session: Callable[[], Session],
    schema: str,
    table: str,
    plans: list,
    readers: int = 1,
    pages: int | None = None,
    block_bytes: int = BATCH_BYTES,
    sent: list[int | None] | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Arrow batches of the table at the session's epoch, of bounded size.

    Rows are taken one at a time from the cursor (vertica-python reads one message per
    row from the socket) and counted by size, so a batch never holds much more than
    `block_bytes` of values, whatever the width of the rows.
    """
    select_list: list[Read] = [p.expression for p in plans]
    arrow_types = read_schema(plans)
    session = open_session()
    columns = ", ".join(read.sql for read in select_list)
    fixed = 8 * len(select_list)
    rows: list[list]  # as vertica-python returns them
    with session.cursor() as cur:
        cur.execute(f"{session.at()}SELECT {columns} FROM {relation(schema, table)}")
        while True:
            rows, size, row = [], 0, None
            while size < block_bytes and len(rows) < MAX_BATCH_ROWS:
                row = cur.fetchone()
                if row is None:
                    break
                rows.append(row)
                size += fixed + sum(_size(value) for value in row)
            if rows:
                yield build_batch(rows, select_list, arrow_types)
            if row is None:
                return


def _size(value) -> int:
    """About how many bytes a value takes in Arrow (fixed-width values count in `fixed`)."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, (list, dict, set)):
        return 16 * len(value)
    return 0
