"""The pipeline through the command line against references computed here: scipy's Procrustes on
the pairs the hold-out leaves (chosen by a pure-Python splitmix64), the map written out by hand
from the arrays numpy loads, and every output read back by numpy, h5py or DuckDB."""
import json
import subprocess
import sys

import duckdb
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.linalg import orthogonal_procrustes
from typer.testing import CliRunner

from procalign.cli import app
from conftest import random_orthogonal
from test_mutation_math import splitmix_reference

runner = CliRunner(env={"COLUMNS": "200"})


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def run(*args):
    r = subprocess.run([sys.executable, "-m", "procalign", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("matrix", "source_mean", "target_mean", "scale")}, json.loads(str(z["metadata"]))


def held_mask(n, fraction, seed):
    return np.array([splitmix_reference(i, seed) < fraction for i in range(n)])


def procrustes(x, y, centre=True, scale=False, rotation_only=False):
    """The reference fit, from scipy (the narrower side zero-padded when dimensions differ)."""
    mx, my = (x.mean(0), y.mean(0)) if centre else (np.zeros(x.shape[1]), np.zeros(y.shape[1]))
    xc, yc = x - mx, y - my
    ds, dt = x.shape[1], y.shape[1]
    d = max(ds, dt)
    q, _ = orthogonal_procrustes(np.pad(xc, ((0, 0), (0, d - ds))), np.pad(yc, ((0, 0), (0, d - dt))))
    q = q[:ds, :dt]
    if rotation_only and np.linalg.det(q) < 0:
        u, _, vt = np.linalg.svd(xc.T @ yc)
        u[:, -1] *= -1
        q = u @ vt
    s = float(np.trace(q.T @ xc.T @ yc) / ((xc @ q) ** 2).sum()) if scale else 1.0
    return q, mx, my, s


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(21)
    x = rng.normal(size=(1000, 12)) * np.linspace(3, 0.5, 12) + 4
    y = 0.8 * x @ random_orthogonal(rng, 12) + 0.2 * rng.normal(size=(1000, 12)) - 1
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    return d, x, y


def test_fit_in_chunks_of_37_equals_one_pass_and_scipy(pairs):
    d, x, y = pairs
    common = ["--holdout", "0.2", "--seed", "5", "--scale", "--json"]
    chunked = json.loads(run("fit", d / "x.npy", d / "y.npy", "-o", d / "t37.npz", "--batch-rows", "37", *common).stdout)
    whole = json.loads(run("fit", d / "x.npy", d / "y.npy", "-o", d / "t1.npz", "--batch-rows", "100000", *common).stdout)
    a37, _ = arrays(d / "t37.npz")
    a1, _ = arrays(d / "t1.npz")
    for k in a1:
        np.testing.assert_allclose(a37[k], a1[k], rtol=1e-10, atol=1e-10, err_msg=k)
    held = held_mask(1000, 0.2, 5)
    q, mx, my, s = procrustes(x[~held], y[~held], scale=True)
    np.testing.assert_allclose(a37["matrix"], q, atol=1e-9)
    np.testing.assert_allclose(a37["source_mean"], mx, atol=1e-12)
    np.testing.assert_allclose(a37["target_mean"], my, atol=1e-12)
    assert float(a37["scale"]) == pytest.approx(s, rel=1e-10)
    assert chunked["anchors"] == whole["anchors"] == int((~held).sum()) and chunked["holdout"]["pairs"] == held.sum()
    a, b = chunked["report"]["heldout"]["aligned"], whole["report"]["heldout"]["aligned"]
    assert a.pop("cosine") == pytest.approx(b.pop("cosine"), rel=1e-6) and a == pytest.approx(b, rel=1e-6)
    assert chunked["report"]["anchors"]["relative_residual"] == pytest.approx(
        whole["report"]["anchors"]["relative_residual"], rel=1e-9)
    mapped = s * (x[~held] - mx) @ q + my
    assert chunked["report"]["anchors"]["relative_residual"] == pytest.approx(
        np.linalg.norm(mapped - y[~held]) / np.linalg.norm(y[~held]), rel=1e-6)


def test_fit_under_a_small_memory_budget_equals_one_pass(tmp_path):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(200_000, 16)) + 2).astype(np.float32)  # 12.8 MB a file: several 8 MB chunks
    y = (x @ random_orthogonal(rng, 16) + 0.1 * rng.normal(size=(200_000, 16))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    run("fit", tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "m.npz", "--memory", "8", "--no-report")
    ref = procrustes(x.astype(np.float64), y.astype(np.float64))
    got, _ = arrays(tmp_path / "m.npz")
    np.testing.assert_allclose(got["matrix"], ref[0], atol=1e-5)
    np.testing.assert_allclose(got["source_mean"], ref[1], atol=1e-5)


CASES = {
    "centre": ([], dict()),
    "no-centre": (["--no-centre"], dict(centre=False)),
    "scale": (["--scale"], dict(scale=True)),
    "rotation-only": (["--rotation-only"], dict(rotation_only=True)),
    "normalize": (["--normalize"], dict()),
}


@pytest.mark.parametrize("case", CASES)
def test_every_fit_option_against_scipy(tmp_path, case):
    flags, options = CASES[case]
    rng = np.random.default_rng(8)
    x = rng.normal(size=(400, 6)) * [3, 2, 1.5, 1, 0.7, 0.3] + 2
    r = random_orthogonal(rng, 6)
    r[:, 0] *= np.sign(np.linalg.det(r))
    y = 1.7 * x @ r @ np.diag([1, 1, 1, 1, 1, -1.0]) + 0.3 * rng.normal(size=(400, 6)) - 3  # best map reflects
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    cli("fit", tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "t.npz", "--no-report", *flags)
    got, meta = arrays(tmp_path / "t.npz")
    if case == "normalize":
        x, y = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (x, y))
    q, mx, my, s = procrustes(x, y, **options)
    np.testing.assert_allclose(got["matrix"], q, atol=1e-9)
    np.testing.assert_allclose(got["source_mean"], mx, atol=1e-12)
    np.testing.assert_allclose(got["target_mean"], my, atol=1e-12)
    assert float(got["scale"]) == pytest.approx(s, rel=1e-9)
    assert np.linalg.det(got["matrix"]) == pytest.approx(1.0 if case == "rotation-only" else -1.0)
    assert meta["options"] == {"centre": case != "no-centre", "normalize": case == "normalize",
                               "scale": case == "scale", "rotation_only": case == "rotation-only"}


