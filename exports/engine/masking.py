"""Masking of sensitive columns, applied to each Arrow batch before anything is written.

- null: the column stays, its values go (all NULL).
- hash: HMAC-SHA-256 of the value's text under a key, as 64 hex digits. The same value
  gives the same token in every table and job that uses the same key, so joins still
  work; without the key the value cannot be recovered. The key is derived from the
  site's (settings.MASKING_KEY) for the job's connection (the default: tokens match
  across that connection's jobs), or for the job alone (masking_key="job"); the site's
  own key (tokens that match across connections) is an ADU Admin's choice, since with it
  an operator could hash guesses through a source they control and look tokens of
  another connection up.
- redact: every value becomes "[redacted]" (NULL stays NULL).
- truncate: dates and timestamps to the first of their month, numbers to `precision`
  digits after the point (negative: to tens, hundreds...), towards zero.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from django.conf import settings

from exports.engine import column_kinds

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported by the functions that touch arrays: the portal and the commands use
# METHODS and problem() and start without it.
METHODS = ("null", "hash", "redact", "truncate")
REDACTED = "[redacted]"


def problem(spec: dict, arrow_type: pa.DataType) -> str:
    """Why this masking cannot apply to a column of this type ('' when it can)."""
    method = spec.get("method")
    if method not in METHODS:
        return f"'{method}' is not a masking method; choose one of {', '.join(METHODS)}."
    if method == "truncate":
        if not _truncatable(arrow_type):
            return f"truncate applies to dates, timestamps and numbers, not {arrow_type}."
        precision = spec.get("precision", 0)
        if not isinstance(precision, int) or not -18 <= precision <= 18:
            return "The precision of truncate is a whole number from -18 to 18."
    return ""


def masked_field(field: pa.Field, spec: dict) -> pa.Field:
    """The field as the file holds it once masked (hash and redact give text)."""
    import pyarrow as pa

    arrow_type = pa.string() if spec["method"] in ("hash", "redact") else field.type
    metadata = {**(field.metadata or {}), b"adu.masking": spec["method"].encode()}
    return pa.field(field.name, arrow_type, nullable=True, metadata=metadata)


def mask(array: pa.Array, spec: dict, key: bytes) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    method = spec["method"]
    if method == "null":
        return pa.nulls(len(array), type=array.type)
    if method == "redact":
        present = pc.is_valid(array)
        return pc.if_else(present, pa.scalar(REDACTED), pa.scalar(None, pa.string()))
    if method == "truncate":
        if column_kinds.is_date_or_timestamp(array.type):
            return pc.floor_temporal(array, unit="month")
        return pc.round(array, ndigits=spec.get("precision", 0), round_mode="towards_zero")
    # One HMAC per distinct value of the batch, not per row: columns worth hashing
    # (emails, ids of people) repeat, and each token is a Python call.
    encoded = pc.dictionary_encode(_texts(array))
    tokens = pa.array(
        [_token(key, value.encode()) for value in encoded.dictionary.to_pylist()],
        type=pa.string(),
    )
    return pc.take(tokens, encoded.indices)


def job_key(job, scope: str) -> bytes:
    """The hash masking key of the job for a scope of exports.options.MASKING_KEYS."""
    site = settings.MASKING_KEY.encode()
    if scope == "site":
        return site
    label = f"adu-job-{job.pk}" if scope == "job" else f"adu-connection-{job.connection_id}"
    return hmac.new(site, label.encode(), hashlib.sha256).digest()


def _token(key: bytes, value: bytes) -> str:
    return hmac.new(key, value, hashlib.sha256).hexdigest()


def _texts(array: pa.Array) -> pa.Array:
    """Each value as the text that is hashed: the same value, the same text, whatever the
    column's width (an integer is its digits in a smallint as in a bigint); bytes as hex."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    if pa.types.is_binary(array.type) or pa.types.is_fixed_size_binary(array.type):
        return pa.array([None if v is None else v.hex() for v in array.to_pylist()], pa.string())
    try:
        return pc.cast(array, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())


def _truncatable(arrow_type: pa.DataType) -> bool:
    return column_kinds.is_number(arrow_type) or column_kinds.is_date_or_timestamp(arrow_type)
