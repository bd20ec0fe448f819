r"""An order-independent fingerprint of a table's content, computed two ways that must agree:
in PostgreSQL over a loaded table (`sql`, `of_table`) and in Python over the Parquet files
ADU exported (`Accumulator`, `of_files`).

A fingerprint is (rows, digest). The digest is the sum, modulo 2**64, over the rows of the
first 8 bytes (big-endian, unsigned) of SHA-256 of the row's canonical bytes, written as 16
lowercase hex digits. A sum, not a XOR: a row twice is not the same as the row absent.
SHA-256, not md5: md5() fails on FIPS servers.

Canonical bytes of a row: the UTF-8 of PostgreSQL's record output (record_out) of a row of
the columns' canonical texts in manifest order, i.e. of ROW(v0, v1, ...)::text, which the
server computes in one call per row. Its rules (src/backend/utils/adt/rowtypes.c):
"(" + the values joined by "," + ")"; a NULL is nothing at all; a value is written in
double quotes if it is empty or holds any of " \ ( ) , or a space, \t, \n, \v, \f or \r
(C's isspace, in the database's LC_CTYPE: these six in C and glibc locales; a libc that
calls some byte above 127 a space, as macOS's may, would quote where the file side does
not), and inside the quotes " and \ are doubled. A NULL then an x is "(,x)", an empty
string then an x '("",x)'; a 1-column row is "(x)", a row of no columns "()". The quotes
make the joined text unambiguous.

Canonical text of a value follows how the file holds the column (its manifest entry's
"arrow_type" and "representation"):

- string (a native string, or any text form: arrays, enums, intervals, json, ranges,
  composites, fallbacks...): the text as stored. The database side reads the type's
  output function, as COPY did, through format('%s', col) (col::text differs for bool,
  inet, char(n)); xml was exported as col::text (which keeps an XML declaration) and
  money's text fallback as col::numeric, and are read so here.
- int16/int32/int64: decimal text.
- decimal128/decimal256(p, s): decimal text with exactly s digits after the point (no
  exponent), as numeric(p, s) prints; money is read as col::numeric, as exported.
- float/double: the IEEE 754 bit pattern read as a signed integer (int32/int64), in decimal;
  every NaN counts as the one pattern 0x7fc00000 / 0x7ff8000000000000; -0 stays -0.
- bool: "true" or "false".
- date32: days since 1970-01-01, decimal.
- timestamp[us] (with or without a time zone): microseconds since 1970-01-01 00:00, decimal.
- time64[us]: microseconds since midnight, decimal.
- binary: its bytes in lowercase hex (encode(v, 'hex')), no prefix.
- uuid: its 16 bytes in lowercase hex, 32 digits, no dashes.

A value is NULL in the row exactly when it is NULL in the file: a composite whose fields
are all NULL ("(,)" in the file) is `IS NULL` in SQL, so the database side tests NULL with
pg_column_size, which is strict.

The database session must run with connections.drivers.postgresql.session.SESSION_SETTINGS
(the settings of the export's reads): text forms such as intervals and timestamps print by
them. `of_table` checks them.
"""

import hashlib
import pathlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg2 import sql as pgsql

from connections.drivers.postgresql.session import SESSION_SETTINGS
from connections.models import ConnectionFailed
from loads.copy import hex_text

# The representations (connections/drivers/postgresql/types.py) whose text the export read
# through a cast rather than the output function.
XML_TEXT = "XML text"
MONEY_TEXT = "decimal text"

# The one bit pattern every NaN counts as (the quiet NaN with no payload, sign clear).
FLOAT_NAN_BITS = 0x7FC00000
DOUBLE_NAN_BITS = 0x7FF8000000000000


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    digest: str  # 16 lowercase hex digits

    def as_dict(self) -> dict:
        return {"rows": self.rows, "digest": self.digest}


# -- The database side ---------------------------------------------------------------------


