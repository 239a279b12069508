"""Partitioned datasets and object storage when things go wrong: parts checked before anything is
written, nothing left behind by a failed run, one-line messages with their documented exit codes."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from procalign.cli import app

runner = CliRunner(env={"COLUMNS": "200", "TERM": "dumb"})
DIM = 8


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(r):
    lines = [line for line in r.stderr.splitlines() if line.startswith("procalign: error:")]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A transform between two small random spaces, fitted from .npy files."""
    d = tmp_path_factory.mktemp("fixes")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, DIM)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    np.save(d / "src.npy", x)
    np.save(d / "tgt.npy", (x @ q).astype(np.float32))
    r = invoke("fit", d / "src.npy", d / "tgt.npy", "-o", d / "t.npz", "--no-report", "-q")
    assert r.exit_code == 0, r.output
    return d, x


def parts_dir(path, *arrays):
    path.mkdir()
    for k, a in enumerate(arrays):
        np.save(path / f"p{k}.npy", a)
    return path


@pytest.mark.parametrize("second", [np.zeros((50, DIM - 2), np.float32), np.zeros((50, DIM), np.float64)],
                         ids=["dimension", "dtype"])
def test_apply_checks_every_part_before_writing_any(fitted, tmp_path, second):
    d, x = fitted
    dump = parts_dir(tmp_path / "dump", x[:50], second)
    r = invoke("apply", d / "t.npz", dump, "-o", tmp_path / "out")
    assert r.exit_code == 4, r.output
    assert "p1.npy" in error_line(r) and "every part of a dataset must match" in error_line(r)
    assert not (tmp_path / "out").exists()
    inspected = invoke("inspect", dump)
    assert (inspected.exit_code, error_line(inspected)) == (4, error_line(r))


