"""The Dask engine on a real `LocalCluster` of two worker processes, and object storage through a
real S3 API on loopback (moto's server, reached by s3fs)."""
import json
import os
import signal
import socket
import threading
import time

import distributed  # the dask and s3 extras: `make test` installs them
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app

from conftest import paired_data

runner = CliRunner(env={"COLUMNS": "120", "TERM": "dumb"})
PARTS, ROWS, DIM = 6, 1500, 24


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        yield c.scheduler_address, client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(11)
    x, y, _ = paired_data(rng, n=PARTS * ROWS, d=DIM, noise=0.1)
    x, y = x.astype(np.float32), y.astype(np.float32)
    ids = rng.permutation(10 * len(x))[: len(x)]
    order = rng.permutation(len(x))
    for side in ("src", "tgt", "dump"):
        (d / side).mkdir()
    for k in range(PARTS):
        mine, theirs = np.arange(k * ROWS, (k + 1) * ROWS), order[k * ROWS:(k + 1) * ROWS]
        for side, rows, v in (("src", mine, x), ("tgt", theirs, y)):
            pq.write_table(pa.table({"id": ids[rows], "embedding": pa.FixedSizeListArray.from_arrays(
                v[rows].ravel(), DIM)}), d / side / f"part-{k}.parquet")
        np.save(d / "dump" / f"p{k}.npy", x[mine])
    r = invoke("fit", d / "src", d / "tgt", "-o", d / "t.npz", "--no-report", "-q", "--batch-rows", "700")
    assert r.exit_code == 0, r.output
    return d, x


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_dask_fit_equals_the_local_fit(cluster, data, tmp_path):
    d, _ = data
    r = invoke("fit", d / "src", d / "tgt", "-o", tmp_path / "dask.npz", "--engine", "dask", "--scheduler",
               cluster[0], "--batch-rows", "700", "--holdout", "0.2", "-q", "--json")
    assert r.exit_code == 0, r.output
    local = invoke("fit", d / "src", d / "tgt", "-o", tmp_path / "local.npz", "--batch-rows", "700",
                   "--holdout", "0.2", "-q", "--json")
    a, b = load_transform(tmp_path / "dask.npz"), load_transform(tmp_path / "local.npz")
    assert rel(a.map.matrix, b.map.matrix) < 1e-10
    assert rel(a.map.source_mean, b.map.source_mean) < 1e-10 and rel(a.map.target_mean, b.map.target_mean) < 1e-10
    dask_doc, local_doc = json.loads(r.stdout), json.loads(local.stdout)
    assert dask_doc["anchors"] == local_doc["anchors"] and dask_doc["holdout"] == local_doc["holdout"]
    held = [doc["report"]["heldout"]["aligned"] for doc in (dask_doc, local_doc)]  # the same held-out sample
    assert held[0]["candidates"] == held[1]["candidates"] and held[0]["top1"] == held[1]["top1"]
    assert abs(held[0]["cosine"]["mean"] - held[1]["cosine"]["mean"]) < 1e-12


def test_dask_apply_parts_equal_local_parts(cluster, data, tmp_path):
    d, x = data
    r = invoke("apply", d / "t.npz", f"{d}/dump/p*.npy", "-o", tmp_path / "dask", "--engine", "dask",
               "--scheduler", cluster[0], "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["parts_written"] == PARTS and json.loads(r.stdout)["engine"] == "dask"
    assert invoke("apply", d / "t.npz", d / "dump", "-o", tmp_path / "local").exit_code == 0
    t = load_transform(d / "t.npz")
    for k in range(PARTS):
        got = np.load(tmp_path / "dask" / f"p{k}.npy")
        np.testing.assert_array_equal(got, np.load(tmp_path / "local" / f"p{k}.npy"))
        np.testing.assert_allclose(got, t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)


def test_dask_rerun_completes_only_the_missing_parts(cluster, data, tmp_path):
    d, x = data
    out = tmp_path / "out"
    args = ("apply", d / "t.npz", d / "dump", "-o", out, "--engine", "dask", "--scheduler", cluster[0], "--json")
    assert invoke(*args).exit_code == 0
    # as a kill leaves it: p1 gone, p4 half-written (its temporary file and a "writing" record)
    (out / "p1.npy").unlink()
    (out / "p1.npy.procalign.json").unlink()
    (out / "p4.npy").replace(out / ".p4.npy.procalign-partial")
    record = json.loads((out / ".p4.npy.procalign-done").read_text())
    (out / ".p4.npy.procalign-done").write_text(json.dumps({"made_from": record["made_from"], "state": "writing"}))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith("p")}
    time.sleep(0.01)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["parts_written"], doc["parts_skipped"]) == (2, PARTS - 2)
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith("p")}
    assert {n for n in after if after[n] != before.get(n)} == {"p1.npy", "p1.npy.procalign.json", "p4.npy",
                                                                "p4.npy.procalign.json"}
    t = load_transform(d / "t.npz")
    for k in range(PARTS):
        np.testing.assert_allclose(np.load(out / f"p{k}.npy"), t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)
    assert not [p.name for p in out.iterdir() if "partial" in p.name]


