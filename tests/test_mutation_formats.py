"""Every format module on files written and read back here by numpy, h5py, pyarrow and DuckDB
(the second, independent Parquet reader): exact values, exact messages, edge cases."""
import errno
import json
import os
import struct

import duckdb
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procalign.errors import InputError, UsageError
from procalign.formats import SinkSpec, open_reader, open_source, parse_location, sink_class
from procalign.formats.base import Batch, BufferRing, Sink, Source, parse_stamp
from procalign.formats.registry import FORMATS, Location, ReadOptions, format_help
from procalign.formats import hdf5, npy, parquet
from procalign.formats.direct import DirectWriter, aligned_empty, aligned_rows
from procalign.formats.parquet import ParquetSink, list_array, to_matrix, writer_options


def duck(path, column="embedding"):
    """The rows of a Parquet column as DuckDB reads them (in file order), as a float64 matrix."""
    rows = duckdb.sql(f"SELECT {column} FROM read_parquet('{path}', file_row_number=true) "
                      "ORDER BY file_row_number").fetchnumpy()[column]
    return np.array([np.asarray(r, np.float64) for r in rows]).reshape(len(rows), -1)


def duck_column(path, column):
    return duckdb.sql(f"SELECT {column} FROM read_parquet('{path}', file_row_number=true) "
                      "ORDER BY file_row_number").fetchnumpy()[column].tolist()


def message(excinfo):
    return str(excinfo.value)


# ------------------------------------------------------------------ registry
def test_parse_location_cases(tmp_path):
    loc = parse_location("a/b.npy")
    assert (str(loc.path), loc.format.name, loc.inner, loc.dataset, str(loc)) == ("a/b.npy", "npy", None, None, "a/b.npy")
    loc = parse_location("x.H5:/grp/emb")
    assert (str(loc.path), loc.format.name, loc.inner, str(loc)) == ("x.H5", "hdf5", "/grp/emb", "x.H5:/grp/emb")
    assert parse_location("x.hdf5", inner="emb").inner == "/emb"  # the prefix is added
    assert parse_location("x.h5:/emb", inner="/emb").inner == "/emb"
    assert parse_location("dir:odd/a.parquet").path.name == "a.parquet"  # ':' inside a path
    assert parse_location("A.PARQUET").format.name == "parquet"
    with pytest.raises(UsageError) as e:
        parse_location("x.h5:emb")  # no leading '/': part of the path, whose suffix is unknown
    assert message(e) == f"x.h5:emb: unknown extension '.h5:emb'; use one of {format_help()}"
    with pytest.raises(UsageError) as e:
        parse_location("x.h5:/")
    assert "unknown extension" in message(e)
    with pytest.raises(UsageError) as e:
        parse_location("README")
    assert message(e) == f"README: unknown extension '(none)'; use one of {format_help()}"
    with pytest.raises(UsageError) as e:
        parse_location("a.npy", inner="/x")
    assert message(e) == "a.npy: --dataset does not apply to npy files; drop it"
    with pytest.raises(UsageError) as e:
        parse_location("a.h5:/emb", inner="/emb2")
    assert message(e) == "a.h5: the path names dataset '/emb' but --dataset says '/emb2'; give one"


def test_formats_table_and_help():
    assert format_help().startswith(".npy, .parquet, .h5/.hdf5[:/dataset], ")
    assert [(f.name, f.suffixes, f.module, f.inner, f.inner_prefix) for f in FORMATS][:3] == [
        ("npy", (".npy",), "npy", None, ""), ("parquet", (".parquet",), "parquet", None, ""),
        ("hdf5", (".h5", ".hdf5"), "hdf5", "dataset", "/")]
    assert ReadOptions() == ReadOptions(None, None)


def test_open_source_refusals(tmp_path):
    with pytest.raises(InputError) as e:
        open_source(parse_location(str(tmp_path / "none.npy")))
    assert message(e) == f"{tmp_path / 'none.npy'}: no such file; check the path"
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(InputError) as e:
        open_source(parse_location(str(tmp_path / "empty.npy")))
    assert message(e).endswith(": file is empty (0 bytes); re-create it")
    np.save(tmp_path / "nodim.npy", np.zeros((3, 0), np.float32))
    with pytest.raises(InputError) as e:
        open_source(parse_location(str(tmp_path / "nodim.npy")))
    assert message(e).endswith(": rows have 0 values; embeddings need at least one dimension")
    np.save(tmp_path / "nothing.npy", np.zeros((0, 0), np.float32))
    with open_source(parse_location(str(tmp_path / "nothing.npy"))) as s:
        assert (s.rows, s.dim) == (0, 0)


def test_open_reader_passes_column_and_ids(tmp_path):
    pq.write_table(pa.table({"key": [5, 6], "a": list_array(np.ones((2, 2), np.float32), None),
                             "b": list_array(np.zeros((2, 3), np.float32), None)}), tmp_path / "t.parquet")
    with open_reader(parse_location(str(tmp_path / "t.parquet")), "b", "key") as r:
        assert (r.column, r.dim, r.id_column) == ("b", 3, "key")
        assert r.ids().tolist() == [5, 6]
    assert sink_class(parse_location("x.h5")) is hdf5.H5Sink


# ------------------------------------------------------------------ base
def test_parse_stamp():
    assert parse_stamp(None, "p", "w") is None
    stamp = {"space": "a", "from_space": None, "transform": "sha256:x", "direction": "forward", "other": 3}
    assert parse_stamp(json.dumps(stamp).encode(), "p", "w") == stamp
    assert parse_stamp(json.dumps({"space": "a"}), "p", "w") == {"space": "a"}
    with pytest.raises(InputError) as e:
        parse_stamp('{"space": 5}', "f.npy", "sidecar x")
    assert message(e) == ("f.npy: the procalign stamp in sidecar x is malformed ('{\"space\": 5}'); delete it, or "
                          "re-create the data with procalign apply")
    for field in ("from_space", "transform", "direction"):
        with pytest.raises(InputError, match="malformed"):
            parse_stamp(json.dumps({field: 1}), "f", "w")
    long = "x" * 70
    with pytest.raises(InputError) as e:
        parse_stamp(long, "f", "w")
    assert f"('{'x' * 60}...')" in message(e)
    with pytest.raises(InputError) as e:
        parse_stamp("y" * 60, "f", "w")
    assert f"('{'y' * 60}')" in message(e)
    with pytest.raises(InputError, match="malformed"):
        parse_stamp(b"\xff\xfe", "f", "w")
    with pytest.raises(InputError, match="malformed"):
        parse_stamp(12, "f", "w")


def test_buffer_ring_hands_out_buffers_in_turn():
    ring = BufferRing((4, 2), np.float32, size=3)
    a, b, c, d = (ring.next(n) for n in (4, 3, 1, 2))
    assert (a.shape, b.shape, c.shape, d.shape) == ((4, 2), (3, 2), (1, 2), (2, 2))
    assert a.dtype == np.float32 and len(ring.buffers) == 3
    assert np.shares_memory(a, d) and not np.shares_memory(a, b) and not np.shares_memory(b, c)
    assert len(BufferRing((1, 1), np.float64).buffers) == 4


