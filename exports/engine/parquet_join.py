"""Joins row groups encoded separately into one Parquet file.

pyarrow encodes and compresses a file's row groups one after another, on one core. A
Parquet row group depends on nothing else in its file (each column chunk has its own
dictionary and statistics), so ADU encodes each one as a small file of its own, several at
once, and joins them: their bytes one after another, then one footer listing every row
group with its offsets moved to where its bytes now are.

The footer is a Thrift struct (FileMetaData) in the compact protocol. This module reads
and writes that protocol generically, as (field id, type, value) triples, and changes
only the fields that hold file offsets, so whatever else pyarrow writes (statistics,
encodings, the Arrow schema) passes through unchanged.

It also reads a column chunk's dictionary page: the distinct values of that chunk, which
the writer has already found, so that the profile need not hash them a second time.
"""

import struct

import pyarrow as pa

MAGIC = b"PAR1"

# Compact protocol types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# Field ids in parquet.thrift
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_FILE_OFFSET, _CHUNK_META_DATA = 2, 3
_CHUNK_OFFSETS = (4, 6)  # offset index, column index
_META_OFFSETS = (9, 10, 11, 14)  # data page, index page, dictionary page, bloom filter
_META_TYPE, _META_CODEC, _META_DICTIONARY_OFFSET, _META_ENCODING_STATS = 1, 4, 11, 13
_PAGE_UNCOMPRESSED_SIZE, _PAGE_COMPRESSED_SIZE, _PAGE_DICTIONARY_HEADER = 2, 3, 7
_DICTIONARY_NUM_VALUES = 1
_STATS_PAGE_TYPE, _STATS_ENCODING = 1, 2
_DICTIONARY_PAGE = 2
_DICTIONARY_ENCODINGS = (2, 8)  # PLAIN_DICTIONARY, RLE_DICTIONARY
_CODECS = {0: None, 6: "zstd"}  # uncompressed and ZSTD: what ADU writes
# Parquet physical types stored PLAIN in a dictionary page, as Arrow reads them back
_FIXED_WIDTH = {1: pa.int32(), 2: pa.int64(), 4: pa.float32(), 5: pa.float64()}
_BYTE_ARRAY, _FIXED_LEN_BYTE_ARRAY = 6, 7


class Struct(list):
    """A Thrift struct: [field id, type, value] lists, in the order read."""

    def get(self, field_id: int):
        return next((f for f in self if f[0] == field_id), None)


def split(data: memoryview) -> tuple[memoryview, Struct]:
    """The row group bytes (after the leading magic) and the parsed footer of a file."""
    data = data.cast("B")  # pyarrow's buffers show signed bytes
    if bytes(data[:4]) != MAGIC or bytes(data[-4:]) != MAGIC:
        raise ValueError("not a Parquet file")
    (length,) = struct.unpack("<I", data[-8:-4])
    start = len(data) - 8 - length
    footer = _Reader(data[start : len(data) - 8]).struct()
    return data[4:start], footer


def row_groups(footer: Struct) -> list[Struct]:
    return footer.get(_FILE_ROW_GROUPS)[2][1]


def moved(group: Struct, delta: int, ordinal: int) -> Struct:
    """The row group with every file offset moved by `delta`, as the `ordinal`-th group."""
    _shift(group, (_GROUP_FILE_OFFSET,), delta)
    ordinal_field = group.get(_GROUP_ORDINAL)
    if ordinal_field:
        ordinal_field[2] = ordinal
    for chunk in group.get(_GROUP_COLUMNS)[2][1]:
        _shift(chunk, _CHUNK_OFFSETS, delta)
        file_offset = chunk.get(_CHUNK_FILE_OFFSET)
        if file_offset and file_offset[2]:  # deprecated: pyarrow writes 0, "not set"
            file_offset[2] += delta
        meta_data = chunk.get(_CHUNK_META_DATA)
        if meta_data:
            _shift(meta_data[2], _META_OFFSETS, delta)
    return group


def dictionary_only(group: Struct, column: int) -> bool:
    """Whether every data page of a row group's column chunk refers to its dictionary
    (none fell back to plain values), of a type and in a codec this module reads."""
    meta = _chunk_meta(group, column)
    stats = meta.get(_META_ENCODING_STATS)
    if meta.get(_META_DICTIONARY_OFFSET) is None or stats is None:
        return False
    readable = meta.get(_META_TYPE)[2] in (*_FIXED_WIDTH, _BYTE_ARRAY, _FIXED_LEN_BYTE_ARRAY)
    return (
        readable
        and meta.get(_META_CODEC)[2] in _CODECS
        and all(
            page.get(_STATS_PAGE_TYPE)[2] == _DICTIONARY_PAGE
            or page.get(_STATS_ENCODING)[2] in _DICTIONARY_ENCODINGS
            for page in stats[2][1]
        )
    )