def sql(
    schema: str, table: str, columns: list[dict], where: pgsql.Composable | None = None
) -> pgsql.Composed:
    """One SELECT returning one row (rows bigint, digest text) over "schema"."table", or the
    rows of it that meet `where`. Run it with SESSION_SETTINGS set on the session."""
    # sum(bigint) is exact (numeric); the modulo and the hex digits are done here too, so
    # that the caller only reads two values.
    return pgsql.SQL(
        "SELECT row_count AS rows, lpad(to_hex((CASE WHEN total >= 9223372036854775808"
        " THEN total - 18446744073709551616 ELSE total END)::bigint), 16, '0') AS digest"
        " FROM (SELECT count(*)::bigint AS row_count,"
        " mod(mod(coalesce(sum(('x' || encode(substr(sha256(convert_to({row}, 'UTF8')), 1, 8),"
        " 'hex'))::bit(64)::bigint), 0), 18446744073709551616) + 18446744073709551616,"
        " 18446744073709551616) AS total"
        " FROM {schema}.{table}{where}) AS totals"
    ).format(
        row=row_text_sql(columns),
        schema=pgsql.Identifier(schema),
        table=pgsql.Identifier(table),
        where=pgsql.SQL(" WHERE {}").format(where) if where is not None else pgsql.SQL(""),
    )


def row_text_sql(columns: list[dict]) -> pgsql.Composable:
    """A row's canonical text, as a text expression over the table's columns."""
    if not columns:
        return pgsql.SQL("'()'::text")
    # One record_out call per row: it quotes and escapes each value, and NULL is nothing.
    return pgsql.SQL("ROW({})::text").format(
        pgsql.SQL(", ").join(_value_sql(column) for column in columns)
    )


def of_table(cursor, schema: str, table: str, columns: list[dict]) -> Fingerprint:
    """The fingerprint of a table, on a psycopg2 cursor whose session has SESSION_SETTINGS."""
    _check_settings(cursor)
    cursor.execute(sql(schema, table, columns))
    rows, digest = cursor.fetchone()
    return Fingerprint(int(rows), digest)


def _check_settings(cursor):
    # Under other settings intervals, dates and timestamps print otherwise than in the file:
    # the fingerprints would differ for no fault of the data.
    names = list(SESSION_SETTINGS)
    cursor.execute(
        pgsql.SQL("SELECT {}").format(
            pgsql.SQL(", ").join(
                pgsql.SQL("current_setting({})").format(pgsql.Literal(n)) for n in names
            )
        )
    )
    found = dict(zip(names, cursor.fetchone(), strict=True))
    wrong = [n for n in names if _normal(found[n]) != _normal(SESSION_SETTINGS[n])]
    if wrong:
        # A pooler in front of the server (pgbouncer) may drop a session's start-up options.
        raise ConnectionFailed(
            "The server did not keep the settings ADU asked for its session ("
            + ", ".join(f"{n} is {found[n]!r}, not {SESSION_SETTINGS[n]!r}" for n in wrong)
            + "): connect to it directly, not through a pooler that drops them."
        )


def _normal(setting: str) -> str:
    return setting.replace(" ", "").lower()


def _value_sql(column: dict) -> pgsql.Composable:
    """The canonical text of the column's value as a text expression, NULL exactly when the
    value is NULL."""
    col = pgsql.Identifier(column["name"])
    arrow = column["arrow_type"]
    if arrow in ("binary", "large_binary"):
        return pgsql.SQL("encode({}::bytea, 'hex')").format(col)
    if _is_uuid(arrow):
        return pgsql.SQL("encode(uuid_send({}), 'hex')").format(col)
    if arrow in ("string", "large_string"):
        return _text_sql(col, column)
    return _number_sql(col, arrow)


def _is_uuid(arrow_type: str) -> bool:
    return arrow_type in (str(pa.uuid()), "uuid", "extension<arrow.uuid>")


