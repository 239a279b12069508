"""The Thrift compact codec and the footer merge, byte for byte against the protocol spec worked
out by hand here, and merged files read back by pyarrow and DuckDB (which follows the offsets)."""
import struct

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procalign.formats import parquet_footer as pf
from procalign.formats.parquet import list_array

I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID = (pf.I8, pf.I16, pf.I32, pf.I64, pf.DOUBLE,
                                                                   pf.BINARY, pf.LIST, pf.SET, pf.MAP, pf.STRUCT, pf.UUID)


def test_type_codes_are_the_compact_protocol_ones():
    assert (pf.STOP, pf.TRUE, pf.FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID) == tuple(range(14))
    assert pf.MAGIC == b"PAR1"
    assert pf.OFFSETS == {"row_group": {5}, "column_chunk": {2, 4, 6}, "column_meta": {9, 10, 11, 14}}


@pytest.mark.parametrize("fields,encoded", [
    ([[1, I32, -5]], b"\x15\x09\x00"),                         # delta 1, type 5; zigzag(-5) = 9
    ([[15, I32, 1]], b"\xf5\x02\x00"),                         # delta 15 still fits the header
    ([[16, I32, 1]], b"\x05\x20\x02\x00"),                     # delta 16: type alone, then zigzag(16)
    ([[40, I64, 300]], b"\x06\x50\xd8\x04\x00"),               # zigzag(300) = 600 = varint d8 04
    ([[1, pf.TRUE, None], [2, pf.FALSE, None]], b"\x11\x12\x00"),  # booleans live in the type nibble
    ([[1, I8, 200]], b"\x13\xc8\x00"),
    ([[1, I16, -1]], b"\x14\x01\x00"),
    ([[1, I64, 2 ** 35]], b"\x16\x80\x80\x80\x80\x80\x02\x00"),
    ([[1, I64, -2 ** 40]], b"\x16" + bytes([0xFF] * 5) + b"\x3f\x00"),
    ([[1, DOUBLE, b"\x01" * 8]], b"\x17" + b"\x01" * 8 + b"\x00"),
    ([[1, BINARY, b"abc"]], b"\x18\x03abc\x00"),
    ([[1, UUID, b"u" * 16]], b"\x1d" + b"u" * 16 + b"\x00"),
    ([[1, LIST, (I32, [1, -1, 2])]], b"\x19\x35\x02\x01\x04\x00"),
    ([[1, SET, (BINARY, [b"x"])]], b"\x1a\x18\x01x\x00"),
    ([[1, LIST, (pf.TRUE, [1, 2])]], b"\x19\x21\x01\x02\x00"),  # list booleans: one byte each
    ([[1, MAP, (0, 0, [])]], b"\x1b\x00\x00"),
    ([[1, MAP, (BINARY, I32, [(b"k", 1), (b"j", -2)])]], b"\x1b\x02\x85\x01k\x02\x01j\x03\x00"),
    ([[1, STRUCT, [[3, I32, 2]]], [2, I32, 0]], b"\x1c\x35\x04\x00\x15\x00\x00"),
    ([[2, I32, 1], [1, I32, 2]], b"\x25\x02\x05\x02\x04\x00"),  # a field id going down: long form
])
def test_codec_matches_hand_encoded_bytes(fields, encoded):
    assert pf.encode(fields) == encoded
    assert pf.decode(encoded) == fields


@pytest.mark.parametrize("n", [14, 15, 16, 200])
def test_long_lists_carry_their_size_as_a_varint(n):
    fields = [[1, LIST, (I32, list(range(n)))]]
    data = pf.encode(fields)
    head = (n << 4 | I32) if n < 15 else (0xF0 | I32)
    assert data[1] == head
    if n >= 15:
        size = bytearray()
        m = n
        while True:
            size.append((m & 0x7F) | (0x80 if m > 0x7F else 0))
            m >>= 7
            if not m:
                break
        assert data[2:2 + len(size)] == bytes(size)
    assert pf.decode(data) == fields


def test_decode_refusals():
    with pytest.raises(pf.FooterError, match="^footer ends early$"):
        pf.decode(b"")
    with pytest.raises(pf.FooterError, match="^footer ends early$"):
        pf.decode(b"\x18\x05ab")  # binary of 5 bytes, 2 present
    with pytest.raises(pf.FooterError, match="^footer ends early$"):
        pf.decode(b"\x18\x02ab")  # no STOP
    with pytest.raises(pf.FooterError, match="^unknown Thrift compact type 14$"):
        pf.decode(b"\x1e\x00")
    with pytest.raises(pf.FooterError, match="^unknown Thrift compact type 15$"):
        pf.decode(b"\x19\x1f\x00")  # a list of an unknown element type
    with pytest.raises(pf.FooterError, match="^2 bytes after the footer struct$"):
        pf.decode(b"\x15\x02\x00\x00\x00")
    with pytest.raises(pf.FooterError, match="^unknown Thrift compact type 14$"):
        pf.encode([[1, 14, 0]])
    assert pf.decode(b"\x16\xd8\x04\x00") == [[1, I64, 300]]


def encoded(table, **options):
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, **options) as w:
        w.write_table(table, row_group_size=options.pop("rows", None) or max(len(table), 1))
    return sink.getvalue().to_pybytes()


