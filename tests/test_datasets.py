"""Partitioned datasets on the local engine: one output part per input part, resumed part by
part after a real SIGKILL, anchors joined by id across parts, the lock on the output directory."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app
from procalign.formats import open_source
from procalign.formats.parts import dataset_location

from conftest import paired_data

runner = CliRunner(env={"COLUMNS": "120", "TERM": "dumb"})
PARTS, ROWS, DIM = 6, 1500, 24


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_parquet(path, ids, x):
    pq.write_table(pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(x.ravel(), x.shape[1])}), path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Anchors split into parts (the target's rows shuffled across its parts, some ids missing),
    the same anchors as single files, npy parts to apply, and a transform fitted on them."""
    d = tmp_path_factory.mktemp("datasets")
    rng = np.random.default_rng(7)
    x, y, _ = paired_data(rng, n=PARTS * ROWS, d=DIM, noise=0.1)
    x, y = x.astype(np.float32), y.astype(np.float32)
    ids = np.arange(len(x)) * 7 + 3
    keep = rng.permutation(len(x))[: len(x) - 40]  # 40 ids only in the source
    for side in ("src", "tgt"):
        (d / side).mkdir()
    for k in range(PARTS):
        rows = slice(k * ROWS, (k + 1) * ROWS)
        write_parquet(d / "src" / f"part-{k}.parquet", ids[rows], x[rows])
        mine = keep[k::PARTS]
        write_parquet(d / "tgt" / f"part-{k}.parquet", ids[mine], y[mine])
    write_parquet(d / "src.parquet", ids, x)
    write_parquet(d / "tgt.parquet", ids[keep], y[keep])
    (d / "dump").mkdir()
    for k in range(PARTS):
        np.save(d / "dump" / f"p{k}.npy", x[k * ROWS:(k + 1) * ROWS])
    r = invoke("fit", d / "src.parquet", d / "tgt.parquet", "-o", d / "t.npz", "--no-report", "-q")
    assert r.exit_code == 0, r.output
    return d, x, ids, keep, y


def test_a_glob_of_parts_reads_as_one_source(data):
    d, x, ids, _, _ = data
    with open_source(dataset_location(str(d / "src" / "part-*.parquet"))) as s:
        assert (s.rows, s.dim, len(s.location.parts)) == (PARTS * ROWS, DIM, PARTS)
        got = np.concatenate([b.embeddings.copy() for b in s.batches(1000, start=1234)])
        np.testing.assert_array_equal(got, x[1234:])
        pick = np.array([0, ROWS - 1, ROWS, 4 * ROWS + 17, PARTS * ROWS - 1])
        np.testing.assert_array_equal(s.take(pick), x[pick])
        np.testing.assert_array_equal(s.ids(), ids)