def test_source_and_sink_defaults(tmp_path):
    s = Source()
    s.rows, s.dim, s.dtype = None, 3, np.dtype(np.float32)
    assert s.describe() == "? x 3 float32"
    s.rows = 5
    assert s.describe() == "5 x 3 float32"
    assert s.ids() is None and s.stamp() is None and s.layout is None and s.id_kind is None
    assert s.ring_size == 4 and s.extra_buffers == 0
    with pytest.raises(NotImplementedError, match="^Source has no random access$"):
        s.take(np.array([0]))
    with pytest.raises(NotImplementedError):
        next(iter(s.batches(3)))
    with s as entered:
        assert entered is s
    assert s._id_kind(None) is None and s._id_kind(np.int32) == "int" and s._id_kind(np.uint8) == "uint"
    assert s._id_kind(object) == "str" and s._id_kind("U3") == "str"
    sink = Sink(tmp_path / "x", SinkSpec(3, np.dtype(np.float32), 5), resume_rows=2)
    assert sink.written == 2 and sink.path == tmp_path / "x" and sink.row_at(0) is None
    assert Sink.sidecars_for(tmp_path / "x") == [] and Sink.extra_buffers == 0 and not Sink.carries_ids
    with pytest.raises(ValueError, match="^wrote 2 rows, expected 5$"):
        sink._check_rows()
    sink.written = 5
    sink._check_rows()
    Sink(tmp_path / "y", SinkSpec(3, np.dtype(np.float32), None))._check_rows()  # a stream: any count
    for call in (lambda: sink.write(np.zeros((1, 3))), sink.finish):
        with pytest.raises(NotImplementedError):
            call()
    assert SinkSpec(2, np.dtype(np.float16), 3) == SinkSpec(2, np.dtype(np.float16), 3, None, None, None, None)
    assert Batch(0, np.zeros((1, 1))).extra is None and Batch(0, np.zeros((1, 1))).ids is None


# ------------------------------------------------------------------ npy
def read_all(path, rows=7, start=0, **kw):
    with open_reader(parse_location(str(path)), **kw) as r:
        parts = [(b.start, b.embeddings.copy()) for b in r.batches(rows, start=start)]
    return parts


def test_npy_reads_big_endian_and_version_2_headers(tmp_path, rng):
    a = rng.normal(size=(20, 3)).astype(">f4")
    np.save(tmp_path / "be.npy", a)
    parts = read_all(tmp_path / "be.npy", rows=6, start=5)
    assert [s for s, _ in parts] == [5, 11, 17] and [len(p) for _, p in parts] == [6, 6, 3]
    got = np.concatenate([p for _, p in parts])
    assert got.dtype == np.dtype("<f4") and np.array_equal(got, a[5:].astype("<f4"))
    with open_reader(parse_location(str(tmp_path / "be.npy"))) as r:
        assert r.dtype == np.dtype("<f4") and r.take(np.array([0, 19])).tolist() == a[[0, 19]].astype("<f4").tolist()
        assert r.take(np.array([3])).dtype == np.dtype("<f4")
    b = rng.normal(size=(4, 2))
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False, "shape": (4, 2)})
        f.write(b.tobytes())
    assert np.array_equal(np.concatenate([p for _, p in read_all(tmp_path / "v2.npy")]), b)
    with open_reader(parse_location(str(tmp_path / "v2.npy"))) as r:
        assert r.describe() == "4 x 2 float64"


def write_npy_header(path, header: str, body=b""):
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + pad + 1) + text + b" " * pad + b"\n" + body)


@pytest.mark.parametrize("header,body,expected", [
    (None, None, "not a valid .npy file ("),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }", b"", "dtype object holds Python objects (pickle), "
     "which procalign never loads; save a float32 array"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", b"", "header declares a negative shape (-2, 3); "
     "the file is damaged, re-create it"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", b"", "negative shape (2, -3)"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", b"\0" * 20, "array is 1-D with shape (5,), expected "
     "2-D (rows, dim); reshape to (n, d) before saving"),
    ("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }", b"\0" * 8, "dtype int64 is not float16/32/64; "
     "convert with .astype(np.float32)"),
    ("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", b"\0" * 16, "array is in Fortran (column-major) "
     "order and cannot be streamed by rows; save np.ascontiguousarray(a)"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", b"\0" * 23, "file is truncated: "),
])
def test_npy_refusals(tmp_path, header, body, expected):
    path = tmp_path / "bad.npy"
    if header is None:
        path.write_bytes(b"\x93NUMPX garbage")
    else:
        write_npy_header(path, header, body)
    with pytest.raises(InputError) as e:
        npy.NpySource(Location(path, FORMATS[0]))
    assert expected in message(e), message(e)
    assert message(e).startswith(f"{path}: ")  # the error names the file
    if "truncated" in expected:
        size = path.stat().st_size
        assert message(e).endswith(f"file is truncated: {size} bytes, header promises {size + 1}; re-create it")


@pytest.mark.parametrize("shape", [(1, 4), (4, 1)])
def test_npy_fortran_order_of_a_single_row_or_column_is_fine(tmp_path, shape):
    a = np.asfortranarray(np.arange(4, dtype=np.float32).reshape(shape))
    np.save(tmp_path / "f.npy", a)
    assert np.array_equal(np.concatenate([p for _, p in read_all(tmp_path / "f.npy")]), a)


def test_npy_file_that_shrinks_while_read(tmp_path, rng):
    # the byte-swapping reader (another byte order) reads with readinto and must notice the end
    a = rng.normal(size=(4000, 4)).astype(">f4")  # larger than the reader's buffer
    np.save(tmp_path / "x.npy", a)
    with open_reader(parse_location(str(tmp_path / "x.npy"))) as r:
        os.truncate(tmp_path / "x.npy", 128 + 4 * 4 * 2900 + 5)  # 2900 whole rows and a bit
        with pytest.raises(InputError) as e:
            list(r.batches(1000))
    assert message(e) == f"{tmp_path / 'x.npy'}: file ended early at row 2900; it is truncated or being written"