def test_split_file_and_tail():
    t = pa.table({"a": [1, 2, 3]})
    data = encoded(t)
    n = struct.unpack("<I", data[-8:-4])[0]
    body, foot = pf.split_file(data)
    assert bytes(body) == data[4:len(data) - 8 - n] and foot == data[len(data) - 8 - n:-8]
    assert isinstance(body, memoryview) and pf.footer_rows(foot) == 3
    assert pf.tail(foot) == foot + struct.pack("<I", len(foot)) + b"PAR1"
    with pytest.raises(pf.FooterError, match=r"^not a Parquet file \(magic bytes missing\)$"):
        pf.split_file(b"PAR1" + data[4:-4] + b"PAR0")
    with pytest.raises(pf.FooterError, match="magic"):
        pf.split_file(b"XAR1" + data[4:])


def footer(rows, groups):
    """A FileMetaData built by hand: version, schema, num_rows, row groups, created_by."""
    return pf.encode([[1, I32, 1], [2, LIST, (STRUCT, [])], [3, I64, rows], [4, LIST, (STRUCT, groups)],
                      [6, BINARY, b"me"]])


def group(offset, ordinal=None, page_index=None):
    meta = [[1, I32, 1], [9, I64, offset + 8], [10, I64, offset + 1], [11, I64, offset], [14, I64, offset + 2],
            [15, I32, offset]]  # 15 is no offset field: it must not move
    chunk = [[2, I64, offset], [3, STRUCT, meta]]
    if page_index:
        chunk.append([page_index, I64, offset])
    fields = [[1, LIST, (STRUCT, [chunk])], [2, I64, 100], [3, I64, 10], [5, I64, offset], [6, BINARY, b"x"]]
    if ordinal is not None:
        fields.append([7, I16, ordinal])
    return fields


def test_merge_moves_exactly_the_offset_fields():
    a = footer(10, [group(4, ordinal=0)])
    b = footer(7, [group(4, ordinal=0), group(50, ordinal=1)])
    c = footer(0, [])
    merged = pf.decode(pf.merge([(a, 0), (b, 1000), (c, 5)]))
    assert [f[0] for f in merged] == [1, 2, 3, 4, 6] and merged[4] == [6, BINARY, b"me"]
    assert merged[2] == [3, I64, 17]
    groups = merged[3][2][1]
    assert len(groups) == 3
    for g, original, delta, ordinal in zip(groups, (4, 4, 50), (0, 1000, 1000), (0, 1, 2)):
        assert g == moved(group(original + delta, ordinal), original)
    # a field of another type at an offset id is not an offset: it stays
    odd = pf.encode([[3, I64, 1], [4, LIST, (STRUCT, [[[1, LIST, (STRUCT, [[[2, BINARY, b"o"]]])], [5, BINARY, b"q"]]])]])
    assert pf.decode(pf.merge([(odd, 99)]))[1][2][1][0] == [[1, LIST, (STRUCT, [[[2, BINARY, b"o"]]])], [5, BINARY, b"q"]]


def moved(g, original):
    """group() at its new offset, but field 15 of the column metadata (not an offset) unmoved."""
    g[0][2][1][0][1][2][-1] = [15, I32, original]
    return g


def test_merge_without_ordinals_and_refusals():
    merged = pf.decode(pf.merge([(footer(1, [group(4)]), 10)]))
    g = merged[3][2][1][0]
    assert [f[0] for f in g] == [1, 2, 3, 5, 6] and g[3] == [5, I64, 14]
    with pytest.raises(pf.FooterError, match="^nothing to merge$"):
        pf.merge([])
    for field in (4, 6):
        with pytest.raises(pf.FooterError, match="^footer references a page index, whose offsets cannot move$"):
            pf.merge([(footer(1, [group(4, page_index=field)]), 0)])
    no_groups = pf.encode([[1, I32, 1], [3, I64, 0], [4, LIST, (STRUCT, [])]])
    assert pf.decode(pf.merge([(no_groups, 0), (no_groups, 9)])) == [[1, I32, 1], [3, I64, 0], [4, LIST, (STRUCT, [])]]


def glue(parts, **options):
    out, footers = bytearray(pf.MAGIC), []
    for t in parts:
        body, foot = pf.split_file(encoded(t, **options))
        footers.append((foot, len(out) - 4))
        out += body
    return bytes(out) + pf.tail(pf.merge(footers))


@pytest.mark.parametrize("options", [{}, {"compression": "none", "use_dictionary": False}])
def test_merged_files_read_identically_in_duckdb(tmp_path, rng, options):
    parts = []
    for a, n in ((0, 5), (5, 300), (305, 1), (306, 40)):
        m = rng.normal(size=(n, 3)).astype(np.float32)
        parts.append(pa.table({"id": np.arange(a, a + n), "t": [f"w{i % 7}" for i in range(n)],
                               "embedding": list_array(m, pa.list_(pa.float32()))}))
    path = tmp_path / "m.parquet"
    path.write_bytes(glue(parts, **options))
    whole = pa.concat_tables(parts)
    f = pq.ParquetFile(path)
    assert f.metadata.num_row_groups == 4 and f.metadata.num_rows == 346
    assert f.read().equals(whole)
    for i in range(4):
        assert f.read_row_group(i).equals(parts[i])
        assert f.metadata.row_group(i).to_dict().get("ordinal", i) == i
    rows = duckdb.sql(f"SELECT id, t, embedding FROM read_parquet('{path}', file_row_number=true) "
                      "ORDER BY file_row_number").fetchall()
    assert [r[0] for r in rows] == list(range(346)) and [r[1] for r in rows] == whole.column("t").to_pylist()
    np.testing.assert_array_equal(np.array([r[2] for r in rows], np.float32),
                                  np.array(whole.column("embedding").to_pylist(), np.float32))
    # DuckDB reading one row group by its offsets: the last one
    last = duckdb.sql(f"SELECT id FROM read_parquet('{path}') WHERE id >= 306 ORDER BY id").fetchall()
    assert [r[0] for r in last] == list(range(306, 346))