def test_fit_joins_anchors_by_id_across_parts_as_in_single_files(data, tmp_path):
    d, x, ids, keep, y = data
    r = invoke("fit", f"{d}/src/*.parquet", f"{d}/tgt/*.parquet", "--id-column", "id", "-o", tmp_path / "p.npz",
               "--no-report", "-q", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["pairing"] == {"mode": "id", "pairs": len(keep), "ids_only_in_source": 40,
                                            "ids_only_in_target": 0}
    parts, single = load_transform(tmp_path / "p.npz"), load_transform(d / "t.npz")
    np.testing.assert_allclose(parts.map.matrix, single.map.matrix, rtol=0, atol=1e-12)
    # independent reference: scipy on the centred pairs, joined by the test
    from scipy.linalg import orthogonal_procrustes
    xs, ys = x[keep].astype(np.float64), y[keep].astype(np.float64)
    q, _ = orthogonal_procrustes(xs - xs.mean(0), ys - ys.mean(0))
    np.testing.assert_allclose(parts.map.matrix, q, atol=1e-6)


def test_apply_writes_one_part_per_part_and_a_rerun_skips_them(data, tmp_path):
    d, x, _, _, _ = data
    out = tmp_path / "out"
    r = invoke("apply", d / "t.npz", d / "dump", "-o", out, "--workers", "3", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["parts"], doc["parts_written"], doc["rows"]) == (PARTS, PARTS, PARTS * ROWS)
    t = load_transform(d / "t.npz")
    for k in range(PARTS):
        part = out / f"p{k}.npy"
        np.testing.assert_allclose(np.load(part), t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)
        with open_source(dataset_location(str(part))) as s:
            assert s.stamp()["transform"] == t.checksum and s.stamp()["space"] == t.target.name
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        sorted([f"p{k}.npy" for k in range(PARTS)] + [f"p{k}.npy.procalign.json" for k in range(PARTS)])
    back = tmp_path / "back"  # the output directory is a dataset too: map it back
    r = invoke("apply", d / "t.npz", out, "-o", back, "--inverse")
    assert r.exit_code == 0, r.output
    for k in range(PARTS):
        np.testing.assert_allclose(np.load(back / f"p{k}.npy"), x[k * ROWS:(k + 1) * ROWS], atol=5e-5)
    r = invoke("apply", d / "t.npz", out, "-o", tmp_path / "twice")
    assert r.exit_code == 8 and "already in space" in r.output  # each part's stamp is checked
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = invoke("apply", d / "t.npz", d / "dump", "-o", out, "--json")
    assert json.loads(r.stdout)["parts_skipped"] == PARTS
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if "procalign-done" not in p.name} == \
        {k: v for k, v in before.items() if "procalign-done" not in k}  # nothing rewritten
    # a part whose stamp is not the recorded one is not complete: it is redone
    (out / "p5.npy.procalign.json").write_text(json.dumps({"space": "elsewhere"}))
    r = invoke("apply", d / "t.npz", d / "dump", "-o", out, "--json")
    assert json.loads(r.stdout)["parts_written"] == 1, r.output
    assert json.loads((out / "p5.npy.procalign.json").read_text())["transform"] == t.checksum
    # a part whose input changed is not complete any more; --overwrite replaces it
    np.save(d / "dump" / "p2.npy", x[2 * ROWS:3 * ROWS] * 2)
    try:
        r = invoke("apply", d / "t.npz", d / "dump", "-o", out)
        assert r.exit_code == 6 and "p2.npy: part exists but was not made from this input" in r.output
        r = invoke("apply", d / "t.npz", d / "dump", "-o", out, "--overwrite", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["parts_written"] == 1, r.output
        np.testing.assert_allclose(np.load(out / "p2.npy"), t(x[2 * ROWS:3 * ROWS] * 2), atol=5e-5)
    finally:
        np.save(d / "dump" / "p2.npy", x[2 * ROWS:3 * ROWS])


def cli(*args):
    return [sys.executable, "-m", "procalign", *map(str, args)]


def test_sigkill_mid_run_then_rerun_completes_only_the_missing_parts(data, tmp_path):
    d, x, _, _, _ = data
    out = tmp_path / "out"
    args = ("apply", d / "t.npz", d / "dump", "-o", out, "--workers", "1", "--batch-rows", "8", "-q")
    p = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = out / ".p3.npy.procalign-journal"  # one part at a time, in order: p0..p2 are done
    deadline = time.monotonic() + 60
    while p.poll() is None and not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    visible = sorted(f.name for f in out.iterdir() if not f.name.startswith("."))
    assert visible == ["p0.npy", "p0.npy.procalign.json", "p1.npy", "p1.npy.procalign.json", "p2.npy",
                       "p2.npy.procalign.json"], visible  # no partial part is visible
    done = {f"p{k}.npy": (out / f"p{k}.npy").stat().st_mtime_ns for k in range(3)}
    r = subprocess.run(cli(*args[:-3], "--json"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parts_written"] == PARTS - 3
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done
    t = load_transform(d / "t.npz")
    for k in range(PARTS):
        np.testing.assert_allclose(np.load(out / f"p{k}.npy"), t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)
    assert not [f.name for f in out.iterdir() if "partial" in f.name or "journal" in f.name]


def test_the_lock_covers_the_output_directory(data, tmp_path):
    d = data[0]
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
                               str(out / ".procalign-lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = invoke("apply", d / "t.npz", d / "dump", "-o", out)
        assert r.exit_code == 7 and "another procalign run is writing this destination" in r.output
        assert [f.name for f in out.iterdir()] == [".procalign-lock"]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("args, code, message", [
    (["{d}/nothing-*.npy", "-o", "{t}/o"], 4, "no part files found"),
    (["{d}/dump", "-o", "{d}/dump"], 6, "the output directory holds the input parts"),
    (["{d}/dump", "-o", "{d}/t.npz"], 6, "-o must be a directory"),
    (["{d}/dump", "-o", "{t}/o", "--resume"], 2, "a partitioned apply resumes by itself"),
    (["{d}/src.parquet", "-o", "{t}/o.parquet", "--engine", "dask"], 2, "for one local file use the local engine"),
    (["{d}/dump", "-o", "{t}/o", "--engine", "spark"], 2, "--engine 'spark' is not one of local, dask"),
    (["{d}/dump", "-o", "{t}/o", "--scheduler", "tcp://127.0.0.1:1"], 2, "--scheduler needs --engine dask"),
    (["{d}/dump", "-o", "{t}/o", "--storage-options", "[1]"], 2, "--storage-options must be a JSON object"),
])
def test_dataset_usage_errors(data, tmp_path, args, code, message):
    d = data[0]
    r = invoke("apply", d / "t.npz", *[a.format(d=d, t=tmp_path) for a in args])
    assert r.exit_code == code and message in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not [f for f in (tmp_path / "o").iterdir()]