@pytest.mark.parametrize("ds,dt", [(6, 10), (10, 6)])
def test_fits_across_dimensions_against_scipy(tmp_path, ds, dt):
    rng = np.random.default_rng(ds)
    x = rng.normal(size=(300, ds)) + 1
    y = np.pad(x, ((0, 0), (0, max(dt - ds, 0))))[:, :dt] @ random_orthogonal(rng, dt) * 0.5 + 0.1 * rng.normal(size=(300, dt))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    cli("fit", tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "t.npz", "--scale")
    got, meta = arrays(tmp_path / "t.npz")
    q, mx, my, s = procrustes(x, y, scale=True)
    assert got["matrix"].shape == (ds, dt) and (meta["source"]["dim"], meta["target"]["dim"]) == (ds, dt)
    np.testing.assert_allclose(x @ got["matrix"], x @ q, atol=1e-8)  # what the fit determines
    assert float(got["scale"]) == pytest.approx(s, rel=1e-8)


def by_hand(t, x, inverse=False, normalize=False):
    """``(x - mu_s) @ Q * s + mu_t`` (or the inverse), from the arrays numpy loaded; float64."""
    x = np.asarray(x, np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if inverse:
        out = (x - t["target_mean"]) @ t["matrix"].T / float(t["scale"]) + t["source_mean"]
    else:
        out = (x - t["source_mean"]) @ t["matrix"] * float(t["scale"]) + t["target_mean"]
    return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def read_back(path):
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".h5":
        with h5py.File(path) as f:
            return f["embeddings"][()]
    rows = duckdb.sql(f"SELECT embedding FROM read_parquet('{path}', file_row_number=true) "
                      "ORDER BY file_row_number").fetchnumpy()["embedding"]
    assert np.array_equal(np.array(pq.read_table(path).column("embedding").to_pylist()),
                          np.array([np.asarray(r) for r in rows]))  # pyarrow and DuckDB agree
    return np.array([np.asarray(r) for r in rows])


@pytest.mark.parametrize("ext", ["npy", "parquet", "h5"])
def test_apply_outputs_equal_the_map_written_by_hand(pairs, ext):
    d, x, y = pairs
    t_path = d / "apply_t.npz"
    if not t_path.exists():
        cli("fit", d / "x.npy", d / "y.npy", "-o", t_path, "--scale", "--no-report")
    t, _ = arrays(t_path)
    out = d / f"mapped.{ext}"
    cli("apply", t_path, d / "x.npy", "-o", out, "--batch-rows", "37", "--dtype", "float64", "--overwrite")
    np.testing.assert_allclose(read_back(out), by_hand(t, x), rtol=1e-12, atol=1e-12)
    back = d / f"back.{ext}"
    cli("apply", t_path, f"{out}:/embeddings" if ext == "h5" else out, "-o", back, "--inverse", "--batch-rows", "37",
        "--overwrite")
    np.testing.assert_allclose(read_back(back), by_hand(t, read_back(out), inverse=True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(read_back(back), x, atol=1e-9)


def test_apply_with_normalisation_and_float32(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 5)) + 1, rng.normal(size=(200, 5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x32.npy", x.astype(np.float32))
    cli("fit", tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "t.npz", "--normalize", "--no-report")
    t, _ = arrays(tmp_path / "t.npz")
    cli("apply", tmp_path / "t.npz", tmp_path / "x32.npy", "-o", tmp_path / "o.parquet", "--batch-rows", "37")
    got = read_back(tmp_path / "o.parquet")
    assert pq.read_table(tmp_path / "o.parquet").schema.field("embedding").type.value_type == pa.float32()
    np.testing.assert_allclose(got, by_hand(t, x.astype(np.float32), normalize=True), atol=2e-6)


def test_the_holdout_is_disjoint_from_the_fit_and_the_anchor_report(tmp_path):
    """Held-out pairs are poisoned (their targets replaced by large noise): the fit and the anchor
    report must not see them; the held-out metrics must."""
    rng = np.random.default_rng(17)
    n, fraction, seed = 2000, 0.25, 11
    x = rng.normal(size=(n, 8)) + 1
    y = x @ random_orthogonal(rng, 8) + 0.01 * rng.normal(size=(n, 8))
    held = held_mask(n, fraction, seed)
    poisoned = y.copy()
    poisoned[held] = 1000 * rng.normal(size=(held.sum(), 8))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", poisoned)
    doc = json.loads(cli("fit", tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "t.npz", "--holdout",
                         str(fraction), "--seed", str(seed), "--batch-rows", "37", "--json").stdout)
    t, _ = arrays(tmp_path / "t.npz")
    q, mx, my, _ = procrustes(x[~held], y[~held])
    np.testing.assert_allclose(t["matrix"], q, atol=1e-9)  # fitted on the clean pairs alone
    np.testing.assert_allclose(t["target_mean"], my, atol=1e-12)
    report = doc["report"]
    assert doc["anchors"] == report["anchors"]["pairs"] == int((~held).sum())
    assert doc["holdout"]["pairs"] == report["heldout"]["pairs"] == int(held.sum())
    clean = (x[~held] - mx) @ q + my
    assert report["anchors"]["relative_residual"] == pytest.approx(
        np.linalg.norm(clean - y[~held]) / np.linalg.norm(y[~held]), rel=1e-6)
    assert report["anchors"]["cosine"]["p5"] > 0.99
    worst = max(w["squared_residual"] for w in report["anchors"]["worst"])
    assert worst < 0.01  # no poisoned pair among the anchors' worst
    assert {w["id"] for w in report["anchors"]["worst"]} <= {f"row {i}" for i in np.flatnonzero(~held)}
    assert report["heldout"]["aligned"]["cosine"]["mean"] < 0.2  # the held-out side sees the poison
    heldout_mapped = (x[held] - mx) @ q + my
    assert report["heldout"]["aligned"]["relative_residual"] == pytest.approx(
        np.linalg.norm(heldout_mapped - poisoned[held]) / np.linalg.norm(poisoned[held]), rel=1e-5)
