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
