"""Kills, interrupts and overlapping runs, with real processes."""
import filecmp
import os
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROWS, DIM = 200_000, 64
BATCH = "512"
CMD = [sys.executable, "-m", "procalign"]


def run(*args, **kw):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, **kw)


def _default_sigint() -> None:
    # a job started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then installs no handler for it: give the child the default, as a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args):
    return subprocess.Popen(CMD + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def hidden(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.procalign"))


def wait_for(path: Path, proc, timeout=30.0):
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(5)
    np.save(d / "in.npy", rng.normal(size=(ROWS, DIM)).astype(np.float32))
    np.save(d / "a.npy", rng.normal(size=(500, DIM)).astype(np.float32))
    np.save(d / "b.npy", rng.normal(size=(500, DIM)).astype(np.float32))
    assert run("fit", d / "a.npy", d / "b.npy", "-o", d / "t.npz", "--no-report").returncode == 0
    refs = {}
    for fmt in ("npy", "h5", "parquet"):
        refs[fmt] = d / f"ref.{fmt}"
        r = run("apply", d / "t.npz", d / "in.npy", "-o", refs[fmt], "--batch-rows", BATCH)
        assert r.returncode == 0, r.stderr
    return d, refs


def rows_done(journal: Path) -> int:
    try:
        return json.loads(journal.read_text())["rows_done"]
    except (OSError, ValueError):
        return 0


# Where SIGKILL lands: a fraction of the rows done, read from the journal. Every kill waits for the
# journal to have advanced (at least one chunk), so it lands mid-write, never before the first row.
KILL_POINTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def kill_when(p, journal, rows):
    """SIGKILL ``p`` once its journal records more than ``rows`` rows (or it has ended)."""
    while p.poll() is None and rows_done(journal) <= rows:
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return rows_done(journal)


@pytest.mark.parametrize("fmt", ["npy", "h5", "parquet"])
def test_sigkill_then_resume_is_byte_identical(work, fmt):
    d, refs = work
    for k, at in enumerate(KILL_POINTS):
        dest = d / f"k{k}.{fmt}"
        journal = d / f".{dest.name}.procalign-journal"
        p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH)
        done = kill_when(p, journal, at * ROWS)
        assert p.returncode == -signal.SIGKILL and not dest.exists() and 0 < done < ROWS, (at, done)
        r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, "--resume")
        assert r.returncode == 0, r.stderr
        assert f"resumed after row {done}" in r.stderr, f"kill point {at}: {r.stderr}"  # mid-file, not over
        assert filecmp.cmp(dest, refs[fmt], shallow=False), f"kill point {at}: resumed output differs"
        assert hidden(dest) == [], hidden(dest)