def test_a_worker_killed_mid_part_is_replaced_and_the_part_redone(cluster, data, tmp_path):
    from procalign import transform_file
    from procalign.formats.parts import dataset_location, output_location
    from procalign.pipeline.apply import ApplyJob
    from procalign.pipeline.dataset_apply import apply_dataset
    from procalign.pipeline.engines import DaskEngine
    d, x = data
    address, client = cluster
    out, source = tmp_path / "out", dataset_location(str(d / "dump"))
    job = ApplyJob(transform_file.load(d / "t.npz"), str(d / "t.npz"), source, output_location(str(out), source),
                   batch_rows=4)
    result = {}
    with DaskEngine(address) as engine:
        runner_thread = threading.Thread(target=lambda: result.update(r=apply_dataset(job, str(out), engine)))
        runner_thread.start()
        deadline = time.monotonic() + 60
        while not list(out.glob(".*.procalign-journal")) and time.monotonic() < deadline:
            time.sleep(0.002)
        busy = [addr for addr, keys in client.processing().items() if keys]
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)  # mid-part: its temporary file stays behind, never renamed
        runner_thread.join(120)
    assert result["r"].written == PARTS
    client.wait_for_workers(2, timeout=60)
    assert busy[0] not in client.scheduler_info()["workers"]  # that worker died; a new one took its place
    t = load_transform(d / "t.npz")
    for k in range(PARTS):
        np.testing.assert_allclose(np.load(out / f"p{k}.npy"), t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)
    assert not [p.name for p in out.iterdir() if "partial" in p.name or "journal" in p.name]


# --- object storage: moto's S3 server on a free loopback port, s3fs as the client ---

@pytest.fixture(scope="module")
def s3(data):
    from moto.server import ThreadedMotoServer
    import s3fs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("bucket")
    for side in ("dump", "src", "tgt"):
        fs.put(f"{data[0]}/{side}/", f"bucket/{side}/", recursive=True)
    yield fs, endpoint, options
    server.stop()


def read_npy(fs, key):
    import io
    with fs.open(key, "rb") as f:
        return np.load(io.BytesIO(f.read()))


def test_s3_apply_local_from_the_environment_and_dask_from_storage_options(cluster, data, s3, monkeypatch):
    d, x = data
    fs, endpoint, options = s3
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    r = invoke("apply", d / "t.npz", "s3://bucket/dump/", "-o", "s3://bucket/local/", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["parts_written"] == PARTS, r.output
    dask_args = ("apply", d / "t.npz", "s3://bucket/dump/p*.npy", "-o", "s3://bucket/dask", "--engine", "dask",
                 "--scheduler", cluster[0], "--storage-options", json.dumps(options), "--json")
    r = invoke(*dask_args)
    assert r.exit_code == 0 and json.loads(r.stdout)["parts_written"] == PARTS, r.output
    t = load_transform(d / "t.npz")
    fs.invalidate_cache()
    for k in range(PARTS):
        got = read_npy(fs, f"bucket/dask/p{k}.npy")
        np.testing.assert_array_equal(got, read_npy(fs, f"bucket/local/p{k}.npy"))
        np.testing.assert_allclose(got, t(x[k * ROWS:(k + 1) * ROWS]), atol=2e-5)
        stamp = json.loads(fs.cat(f"bucket/dask/p{k}.npy.procalign.json"))
        assert stamp["transform"] == t.checksum
    assert not [k for k in fs.find("bucket") if "partial" in k]
    fs.rm("bucket/dask/p3.npy")
    r = invoke(*dask_args)
    doc = json.loads(r.stdout)
    assert (doc["parts_written"], doc["parts_skipped"]) == (1, PARTS - 1), r.output


def test_s3_dask_fit_equals_the_local_fit(cluster, data, s3, tmp_path):
    d, _ = data
    options = json.dumps(s3[2])
    r = invoke("fit", "s3://bucket/src/", "s3://bucket/tgt/part-*.parquet", "-o", tmp_path / "s3.npz", "--engine",
               "dask", "--scheduler", cluster[0], "--storage-options", options, "--batch-rows", "700", "--no-report",
               "-q")
    assert r.exit_code == 0, r.output
    a, b = load_transform(tmp_path / "s3.npz"), load_transform(d / "t.npz")
    assert rel(a.map.matrix, b.map.matrix) < 1e-10
    r = invoke("apply", d / "t.npz", "s3://bucket/nothing/", "-o", tmp_path / "o", "--storage-options", options)
    assert r.exit_code == 4 and "s3://bucket/nothing/: no part files found" in r.output