def test_npy_stamp_sidecars(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    loc = parse_location(str(tmp_path / "x.npy"))
    with open_reader(loc) as r:
        assert r.stamp() is None
    npy.write_stamp(tmp_path / "x.npy", {"space": "b", "transform": "t"})
    side = tmp_path / "x.npy.procalign.json"
    assert side.read_text() == '{"space": "b", "transform": "t"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.npy.procalign.json"]
    with open_reader(loc) as r:
        assert r.stamp() == {"space": "b", "transform": "t"}
    os.symlink(tmp_path / "x.npy", tmp_path / "link.npy")
    with open_reader(parse_location(str(tmp_path / "link.npy"))) as r:
        assert r.stamp() == {"space": "b", "transform": "t"}  # beside the file the link points to
    npy.write_stamp(tmp_path / "link.npy", {"space": "near"})
    with open_reader(parse_location(str(tmp_path / "link.npy"))) as r:
        assert r.stamp() == {"space": "near"}  # beside the name given comes first
    side.write_text("[1]")
    with open_reader(loc) as r, pytest.raises(InputError, match="sidecar x.npy.procalign.json is malformed"):
        r.stamp()


def test_stream_header_is_fixed_size_and_readable(tmp_path):
    h = npy.stream_header(np.dtype(np.float16), 123456789, 384)
    assert len(h) == npy.STREAM_HEADER_BYTES == 128 and h.endswith(b"\n")
    (tmp_path / "h.npy").write_bytes(h + b"\0" * 0)
    with open(tmp_path / "h.npy", "rb") as f:
        assert npy.read_header(tmp_path / "h.npy", f) == ((123456789, 384), False, np.dtype(np.float16), 128)
    # "{'descr': '<f4', 'fortran_order': False, 'shape': (N, 3)}" is 56 characters plus N's digits;
    # with the 10-byte preamble and the newline, 61 digits fill the 128 bytes exactly
    exact = npy.stream_header(np.dtype(np.float32), 10 ** 60, 3)
    assert len(exact) == 128 and exact.endswith(b", 3)}\n")
    with pytest.raises(ValueError, match=r"^npy header for shape \(10{61}, 3\) does not fit 128 bytes$"):
        npy.stream_header(np.dtype(np.float32), 10 ** 61, 3)


@pytest.mark.parametrize("rows", [17, None])
def test_npy_sink_writes_what_numpy_reads(tmp_path, rng, rows):
    a = rng.normal(size=(17, 3))
    sink = npy.NpySink(tmp_path / "o.npy", SinkSpec(3, np.dtype(np.float32), rows))
    for i in range(0, 17, 5):
        sink.write(a[i:i + 5])
    sink.finish()
    got = np.load(tmp_path / "o.npy")
    assert got.dtype == np.float32 and np.array_equal(got, a.astype(np.float32))
    with open(tmp_path / "o.npy", "rb") as f:
        npy.read_header(tmp_path / "o.npy", f)
        # a stream reserves 128 bytes; a file of known size starts its rows on a block boundary
        assert f.tell() == (128 if rows is None else 4096)


def test_npy_sink_resume_truncates_and_refuses_short_files(tmp_path, rng):
    a = rng.normal(size=(10, 2)).astype(np.float32)
    sink = npy.NpySink(tmp_path / "o.npy", SinkSpec(2, np.dtype(np.float32), 10))
    assert (tmp_path / "o.npy").stat().st_size == 4096 + 10 * 8  # allocated whole up front
    sink.write(a[:7])
    sink.flush()
    handle = sink._file
    sink.abort()
    assert handle.closed and sink._file is None  # abort releases the handle
    sink.abort()  # twice is harmless
    resumed = npy.NpySink(tmp_path / "o.npy", SinkSpec(2, np.dtype(np.float32), 10), resume_rows=4)
    assert resumed.written == 4 and np.array_equal(resumed.row_at(3), a[3])
    resumed.write(a[4:])
    resumed.finish()
    assert np.array_equal(np.load(tmp_path / "o.npy"), a)
    with pytest.raises(ValueError, match="^the partial file holds 10 rows, not 11$"):
        npy.NpySink(tmp_path / "o.npy", SinkSpec(2, np.dtype(np.float32), 12), resume_rows=11)
    stream = npy.NpySink(tmp_path / "s.npy", SinkSpec(2, np.dtype(np.float32), None))
    stream.write(a[:8])
    stream.flush()
    stream.abort()
    again = npy.NpySink(tmp_path / "s.npy", SinkSpec(2, np.dtype(np.float32), None), resume_rows=6)
    assert np.array_equal(again.row_at(5), a[5])
    assert np.array_equal(again.row_at(6), np.zeros(2, np.float32))  # a stream is cut back: past the end reads 0
    again.write(a[6:])
    again.finish()
    assert np.array_equal(np.load(tmp_path / "s.npy"), a)


def test_npy_after_commit_writes_or_removes_the_stamp(tmp_path):
    np.save(tmp_path / "real.npy", np.zeros((1, 1)))
    os.symlink(tmp_path / "real.npy", tmp_path / "link.npy")
    sink = npy.NpySink(tmp_path / "tmp.npy", SinkSpec(1, np.dtype(np.float64), 1, stamp={"space": "s"}))
    sink.abort()
    sink.after_commit(tmp_path / "link.npy")
    assert json.loads((tmp_path / "real.npy.procalign.json").read_text()) == {"space": "s"}
    assert not (tmp_path / "link.npy.procalign.json").exists()
    bare = npy.NpySink(tmp_path / "tmp2.npy", SinkSpec(1, np.dtype(np.float64), 1))
    bare.abort()
    bare.after_commit(tmp_path / "link.npy")
    assert not (tmp_path / "real.npy.procalign.json").exists()


# ------------------------------------------------------------------ hdf5
@pytest.fixture
def h5file(tmp_path, rng):
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("grp")
        g["emb"] = rng.normal(size=(9, 3)).astype(np.float32)
        g["emb"].attrs["note"] = "kept"
        g["id"] = np.arange(9) * 3
        f["payload"] = np.arange(4)
        f["other/deep"] = np.ones(2)
        f["vec"] = np.ones(4, np.float32)
        f["ints"] = np.ones((2, 2), np.int32)
        f.attrs["top"] = "yes"
    return path


def test_h5_source_with_nested_ids(h5file):
    loc = parse_location(f"{h5file}:/grp/emb")
    with open_reader(loc) as r:
        assert (r.dataset_name, r.rows, r.dim, r.dtype, r.id_dataset, r.id_kind) == (
            "/grp/emb", 9, 3, np.dtype(np.float32), "/grp/id", "int")
        with h5py.File(h5file) as f:
            ref = f["grp/emb"][()]
        parts = [(b.start, b.embeddings.copy(), b.ids) for b in r.batches(4, start=2, with_ids=True)]
        assert [p[0] for p in parts] == [2, 6] and np.array_equal(np.concatenate([p[1] for p in parts]), ref[2:])
        assert np.concatenate([p[2] for p in parts]).tolist() == (np.arange(2, 9) * 3).tolist()
        assert all(b.ids is None for b in r.batches(4))
        assert np.array_equal(r.take([1, 8]), ref[[1, 8]])
        assert r.take([]).shape == (0, 3) and r.take([]).dtype == np.float32
        assert r.ids().tolist() == (np.arange(9) * 3).tolist()
        assert r.layout == hdf5.H5Layout(str(h5file), "/grp/emb", {"note": "kept"})
        assert r.stamp() is None
        assert all(b.embeddings.dtype == np.float32 for b in r.batches(4))
        handle = r._file
    assert not handle.id.valid and r._file is None  # closed on leaving the block


@pytest.mark.parametrize("name,kind,expected", [
    (None, UsageError, "several 2-D float datasets (/grp/emb, /second); name one as file.h5:/path or with --dataset"),
    ("/nope", UsageError, "no dataset '/nope'; list them with h5ls and fix the name"),
    ("/other", UsageError, "'/other' is a group, not a dataset; name the dataset inside it"),
    ("/vec", InputError, "dataset '/vec' is 1-D with shape (4,), expected 2-D (rows, dim); reshape it before writing"),
    ("/ints", InputError, "dataset '/ints' has dtype int32, expected float16/32/64; convert it to float32"),
])
def test_h5_refusals(h5file, name, kind, expected):
    with h5py.File(h5file, "a") as f:
        f["second"] = np.zeros((2, 2))
    with pytest.raises(kind) as e:
        open_reader(Location(h5file, FORMATS[2], name))
    assert message(e).startswith(f"{h5file}: ") and expected in message(e), message(e)


def test_h5_no_dataset_and_unreadable(tmp_path):
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f["v"] = np.zeros(3)
    with pytest.raises(UsageError) as e:
        open_reader(parse_location(str(tmp_path / "none.h5")))
    assert message(e) == f"{tmp_path / 'none.h5'}: no 2-D float dataset; name one as file.h5:/path or with --dataset"
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError) as e:
        open_reader(parse_location(str(tmp_path / "junk.h5")))
    assert message(e).startswith(f"{tmp_path / 'junk.h5'}: not a readable HDF5 file (")
    assert message(e).endswith("; check it was written completely")