def test_resume_without_the_footer_sidecar_starts_over(work):
    d, refs = work
    dest = d / "nosidecar.parquet"
    p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH)
    journal = d / f".{dest.name}.procalign-journal"
    assert 0 < kill_when(p, journal, ROWS // 3) < ROWS and not dest.exists()
    (d / f".{dest.name}.procalign-partial.footers").unlink()
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 0 and "could not resume" in r.stderr, r.stderr
    assert filecmp.cmp(dest, refs["parquet"], shallow=False) and hidden(dest) == []


def test_sigkill_never_leaves_a_partial_destination(work):
    d, _ = work
    for k, at in enumerate([0.1, 0.3, 0.5, 0.7, 0.9]):
        dest = d / f"p{k}.parquet"
        journal = d / f".{dest.name}.procalign-journal"
        p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", "4096")
        done = kill_when(p, journal, at * ROWS)
        assert 0 < done < ROWS, done  # the kill landed mid-write...
        assert not dest.exists() and (d / f".{dest.name}.procalign-partial").exists()  # ...and left no destination


def test_resume_refuses_a_different_input(work):
    d, _ = work
    dest = d / "changed.npy"
    p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", "256")
    assert 0 < kill_when(p, d / f".{dest.name}.procalign-journal", 0) < ROWS
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", "512", "--resume")
    assert r.returncode == 2 and "different batch_rows" in r.stderr
    assert not dest.exists()


@pytest.mark.parametrize("fmt", ["npy", "h5"])
def test_resume_without_batch_rows_keeps_the_chunk_size_of_the_partial_output(work, fmt):
    # the default chunk size depends on --memory and on the version that wrote the partial
    # output: a resume that does not name one continues with the journal's
    d, refs = work
    dest = d / f"default_rows.{fmt}"
    killed_mid_way(d, dest, d / "in.npy")
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--resume")
    assert r.returncode == 0 and "resumed after row" in r.stderr, r.stderr
    assert filecmp.cmp(dest, refs[fmt], shallow=False) and hidden(dest) == []


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_remove_the_temporary_file(work, sig, code):
    d, _ = work
    dest = d / f"sig{code}.npy"
    p = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", "64")
    wait_for(d / f".{dest.name}.procalign-journal", p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not dest.exists() and hidden(dest) == []


def test_second_writer_fails_fast_then_waits_with_wait(work):
    d, refs = work
    dest = d / "locked.npy"
    first = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", "64")
    wait_for(d / f".{dest.name}.procalign-partial", first)
    began = time.monotonic()
    second = run("apply", d / "t.npz", d / "in.npy", "-o", dest)
    assert second.returncode == 7, second.stderr
    assert "--wait" in second.stderr and time.monotonic() - began < 5
    waiter = start("apply", d / "t.npz", d / "in.npy", "-o", dest, "--wait", "--overwrite", "--batch-rows", BATCH)
    assert first.wait(timeout=120) == 0
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert filecmp.cmp(dest, refs["npy"], shallow=False)
    assert hidden(dest) == []


def test_existing_destination_needs_overwrite(work):
    d, _ = work
    dest = d / "exists.npy"
    dest.write_bytes(b"keep me")
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest)
    assert r.returncode == 6 and "--overwrite" in r.stderr
    assert dest.read_bytes() == b"keep me"


def killed_mid_way(d, dest, source, at=0.3, batch=BATCH):
    """Start an apply and SIGKILL it once its journal says more than ``at`` of the rows are done."""
    journal = d / f".{dest.name}.procalign-journal"
    p = start("apply", d / "t.npz", source, "-o", dest, "--batch-rows", batch)
    done = kill_when(p, journal, at * ROWS)
    assert not dest.exists() and at * ROWS < done < ROWS, "the kill did not land mid-way"
    return journal


@pytest.mark.parametrize("fmt", ["npy", "h5"])
def test_resume_with_a_lying_journal_starts_over(work, fmt):
    d, refs = work
    dest = d / f"lying.{fmt}"
    journal = killed_mid_way(d, dest, d / "in.npy")
    doc = json.loads(journal.read_text())
    doc["rows_done"] = ROWS - int(BATCH)  # claims far more rows than were written
    journal.write_text(json.dumps(doc))
    r = run("apply", d / "t.npz", d / "in.npy", "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 0 and "could not resume" in r.stderr, r.stderr
    assert filecmp.cmp(dest, refs[fmt], shallow=False) and hidden(dest) == []


def test_resume_refuses_an_input_regenerated_with_the_same_size_and_mtime(work):
    d, _ = work
    source = d / "regen.npy"
    np.save(source, np.load(d / "in.npy"))
    dest = d / "regen_out.npy"
    killed_mid_way(d, dest, source)
    st = source.stat()
    np.save(source, np.random.default_rng(99).normal(size=(ROWS, DIM)).astype(np.float32))
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.stat().st_size == st.st_size and source.stat().st_mtime_ns == st.st_mtime_ns
    r = run("apply", d / "t.npz", source, "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 2 and "different sample" in r.stderr, r.stderr
    assert (d / f".{dest.name}.procalign-partial").exists(), "a refused resume must keep the partial file"
    r = run("apply", d / "t.npz", source, "-o", dest, "--batch-rows", BATCH)
    assert r.returncode == 0, r.stderr
    fresh = d / "regen_fresh.npy"
    assert run("apply", d / "t.npz", source, "-o", fresh, "--batch-rows", BATCH).returncode == 0
    assert filecmp.cmp(dest, fresh, shallow=False) and hidden(dest) == []


def test_resume_refuses_another_dataset_of_the_same_file(work):
    import h5py
    d, _ = work
    source = d / "two.h5"
    data = np.load(d / "in.npy")
    with h5py.File(source, "w") as f:
        f["e1"], f["e2"] = data, data[::-1]
    dest = d / "two_out.npy"
    killed_mid_way(d, dest, f"{source}:/e1")
    r = run("apply", d / "t.npz", f"{source}:/e2", "-o", dest, "--batch-rows", BATCH, "--resume")
    assert r.returncode == 2 and "different location" in r.stderr, r.stderr
