"""Arrow arrays as drivers read them: the schema of a read, and hex text (bytea, uuid) turned
into bytes for a whole batch at once."""

import numpy as np
import pyarrow as pa


def read_schema(plans: list) -> pa.Schema:
    """The columns as a driver reads them, before ColumnPlan.finish."""
    return pa.schema([pa.field(p.name, p.read_type) for p in plans])


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def hex_to_binary(
    array: pa.Array, prefix: int, drop: bytes = b"", width: int | None = None
) -> pa.Array:
    """Hex text (`\\x0aff` for bytea, dashed for uuid) to bytes, for a whole batch at once.

    Works on the string array's buffers with numpy: no Python code per value.
    """
    if array.offset:
        array = pa.concat_arrays([array])  # buffers that start at the first value
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=n + 1)
    data = array.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data else None
    lengths = np.diff(offsets)
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    if chars is None or not len(chars):
        digits = np.zeros(0, dtype=np.uint8)
        keep_lengths = np.zeros(n, dtype=np.int64)
    else:
        keep = np.ones(len(chars), dtype=bool)
        starts = (offsets[:-1] - offsets[0])[valid & (lengths >= prefix)]
        for i in range(prefix):
            keep[starts + i] = False
        for byte in drop:
            keep &= chars != byte
        digits = _HEX[chars[keep]]
        # Per value: its length minus the prefix and the dropped characters.
        removed = np.zeros(len(chars) + 1, dtype=np.int64)
        np.cumsum(~keep, out=removed[1:])
        relative = offsets - offsets[0]
        keep_lengths = lengths - (removed[relative[1:]] - removed[relative[:-1]])
    if (digits == 255).any() or (keep_lengths % 2).any():
        raise ValueError("the server sent malformed hex data")
    raw = (digits[0::2] << 4) | digits[1::2]
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    if width is not None:
        return pa.Array.from_buffers(
            pa.binary(width), n, [validity, pa.py_buffer(_pad_nulls(raw, valid, width))]
        )
    new_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep_lengths // 2, out=new_offsets[1:])
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(new_offsets), pa.py_buffer(raw)]
    )


def _pad_nulls(raw: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width storage needs a slot for every value, nulls included."""
    if valid.all():
        return raw
    out = np.zeros((len(valid), width), dtype=np.uint8)
    out[valid] = raw.reshape(-1, width)
    return out.reshape(-1)