def test_h5_id_datasets(tmp_path):
    path = tmp_path / "i.h5"
    with h5py.File(path, "w") as f:
        f["emb"] = np.zeros((3, 2))
        f["ids"] = np.array([b"a", b"bb", b"c"], dtype=h5py.string_dtype())
        f["id"] = np.arange(3)
        f["short"] = np.arange(2)
        f["floats"] = np.ones(3)
    with open_reader(parse_location(f"{path}:/emb")) as r:
        assert r.id_dataset == "/ids" and r.id_kind == "str"  # "ids" is looked for before "id"
        ids = r.ids()
        assert ids.dtype == object and ids.tolist() == ["a", "bb", "c"]
        assert [b.ids.tolist() for b in r.batches(2, with_ids=True)] == [["a", "bb"], ["c"]]
    with open_reader(parse_location(f"{path}:/emb"), id_column="/short") as r, pytest.raises(InputError) as e:
        r.ids()
    assert message(e) == (f"{path}: id dataset '/short' has shape (2,) for 3 rows; it needs one id per row "
                          "(or pass --by-position)")
    with open_reader(parse_location(f"{path}:/emb"), id_column="/floats") as r:
        assert r.id_kind is None
        with pytest.raises(InputError) as e:
            r.ids()
    assert message(e) == f"{path}: id dataset '/floats' has dtype float64; ids must be integers or strings"
    with open_reader(parse_location(f"{path}:/emb"), id_column="/missing") as r, pytest.raises(UsageError) as e:
        r.ids()
    assert message(e) == f"{path}: no id dataset '/missing'; fix --id-column or pass --by-position"
    with h5py.File(tmp_path / "noid.h5", "w") as f:
        f["emb"] = np.zeros((2, 2))
    with open_reader(parse_location(str(tmp_path / "noid.h5"))) as r:
        assert r.id_dataset is None and r.ids() is None and r.id_kind is None


@pytest.mark.parametrize("rows", [9, None])
def test_h5_sink_copies_everything_else(h5file, rng, tmp_path, rows):
    with open_reader(parse_location(f"{h5file}:/grp/emb")) as r:
        layout = r.layout
    out = tmp_path / "out.h5"
    data = rng.normal(size=(9, 3))
    sink = hdf5.H5Sink(out, SinkSpec(3, np.dtype(np.float16), rows, stamp={"space": "t"}, like=layout), chunk_rows=4)
    for a in range(0, 9, 4):
        sink.write(data[a:a + 4])
    assert np.array_equal(sink.row_at(8), data[8].astype(np.float16))
    sink.flush()
    sink.finish()
    with h5py.File(out) as f, h5py.File(h5file) as src:
        assert f["grp/emb"].dtype == np.float16 and np.array_equal(f["grp/emb"][()], data.astype(np.float16))
        assert f["grp/emb"].chunks == (None if rows else (4, 3))  # known size: contiguous
        assert f["grp/emb"].attrs["note"] == "kept" and json.loads(f["grp/emb"].attrs["procalign.stamp"]) == {"space": "t"}
        assert f.attrs["top"] == "yes" and np.array_equal(f["grp/id"][()], src["grp/id"][()])
        assert np.array_equal(f["payload"][()], np.arange(4)) and np.array_equal(f["other/deep"][()], np.ones(2))
        assert sorted(f) == sorted(src) and "ids" not in f["grp"]


@pytest.mark.parametrize("kind,ids", [("int", np.array([7, 8, 9, 10, 11])), ("str", np.array(["a", "b", "c", "d", "e"], object))])
@pytest.mark.parametrize("rows", [5, None])
def test_h5_sink_writes_ids_from_another_format(tmp_path, rng, kind, ids, rows):
    data = rng.normal(size=(5, 2)).astype(np.float32)
    out = tmp_path / "o.h5"
    sink = hdf5.H5Sink(out, SinkSpec(2, np.dtype(np.float32), rows, ids=kind, name="/g/emb"))
    sink.write(data[:3], ids=ids[:3])
    sink.write(data[3:], ids=ids[3:])
    sink.finish()
    with h5py.File(out) as f:
        assert sorted(f["g"]) == ["emb", "ids"] and np.array_equal(f["g/emb"][()], data)
        got = f["g/ids"][()]
        assert [v.decode() if isinstance(v, bytes) else v for v in got.tolist()] == ids.tolist()
        assert f["g/ids"].dtype == (np.int64 if kind == "int" else h5py.string_dtype())
        assert "procalign.stamp" not in f["g/emb"].attrs


def test_h5_sink_defaults_zero_rows_and_resume(tmp_path, rng):
    sink = hdf5.H5Sink(tmp_path / "z.h5", SinkSpec(4, np.dtype(np.float32), 0))
    sink.finish()
    with h5py.File(tmp_path / "z.h5") as f:
        assert list(f) == ["embeddings"] and f["embeddings"].shape == (0, 4)
    data = rng.normal(size=(6, 2))
    spec = SinkSpec(2, np.dtype(np.float64), 6, ids="int")
    sink = hdf5.H5Sink(tmp_path / "r.h5", spec)
    with h5py.File(tmp_path / "r.h5", "r") as f:  # allocated up front, contiguous
        assert f["embeddings"].chunks is None and f["ids"].shape == (6,)
    sink.write(data[:4], ids=np.arange(4))
    sink.flush()
    sink.abort()
    again = hdf5.H5Sink(tmp_path / "r.h5", spec, resume_rows=4)
    assert again.written == 4 and np.array_equal(again.row_at(3), data[3])
    again.write(data[4:], ids=np.arange(4, 6))
    again.finish()
    with h5py.File(tmp_path / "r.h5") as f:
        assert np.array_equal(f["embeddings"][()], data) and f["ids"][()].tolist() == list(range(6))
    with pytest.raises(ValueError, match=r"^the partial file has no 7 x 2 dataset /embeddings$"):
        hdf5.H5Sink(tmp_path / "r.h5", SinkSpec(2, np.dtype(np.float64), 7), resume_rows=2)


# ------------------------------------------------------------------ parquet
def list_table(m, **other):
    return pa.table({**other, "embedding": list_array(m, pa.list_(pa.float32()))})


