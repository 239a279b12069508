"""A corpus of malformed or wrong inputs. Each must give one line on stderr naming the file,
saying what is wrong and how to fix it, exit with the documented code, print no traceback and
leave nothing at or beside the destination."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from procalign.cli import app

runner = CliRunner(env={"COLUMNS": "200"})
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
D = 8


def good(rows=50, d=D, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, d)).astype(np.float32)


def npy(path, a):
    np.save(path, a)
    return path


def parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def emb_list(m):
    return pa.array(list(map(list, m)), type=pa.list_(pa.float32()))


def transform(d_in, tmp, name="t.npz", **kw):
    """A real transform file made with the CLI."""
    out = tmp / name
    r = runner.invoke(app, ["fit", str(npy(tmp / f"_a{d_in}.npy", good(60, d_in, 1))),
                            str(npy(tmp / f"_b{d_in}.npy", good(60, d_in, 2))), "-o", str(out), "--no-report"])
    assert r.exit_code == 0, r.output
    os.remove(tmp / f"_a{d_in}.npy"), os.remove(tmp / f"_b{d_in}.npy")
    return out


def _rewrite_npz(path, **changes):
    with np.load(path) as z:
        m = {k: z[k] for k in z.files}
    m.update(changes)
    np.savez(path, **m)


# Each case: (id, builder(tmp_in, out_dir) -> (argv, file named in the message), exit code, message regex)
def case_truncated_npy(i, o):
    p = npy(i / "trunc.npy", good())
    p.write_bytes(p.read_bytes()[:-100])
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "truncated"


def case_object_npy(i, o):
    p = i / "obj.npy"
    np.save(p, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "pickle"


def case_pickle_only(i, o):
    p = i / "pickled.npy"
    import pickle
    p.write_bytes(pickle.dumps(good()))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "not a valid .npy"


def case_1d(i, o):
    p = npy(i / "one.npy", np.zeros(10, np.float32))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "1-D"


def case_3d(i, o):
    p = npy(i / "three.npy", np.zeros((2, 3, 4), np.float32))
    return ["fit", p, npy(i / "ok.npy", good()), "-o", o / "t.npz"], p, 4, "3-D"


def case_int(i, o):
    p = npy(i / "int.npy", np.zeros((5, D), np.int32))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "int32.*float"


def case_complex(i, o):
    p = npy(i / "cplx.npy", np.zeros((5, D), np.complex64))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "complex64"


def case_fortran(i, o):
    p = npy(i / "fort.npy", np.asfortranarray(good()))
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "Fortran"


def case_nan_apply(i, o):
    a = good()
    a[17, 3] = np.nan
    p = npy(i / "nan.npy", a)
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "row 17"


def case_inf_fit(i, o):
    a = good()
    a[23, 0] = np.inf
    p = npy(i / "inf.npy", a)
    return ["fit", p, npy(i / "ok.npy", good()), "-o", o / "t.npz"], p, 4, "row 23"


def case_nan_fit_one_pass(i, o):
    a = good(5000)
    a[4321, 2] = np.nan
    p = npy(i / "nan_target.npy", a)
    return ["fit", npy(i / "ok.npy", good(5000)), p, "-o", o / "t.npz", "--no-report",
            "--batch-rows", "1000"], p, 4, "row 4321"


def case_zero_vector_normalize(i, o):
    a = good()
    a[5] = 0
    p = npy(i / "zero.npy", a)
    return ["fit", npy(i / "ok.npy", good()), p, "-o", o / "t.npz", "--normalize"], p, 4, "zero vector at row 5"


def case_zero_vector_apply_normalized(i, o):
    t = i / "tn.npz"
    r = runner.invoke(app, ["fit", str(npy(i / "a.npy", good(seed=3))), str(npy(i / "b.npy", good(seed=4))),
                            "-o", str(t), "--normalize", "--no-report"])
    assert r.exit_code == 0
    a = good()
    a[9] = 0
    p = npy(i / "z.npy", a)
    return ["apply", t, p, "-o", o / "x.npy"], p, 4, "row 9"


def case_empty_file(i, o):
    p = i / "empty.npy"
    p.write_bytes(b"")
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 4, "empty"


def case_zero_rows(i, o):
    p = npy(i / "none.npy", np.zeros((0, D), np.float32))
    return ["fit", p, npy(i / "none2.npy", np.zeros((0, D), np.float32)), "-o", o / "t.npz"], p, 4, "zero rows"


def case_row_counts_differ(i, o):
    p = npy(i / "a.npy", good(50))
    return ["fit", p, npy(i / "b.npy", good(49)), "-o", o / "t.npz"], p, 4, "50 rows here but 49"


def case_ids_disjoint(i, o):
    p = parquet(i / "a.parquet", id=[f"a{k}" for k in range(50)], emb=emb_list(good()))
    q = parquet(i / "b.parquet", id=[f"b{k}" for k in range(50)], emb=emb_list(good()))
    return ["fit", p, q, "-o", o / "t.npz"], p, 4, "no id is shared"


def case_duplicate_ids(i, o):
    p = parquet(i / "a.parquet", id=[f"a{k % 40}" for k in range(50)], emb=emb_list(good()))
    q = parquet(i / "b.parquet", id=[f"a{k}" for k in range(50)], emb=emb_list(good()))
    return ["fit", p, q, "-o", o / "t.npz"], p, 4, "duplicate ids"


def case_parquet_null_embedding(i, o):
    rows = list(map(list, good(10)))
    rows[4] = None
    p = parquet(i / "nulls.parquet", emb=pa.array(rows, type=pa.list_(pa.float32())))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet"], p, 4, "null at row 4"


def case_parquet_ragged(i, o):
    rows = list(map(list, good(10)))
    rows[6] = rows[6][:5]
    p = parquet(i / "ragged.parquet", emb=pa.array(rows, type=pa.list_(pa.float32())))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet"], p, 4, "row 6 has 5 values"


def case_parquet_missing_column(i, o):
    p = parquet(i / "a.parquet", emb=emb_list(good()))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet", "--column", "vec"], p, 2, "no column 'vec'"


def case_parquet_ambiguous_column(i, o):
    p = parquet(i / "two.parquet", e1=emb_list(good()), e2=emb_list(good()))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet"], p, 2, "several list-of-float columns"


def case_parquet_int_list(i, o):
    p = parquet(i / "ints.parquet", emb=pa.array([[1] * D] * 5, type=pa.list_(pa.int32())))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet", "--column", "emb"], p, 4, "list of int32"


def case_parquet_corrupt(i, o):
    p = i / "bad.parquet"
    p.write_bytes(b"PAR1" + os.urandom(300))
    return ["apply", transform(D, i), p, "-o", o / "x.parquet"], p, 4, "not a readable parquet"


def case_h5_missing_dataset(i, o):
    p = i / "a.h5"
    with h5py.File(p, "w") as f:
        f["emb"] = good()
    return ["apply", transform(D, i), f"{p}:/nope", "-o", o / "x.h5"], p, 2, "no dataset '/nope'"


def case_h5_not_2d(i, o):
    p = i / "a.h5"
    with h5py.File(p, "w") as f:
        f["emb"] = np.zeros((4, 4, 4), np.float32)
    return ["apply", transform(D, i), f"{p}:/emb", "-o", o / "x.h5"], p, 4, "3-D"


def case_h5_group(i, o):
    p = i / "a.h5"
    with h5py.File(p, "w") as f:
        f.create_group("grp")["emb"] = good()
    return ["apply", transform(D, i), f"{p}:/grp", "-o", o / "x.h5"], p, 2, "is a group"


def case_h5_corrupt(i, o):
    p = i / "bad.h5"
    p.write_bytes(os.urandom(500))
    return ["apply", transform(D, i), p, "-o", o / "x.h5"], p, 4, "not a readable HDF5"


def case_transform_corrupt(i, o):
    t = transform(D, i)
    t.write_bytes(t.read_bytes()[:150])
    return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, "not a readable transform"


def case_transform_tampered(i, o):
    t = transform(D, i)
    with np.load(t) as z:
        m = z["matrix"].copy()
    m[0, 0] *= -1
    _rewrite_npz(t, matrix=m)
    return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, "checksum mismatch"


def case_transform_newer(i, o):
    t = transform(D, i)
    with np.load(t) as z:
        meta = json.loads(str(z["metadata"]))
    meta["format_version"] = 99
    _rewrite_npz(t, metadata=np.asarray(json.dumps(meta)))
    return ["apply", t, npy(i / "a.npy", good()), "-o", o / "x.npy"], t, 5, "version 99 is newer"


def case_transform_dims(i, o):
    t = transform(D, i)
    return ["apply", t, npy(i / "wide.npy", good(d=D + 3)), "-o", o / "x.npy"], t, 5, f"maps {D}-d.*{D + 3}-d"


def case_transform_missing(i, o):
    return ["apply", i / "nothere.npz", npy(i / "a.npy", good()), "-o", o / "x.npy"], i / "nothere.npz", 5, "not found"


def case_output_is_input(i, o):
    p = npy(o / "same.npy", good())
    return ["apply", transform(D, i), p, "-o", p, "--overwrite"], p, 6, "same as the input"


def case_output_dir_missing(i, o):
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", o / "no" / "x.npy"], o / "no" / "x.npy", 6, "does not exist"


def case_output_exists(i, o):
    dst = npy(o / "exists.npy", good())
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", dst], dst, 6, "--overwrite"


def case_unknown_input_extension(i, o):
    p = i / "a.csv"
    p.write_text("1,2,3\n")
    return ["apply", transform(D, i), p, "-o", o / "x.npy"], p, 2, "unknown extension '.csv'"


def case_unknown_output_extension(i, o):
    return ["apply", transform(D, i), npy(i / "a.npy", good()), "-o", o / "x.txt"], o / "x.txt", 2, "unknown extension '.txt'"


def case_input_missing(i, o):
    return ["apply", transform(D, i), i / "ghost.npy", "-o", o / "x.npy"], i / "ghost.npy", 4, "no such file"


def case_rotation_only_dims(i, o):
    p = npy(i / "a.npy", good(d=8))
    return ["fit", p, npy(i / "b.npy", good(d=6)), "-o", o / "t.npz", "--rotation-only"], p, 2, "equal dimensions"


def case_same_anchor_file(i, o):
    p = npy(i / "a.npy", good())
    return ["fit", p, p, "-o", o / "t.npz"], p, 2, "same file"


def case_holdout_leaves_nothing(i, o):
    p = npy(i / "a.npy", good(1))
    return ["fit", p, npy(i / "b.npy", good(1)), "-o", o / "t.npz", "--holdout", "0.99", "--seed", "1"], p, 2, "leaves no anchor"


def case_bad_dtype_option(i, o):
    p = npy(i / "a.npy", good())
    return ["apply", transform(D, i), p, "-o", o / "x.npy", "--dtype", "int8"], None, 2, "'int8' is not one of"


def _stamped(i, o, forward):
    t = transform(D, i)
    a = npy(i / "a.npy", good())
    mapped = i / "mapped.npy"
    assert runner.invoke(app, ["apply", str(t), str(a), "-o", str(mapped)]).exit_code == 0
    return t, mapped


def case_applied_twice(i, o):
    t, mapped = _stamped(i, o, True)
    return ["apply", t, mapped, "-o", o / "x.npy"], mapped, 8, "already in space.*--inverse"


def case_wrong_space(i, o):
    t, mapped = _stamped(i, o, True)
    other = i / "other.npy"
    shutil.copy(mapped, other)
    Path(str(other) + ".procalign.json").write_text(json.dumps({"space": "somewhere-else"}))
    return ["apply", t, other, "-o", o / "x.npy"], other, 8, "stamped as space 'somewhere-else'"


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path):
    i, o = tmp_path / "in", tmp_path / "out"
    i.mkdir(), o.mkdir()
    argv, named, code, pattern = CASES[name](i, o)
    before = set(o.iterdir())
    r = runner.invoke(app, [str(a) for a in argv])
    assert r.exit_code == code, (r.exit_code, r.output)
    err = r.stderr
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in r.output
    import re
    assert re.search(pattern, err), err
    if named is not None:
        assert Path(named).name in err, err
    if code != 2 or name not in ("bad_dtype_option",):
        assert "; " in err or "--" in err or "use" in err, f"no fix in: {err}"
    assert set(o.iterdir()) == before, f"left behind: {set(o.iterdir()) - before}"


def test_unwritable_output_directory(tmp_path):
    """A directory nobody may write to. Root ignores permission bits, so make it immutable."""
    ro = tmp_path / "ro"
    ro.mkdir()
    t = transform(D, tmp_path)
    a = npy(tmp_path / "a.npy", good())
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a filesystem without chattr +i")  # pragma: no cover
    else:  # pragma: no cover
        os.chmod(ro, 0o555)
    try:
        r = runner.invoke(app, ["apply", str(t), str(a), "-o", str(ro / "x.npy")])
        assert r.exit_code == 6, r.output
        assert "not writable" in r.stderr and r.stderr.count("\n") == 1
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)
        os.chmod(ro, 0o755)
