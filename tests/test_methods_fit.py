"""`fit --method`: the transform file of every method, auto's choice, the warnings, evaluate's bound."""
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from procalign import load_transform, save_transform
from procalign.cli import app
from procalign.formats import parse_location
from procalign.pipeline.fit import FitJob
from procalign.pipeline.fit_and_save import fit_and_save
from conftest import random_orthogonal

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "procalign" / "report.schema.json").read_text())
runner = CliRunner(env={"COLUMNS": "200"})


def write_pair(tmp_path, x, y):
    np.save(tmp_path / "src.npy", x.astype(np.float32))
    np.save(tmp_path / "tgt.npy", y.astype(np.float32))
    return tmp_path / "src.npy", tmp_path / "tgt.npy"


def fit(tmp_path, x, y, **job):
    src, tgt = write_pair(tmp_path, x, y)
    return fit_and_save(FitJob(parse_location(str(src)), parse_location(str(tgt)), **job), None)[1]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def general_pairs(rng, n=1200, d_s=16, d_t=16, noise=0.3):
    x = rng.normal(size=(n, d_s)) * np.linspace(0.5, 2.0, d_s) + 1.0
    return x, x @ rng.normal(size=(d_s, d_t)) + noise * rng.normal(size=(n, d_t))


# the transform file --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["whitened", "affine"])
def test_apply_and_inverse_round_trip_through_the_file(tmp_path, rng, method):
    x, y = general_pairs(rng)
    src, tgt = write_pair(tmp_path, x, y)
    r = invoke("fit", src, tgt, "-o", tmp_path / "t.npz", "--method", method)
    assert r.exit_code == 0, r.output
    t = load_transform(tmp_path / "t.npz")
    assert t.method == method and not t.geometry["isometry"] and t.inverse_kind.startswith("exact")
    assert invoke("apply", tmp_path / "t.npz", src, "-o", tmp_path / "mapped.npy").exit_code == 0
    assert invoke("apply", tmp_path / "t.npz", tmp_path / "mapped.npy", "-o", tmp_path / "back.npy",
                  "--inverse").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), np.load(src), atol=2e-3)
    inv = save_transform(t.inverse(), tmp_path / "inv.npz")
    again = load_transform(tmp_path / "inv.npz")
    assert again.method == method and again.inverse_of == t.checksum
    np.testing.assert_allclose(again(t(x[:50])), x[:50], atol=1e-8)
    shown = invoke("inspect", tmp_path / "t.npz")
    assert f"{method}: general linear" in shown.stdout and "exact (inverse matrix)" in shown.stdout
    assert inv.checksum


@pytest.mark.parametrize("method", ["whitened", "affine"])
@pytest.mark.parametrize("inverse", [False, True])
def test_export_writes_every_method_as_procalign_applies_it(tmp_path, rng, method, inverse):
    faiss = pytest.importorskip("faiss")
    x, y = general_pairs(rng)
    src, tgt = write_pair(tmp_path, x, y)
    assert invoke("fit", src, tgt, "-o", tmp_path / "t.npz", "--method", method, "--no-report").exit_code == 0
    t = load_transform(tmp_path / "t.npz")
    t = t.inverse() if inverse else t
    rows = (y if inverse else x)[:200]
    flag = ["--inverse"] if inverse else []
    assert invoke("export", tmp_path / "t.npz", "-o", tmp_path / "t.faiss", *flag).exit_code == 0
    vt = faiss.read_VectorTransform(str(tmp_path / "t.faiss"))
    np.testing.assert_allclose(vt.apply(rows.astype(np.float32)), t(rows), rtol=1e-4, atol=1e-4 * np.abs(t(rows)).max())
    assert invoke("export", tmp_path / "t.npz", "-o", tmp_path / "t.json", "--format", "json", *flag).exit_code == 0
    doc = json.loads((tmp_path / "t.json").read_text())
    np.testing.assert_allclose(rows @ np.array(doc["A"]).T + np.array(doc["b"]), t(rows), atol=1e-8)
    assert doc["method"] == method