def test_to_matrix_refusals():
    ok = list_array(np.ones((3, 2), np.float32), pa.list_(pa.float32()))
    assert to_matrix(pa.chunked_array([ok.slice(0, 1), ok.slice(1)]), 2, "p", 0).shape == (3, 2)
    with pytest.raises(InputError) as e:
        to_matrix(pa.array([[1.0, 2.0], None], pa.list_(pa.float32())), 2, "p", 10)
    assert message(e) == "p: embedding is null at row 11; drop or fill the null rows"
    with pytest.raises(InputError) as e:
        to_matrix(pa.array([[1.0, 2.0], [1.0, 2.0], [1.0]], pa.list_(pa.float32())), 2, "p", 5)
    assert message(e) == "p: ragged embeddings: row 7 has 1 values, expected 2; all rows need the same length"
    with pytest.raises(InputError) as e:
        to_matrix(pa.array([[1.0, None]], pa.list_(pa.float32())), 2, "p", 3)
    assert message(e) == "p: null value inside an embedding near row 3; fill or drop it"
    assert to_matrix(pa.array([], pa.list_(pa.float32())), 4, "p", 0).shape == (0, 4)


@pytest.mark.parametrize("table,options,kind,expected", [
    (pa.table({"k": [1]}), {}, UsageError, "no list-of-float column; name the embedding column with --column"),
    (pa.table({"a": [[1.0]], "b": [[2.0]]}), {}, UsageError,
     "several list-of-float columns (a, b); name the embedding column with --column"),
    (pa.table({"a": [[1.0]]}), {"column": "z"}, UsageError, "no column 'z' (columns: a); fix --column"),
    (pa.table({"a": [[1.0]], "k": [1]}), {"column": "k"}, InputError,
     "column 'k' is int64, expected a list of floats; cast it to list<float32> or name another column with --column"),
    (pa.table({"a": [[1.0]], "k": [[1]]}), {"column": "k"}, InputError, "column 'k' is list of int64, expected a "
     "list of floats; cast it to list<float32> or name another column with --column"),
    (pa.table({"a": [[1.0]], "id": [1.5]}), {}, InputError,
     "id column 'id' is double; ids must be integers or strings (or pass --by-position)"),
    (pa.table({"a": [[1.0]]}), {"id_column": "a"}, UsageError,
     "--id-column 'a' is the embedding column; name the id column"),
    (pa.table({"a": [[1.0]]}), {"id_column": "key"}, UsageError, "no id column 'key' (columns: a); fix --id-column"),
    (pa.table({"a": pa.array([None, [1.0]], pa.list_(pa.float64()))}), {}, InputError,
     "embedding is null at row 0; drop or fill the null rows"),
])
def test_parquet_source_refusals(tmp_path, table, options, kind, expected):
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(kind) as e:
        open_reader(parse_location(str(tmp_path / "t.parquet")), **options)
    assert message(e) == f"{tmp_path / 't.parquet'}: {expected}"


def test_parquet_unreadable(tmp_path):
    (tmp_path / "t.parquet").write_bytes(b"PAR1 nothing PAR1")
    with pytest.raises(InputError) as e:
        open_reader(parse_location(str(tmp_path / "t.parquet")))
    assert "not a readable parquet file (" in message(e) and message(e).endswith("check it was written completely")


@pytest.mark.parametrize("ftype,dtype", [(pa.float16(), np.float16), (pa.float32(), np.float32), (pa.float64(), np.float64)])
def test_parquet_source_across_row_groups(tmp_path, rng, ftype, dtype):
    m = rng.normal(size=(23, 3)).astype(dtype)
    values = pa.array(m.reshape(-1), type=ftype)
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, 24 * 3, 3, dtype=np.int32)), values)
    ids = [f"r{i}" for i in range(23)]
    pq.write_table(pa.table({"id": ids, "embedding": emb}), tmp_path / "g.parquet", row_group_size=5)
    loc = parse_location(str(tmp_path / "g.parquet"))
    with open_reader(loc) as r:
        assert (r.rows, r.dim, r.dtype, r.id_column, r.id_kind, r.column) == (23, 3, np.dtype(dtype), "id", "str", "embedding")
        for start in (0, 4, 5, 6, 12, 22):
            parts = [(b.start, b.embeddings.copy(), b.ids) for b in r.batches(3, start=start, with_ids=True)]
            assert np.array_equal(np.concatenate([p[1] for p in parts]), m[start:]), start
            starts = [p[0] for p in parts]
            assert starts[0] == start and all(b - a == len(p[1]) for (a, p), b in zip(zip(starts, parts), starts[1:]))
            assert np.concatenate([p[2] for p in parts]).tolist() == ids[start:]
        assert all(b.ids is None for b in r.batches(7))
        idx = np.array([0, 4, 5, 14, 22])
        assert np.array_equal(r.take(idx), m[idx]) and r.take(idx).dtype == dtype
        assert r.ids().tolist() == ids


def test_parquet_source_fixed_size_and_empty(tmp_path):
    fixed = pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(0, np.float32)), 6)})
    pq.ParquetWriter(tmp_path / "z.parquet", fixed.schema).close()  # no row group at all
    with open_reader(parse_location(str(tmp_path / "z.parquet"))) as r:
        assert (r.rows, r.dim) == (0, 6) and r.layout.codecs == ()
    pq.write_table(pa.table({"e": pa.array([], pa.list_(pa.float32()))}), tmp_path / "l.parquet")
    with open_reader(parse_location(str(tmp_path / "l.parquet"))) as r:
        assert (r.rows, r.dim) == (0, 0)


def test_parquet_ids_with_nulls_and_the_stamp(tmp_path):
    t = pa.table({"id": pa.array([1, None], pa.int64()), "e": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))})
    pq.write_table(t.replace_schema_metadata({b"procalign.stamp": b'{"space": "q"}'}), tmp_path / "n.parquet")
    with open_reader(parse_location(str(tmp_path / "n.parquet"))) as r:
        assert r.id_kind == "int" and r.stamp() == {"space": "q"}
        with pytest.raises(InputError) as e:
            r.ids()
    assert message(e).endswith("id column 'id' has 1 nulls; every anchor needs an id")
    pq.write_table(pa.table({"e": pa.array([[1.0]], pa.list_(pa.float32()))}), tmp_path / "s.parquet")
    with open_reader(parse_location(str(tmp_path / "s.parquet"))) as r:
        assert r.ids() is None and r.stamp() is None and r.id_kind is None


def test_writer_options_exactly():
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32())), ("text", pa.string())])
    assert writer_options(schema, "embedding", (("text", "zstd"),)) == {
        "use_dictionary": ["id", "text"], "compression": {"id": "snappy", "text": "zstd", "embedding": "none"}}


