"""Hostile inputs, by class. Every case is generated (several per class) and held to the bad-input
corpus's rules: one line on stderr naming the file, the documented exit code, no traceback,
nothing left at or beside the destination, and the inputs unchanged."""
import hashlib
import json
import os
import re
import stat
import zipfile

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from procalign.cli import app
from procalign.transform_file import ARRAYS, sealed_checksum
from test_bad_inputs import D, emb_list, good, npy, parquet, transform

runner = CliRunner(env={"COLUMNS": "200"})
CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _rewrite_transform(path, **changes):
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(str(members["metadata"]))
    edit = changes.pop("meta", None)
    if edit:
        edit(meta)
    members.update({k: np.asarray(v) for k, v in changes.items()})
    meta["checksum"] = sealed_checksum({k: members[k] for k in ARRAYS}, meta)  # a forger recomputes it
    members["metadata"] = np.asarray(json.dumps(meta))
    np.savez(path, **members)


# -- a transform that claims what it is not: checksum recomputed, still refused ---------------
FORGERIES = {
    "not_orthogonal": (lambda m: {"matrix": m["matrix"] * 1.01}, "not orthonormal"),
    "rank_deficient": (lambda m: {"matrix": np.diag([1.0] * (D - 1) + [0.0])}, "not orthonormal"),
    "scale_zero": (lambda m: {"scale": 0.0}, "scale is 0.0"),
    "scale_negative": (lambda m: {"scale": -2.0}, "scale is -2.0"),
    "scale_vector": (lambda m: {"scale": np.ones(3)}, "inconsistent shapes"),
    "nan_mean": (lambda m: {"source_mean": np.full(D, np.nan)}, "NaN or Inf"),
    "mean_wrong_length": (lambda m: {"target_mean": np.zeros(D + 1)}, "inconsistent shapes"),
    "int_matrix": (lambda m: {"matrix": np.eye(D, dtype=np.int64)}, "dtype int64"),
    "name_not_string": (lambda m: {"meta": lambda d: d["source"].update(name=5)}, "'source' must be"),
    "dim_disagrees": (lambda m: {"meta": lambda d: d["target"].update(dim=D + 2)}, "target space is"),
    "options_not_bool": (lambda m: {"meta": lambda d: d["options"].update(centre="yes")}, "'options' must map"),
    "options_unknown": (lambda m: {"meta": lambda d: d["options"].update(shear=True)}, "'options' must map"),
    "method_unknown": (lambda m: {"meta": lambda d: d.update(method="mlp")}, "method 'mlp'"),
    "version_string": (lambda m: {"meta": lambda d: d.update(format_version="2")}, "not a positive integer"),
    "inverse_of_number": (lambda m: {"meta": lambda d: d.update(inverse_of=3)}, "'inverse_of' must be"),
}

for _name, (_change, _pattern) in FORGERIES.items():
    def _forged(i, o, change=_change, pattern=_pattern):
        t = transform(D, i)
        with np.load(t) as z:
            _rewrite_transform(t, **change({k: z[k] for k in z.files}))
        return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, pattern
    case(f"forged_{_name}")(_forged)