# usage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, pattern", [
    (["--method", "auto"], "needs held-out pairs; add --holdout"),
    (["--method", "whitened", "--scale"], "--scale applies to --method orthogonal or auto"),
    (["--method", "affine", "--rotation-only"], "--rotation-only applies to --method orthogonal or auto"),
    (["--reweight", "0.3"], "--reweight applies to --method whitened or auto"),
    (["--method", "whitened", "--reweight", "2"], "--reweight"),
    (["--method", "cca"], "--method"),
])
def test_method_usage_errors_exit_2(tmp_path, rng, args, pattern):
    src, tgt = write_pair(tmp_path, *general_pairs(rng, n=50))
    r = invoke("fit", src, tgt, *args)
    assert r.exit_code == 2 and pattern in r.stderr, r.output


# auto -----------------------------------------------------------------------------------------

def rotation_case(rng, n=200, d=32, noise=0.7):
    x = rng.normal(size=(n, d))
    return x, x @ random_orthogonal(rng, d) + noise * rng.normal(size=(n, d))


def scaled_case(rng, n=200, d=32, noise=0.7):
    x = rng.normal(size=(n, d))
    return x, 5 * (x @ random_orthogonal(rng, d)) + 5 * noise * rng.normal(size=(n, d)) + 3


def linear_case(rng, n=2000, d=32, noise=3.0):
    a = random_orthogonal(rng, d) @ np.diag(np.logspace(-1, 1, d)) @ random_orthogonal(rng, d)
    x = rng.normal(size=(n, d))
    return x, x @ a + noise * rng.normal(size=(n, d))


@pytest.mark.parametrize("case, best", [
    (rotation_case, {"orthogonal"}),            # the true map, with the fewest parameters
    (scaled_case, {"orthogonal_scaled"}),       # the true map; plain orthogonal falls in the scale trap
    (linear_case, {"whitened", "affine"}),      # no orthogonal map can follow a general linear one
])
def test_auto_picks_the_known_best(tmp_path, case, best):
    x, y = case(np.random.default_rng(0))
    t = fit(tmp_path, x, y, method="auto", holdout=0.5, seed=3)
    held = t.provenance["report"]["heldout"]
    rows, selection = held["methods"], held["selection"]
    assert selection["winner"] in best and rows[selection["winner"]]["chosen"]
    assert set(rows) == {"orthogonal", "orthogonal_scaled", "whitened", "affine"}
    assert all(rows[selection["winner"]]["top1"] >= row["top1"] for row in rows.values())
    assert selection["winner"] in selection["reason"] and t.provenance["fit"]["selection"] == selection
    assert held["aligned"]["top1"] == rows[selection["winner"]]["top1"]
    assert t.method == rows[selection["winner"]]["method"]
    assert t.options.scale == (selection["winner"] == "orthogonal_scaled")
    if case is not rotation_case:
        assert rows["orthogonal"]["top1"] < rows[selection["winner"]]["top1"] - 0.05


def test_every_fit_with_a_holdout_reports_each_methods_geometry(tmp_path):
    x, y = linear_case(np.random.default_rng(1), n=600)
    src, tgt = write_pair(tmp_path, x, y)
    r = invoke("fit", src, tgt, "--holdout", "0.3", "--json", "-o", tmp_path / "t.npz")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    rows = doc["report"]["heldout"]["methods"]
    assert doc["method"] == "orthogonal" and rows["orthogonal"]["chosen"]
    assert rows["orthogonal"]["isometry"] and rows["orthogonal"]["source_knn10_overlap"] == pytest.approx(1.0)
    assert not rows["whitened"]["isometry"] and rows["whitened"]["source_knn10_overlap"] < 0.9
    assert "selection" not in doc["report"]["heldout"]
    shown = invoke("fit", src, tgt, "--holdout", "0.3")
    assert "every method on the held-out pairs" in shown.stdout and "kNN@10 kept" in shown.stdout


# warnings -------------------------------------------------------------------------------------