def test_parquet_sink_from_a_parquet_source_keeps_columns_codecs_and_metadata(tmp_path, rng):
    m = rng.normal(size=(11, 4)).astype(np.float32)
    src = tmp_path / "src.parquet"
    t = pa.table({"id": np.arange(11), "embedding": list_array(m, pa.large_list(pa.float32())),
                  "text": [f"t{i}" for i in range(11)]}).replace_schema_metadata({b"origin": b"here"})
    pq.write_table(t, src, row_group_size=4, compression={"id": "zstd", "embedding": "snappy", "text": "gzip"})
    out = tmp_path / "out.parquet"
    first = pq.ParquetFile(src).metadata.row_group(0)
    stored = tuple((first.column(i).path_in_schema.split(".")[0], first.column(i).compression.lower())
                   for i in range(first.num_columns))
    with open_reader(parse_location(str(src))) as r:
        assert r.layout.codecs == stored and stored[0] == ("id", "zstd") and stored[2] == ("text", "gzip")
        sink = ParquetSink(out, SinkSpec(4, np.dtype(np.float64), 11, stamp={"space": "z"}, like=r.layout))
        for b in r.batches(3):
            sink.write(b.embeddings * 2, b.extra)
    sink.finish()
    assert not (tmp_path / "out.parquet.footers").exists()
    got = pq.read_table(out)
    assert got.column_names == ["id", "embedding", "text"]
    assert got.schema.field("embedding").type == pa.large_list(pa.float64())
    assert got.schema.metadata[b"origin"] == b"here"
    assert json.loads(got.schema.metadata[b"procalign.stamp"]) == {"space": "z"}
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 4 and [meta.row_group(i).num_rows for i in range(4)] == [3, 1, 3, 1] or \
        meta.num_rows == 11
    codecs = {meta.row_group(0).column(i).path_in_schema.split(".")[0]: meta.row_group(0).column(i).compression
              for i in range(meta.num_columns)}
    assert codecs == {"id": "ZSTD", "embedding": "UNCOMPRESSED", "text": "GZIP"}
    assert np.array_equal(duck(out), m.astype(np.float64) * 2)  # a second reader agrees
    assert duck_column(out, "text") == [f"t{i}" for i in range(11)]
    assert duck_column(out, "id") == list(range(11))


@pytest.mark.parametrize("kind,ids,arrow", [("int", np.arange(5) + 100, pa.int64()),
                                            ("str", np.array(list("abcde"), object), pa.string())])
def test_parquet_sink_writes_ids_from_another_format(tmp_path, rng, kind, ids, arrow):
    m = rng.normal(size=(5, 3)).astype(np.float32)
    out = tmp_path / "o.parquet"
    sink = ParquetSink(out, SinkSpec(3, np.dtype(np.float32), None, ids=kind, name="vec"))
    sink.write(m[:2], ids=ids[:2])
    sink.write(m[2:], ids=ids[2:])
    sink.finish()
    t = pq.read_table(out)
    assert t.schema.names == ["id", "vec"] and t.schema.field("id").type == arrow
    assert t.schema.field("vec").type == pa.list_(pa.float32(), 3) and t.schema.metadata in (None, {})
    assert t.column("id").to_pylist() == ids.tolist()
    assert np.array_equal(duck(out, "vec"), m.astype(np.float64))
    assert duck_column(out, "id") == ids.tolist()


def test_parquet_sink_without_rows_and_plain(tmp_path, rng):
    out = tmp_path / "e.parquet"
    sink = ParquetSink(out, SinkSpec(3, np.dtype(np.float32), 0))
    sink.finish()
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == 0 and f.schema_arrow.names == ["embedding"]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall() == [(0,)]
    m = rng.normal(size=(4, 2)).astype(np.float16)
    sink = ParquetSink(tmp_path / "p.parquet", SinkSpec(2, np.dtype(np.float16), 4))
    sink.write(m)
    with pytest.raises(ValueError, match="^wrote 0 rows, expected 5$"):
        ParquetSink(tmp_path / "q.parquet", SinkSpec(2, np.dtype(np.float16), 5)).finish()
    sink.finish()
    assert pq.read_table(tmp_path / "p.parquet").schema.field("embedding").type == pa.list_(pa.float16(), 2)
    assert np.array_equal(duck(tmp_path / "p.parquet"), m.astype(np.float64))


def test_parquet_sink_resume_is_byte_identical_and_reads_in_duckdb(tmp_path, rng):
    m = rng.normal(size=(20, 3)).astype(np.float32)
    spec = SinkSpec(3, np.dtype(np.float32), 20, stamp={"space": "t"})
    whole = ParquetSink(tmp_path / "whole.parquet", spec)
    for a in range(0, 20, 6):
        whole.write(m[a:a + 6])
    whole.finish()
    part = tmp_path / "part.parquet"
    sink = ParquetSink(part, spec)
    for a in range(0, 18, 6):
        sink.write(m[a:a + 6])
    sink.flush()
    sink.abort()
    side = tmp_path / "part.parquet.footers"
    assert ParquetSink.sidecars_for(part) == [side]
    # a torn last record in the sidecar (the kill landed while it was written) is cut off
    with open(side, "ab") as f:
        f.write(struct.pack("<QQI", 1, 2, 500) + b"short")
    again = ParquetSink(part, spec, resume_rows=12)
    assert again.written == 12
    for a in range(12, 20, 6):
        again.write(m[a:a + 6])
    again.finish()
    assert part.read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert np.array_equal(duck(part), m.astype(np.float64))
    with pytest.raises(ValueError, match="^the footer sidecar covers 6 rows, the journal 5$"):
        s = ParquetSink(tmp_path / "x.parquet", spec)
        s.write(m[:6])
        s.flush()
        s.abort()
        ParquetSink(tmp_path / "x.parquet", spec, resume_rows=5)
    with pytest.raises(ValueError, match="^the footer sidecar covers 6 rows, the journal 7$"):
        ParquetSink(tmp_path / "x.parquet", spec, resume_rows=7)


# ------------------------------------------------------------------ second round: what survived the first
def test_buffer_ring_of_four_keeps_three_batches_alive():
    ring = BufferRing((2, 2), np.float32)
    got = [ring.next(2) for _ in range(5)]
    assert all(not np.shares_memory(a, b) for i, a in enumerate(got[:4]) for b in got[i + 1:4])
    assert np.shares_memory(got[0], got[4])


def test_npy_take_only_reads(tmp_path, rng):
    import subprocess
    a = rng.normal(size=(5, 2)).astype(np.float32)
    np.save(tmp_path / "ro.npy", a)
    subprocess.run(["chattr", "+i", str(tmp_path / "ro.npy")], check=True)  # refuses writes even to root
    try:
        with open_reader(parse_location(str(tmp_path / "ro.npy"))) as r:
            assert np.array_equal(r.take(np.array([1, 4])), a[[1, 4]])
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "ro.npy")], check=True)


def test_malformed_stamps_name_the_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1), np.float32))
    (tmp_path / "x.npy.procalign.json").write_text("[1]")
    with open_reader(parse_location(str(tmp_path / "x.npy"))) as r, pytest.raises(InputError) as e:
        r.stamp()
    assert message(e).startswith(f"{tmp_path / 'x.npy'}: the procalign stamp in sidecar x.npy.procalign.json is "
                                 "malformed (")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["emb"] = np.zeros((1, 1))
        f["emb"].attrs["procalign.stamp"] = "[2]"
    with open_reader(parse_location(str(tmp_path / "s.h5"))) as r, pytest.raises(InputError) as e:
        r.stamp()
    assert message(e) == (f"{tmp_path / 's.h5'}: the procalign stamp in attribute procalign.stamp is malformed "
                          "('[2]'); delete it, or re-create the data with procalign apply")