def _text_sql(col: pgsql.Composable, column: dict) -> pgsql.Composable:
    representation = column.get("representation")
    if representation == XML_TEXT:
        return pgsql.SQL("{}::text").format(col)
    if representation == MONEY_TEXT and column.get("fallback"):
        return pgsql.SQL("{}::numeric::text").format(col)
    # format() calls the output function but gives '' for NULL; `col IS NULL` would be
    # true for a composite whose fields are all NULL, "(,)" in the file. pg_column_size is
    # strict: NULL exactly when the value is.
    return pgsql.SQL(
        "CASE WHEN pg_column_size({0}) IS NULL THEN NULL ELSE format('%s', {0}) END"
    ).format(col)


def _number_sql(col: pgsql.Composable, arrow: str) -> pgsql.Composable:
    if arrow in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        return pgsql.SQL("{}::text").format(col)
    if arrow.startswith(("decimal128(", "decimal256(")):
        return pgsql.SQL("{}::numeric::text").format(col)
    if arrow == "bool":
        return pgsql.SQL("{}::text").format(col)
    if arrow == "float":
        return _float_sql(col, "float4", 32, "int4", FLOAT_NAN_BITS)
    if arrow == "double":
        return _float_sql(col, "float8", 64, "bigint", DOUBLE_NAN_BITS)
    if arrow == "date32[day]":
        return pgsql.SQL("({} - date '1970-01-01')::text").format(col)
    if arrow.startswith("timestamp[us"):
        # extract() gives float8 before PostgreSQL 14: whole seconds and the microseconds
        # of the minute are each exact in a float8, their combination would not be.
        # date_trunc floors (calendar fields are positive), so pre-1970 values add up too.
        return pgsql.SQL(
            "(extract(epoch from date_trunc('second', {0}))::bigint * 1000000"
            " + extract(microseconds from {0})::bigint % 1000000)::text"
        ).format(col)
    if arrow == "time64[us]":
        return pgsql.SQL(
            "((extract(hour from {0})::bigint * 60 + extract(minute from {0})::bigint)"
            " * 60000000 + extract(microseconds from {0})::bigint)::text"
        ).format(col)
    raise ValueError(f"no canonical form for a column held as {arrow}")


def _float_sql(col, name: str, bits: int, integer: str, nan: int) -> pgsql.Composable:
    # NaN = NaN is true in PostgreSQL, whatever the NaN's bits. NULL = NaN is NULL: the
    # ELSE branch, NULL too.
    return pgsql.SQL(
        "(CASE WHEN {col} = 'NaN'::{float} THEN {nan}::{integer}"
        " ELSE ('x' || encode({send}({col}), 'hex'))::bit({bits})::{integer} END)::text"
    ).format(
        col=col,
        float=pgsql.SQL(name),
        nan=pgsql.Literal(_signed(nan, bits)),
        integer=pgsql.SQL(integer),
        send=pgsql.SQL(name + "send"),
        bits=pgsql.SQL(str(bits)),
    )


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


# -- The file side -------------------------------------------------------------------------


class Accumulator:
    """The fingerprint of record batches (columns in manifest order, types as in the file),
    fed one at a time: memory stays that of one batch."""

    def __init__(self, columns: list[dict]):
        self.columns = columns
        self.rows = 0
        self.total = np.uint64(0)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_columns != len(self.columns):
            raise ValueError(
                f"the batch has {batch.num_columns} columns, the manifest {len(self.columns)}"
            )
        if not batch.num_rows:
            return
        for part in _parts(batch):
            with np.errstate(over="ignore"):  # the sum wraps at 2**64: that is the modulo
                self.total += _prefix_sum(row_text(part))
        self.rows += batch.num_rows

    def result(self) -> Fingerprint:
        return Fingerprint(self.rows, f"{int(self.total):016x}")


def of_files(paths: list[pathlib.Path], columns: list[dict]) -> Fingerprint:
    """The fingerprint of Parquet files, read one row group's batches at a time."""
    accumulator = Accumulator(columns)
    names = [column["name"] for column in columns]
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(columns=names):
                accumulator.add(batch)
    return accumulator.result()


