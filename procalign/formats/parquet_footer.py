"""Merge Parquet footers, so a file can be built from separately encoded row groups.

Why: a Parquet file is readable only once its footer is written, at the very end, so a killed
writer leaves nothing usable. procalign therefore encodes each chunk as a complete in-memory
Parquet file with pyarrow, appends only its body (the column chunks) to the output, and keeps
its footer aside. At the end the footers become one: the row groups of all of them, with every
file offset moved by where that body landed. A killed run keeps every finished chunk.

The footer is a Thrift ``FileMetaData`` in the compact protocol (parquet-format, Thrift
compact protocol spec). `decode`/`encode` handle that protocol generically (field ids and
types, no schema), so unknown fields pass through untouched; `merge` only touches the fields
that hold absolute offsets:

* ``FileMetaData``: 3 num_rows (summed), 4 row_groups (concatenated);
* ``RowGroup``: 1 columns, 5 file_offset, 7 ordinal (renumbered);
* ``ColumnChunk``: 2 file_offset, 3 meta_data, 4 offset_index_offset, 6 column_index_offset;
* ``ColumnMetaData``: 9 data_page_offset, 10 index_page_offset, 11 dictionary_page_offset,
  14 bloom_filter_offset.

Page indexes store page offsets inside the body itself, so bodies written with a page index
cannot move: `merge` refuses footers that reference one (procalign never writes them).
"""
from __future__ import annotations

import struct

MAGIC = b"PAR1"
STOP, TRUE, FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID = range(14)

# (field id path) -> fields whose values are file offsets, by struct kind
OFFSETS = {"row_group": {5}, "column_chunk": {2, 4, 6}, "column_meta": {9, 10, 11, 14}}


class FooterError(ValueError):
    pass


# ------------------------------------------------------------------ compact protocol
class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise FooterError("footer ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FooterError("footer ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _read_value(r: _Reader, kind: int):
    if kind in (TRUE, FALSE):  # only as list elements: one byte
        return r.byte()
    if kind == I8:
        return r.byte()
    if kind in (I16, I32, I64):
        return r.zigzag()
    if kind == DOUBLE:
        return r.take(8)
    if kind == BINARY:
        return r.take(r.varint())
    if kind == UUID:
        return r.take(16)
    if kind in (LIST, SET):
        head = r.byte()
        size, elem = head >> 4, head & 0x0F
        if size == 15:
            size = r.varint()
        return (elem, [_read_value(r, elem) for _ in range(size)])
    if kind == MAP:
        size = r.varint()
        if size == 0:
            return (0, 0, [])
        types = r.byte()
        kt, vt = types >> 4, types & 0x0F
        return (kt, vt, [(_read_value(r, kt), _read_value(r, vt)) for _ in range(size)])
    if kind == STRUCT:
        return _read_struct(r)
    raise FooterError(f"unknown Thrift compact type {kind}")


def _read_struct(r: _Reader) -> list:
    """A struct as a list of [field_id, type, value]; booleans keep their value in the type."""
    fields, last = [], 0
    while True:
        head = r.byte()
        kind = head & 0x0F
        if kind == STOP:
            return fields
        delta = head >> 4
        fid = last + delta if delta else r.zigzag()
        value = None if kind in (TRUE, FALSE) else _read_value(r, kind)
        fields.append([fid, kind, value])
        last = fid


def decode(data: bytes) -> list:
    r = _Reader(data)
    out = _read_struct(r)
    if r.pos != len(data):
        raise FooterError(f"{len(data) - r.pos} bytes after the footer struct")
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _write_value(out: bytearray, kind: int, value) -> None:
    if kind in (TRUE, FALSE, I8):
        out.append(value)
    elif kind in (I16, I32, I64):
        out += _zigzag(value)
    elif kind in (DOUBLE, UUID):
        out += value
    elif kind == BINARY:
        out += _varint(len(value)) + value
    elif kind in (LIST, SET):
        elem, items = value
        out.append((len(items) << 4 | elem) if len(items) < 15 else (0xF0 | elem))
        if len(items) >= 15:
            out += _varint(len(items))
        for item in items:
            _write_value(out, elem, item)
    elif kind == MAP:
        kt, vt, items = value
        out += _varint(len(items))
        if items:
            out.append(kt << 4 | vt)
            for k, v in items:
                _write_value(out, kt, k)
                _write_value(out, vt, v)
    elif kind == STRUCT:
        _write_struct(out, value)
    else:
        raise FooterError(f"unknown Thrift compact type {kind}")


def _write_struct(out: bytearray, fields: list) -> None:
    last = 0
    for fid, kind, value in fields:
        delta = fid - last
        if 0 < delta <= 15:
            out.append(delta << 4 | kind)
        else:
            out.append(kind)
            out += _zigzag(fid)
        if kind not in (TRUE, FALSE):
            _write_value(out, kind, value)
        last = fid
    out.append(STOP)


def encode(fields: list) -> bytes:
    out = bytearray()
    _write_struct(out, fields)
    return bytes(out)


# ------------------------------------------------------------------ footers
def split_file(data) -> tuple[memoryview, bytes]:
    """(body, footer) of a complete Parquet file held in memory; the body starts at offset 4.
    The body is a view (no copy) of ``data``."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC or bytes(view[-4:]) != MAGIC:
        raise FooterError("not a Parquet file (magic bytes missing)")
    n = struct.unpack("<I", view[-8:-4])[0]
    return view[4:len(view) - 8 - n], bytes(view[len(view) - 8 - n:len(view) - 8])


def footer_rows(footer: bytes) -> int:
    return _field(decode(footer), 3)[2]


def tail(footer: bytes) -> bytes:
    """What ends a Parquet file after its last body: footer, its length, magic."""
    return footer + struct.pack("<I", len(footer)) + MAGIC


def _field(fields: list, fid: int):
    return next((f for f in fields if f[0] == fid), None)


def _shift(fields: list, kind: str, delta: int) -> None:
    for f in fields:
        if f[0] in OFFSETS[kind] and f[1] in (I32, I64):
            f[2] += delta


def merge(footers: list[tuple[bytes, int]]) -> bytes:
    """One footer for bodies placed so that a footer's offsets must move by ``delta``."""
    if not footers:
        raise FooterError("nothing to merge")
    merged = decode(footers[0][0])
    groups, rows = [], 0
    for footer, delta in footers:
        meta = decode(footer)
        rows += _field(meta, 3)[2]
        row_groups = _field(meta, 4)
        for group in (row_groups[2][1] if row_groups else []):
            _shift(group, "row_group", delta)
            for chunk in _field(group, 1)[2][1]:
                if _field(chunk, 4) or _field(chunk, 6):
                    raise FooterError("footer references a page index, whose offsets cannot move")
                _shift(chunk, "column_chunk", delta)
                meta_data = _field(chunk, 3)
                if meta_data:
                    _shift(meta_data[2], "column_meta", delta)
            ordinal = _field(group, 7)
            if ordinal:
                ordinal[2] = len(groups)
            groups.append(group)
    _field(merged, 3)[2] = rows
    row_groups = _field(merged, 4)
    row_groups[2] = (STRUCT, groups)
    return encode(merged)