def chunk_dictionary(data: memoryview, group: Struct, column: int, max_values: int):
    """The values of a column chunk's dictionary (see dictionary_only), read from `data`,
    the bytes of the file the row group's offsets refer to; None if it holds more than
    `max_values`."""
    meta = _chunk_meta(group, column)
    offset = meta.get(_META_DICTIONARY_OFFSET)[2]
    reader = _Reader(data.cast("B")[offset:])
    page = reader.struct()
    count = page.get(_PAGE_DICTIONARY_HEADER)[2].get(_DICTIONARY_NUM_VALUES)[2]
    if count > max_values:
        return None
    start = offset + reader.pos
    raw = data[start : start + page.get(_PAGE_COMPRESSED_SIZE)[2]]
    size = page.get(_PAGE_UNCOMPRESSED_SIZE)[2]
    codec = _CODECS[meta.get(_META_CODEC)[2]]
    plain = pa.decompress(raw, size, codec=codec) if codec else pa.py_buffer(bytes(raw))
    kind = meta.get(_META_TYPE)[2]
    if kind in _FIXED_WIDTH:
        return pa.Array.from_buffers(_FIXED_WIDTH[kind], count, [None, plain])
    if kind == _FIXED_LEN_BYTE_ARRAY:
        return pa.Array.from_buffers(pa.binary(size // count if count else 1), count, [None, plain])
    # BYTE_ARRAY: each value a 4-byte length, then its bytes
    view, values, pos = memoryview(plain), [], 0
    for _ in range(count):
        (length,) = struct.unpack_from("<i", view, pos)
        values.append(view[pos + 4 : pos + 4 + length].tobytes())
        pos += 4 + length
    return pa.array(values, pa.binary())


def _chunk_meta(group: Struct, column: int) -> Struct:
    return group.get(_GROUP_COLUMNS)[2][1][column].get(_CHUNK_META_DATA)[2]


def _shift(fields: Struct, field_ids: tuple, delta: int):
    for field in fields:
        if field[0] in field_ids:
            field[2] += delta


def footer_bytes(first: Struct, groups: list[Struct], rows: int) -> bytes:
    """The footer of the joined file (the first file's, with all groups): its bytes, length
    and magic, ready to append."""
    joined = Struct(
        [f[0], f[1], f[2]]
        if f[0] not in (_FILE_NUM_ROWS, _FILE_ROW_GROUPS)
        else [f[0], f[1], rows if f[0] == _FILE_NUM_ROWS else (_STRUCT, groups)]
        for f in first
    )
    out = bytearray()
    _write_struct(out, joined)
    return bytes(out) + struct.pack("<I", len(out)) + MAGIC


class _Reader:
    def __init__(self, data: memoryview):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def value(self, kind: int):
        if kind in (_TRUE, _FALSE):  # inside a list or map: one byte
            return self.byte() == _TRUE
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.pos += 8
            return struct.unpack("<d", self.data[self.pos - 8 : self.pos])[0]
        if kind == _BINARY:
            length = self.varint()
            self.pos += length
            return bytes(self.data[self.pos - length : self.pos])
        if kind in (_LIST, _SET):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            element = header & 0x0F
            return (element, [self.value(element) for _ in range(size)])
        if kind == _MAP:
            size = self.varint()
            if not size:
                return (0, 0, [])
            types = self.byte()
            key, item = types >> 4, types & 0x0F
            return (key, item, [(self.value(key), self.value(item)) for _ in range(size)])
        if kind == _STRUCT:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind}")

    def struct(self) -> Struct:
        fields = Struct()
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            kind = header & 0x0F
            delta = header >> 4
            field_id = last + delta if delta else self.zigzag()
            last = field_id
            if kind in (_TRUE, _FALSE):
                fields.append([field_id, kind, kind == _TRUE])
            else:
                fields.append([field_id, kind, self.value(kind)])


def _varint(out: bytearray, value: int):
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(out: bytearray, value: int):
    _varint(out, (value << 1) ^ (value >> 63))


def _write_value(out: bytearray, kind: int, value):
    if kind in (_TRUE, _FALSE):
        out.append(_TRUE if value else _FALSE)
    elif kind == _BYTE:
        out.append(value & 0xFF)
    elif kind in (_I16, _I32, _I64):
        _zigzag(out, value)
    elif kind == _DOUBLE:
        out += struct.pack("<d", value)
    elif kind == _BINARY:
        _varint(out, len(value))
        out += value
    elif kind in (_LIST, _SET):
        element, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | element)
        else:
            out.append(0xF0 | element)
            _varint(out, len(items))
        for item in items:
            _write_value(out, element, item)
    elif kind == _MAP:
        key, item, pairs = value
        _varint(out, len(pairs))
        if pairs:
            out.append(key << 4 | item)
            for k, v in pairs:
                _write_value(out, key, k)
                _write_value(out, item, v)
    elif kind == _STRUCT:
        _write_struct(out, value)
    else:
        raise ValueError(f"unknown Thrift compact type {kind}")


def _write_struct(out: bytearray, fields: Struct):
    last = 0
    for field_id, kind, value in fields:
        header_kind = (_TRUE if value else _FALSE) if kind in (_TRUE, _FALSE) else kind
        if 0 < field_id - last <= 15:
            out.append((field_id - last) << 4 | header_kind)
        else:
            out.append(header_kind)
            _zigzag(out, field_id)
        last = field_id
        if kind not in (_TRUE, _FALSE):
            _write_value(out, kind, value)
    out.append(0)
