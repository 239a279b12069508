"""Outputs carry the space they are in; the wrong direction or a second application is refused."""
import json

import pytest
from typer.testing import CliRunner

from procalign.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def t(fixtures, tmp_path):
    out = tmp_path / "e5_to_minilm.npz"
    assert invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", out, "--no-report").exit_code == 0
    return out


@pytest.mark.parametrize("ext", ["npy", "parquet", "h5"])
def test_stamp_round_trip_and_refusals(fixtures, tmp_path, t, ext):
    src = fixtures / f"e5.{ext}"
    fwd = tmp_path / f"fwd.{ext}"
    assert invoke("apply", t, src, "-o", fwd).exit_code == 0
    shown = json.loads(invoke("inspect", fwd, "--json").stdout)["stamp"]
    assert shown["space"] == "minilm" and shown["from_space"] == "e5" and shown["direction"] == "forward"
    # applying again the same way: refused, exit 8, says to use --inverse
    r = invoke("apply", t, fwd, "-o", tmp_path / f"twice.{ext}")
    assert r.exit_code == 8 and "--inverse" in r.stderr and not (tmp_path / f"twice.{ext}").exists()
    # the inverse is the right direction for stamped data
    back = tmp_path / f"back.{ext}"
    assert invoke("apply", t, fwd, "-o", back, "--inverse").exit_code == 0
    assert json.loads(invoke("inspect", back, "--json").stdout)["stamp"]["space"] == "e5"
    # --force overrides the check
    assert invoke("apply", t, fwd, "-o", tmp_path / f"forced.{ext}", "--force").exit_code == 0


def test_unstamped_data_is_accepted_and_inspect_says_so(fixtures, t):
    r = invoke("inspect", fixtures / "e5.npy")
    assert r.exit_code == 0 and "no stamp" in r.stdout
    assert json.loads(invoke("inspect", fixtures / "e5.parquet", "--json").stdout)["stamp"] is None


def test_inverse_on_source_stamped_data_is_refused(fixtures, tmp_path, t):
    back = tmp_path / "back.npy"
    fwd = tmp_path / "fwd.npy"
    invoke("apply", t, fixtures / "e5.npy", "-o", fwd)
    invoke("apply", t, fwd, "-o", back, "--inverse")  # back is stamped "e5"
    r = invoke("apply", t, back, "-o", tmp_path / "x.npy", "--inverse")
    assert r.exit_code == 8 and "'minilm'" in r.stderr


def test_mapping_again_into_fewer_dimensions_is_refused_by_the_stamp(fixtures, tmp_path):
    """Mapped data has the target's dimension, which no longer matches the transform's source:
    the stamp says what happened (exit 8), not a dimension mismatch (exit 5)."""
    import numpy as np
    small = tmp_path / "small.npy"
    np.save(small, np.load(fixtures / "minilm.npy")[:, :256])
    t, out = tmp_path / "t.npz", tmp_path / "out.npy"
    assert invoke("fit", fixtures / "e5.npy", small, "-o", t).exit_code == 0
    assert invoke("apply", t, fixtures / "e5.npy", "-o", out).exit_code == 0
    r = invoke("apply", t, out, "-o", tmp_path / "again.npy")
    assert r.exit_code == 8, r.output
    assert "already in space 'small'" in r.output and not (tmp_path / "again.npy").exists()