def leftovers(path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else None


def test_a_failure_before_any_part_completes_leaves_no_directory(fitted, tmp_path):
    d, x = fitted
    wrong_dim = parts_dir(tmp_path / "wide", np.zeros((20, DIM + 1), np.float32), np.zeros((20, DIM + 1), np.float32))
    r = invoke("apply", d / "t.npz", wrong_dim, "-o", tmp_path / "o5")
    assert r.exit_code == 5, r.output
    assert leftovers(tmp_path / "o5") is None
    dump = parts_dir(tmp_path / "dump", x[:30], x[30:60])
    assert invoke("apply", d / "t.npz", dump, "-o", tmp_path / "mapped", "-q").exit_code == 0
    again = invoke("apply", d / "t.npz", tmp_path / "mapped", "-o", tmp_path / "o8")  # already in the target space
    assert again.exit_code == 8, again.output
    assert leftovers(tmp_path / "o8") is None


def test_a_failure_midway_keeps_the_complete_parts_and_no_writing_record(fitted, tmp_path):
    d, x = fitted
    bad = x[:30].copy()
    bad[7, 2] = np.nan
    dump = parts_dir(tmp_path / "dump", x[:30], bad)
    r = invoke("apply", d / "t.npz", dump, "-o", tmp_path / "out", "--workers", "1")
    assert r.exit_code == 4, r.output
    assert leftovers(tmp_path / "out") == [".p0.npy.procalign-done", "p0.npy", "p0.npy.procalign.json"]
    assert json.loads((tmp_path / "out" / ".p0.npy.procalign-done").read_text())["state"] == "done"


def cli(*args):
    return [sys.executable, "-m", "procalign", *map(str, args)]


def test_sigterm_says_how_many_parts_are_complete_and_the_rerun_resumes(fitted, tmp_path):
    d, _ = fitted
    rows, parts = 1500, 6
    x = np.random.default_rng(5).standard_normal((parts * rows, DIM)).astype(np.float32)
    dump = parts_dir(tmp_path / "dump", *np.split(x, parts))
    out = tmp_path / "out"
    args = ("apply", d / "t.npz", dump, "-o", out, "--workers", "1", "--batch-rows", "8", "-q")
    p = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = out / ".p2.npy.procalign-journal"  # one part at a time, in order: p0 and p1 are done
    deadline = time.monotonic() + 60
    while p.poll() is None and not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    done = sorted(f.name for f in out.iterdir() if f.name.endswith(".procalign-done"))
    states = {json.loads((out / name).read_text())["state"] for name in done}
    assert states == {"done"} and len(done) >= 2, done  # no "writing" record outlives the signal
    assert f"terminated; {len(done)} of {parts} parts are complete in {out}; rerun the same command to resume" \
        in err, err
    r = subprocess.run(cli(*args[:-3], "--json"), capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["parts_written"] == parts - len(done), r.stderr


def test_messages_for_paths_that_are_not_datasets(fitted, tmp_path):
    d, x = fitted
    r = invoke("apply", d / "t.npz", tmp_path / "nodir", "-o", tmp_path / "o")
    assert r.exit_code == 4 and f"{tmp_path / 'nodir'}: no such file or directory" in error_line(r)
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "a.npz").write_bytes((d / "t.npz").read_bytes())
    r = invoke("inspect", hub)
    assert r.exit_code == 4 and "not embedding files" in error_line(r) and "inspect FILE.npz" in error_line(r)
    r = invoke("apply", d / "t.npz", "gs://bucket/dump/", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "install gcsfs" in error_line(r), r.output
    assert not (tmp_path / "o").exists()


def test_file_urls_are_local_paths(fitted, tmp_path):
    d, x = fitted
    dump = parts_dir(tmp_path / "dump", x[:30], x[30:70])
    r = invoke("apply", d / "t.npz", f"file://{dump}/", "-o", f"file://{tmp_path}/out", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["parts_written"] == 2, r.output
    expected = np.load(d / "tgt.npy")[:70]  # the fitted map is exact: src @ Q = tgt
    got = np.concatenate([np.load(tmp_path / "out" / f"p{k}.npy") for k in range(2)])
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No credentials anywhere botocore looks (environment, files, instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_object_storage_errors_have_their_exit_codes(fitted, tmp_path, no_aws, monkeypatch):
    d, x = fitted
    dump = parts_dir(tmp_path / "dump", x[:30], x[30:60])
    nowhere = lambda port, **more: json.dumps({"endpoint_url": f"http://127.0.0.1:{port}", **more})  # noqa: E731
    cases = [  # (input, output, options, exit code, message)
        ("s3://bucket/dump/", tmp_path / "o", nowhere(1), 4, "s3://bucket/dump/: cannot list it: no credentials found"),
        (dump, "s3://bucket/out/", nowhere(2), 6, "s3://bucket/out/.p0.npy.procalign-done: cannot read it: no credentials"),
        ("s3://bucket/dump/", tmp_path / "o", nowhere(3, endpointurl="x"), 2,
         "s3://bucket/dump/: --storage-options holds an option the s3:// filesystem does not take"),
        ("foo://b/dump/", tmp_path / "o", None, 2, "foo://b/dump/: unknown protocol foo://"),
        (dump, tmp_path / "o", nowhere(4), 2, "--storage-options applies to object-storage URLs"),
    ]
    for source, output, options, code, message in cases:
        r = invoke("apply", d / "t.npz", source, "-o", output, *(["--storage-options", options] if options else []))
        assert r.exit_code == code and message in error_line(r), r.output
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for source, output, code in (("s3://bucket/dump/", tmp_path / "o", 4), (dump, "s3://bucket/out/", 6)):
        r = invoke("apply", d / "t.npz", source, "-o", output, "--storage-options", nowhere(5))
        assert r.exit_code == code and "the endpoint does not answer" in error_line(r), r.output
    assert not (tmp_path / "o").exists()


def test_engine_and_storage_options_are_refused_alike_by_fit_and_apply(fitted, tmp_path):
    d, _ = fitted
    for args in (("fit", d / "src.npy", d / "tgt.npy"), ("apply", d / "t.npz", d / "src.npy", "-o", tmp_path / "o.npy")):
        r = invoke(*args, "--engine", "dask")
        assert r.exit_code == 2 and "--engine dask maps the parts of a dataset" in error_line(r), r.output
        r = invoke(*args, "--storage-options", '{"anon": true}')
        assert r.exit_code == 2 and "--storage-options applies to object-storage URLs" in error_line(r), r.output
    for command in ("fit", "apply"):
        help_text = invoke(command, "--help").stdout
        assert "procalign[dask]" in " ".join(help_text.replace("│", " ").split()), help_text


def test_a_dataset_names_its_space_by_its_directory(fitted, tmp_path):
    d, x = fitted
    y = np.load(d / "tgt.npy")
    parts_dir(tmp_path / "dump", x[:200], x[200:])
    parts_dir(tmp_path / "mdump", y[:150], y[150:])
    r = invoke("fit", f"{tmp_path}/dump/*.npy", f"{tmp_path}/mdump/", "-o", tmp_path / "g.npz", "--no-report",
               "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["source"]["name"], doc["target"]["name"]) == ("dump", "mdump"), doc
    r = invoke("apply", tmp_path / "g.npz", f"{tmp_path}/dump/p*.npy", "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "p1.npy.procalign.json").read_text())["space"] == "mdump"