def test_parquet_ids_from_a_later_column_and_their_message(tmp_path):
    t = pa.table({"e": pa.array([[1.0], [2.0]], pa.list_(pa.float32())), "key": pa.array(["a", None])})
    pq.write_table(t, tmp_path / "k.parquet")
    with open_reader(parse_location(str(tmp_path / "k.parquet")), id_column="key") as r, pytest.raises(InputError) as e:
        r.ids()
    assert message(e) == f"{tmp_path / 'k.parquet'}: id column 'key' has 1 nulls; every anchor needs an id"
    pq.write_table(pa.table({"e": t.column("e"), "key": ["a", "b"]}), tmp_path / "ok.parquet")
    with open_reader(parse_location(str(tmp_path / "ok.parquet")), id_column="key") as r:
        assert r.ids().tolist() == ["a", "b"]


@pytest.mark.parametrize("ftype,kind", [(pa.large_list(pa.int32()), "list of int32"),
                                        (pa.list_(pa.int16(), 2), "list of int16")])
def test_parquet_lists_of_integers_are_named_as_lists(tmp_path, ftype, kind):
    pq.write_table(pa.table({"a": [[1.0, 2.0]], "k": pa.array([[1, 2]], ftype)}), tmp_path / "t.parquet")
    with pytest.raises(InputError) as e:
        open_reader(parse_location(str(tmp_path / "t.parquet")), column="k")
    assert f"column 'k' is {kind}, expected a list of floats" in message(e)


def test_h5_sink_layout_details(tmp_path, rng):
    # allocated up front: the whole dataset has storage before any row is written
    sink = hdf5.H5Sink(tmp_path / "a.h5", SinkSpec(3, np.dtype(np.float32), 10, stamp={"space": "t", "direction": "fwd"}))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        ds = f["embeddings"]
        assert ds.id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
        assert ds.id.get_storage_size() == 10 * 3 * 4
        assert ds.attrs["procalign.stamp"] == json.dumps({"direction": "fwd", "space": "t"})  # sorted keys
    handle = sink._file
    sink.abort()
    assert not handle.id.valid and sink._file is None
    one = hdf5.H5Sink(tmp_path / "one.h5", SinkSpec(2, np.dtype(np.float64), 1))
    one.write(np.ones((1, 2)))
    one.finish()
    with h5py.File(tmp_path / "one.h5") as f:
        assert f["embeddings"].chunks is None and f["embeddings"][()].tolist() == [[1.0, 1.0]]


def test_h5_stream_sinks_start_empty(tmp_path):
    s = hdf5.H5Sink(tmp_path / "s.h5", SinkSpec(2, np.dtype(np.float32), None, ids="int"))
    s.finish()
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["embeddings"].shape == (0, 2) and f["embeddings"].chunks == (4096, 2)
        assert f["ids"].shape == (0,) and f["ids"].chunks == (4096,) and f["ids"].maxshape == (None,)
    z = hdf5.H5Sink(tmp_path / "z.h5", SinkSpec(2, np.dtype(np.float32), 0, ids="str"))
    z.finish()
    with h5py.File(tmp_path / "z.h5") as f:
        assert f["embeddings"].shape == (0, 2) and f["ids"].shape == (0,) and f["ids"].maxshape == (0,)
    fixed = hdf5.H5Sink(tmp_path / "f.h5", SinkSpec(2, np.dtype(np.float32), 3, ids="int"))
    fixed.write(np.zeros((3, 2)), ids=np.arange(3))
    fixed.finish()
    with h5py.File(tmp_path / "f.h5") as f:
        assert f["ids"].maxshape == (3,) and f["ids"][()].tolist() == [0, 1, 2]


def test_h5_sink_ignores_ids_it_was_not_asked_for(tmp_path, rng):
    s = hdf5.H5Sink(tmp_path / "n.h5", SinkSpec(2, np.dtype(np.float32), 2))
    s.write(np.ones((2, 2)), ids=np.array([5, 6]))
    s.finish()
    with h5py.File(tmp_path / "n.h5") as f:
        assert list(f) == ["embeddings"]


def test_h5_resume_of_a_nested_dataset_keeps_writing_its_ids(tmp_path, rng):
    data = rng.normal(size=(6, 2))
    spec = SinkSpec(2, np.dtype(np.float64), 6, ids="int", name="/g/emb")
    sink = hdf5.H5Sink(tmp_path / "r.h5", spec)
    sink.write(data[:4], ids=np.arange(4) + 10)
    sink.flush()
    sink.abort()
    again = hdf5.H5Sink(tmp_path / "r.h5", spec, resume_rows=4)
    again.write(data[4:], ids=np.array([14, 15]))
    again.finish()
    with h5py.File(tmp_path / "r.h5") as f:
        assert sorted(f) == ["g"] and f["g/ids"][()].tolist() == list(range(10, 16))
        assert np.array_equal(f["g/emb"][()], data)


def test_npy_sink_sends_whole_blocks_to_the_disk_directly(tmp_path, monkeypatch):
    calls = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: calls.append((fd, len(data), offset)) or real(fd, data, offset))
    a = np.arange(2048 * 3, dtype=np.float32).reshape(2048, 3)  # 8 rows of 3 float32 = 96 bytes
    buf = aligned_empty((1024, 3), np.float32)
    assert buf.ctypes.data % 4096 == 0
    sink = npy.NpySink(tmp_path / "w.npy", SinkSpec(3, np.dtype(np.float32), 2048))
    direct, cached = sink._writer.direct, sink._file.fileno()
    buf[:] = a[:1024]
    sink.write(buf)              # 12,288 bytes at offset 4096: three whole blocks, all direct
    sink.write(a[1024:1030])     # not aligned in memory: through the page cache
    sink.write(a[1030:])         # nor at an aligned offset any more
    sink.finish()
    assert np.array_equal(np.load(tmp_path / "w.npy"), a)
    # where the file system refuses O_DIRECT (some tmpfs), every write goes through the cache
    first = direct if direct is not None else cached
    assert calls == [(first, 12288, 4096), (cached, 72, 16384), (cached, 12216, 16456)]
    stream = npy.NpySink(tmp_path / "s.npy", SinkSpec(3, np.dtype(np.float32), None))
    assert stream._writer is None  # a stream appends plain writes
    stream.abort()
    assert aligned_rows(14563, 1536) == 14560 and aligned_rows(5, 1536) == 5 and aligned_rows(9000, 1540) == 8192


@pytest.mark.parametrize("answer", [errno.EINVAL, errno.EOPNOTSUPP])
def test_direct_writer_falls_back_to_the_page_cache_when_refused(tmp_path, monkeypatch, answer):
    path = tmp_path / "d.bin"
    with open(path, "w+b") as f:
        writer = DirectWriter(path, f.fileno())
        refused = writer.direct
        real = os.pwrite

        def pwrite(fd, data, offset):
            if fd == refused:
                raise OSError(answer, os.strerror(answer))
            return real(fd, data, offset)
        monkeypatch.setattr(os, "pwrite", pwrite)
        data = aligned_empty((2 * 4096 + 10,), np.uint8)
        data[:] = np.arange(len(data)) % 251
        writer.write_at(0, data)
        assert writer.direct is None  # closed for good
        writer.write_at(len(data), data[:5])
        writer.close()
    assert path.read_bytes() == data.tobytes() + data[:5].tobytes()


