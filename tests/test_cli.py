"""The command line, driven through Typer's CliRunner and once as a real process."""
import json
import subprocess
import sys

import numpy as np
from typer.main import get_command
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app

runner = CliRunner(env={"COLUMNS": "120", "TERM": "dumb"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_fit_apply_inspect(fixtures, tmp_path):
    t = tmp_path / "t.npz"
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", t, "--holdout", "0.2", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "fitted e5 (384-d) -> minilm (384-d)" in r.stdout and "held-out top-1" in r.stdout
    meta = load_transform(t).metadata
    assert meta["source"]["name"] == "e5" and meta["target"]["name"] == "minilm"
    out = tmp_path / "out.npy"
    r = invoke("apply", t, fixtures / "e5.npy", "-o", out)
    assert r.exit_code == 0, r.output
    assert "mapped 2600 rows (e5 -> minilm)" in r.stdout
    np.testing.assert_allclose(np.load(out), load_transform(t)(np.load(fixtures / "e5.npy")), atol=2e-5)
    r = invoke("inspect", t, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["checksum"] == meta["checksum"]
    r = invoke("inspect", out)
    assert r.exit_code == 0 and "minilm" in r.stdout


def test_fit_json_is_one_document(fixtures, tmp_path):
    r = invoke("fit", fixtures / "e5.h5", fixtures / "minilm.h5", "-o", tmp_path / "t.npz", "--json", "--holdout", "0.1")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["pairing"]["mode"] == "id" and doc["output"] == str(tmp_path / "t.npz")


def test_inverse_apply_direction_in_summary(fixtures, tmp_path):
    t = tmp_path / "t.npz"
    invoke("fit", fixtures / "e5.npy", fixtures / "minilm.npy", "-o", t, "--no-report")
    r = invoke("apply", t, f"{fixtures / 'minilm.h5'}:/emb", "-o", tmp_path / "q.npy", "--inverse")
    assert r.exit_code == 0, r.output
    assert "(minilm -> e5)" in r.stdout


def test_bad_input_is_one_line_with_exit_code(tmp_path, fixtures):
    np.save(tmp_path / "three.npy", np.zeros((2, 3, 4), np.float32))
    r = invoke("fit", tmp_path / "three.npy", fixtures / "minilm.npy", "-o", tmp_path / "t.npz")
    assert r.exit_code == 4
    assert r.stderr.count("\n") == 1 and "three.npy" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t.npz").exists()


def test_every_command_and_option_has_help():
    group = get_command(app)
    assert group.help
    assert set(group.commands) >= {"fit", "apply", "inspect"}
    for name, cmd in group.commands.items():
        assert cmd.help, f"{name} has no help"
        for param in cmd.params:
            assert getattr(param, "help", None), f"{name} {param.param_type_name} {param.name} has no help"
        r = invoke(name, "--help")
        assert r.exit_code == 0


def test_direction_is_stated_in_help():
    for cmd in ("fit", "apply"):
        text = invoke(cmd, "--help").stdout
        assert "SOURCE" in text and "TARGET" in text


def test_real_subprocess_run(fixtures, tmp_path):
    t = tmp_path / "t.npz"
    fit = subprocess.run([sys.executable, "-m", "procalign", "fit", str(fixtures / "e5.parquet"),
                          str(fixtures / "minilm.parquet"), "-o", str(t), "--json", "--holdout", "0.2"],
                         capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["report"]["heldout"]["aligned"]["top1"] > 0.8
    ap = subprocess.run([sys.executable, "-m", "procalign", "apply", str(t), str(fixtures / "e5.h5"),
                         "-o", str(tmp_path / "o.parquet")], capture_output=True, text=True)
    assert ap.returncode == 0, ap.stderr
    assert "rows/s" in ap.stdout
    bad = subprocess.run([sys.executable, "-m", "procalign", "apply", str(t), str(tmp_path / "nope.npy"),
                          "-o", str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert bad.returncode == 4 and bad.stderr.strip().count("\n") == 0 and "nope.npy" in bad.stderr


def test_ids_on_one_side_only_are_refused_unless_by_position(fixtures, tmp_path):
    """e5.npy has no ids and minilm.parquet is shuffled with ids: pairing them by position would
    pair different items without a word, so fit and fit-hub ask which is meant."""
    for cmd in (["fit", fixtures / "e5.npy", fixtures / "minilm.parquet", "-o", tmp_path / "t.npz"],
                ["fit-hub", fixtures / "e5.npy", fixtures / "minilm.parquet", "--names", "e5,minilm", "-o", tmp_path / "hub"]):
        r = invoke(*cmd)
        assert r.exit_code == 2, r.output
        assert "minilm.parquet has ids but" in r.output and "e5.npy has none" in r.output and "--by-position" in r.output
        assert not (tmp_path / "t.npz").exists() and not (tmp_path / "hub").exists()
    r = invoke("fit", fixtures / "e5.npy", fixtures / "minilm.h5", "-o", tmp_path / "t.npz", "--by-position")
    assert r.exit_code == 0, r.output  # minilm.h5 is in the same order as e5.npy