# A batch is taken this many bytes of values at a time: the text of a slice (hex doubles
# bytes) stays within a string array's 32-bit offsets, and in the CPU's caches.
_PART_BYTES = 32 * 2**20


def _parts(batch: pa.RecordBatch):
    size = batch.nbytes
    if size <= _PART_BYTES:
        yield batch
        return
    step = max(1, batch.num_rows * _PART_BYTES // size)
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


# What makes record_out quote a value, besides being empty (RE2's \s lacks \v: listed).
_QUOTED = r'["\\(),\t\n\x0b\f\r ]'


def row_text(batch: pa.RecordBatch) -> pa.Array:
    """Each row's canonical text (record_out's), as one string (or large_string) array."""
    if not batch.num_columns:
        return pa.array(["()"] * batch.num_rows, pa.string())
    values = [_value_text(column) for column in batch.columns]
    # 32-bit offsets are quicker; a batch of long values needs 64-bit ones.
    bound = sum(v.nbytes for v in values) + batch.num_rows * (len(values) + 2)
    kind = pa.string() if bound < 2**31 else pa.large_string()
    values = [value.cast(kind) for value in values]
    nothing, comma = pa.scalar("", kind), pa.scalar(",", kind)
    # The parentheses go onto the first and last values (a NULL there is nothing): two
    # columns copied once more rather than the rows.
    opening, closing = pa.scalar("(", kind), pa.scalar(")", kind)
    if len(values) == 1:
        return pc.binary_join_element_wise(
            opening, values[0], closing, nothing, null_handling="replace"
        )
    values[0] = pc.binary_join_element_wise(opening, values[0], nothing, null_handling="replace")
    values[-1] = pc.binary_join_element_wise(values[-1], closing, nothing, null_handling="replace")
    return pc.binary_join_element_wise(*values, comma, null_handling="replace")


def _value_text(array: pa.Array) -> pa.Array:
    """The canonical text of each value of a column as record_out writes it (quoted where it
    must be), NULL for NULL."""
    kind = array.type
    if isinstance(array, pa.ExtensionArray):
        return _value_text(array.storage)  # uuid: its 16 bytes
    if pa.types.is_dictionary(kind):
        return _value_text(array.dictionary_decode())
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _quoted(array)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _quoted(hex_text(array, prefix=b""), special=False)
    if pa.types.is_fixed_size_binary(kind):
        return hex_text(array, prefix=b"")
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return array.cast(pa.string())
    if pa.types.is_decimal(kind):
        return _decimal_text(array)
    if pa.types.is_float32(kind):
        return _float_bits(array, pa.int32(), FLOAT_NAN_BITS, 32).cast(pa.string())
    if pa.types.is_float64(kind):
        return _float_bits(array, pa.int64(), DOUBLE_NAN_BITS, 64).cast(pa.string())
    if pa.types.is_date32(kind):
        return array.cast(pa.int32()).cast(pa.string())
    if pa.types.is_timestamp(kind):
        # safe casts: a coarser unit scales up exactly, a finer one must lose nothing
        return array.cast(pa.timestamp("us", kind.tz)).cast(pa.int64()).cast(pa.string())
    if pa.types.is_time(kind):
        return array.cast(pa.time64("us")).cast(pa.int64()).cast(pa.string())
    raise ValueError(f"no canonical form for a column held as {kind}")


def _quoted(text: pa.Array, special: bool = True) -> pa.Array:
    """Text as record_out writes it: in double quotes, with " and \\ doubled, when it is
    empty or (unless `special` is false: hex has none) holds a character of _QUOTED; as it
    is otherwise."""
    needs = pc.equal(text, "")
    if special:
        needs = pc.or_(needs, pc.match_substring_regex(text, _QUOTED))
    needs = pc.fill_null(needs, False)
    if not pc.any(needs).as_py():
        return text
    every = pc.all(needs).as_py()  # char(n)'s padding, for one
    chosen = text if every else pc.filter(text, needs)
    escaped = pc.replace_substring(pc.replace_substring(chosen, "\\", "\\\\"), '"', '""')
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    return quoted if every else pc.replace_with_mask(text, needs, quoted)


# Arrow prints decimals of this scale or less without an exponent.
_PLAIN_SCALE = 6


def _decimal_text(array: pa.Array) -> pa.Array:
    """numeric(p, s)'s text: exactly s digits after the point. Arrow's own cast to string
    writes 1E-10 for 0.0000000001 (as Java's BigDecimal, where a value's exponent is below
    -6, which no scale up to 6 gives): past that, the unscaled integer is printed and the
    point put in."""
    scale = array.type.scale
    if scale <= 0:
        return _unscaled(array).cast(pa.string())
    if scale <= _PLAIN_SCALE:
        return array.cast(pa.string())
    if array.type.bit_width == 128 and array.type.precision <= 18:
        return _small_decimal_text(array, scale)
    text = _unscaled(array).cast(pa.string())
    negative = pc.starts_with(text, "-")
    digits = pc.utf8_lpad(pc.utf8_ltrim(text, "-"), scale + 1, "0")
    return pc.binary_join_element_wise(
        pc.if_else(negative, "-", ""),
        pc.utf8_slice_codeunits(digits, 0, -scale),
        ".",
        pc.utf8_slice_codeunits(digits, -scale),
        "",
    )


def _unscaled(array: pa.Array) -> pa.Array:
    """The decimals' integers (1.50 in decimal(5, 2) is 150), on the same buffers."""
    whole = pa.decimal128(38, 0) if array.type.bit_width == 128 else pa.decimal256(76, 0)
    return pa.Array.from_buffers(whole, len(array), array.buffers(), array.null_count, array.offset)


def _small_decimal_text(array: pa.Array, scale: int) -> pa.Array:
    """_decimal_text for up to 18 digits, in int64 arithmetic (twice as fast): a decimal128
    of that many digits is its low 64-bit word (little-endian two's complement)."""
    words = np.frombuffer(array.buffers()[1], np.int64, 2 * (array.offset + len(array)))
    unscaled = words[2 * array.offset :: 2]
    magnitude = np.abs(unscaled)
    whole = pa.array(magnitude // 10**scale).cast(pa.string())
    # 10**scale added keeps the fraction's leading zeros: "1" + digits, the "1" becomes "."
    fraction = pa.array(magnitude % 10**scale + 10**scale).cast(pa.string())
    text = pc.binary_join_element_wise(whole, pc.utf8_replace_slice(fraction, 0, 1, "."), "")
    negative = unscaled < 0
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    if array.null_count:  # the words under a NULL are whatever the writer left there
        text = pc.if_else(array.is_valid(), text, pa.scalar(None, pa.string()))
    return text


def _float_bits(array: pa.Array, integer: pa.DataType, nan: int, bits: int) -> pa.Array:
    """The floats' bit patterns as signed integers, every NaN as `nan`."""
    raw = pa.Array.from_buffers(
        integer, len(array), array.buffers()[:2], array.null_count, array.offset
    )
    return pc.if_else(pc.is_nan(array), pa.scalar(_signed(nan, bits), integer), raw)


def _prefix_sum(rows: pa.Array) -> np.uint64:
    """The sum, wrapping at 2**64, of the first 8 bytes of each row's SHA-256."""
    _, offsets_buffer, data_buffer = rows.buffers()
    large = pa.types.is_large_binary(rows.type) or pa.types.is_large_string(rows.type)
    width = np.int64 if large else np.int32
    offsets = np.frombuffer(offsets_buffer, width, len(rows) + 1, rows.offset * width(0).itemsize)
    data = memoryview(data_buffer if data_buffer is not None else b"")
    sha256 = hashlib.sha256
    bounds = offsets.tolist()
    digests = b"".join(
        [
            sha256(data[start:end]).digest()
            for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    )
    # Each digest is four big-endian 64-bit words; the first is the row's prefix.
    with np.errstate(over="ignore"):
        return np.frombuffer(digests, ">u8")[::4].sum(dtype=np.uint64)
