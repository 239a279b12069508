"""Resume after SIGKILL from every input format, a lock race of three writers, and resumed Parquet
outputs read by DuckDB: real processes, kills that land mid-write (after the journal advanced)."""
import filecmp
import json
import signal
import subprocess
import sys
import time

import duckdb
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS, DIM, BATCH = 120_000, 32, "256"
CMD = [sys.executable, "-m", "procalign"]


def run(*args):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True)


def start(*args):
    return subprocess.Popen(CMD + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows_done(journal):
    try:
        return json.loads(journal.read_text())["rows_done"]
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    np.save(d / "in.npy", x)
    with h5py.File(d / "in.h5", "w") as f:
        f["emb"] = x
        f["ids"] = np.arange(ROWS)
    pq.write_table(pa.table({"id": np.arange(ROWS), "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(x.reshape(-1)), DIM)}), d / "in.parquet", row_group_size=10_000)
    np.save(d / "a.npy", rng.normal(size=(300, DIM)).astype(np.float32))
    np.save(d / "b.npy", rng.normal(size=(300, DIM)).astype(np.float32))
    assert run("fit", d / "a.npy", d / "b.npy", "-o", d / "t.npz", "--no-report").returncode == 0
    with np.load(d / "t.npz", allow_pickle=False) as z:
        expected = ((x.astype(np.float64) - z["source_mean"]) @ z["matrix"] * float(z["scale"]) + z["target_mean"])
    return d, expected


def kill_mid_way(d, source, dest, at):
    """SIGKILL an apply once its journal has advanced past ``at`` of the rows; check it landed mid-file."""
    journal = d / f".{dest.name}.procalign-journal"
    p = start("apply", d / "t.npz", source, "-o", dest, "--batch-rows", BATCH)
    while p.poll() is None and rows_done(journal) < at * ROWS:
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = rows_done(journal)
    assert p.returncode == -signal.SIGKILL and not dest.exists() and 0 < done < ROWS, (p.returncode, done)
    return done


def read_output(path):
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".h5":
        with h5py.File(path) as f:
            return f["emb" if "emb" in f else "embeddings"][()]
    got = duckdb.sql(f"SELECT embedding FROM read_parquet('{path}', file_row_number=true) "
                     "ORDER BY file_row_number").fetchnumpy()["embedding"]
    return np.array([np.asarray(r) for r in got])


@pytest.mark.parametrize("source,out", [("in.npy", "parquet"), ("in.h5", "parquet"), ("in.parquet", "parquet"),
                                        ("in.parquet", "npy")])  # npy and h5 outputs: test_faults.py
def test_resume_from_every_input_format(work, source, out):
    d, expected = work
    ref = d / f"ref_{source.replace('.', '_')}.{out}"
    if not ref.exists():
        assert run("apply", d / "t.npz", d / source, "-o", ref, "--batch-rows", BATCH).returncode == 0
    dest = d / f"k_{source.replace('.', '_')}.{out}"
    done = kill_mid_way(d, d / source, dest, 0.4)
    r = run("apply", d / "t.npz", d / source, "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resumed after row {done}" in r.stderr, r.stderr  # mid-file, not started over
    assert filecmp.cmp(dest, ref, shallow=False)
    np.testing.assert_allclose(read_output(dest), expected, atol=1e-4)
    if out == "parquet":  # the merged footer of a resumed file: both readers, every row group
        meta = pq.ParquetFile(dest).metadata
        # one row group per chunk; a parquet source's chunks also end at its row groups of 10,000
        groups = 12 * -(-10_000 // int(BATCH)) if source == "in.parquet" else -(-ROWS // int(BATCH))
        assert meta.num_rows == ROWS and meta.num_row_groups == groups
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{dest}')").fetchall()[0][0]
        assert n == ROWS
        if source == "in.parquet":  # ids pass through the resumed file too
            ids = duckdb.sql(f"SELECT id FROM read_parquet('{dest}', file_row_number=true) "
                             "ORDER BY file_row_number").fetchnumpy()["id"]
            assert np.array_equal(ids, np.arange(ROWS))


def test_a_parquet_output_killed_twice_reads_identically_in_duckdb(work):
    d, expected = work
    dest = d / "twice.parquet"
    first = kill_mid_way(d, d / "in.npy", dest, 0.2)
    journal = d / f".{dest.name}.procalign-journal"
    p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, "--resume")
    while p.poll() is None and rows_done(journal) < first + 0.3 * ROWS:
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    second = rows_done(journal)
    assert first < second < ROWS and not dest.exists()
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 0 and f"resumed after row {second}" in r.stderr, r.stderr
    np.testing.assert_allclose(read_output(dest), expected, atol=1e-4)
    np.testing.assert_array_equal(read_output(dest), pq.read_table(dest).column("embedding").to_numpy(
        zero_copy_only=False).tolist())


def three_writers(d, dest, *extra):
    procs = [start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, *extra) for _ in range(3)]
    return [(p.wait(timeout=300), p.stderr.read()) for p in procs]


def test_lock_race_of_three_writers(work):
    d, expected = work
    dest = d / "race.npy"
    results = three_writers(d, dest)
    codes = sorted(code for code, _ in results)
    assert codes == [0, 7, 7], results
    assert all("another procalign run is writing this destination" in err for code, err in results if code == 7)
    np.testing.assert_allclose(np.load(dest), expected, atol=1e-4)
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".race.npy")) == []


def test_three_writers_with_wait_complete_in_turn(work):
    d, expected = work
    dest = d / "queue.npy"
    results = three_writers(d, dest, "--wait", "--overwrite")
    assert [code for code, _ in results] == [0, 0, 0], results
    np.testing.assert_allclose(np.load(dest), expected, atol=1e-4)
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".queue.npy")) == []