def trap_case(rng, n=1500):
    """Unit-norm 64-d sources; 16-d targets with norm about 5 (a scaled projection plus an offset)."""
    x = rng.normal(size=(n, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    offset = rng.normal(size=16)
    return x, 10 * x @ random_orthogonal(rng, 64)[:, :16] + 4 * offset / np.linalg.norm(offset)


def test_the_scale_trap_warns_and_auto_escapes_it(tmp_path):
    x, y = trap_case(np.random.default_rng(0))
    src, tgt = write_pair(tmp_path, x, y)
    r = invoke("fit", src, tgt, "--holdout", "0.2")
    assert r.exit_code == 0, r.output
    warning = next(line for line in r.stderr.splitlines() if "RMS norm" in line)
    assert warning.startswith("warning: ") and all(f in warning for f in ("--scale", "--normalize", "--method auto"))
    t = fit(tmp_path, x, y, holdout=0.2)
    held = t.provenance["report"]["heldout"]
    assert held["aligned"]["top1"] < 0.1 and any("RMS norm" in w for w in t.provenance["report"]["warnings"])
    auto = fit(tmp_path, x, y, holdout=0.2, method="auto")
    assert auto.provenance["report"]["heldout"]["aligned"]["top1"] > 0.5
    assert not any("RMS norm" in w for w in auto.provenance["warnings"])


def test_matched_norms_do_not_warn(tmp_path, rng):
    x, y = rotation_case(rng, n=600, d=16, noise=0.1)
    t = fit(tmp_path, x, y, holdout=0.2)
    assert t.provenance["warnings"] == [] and t.provenance["report"]["warnings"] == []
    assert t.provenance["fit"]["diagnostics"]["rank"]["effective_rank"] == 16


def test_a_map_no_better_than_chance_warns(tmp_path, rng):
    x = rng.normal(size=(800, 16))
    t = fit(tmp_path, x, rng.normal(size=(800, 16)), holdout=0.3)
    assert any("no better than the shuffled-pair control" in w for w in t.provenance["warnings"])


def test_undetermined_directions_warn_with_the_effective_rank(tmp_path, rng):
    x = rng.normal(size=(600, 32))
    y = np.zeros((600, 32))
    y[:, :3] = x[:, :3] @ random_orthogonal(rng, 3)  # only 3 directions carry anything
    t = fit(tmp_path, x, y)
    rank = t.provenance["fit"]["diagnostics"]["rank"]
    assert (rank["effective_rank"], rank["directions"]) == (3, 32)
    assert any("determine only 3 of 32 directions" in w for w in t.provenance["warnings"])


def test_too_few_anchors_warn_once(tmp_path, rng):
    x, y = rotation_case(rng, n=20, d=32)
    warnings = fit(tmp_path, x, y).provenance["warnings"]
    assert len(warnings) == 1 and "only 20 anchor pairs for 32 dimensions" in warnings[0]


# evaluate ------------------------------------------------------------------------------------

def test_evaluate_reports_the_bound_on_the_sample(tmp_path, rng):
    x, y = rotation_case(rng, n=600, d=16, noise=0.1)
    src, tgt = write_pair(tmp_path, x, y)
    assert invoke("fit", src, tgt, "-o", tmp_path / "t.npz", "--no-report").exit_code == 0
    r = invoke("evaluate", tmp_path / "t.npz", src, tgt, "--json")
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    b = doc["report"]["bound"]
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert b["eps"] == pytest.approx(np.linalg.norm(xc @ xc.T - yc @ yc.T), rel=1e-4)
    assert b["achieved"] <= b["bound"] and not b["vacuous"]
    t = load_transform(tmp_path / "t.npz")
    assert b["transform_achieved"] == pytest.approx(np.linalg.norm(t(x) - y), rel=1e-4)
    assert b["transform_achieved"] >= b["achieved"] * (1 - 1e-4)  # the optimum on these very pairs, up to float32
    shown = invoke("evaluate", tmp_path / "t.npz", src, tgt)
    assert "achieved by the transform" in shown.stdout