def test_direct_writer_keeps_real_write_errors_and_checks_the_bytes_it_sends(tmp_path, monkeypatch):
    path = tmp_path / "e.bin"
    with open(path, "w+b") as f:
        writer = DirectWriter(path, f.fileno())
        direct, real = writer.direct, os.pwrite

        def pwrite(fd, data, offset):
            if offset >= 8192:
                raise OSError(errno.EIO, "Input/output error")
            return real(fd, data, offset)
        monkeypatch.setattr(os, "pwrite", pwrite)
        rows = aligned_empty((2, 4096), np.uint8)
        rows[:] = 7
        # a strided view of aligned memory is copied first: the copy's address decides, so the
        # direct descriptor is not tried with an unaligned copy (and then given up)
        writer.write_at(0, rows[:, ::2])
        assert path.read_bytes() == b"\x07" * 4096 and writer.direct == direct
        with pytest.raises(OSError, match="Input/output error"):  # not a refusal: raised as it is
            writer.write_at(8192, rows)
        assert writer.direct == direct  # still on
        writer.close()




def test_direct_helpers_edge_cases():
    empty = aligned_empty((0, 5), np.float32)
    assert empty.shape == (0, 5) and empty.dtype == np.float32
    one = aligned_empty((1,), np.uint8)
    assert one.shape == (1,) and one.ctypes.data % 4096 == 0
    assert aligned_rows(5000, 1) == 4096 and aligned_rows(3000, 1) == 3000 and aligned_rows(100, 0) == 100 \
        and aligned_rows(4096, 1) == 4096


def direct_io_works(path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        return True
    except OSError:
        return False


def test_direct_writer_writes_whole_blocks_directly_and_the_rest_through_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    if not direct_io_works(path):
        pytest.skip("this file system refuses O_DIRECT")
    calls, real = [], os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: calls.append((fd, len(data), offset)) or real(fd, data, offset))
    with open(path, "w+b") as f:
        writer = DirectWriter(path, f.fileno())
        assert isinstance(writer.direct, int)
        data = aligned_empty((2 * 4096 + 10,), np.uint8)
        data[:] = np.arange(len(data)) % 253
        writer.write_at(0, data)
        assert calls == [(writer.direct, 8192, 0), (f.fileno(), 10, 8192)]
        assert writer.direct is not None  # an unaligned tail does not turn direct writes off
        writer.close()
        assert writer.direct is None
    assert path.read_bytes() == data.tobytes()


def test_direct_writer_when_the_file_system_refuses_to_open_direct(tmp_path, monkeypatch):
    real = os.open

    def refuse(path, flags, *mode):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, *mode)
    monkeypatch.setattr(os, "open", refuse)
    path = tmp_path / "r.bin"
    with open(path, "w+b") as f:
        writer = DirectWriter(path, f.fileno())
        assert writer.direct is None
        data = aligned_empty((4096,), np.uint8)
        data[:] = 9
        writer.write_at(0, data)
        writer.close()
    assert path.read_bytes() == b"\x09" * 4096


@pytest.mark.parametrize("rows,ids,raw", [(64, None, True), (64, "int", False), (None, None, False)])
def test_h5_rows_of_a_known_size_go_straight_to_the_file(tmp_path, rows, ids, raw):
    # a contiguous dataset of known size without ids is written by offset into the file itself;
    # with ids, or a stream, through h5py
    a = np.arange(64 * 4096, dtype=np.float32).reshape(64, 4096)  # 1 MB: HDF5 aligns it to a block
    sink = hdf5.H5Sink(tmp_path / "k.h5", SinkSpec(4096, np.dtype(np.float32), rows, ids=ids))
    sink.write(a[:32], ids=np.arange(32) if ids else None)
    writer = sink._direct
    assert (writer is not None) == raw
    if raw:
        assert sink._offset % 4096 == 0 and sink._row_bytes == 16384
    sink.write(a[32:], ids=np.arange(32, 64) if ids else None)
    sink.finish()
    with h5py.File(tmp_path / "k.h5") as f:
        assert np.array_equal(f["embeddings"][()], a)
        if raw:  # the file ends with the rows: nothing allocated past them
            assert os.path.getsize(tmp_path / "k.h5") <= sink._offset + a.nbytes + 4096


@pytest.mark.parametrize("shape", [(1, 5), (5, 1)])
def test_npy_fortran_order_of_one_row_or_column_is_plain_rows(tmp_path, shape):
    # one row or one column lies the same in either order: nothing to refuse
    a = np.arange(5, dtype="<f4")
    write_npy_header(tmp_path / "f.npy", f"{{'descr': '<f4', 'fortran_order': True, 'shape': {shape}, }}", a.tobytes())
    source = npy.NpySource(Location(tmp_path / "f.npy", FORMATS[0]))
    try:
        assert np.array_equal(np.concatenate([b.embeddings for b in source.batches(3)]), a.reshape(shape))
    finally:
        source.close()


def test_npy_source_maps_only_native_byte_order(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "n.npy", a)
    np.save(tmp_path / "b.npy", a.astype(">f4"))
    native, swapped = (npy.NpySource(Location(tmp_path / n, FORMATS[0])) for n in ("n.npy", "b.npy"))
    try:
        assert native.mapped is True and swapped.mapped is False
    finally:
        native.close()
        swapped.close()


def test_npy_stamp_sidecar_has_sorted_keys(tmp_path):
    npy.write_stamp(tmp_path / "x.npy", {"transform": "t", "space": "b"})
    assert (tmp_path / "x.npy.procalign.json").read_text() == '{"space": "b", "transform": "t"}'


def test_npy_sink_resume_edge_cases(tmp_path, rng):
    a = rng.normal(size=(8, 2)).astype(np.float32)
    stream = npy.NpySink(tmp_path / "s.npy", SinkSpec(2, np.dtype(np.float32), None))
    stream.write(a)
    stream.flush()
    with open(tmp_path / "s.npy", "rb") as f:  # a stream's header holds 0 rows until finish
        assert npy.read_header(tmp_path / "s.npy", f)[0] == (0, 2)
    stream.abort()
    whole = npy.NpySink(tmp_path / "s.npy", SinkSpec(2, np.dtype(np.float32), None), resume_rows=8)  # all there
    whole.finish()
    assert np.array_equal(np.load(tmp_path / "s.npy"), a)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 12}   \n" + b"\0" * 64)
    with pytest.raises(InputError) as e:
        npy.NpySink(bad, SinkSpec(2, np.dtype(np.float32), 8), resume_rows=2)
    assert message(e).startswith(f"{bad}: not a valid .npy file (")


def test_parquet_stamp_and_take_messages(tmp_path):
    t = pa.table({"e": pa.array([[1.0], [2.0], [3.0], None], pa.list_(pa.float32()))})
    meta = {b"procalign.stamp": b"7"}
    pq.write_table(t.replace_schema_metadata(meta), tmp_path / "n.parquet", row_group_size=2)
    with open_reader(parse_location(str(tmp_path / "n.parquet"))) as r:
        with pytest.raises(InputError) as e:
            r.stamp()
        assert message(e) == (f"{tmp_path / 'n.parquet'}: the procalign stamp in schema metadata procalign.stamp is "
                              "malformed (\"b'7'\"); delete it, or re-create the data with procalign apply")
        assert np.array_equal(r.take([0, 1]), [[1.0], [2.0]])
        with pytest.raises(InputError) as e:
            r.take([2, 3])
    assert message(e) == f"{tmp_path / 'n.parquet'}: embedding is null at row 3; drop or fill the null rows"