@case("transform_zip_bomb")
def _zip_bomb(i, o):
    """A member that says it expands to 3 GiB (what a deflated run of zeros does): refused from
    the zip directory, before anything is decompressed."""
    t = transform(D, i)
    with zipfile.ZipFile(t, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("padding.npy", bytes(1000))
    raw = bytearray(t.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")  # the central directory record of the last member
    assert raw[entry + 46:entry + 57] == b"padding.npy"
    raw[entry + 24:entry + 28] = (3 << 30).to_bytes(4, "little")  # its uncompressed size
    t.write_bytes(bytes(raw))
    return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, "expands to"


# -- casts that overflow must fail, not write Inf ----------------------------------------------
for _in, _out, _value in [("float32", "float16", 1e5), ("float64", "float32", 1e300), ("float16", "float16", 6.5e4),
                          ("float64", "float16", 7e4)]:
    def _overflow(i, o, dt_in=_in, dt_out=_out, value=_value):
        a = good().astype(dt_in)
        a[7] = value
        p = npy(i / "big.npy", a)
        argv = ["apply", transform(D, i), p, "-o", o / "x.npy"] + (["--dtype", dt_out] if dt_out != dt_in else [])
        return argv, p, 4, f"overflows {dt_out} at row 7.*--dtype"
    case(f"overflow_{_in}_to_{_out}")(_overflow)


# -- gates must not pass a fit the data cannot support -----------------------------------------
for _n, _gate in [(10, ["--min-cosine", "0.5"]), (40, ["--max-residual", "0.99"]), (200, ["--min-cosine", "0.1"])]:
    def _meaningless(i, o, n=_n, gate=_gate):
        d = 64
        p = npy(i / "a.npy", good(n, d, 1))
        return ["fit", p, npy(i / "b.npy", good(n, d, 2)), "-o", o / "t.npz"] + gate, None, 3, "gates not judged"
    case(f"gate_on_{_n}_random_pairs")(_meaningless)


@case("gate_on_a_tiny_id_overlap")
def _overlap(i, o):
    n = 1000
    p = parquet(i / "a.parquet", id=[f"a{k}" for k in range(n)], emb=emb_list(good(n)))
    q = parquet(i / "b.parquet", id=[f"a{k}" if k < 8 else f"b{k}" for k in range(n)], emb=emb_list(good(n, seed=2)))
    return ["fit", p, q, "-o", o / "t.npz", "--min-cosine", "0.9"], None, 3, "gates not judged"


@case("gate_on_too_few_heldout_pairs")
def _few_heldout(i, o):
    p = npy(i / "a.npy", good(60))
    return ["fit", p, npy(i / "b.npy", good(60, seed=2)), "-o", o / "t.npz", "--holdout", "0.05",
            "--min-top1", "0.1"], None, 3, "held-out pairs"


# -- ids that do not fit their rows ------------------------------------------------------------
for _shape, _pattern in [((299,), "shape \\(299,\\) for 300 rows"), ((301,), "shape \\(301,\\)"),
                         ((300, 2), "shape \\(300, 2\\)")]:
    def _bad_ids(i, o, shape=_shape, pattern=_pattern):
        p = i / "a.h5"
        with h5py.File(p, "w") as f:
            f["emb"] = good(300)
            f["ids"] = np.arange(int(np.prod(shape))).reshape(shape)
        return ["fit", p, npy(i / "b.npy", good(300)), "-o", o / "t.npz"], p, 4, pattern
    case(f"h5_ids_shape_{'x'.join(map(str, _shape))}")(_bad_ids)


@case("h5_ids_float")
def _float_ids(i, o):
    p = i / "a.h5"
    with h5py.File(p, "w") as f:
        f["emb"] = good(30)
        f["ids"] = np.linspace(0, 1, 30)
    return ["fit", p, npy(i / "b.npy", good(30)), "-o", o / "t.npz"], p, 4, "ids must be integers or strings"


@case("parquet_id_column_is_the_embeddings")
def _id_is_emb(i, o):
    p = parquet(i / "a.parquet", emb=emb_list(good()))
    q = parquet(i / "b.parquet", emb=emb_list(good()))
    return ["fit", p, q, "-o", o / "t.npz", "--id-column", "emb"], p, 2, "is the embedding column"


@case("parquet_id_column_is_a_struct")
def _struct_id(i, o):
    ids = pa.array([{"k": j} for j in range(50)])
    p = parquet(i / "a.parquet", id=ids, emb=emb_list(good()))
    q = parquet(i / "b.parquet", id=ids, emb=emb_list(good()))
    return ["fit", p, q, "-o", o / "t.npz"], p, 4, "ids must be integers or strings"


# -- malformed stamps: bad input data, exit 4 ---------------------------------------------------
STAMPS = {"not_json": b"{oops", "a_list": b"[1, 2]", "a_number": b"42", "space_not_string": b'{"space": 3}'}
for _name, _raw in STAMPS.items():
    def _npy_stamp(i, o, raw=_raw):
        p = npy(i / "s.npy", good())
        (i / "s.npy.procalign.json").write_bytes(raw)
        return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "stamp in sidecar .* is malformed"
    case(f"npy_stamp_{_name}")(_npy_stamp)

    def _h5_stamp(i, o, raw=_raw):
        p = i / "s.h5"
        with h5py.File(p, "w") as f:
            f["emb"] = good()
            f["emb"].attrs["procalign.stamp"] = raw.decode()
        return ["apply", transform(D, i), p, "-o", o / "x.h5"], p, 4, "is malformed"
    case(f"h5_stamp_{_name}")(_h5_stamp)

    def _parquet_stamp(i, o, raw=_raw):
        table = pa.table({"emb": emb_list(good())}).replace_schema_metadata({b"procalign.stamp": raw})
        p = i / "s.parquet"
        pq.write_table(table, p)
        return ["apply", transform(D, i), p, "-o", o / "x.parquet"], p, 4, "is malformed"
    case(f"parquet_stamp_{_name}")(_parquet_stamp)


# -- shapes that are not embeddings --------------------------------------------------------------
@case("npy_dimension_zero")
def _dim0(i, o):
    p = npy(i / "z.npy", np.zeros((5, 0), np.float32))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "0 values"


@case("h5_dimension_zero")
def _h5_dim0(i, o):
    p = i / "z.h5"
    with h5py.File(p, "w") as f:
        f["emb"] = np.zeros((5, 0), np.float32)
    return ["apply", transform(D, i), f"{p}:/emb", "-o", o / "x.h5"], p, 4, "0 values"


@case("npy_negative_shape")
def _negative(i, o):
    p = npy(i / "neg.npy", good())
    raw = p.read_bytes().replace(b"(50, 8)", b"(-5, 8)", 1)
    p.write_bytes(raw)
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "negative shape"


for _ext in ("npy", "parquet", "h5"):
    def _zero_rows(i, o, ext=_ext):
        src = npy(i / "z.npy", np.zeros((0, D), np.float32))
        if ext == "parquet":
            src = parquet(i / "z.parquet", emb=pa.array([], type=pa.list_(pa.float32(), D)))
        elif ext == "h5":
            src = i / "z.h5"
            with h5py.File(src, "w") as f:
                f["emb"] = np.zeros((0, D), np.float32)
        return ["apply", transform(D, i), src, "-o", o / f"x.{ext}"], src, 4, "zero rows"
    case(f"apply_zero_rows_{_ext}")(_zero_rows)


# -- names that conflict -----------------------------------------------------------------------
for _cmd in ("apply", "inspect"):
    def _conflict(i, o, cmd=_cmd):
        p = i / "two.h5"
        with h5py.File(p, "w") as f:
            f["emb"], f["emb2"] = good(), good()
        argv = [cmd] + ([transform(D, i)] if cmd == "apply" else []) + [f"{p}:/emb", "--dataset", "/emb2"]
        return argv + (["-o", o / "x.h5"] if cmd == "apply" else []), p, 2, "--dataset /emb2"
    case(f"{_cmd}_dataset_named_twice")(_conflict)


# -- destinations that are not regular files ----------------------------------------------------
@case("destination_fifo")
def _fifo(i, o):
    f = o / "pipe.npy"
    os.mkfifo(f)
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", f, "--overwrite"], f, 6, "FIFO"


@case("destination_char_device")
def _device(i, o):
    f = o / "null.npy"
    os.mknod(f, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", f, "--overwrite"], f, 6, "character device"


@case("destination_symlink_to_directory")
def _link_dir(i, o):
    (o / "somedir").mkdir()
    (o / "link.npy").symlink_to(o / "somedir")
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", o / "link.npy", "--overwrite"], \
        o / "link.npy", 6, "is a directory"


# -- found by review: each was a silent wrong answer or a wrong exit code -------------------------
@case("ids_uint64_against_int64_share_nothing")
def _mixed_int_ids(i, o):
    k = np.arange(400, dtype=np.uint64)
    p = parquet(i / "a.parquet", id=pa.array(2**60 + 1024 * k, pa.uint64()), emb=emb_list(good(400)))
    q = parquet(i / "b.parquet", id=pa.array((2**60 + 1024 * k + 1).astype(np.int64), pa.int64()),
                emb=emb_list(good(400, seed=2)))
    return ["fit", p, q, "-o", o / "t.npz"], p, 4, "no id is shared"


@case("evaluate_gate_on_three_pairs")
def _evaluate_few(i, o):
    t = transform(D, i)
    p = npy(i / "a.npy", good(3))
    return ["evaluate", t, p, npy(i / "b.npy", good(3, seed=2)), "--min-cosine", "0.0"], None, 3, "gates not judged"


@case("h5_chunk_damaged_mid_file")
def _damaged_chunk(i, o):
    p = i / "z.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("emb", data=good(4000), chunks=(500, D), compression="gzip")
        offset = f["emb"].id.get_chunk_info(5).byte_offset
    raw = bytearray(p.read_bytes())
    raw[offset:offset + 200] = bytes(range(200))
    p.write_bytes(bytes(raw))
    return ["apply", transform(D, i), p, "-o", o / "x.npy", "--batch-rows", "500"], p, 4, "could not read"


@case("parquet_zero_rows_list_column")
def _zero_list(i, o):
    p = parquet(i / "z.parquet", emb=pa.array([], type=pa.list_(pa.float32())))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "zero rows"


@case("transform_metadata_with_nan_token")
def _nan_token(i, o):
    t = transform(D, i)
    with np.load(t) as z:
        members = {k: z[k] for k in z.files}
    members["metadata"] = np.asarray(str(members["metadata"]).replace('"anchors": 60', '"anchors": NaN'))
    np.savez(t, **members)
    return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, "checksum mismatch"


@case("output_through_a_dataset")
def _through_dataset(i, o):
    p = i / "a.h5"
    with h5py.File(p, "w") as f:
        f["emb"], f["payload"] = good(), np.arange(50)
    return ["apply", transform(D, i), f"{p}:/emb", "-o", f"{o / 'x.h5'}:/payload/emb"], None, 2, \
        "cannot create dataset"


@case("apply_overwrites_its_own_transform")
def _own_transform(i, o):
    t = transform(D, i, name="t.npy")  # fit writes any name; an .npy name makes it a valid output path
    return ["apply", t, npy(i / "a.npy", good()), "-o", t, "--overwrite"], t, 6, "same as the input"


def _tree_state(root):
    out = {}
    for p in sorted(root.rglob("*")):
        kind = "link" if p.is_symlink() else ("fifo" if stat.S_ISFIFO(os.lstat(p).st_mode) else
                                              "chr" if stat.S_ISCHR(os.lstat(p).st_mode) else
                                              "dir" if p.is_dir() else "file")
        out[str(p.relative_to(root))] = (kind, hashlib.sha256(p.read_bytes()).hexdigest() if kind == "file" else None)
    return out


def test_every_class_has_several_cases():
    classes = {re.sub(r"_(\w+)$", "", n).split("_")[0] for n in CASES}
    assert len(CASES) >= 50 and len(classes) >= 10, (len(CASES), classes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name, tmp_path):
    i, o = tmp_path / "in", tmp_path / "out"
    i.mkdir(), o.mkdir()
    argv, named, code, pattern = CASES[name](i, o)
    inputs, outputs = _tree_state(i), _tree_state(o)
    r = runner.invoke(app, [str(a) for a in argv])
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.splitlines()
    assert [ln for ln in lines if not ln.startswith("warning: ")] == lines[-1:], r.stderr
    err = lines[-1] + "\n"
    assert err.startswith("procalign: error: "), err
    assert "Traceback" not in r.output
    assert re.search(pattern, err), err
    if named is not None:
        assert os.path.basename(str(named)) in err, err
    assert _tree_state(o) == outputs, "something was written at or beside the destination"
    assert _tree_state(i) == inputs, "an input was changed"
