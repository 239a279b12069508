"""fit-hub: generalized Procrustes from cross products, against data-space references written here."""
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.linalg import orthogonal_procrustes
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app
from procalign.math.fold import HoldoutSplit
from procalign.math.hub import generalized_procrustes, model_residuals

runner = CliRunner(env={"COLUMNS": "200"})
ONE_LINE = re.compile(r"^procalign: error: [^\n]+\n$")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def rotated_copies(rng, dims, n=300, k=5, noise=0.0):
    """One common set of n items (k-d), embedded in each model by a random isometry (k x d orthonormal rows)."""
    common = rng.normal(size=(n, k)) * np.linspace(1.0, 3.0, k) + 0.5
    models = []
    for d in dims:
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        models.append(common @ q[:k] + noise * rng.normal(size=(n, d)) + rng.normal(size=d))
    return models


def consensus_objective(xs, maps):
    """sum_i ||X_i Q_i - C||^2 with C the mean of the X_i Q_i, on the (centred) data itself."""
    mapped = [x @ q for x, q in zip(xs, maps)]
    c = sum(mapped) / len(mapped)
    return sum(float(np.sum((m - c) ** 2)) for m in mapped)


def solve_on(xs, **kw):
    xs = [x - x.mean(0) for x in xs]
    z = np.hstack(xs)
    return xs, generalized_procrustes(z.T @ z, [x.shape[1] for x in xs], **kw)


def test_recovers_known_rotations_of_a_common_set_in_different_dimensions(rng):
    xs, sol = solve_on(rotated_copies(rng, [6, 9, 7, 9]))
    assert sol.converged and sol.objective < 1e-9 * sol.total
    for i in range(4):
        assert np.allclose(sol.maps[i] @ sol.maps[i].T, np.eye(xs[i].shape[1]), atol=1e-12)
        for j in range(4):  # a -> hub -> b reproduces b exactly
            np.testing.assert_allclose(xs[i] @ sol.maps[i] @ sol.maps[j].T, xs[j], atol=1e-8)


def test_objective_and_residuals_from_cross_products_match_the_data(rng):
    xs, sol = solve_on(rotated_copies(rng, [5, 8, 6], noise=0.3))
    assert sol.objective == pytest.approx(consensus_objective(xs, sol.maps), rel=1e-9)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(sol.history, sol.history[1:]))  # never worse
    c = sum(x @ q for x, q in zip(xs, sol.maps)) / 3
    expected = [np.linalg.norm(x @ q - c) / np.linalg.norm(x) for x, q in zip(xs, sol.maps)]
    z = np.hstack(xs)
    np.testing.assert_allclose(model_residuals(z.T @ z, [5, 8, 6], sol.maps), expected, rtol=1e-8)


def test_two_models_meet_as_in_a_direct_fit(rng):
    xs, sol = solve_on(rotated_copies(rng, [7, 7], noise=0.5))
    r, _ = orthogonal_procrustes(xs[0], xs[1])
    np.testing.assert_allclose(sol.maps[0] @ sol.maps[1].T, r, atol=1e-8)


def test_a_reference_is_the_hub(rng):
    xs, sol = solve_on(rotated_copies(rng, [6, 8, 8], noise=0.2), reference=1)
    assert sol.sweeps == 0
    np.testing.assert_array_equal(sol.maps[1], np.eye(8))
    r, _ = orthogonal_procrustes(np.hstack([xs[2]]), xs[1])
    np.testing.assert_allclose(sol.maps[2], r, atol=1e-8)


@pytest.fixture
def three_models(tmp_path, rng):
    """Three files of one common set, rotated, 6-, 9- and 8-d; the second as parquet with ids, shuffled and
    with rows the others lack."""
    xs = rotated_copies(rng, [6, 9, 8], n=400)
    np.save(tmp_path / "a.npy", xs[0])
    np.save(tmp_path / "c.npy", xs[2])
    order = rng.permutation(400)
    ids = np.arange(400)[order]
    extra = rng.normal(size=(15, 9))
    emb = np.vstack([xs[1][order], extra])
    pq.write_table(pa.table({"id": np.concatenate([ids, 1000 + np.arange(15)]),
                             "embedding": [list(map(float, e)) for e in emb]}), tmp_path / "b.parquet")
    np.save(tmp_path / "ids.npy", np.arange(400))
    return tmp_path, xs


def test_fit_hub_writes_one_transform_per_model_and_a_manifest(three_models):
    d, xs = three_models
    # ids join the files only when all carry them: the others as parquet too, in row order
    for name in ("a", "c"):
        pq.write_table(pa.table({"id": np.arange(400), "embedding": [list(map(float, e)) for e in np.load(d / f"{name}.npy")]}),
                       d / f"{name}.parquet")
    r = invoke("fit-hub", d / "a.parquet", d / "b.parquet", d / "c.parquet", "--names", "a,b,c", "-o", d / "hub",
               "--json", "-q", "--batch-rows", "37")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert {**json.loads((d / "hub" / "manifest.json").read_text()), "output": str(d / "hub")} == m
    assert m["name"] == "hub" and m["dim"] == 9 and m["anchors"] == 400 and m["pairing"]["ids_not_shared"] == [0, 15, 0]
    assert m["relative_objective"] < 1e-9
    assert m["converged"] and m["iterations"] >= 1
    for f, dim in zip(m["files"], (6, 9, 8)):
        t = load_transform(d / "hub" / f["file"])
        assert t.checksum == f["checksum"] and (t.source.name, t.source.dim) == (f["name"], dim)
        assert (t.target.name, t.target.dim) == ("hub", 9) and t.method == "orthogonal"
    # any pair meets through the hub: a -> hub -> c reproduces c
    r = invoke("apply", d / "hub" / "a.npz", d / "hub" / "c.npz", d / "a.npy", "-o", d / "a_as_c.npy", "--dtype",
               "float64")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(d / "a_as_c.npy"), xs[2], atol=1e-7)
    r = invoke("evaluate", d / "hub" / "a.npz", d / "hub" / "c.npz", d / "a.npy", d / "c.npy", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["route"] == "a -> hub -> c" and doc["report"]["aligned"]["top1"] == 1.0
    assert "hub (9-d) of a (6-d), b (9-d), c (8-d)" in invoke("inspect", d / "hub" / "b.npz").stdout


def test_results_do_not_depend_on_the_chunk_size(tmp_path, rng):
    xs = rotated_copies(rng, [6, 8], k=6, noise=0.3)
    for name, x in zip("ac", xs):
        np.save(tmp_path / f"{name}.npy", x.astype(np.float32))
    maps = []
    for k, rows in enumerate(("13", "1000")):
        r = invoke("fit-hub", tmp_path / "a.npy", tmp_path / "c.npy", "--names", "a,c", "-o", tmp_path / f"h{k}",
                   "--batch-rows", rows, "-q")
        assert r.exit_code == 0, r.output
        # the hub's two dimensions that a does not reach are free, so compare the map a -> hub -> c
        maps.append(np.load(tmp_path / f"h{k}" / "a.npz")["matrix"] @ np.load(tmp_path / f"h{k}" / "c.npz")["matrix"].T)
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-6)


def test_data_in_the_hub_is_stamped_and_the_chain_rules_hold(three_models, rng):
    d, xs = three_models
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    np.save(d / "c2.npy", xs[2] @ q)
    assert invoke("fit-hub", d / "c.npy", d / "c2.npy", "--names", "c,c2", "-o", d / "shared").exit_code == 0
    assert invoke("apply", d / "shared" / "c.npz", d / "c.npy", "-o", d / "in_hub.npy").exit_code == 0
    assert json.loads(invoke("inspect", d / "in_hub.npy", "--json").stdout)["stamp"]["space"] == "shared"
    r = invoke("apply", d / "shared" / "c.npz", d / "in_hub.npy", "-o", d / "twice.npy")
    assert r.exit_code == 8 and "already in space 'shared'" in r.stderr
    r = invoke("apply", d / "shared" / "c.npz", d / "shared" / "c2.npz", d / "in_hub.npy", "-o", d / "twice.npy")
    assert r.exit_code == 8 and not (d / "twice.npy").exists()
    r = invoke("apply", d / "shared" / "c2.npz", d / "in_hub.npy", "-o", d / "as_c2.npy", "--inverse", "--dtype",
               "float64")
    assert r.exit_code == 0, r.output
    assert json.loads(invoke("inspect", d / "as_c2.npy", "--json").stdout)["stamp"]["space"] == "c2"
    np.testing.assert_allclose(np.load(d / "as_c2.npy"), xs[2] @ q, atol=1e-6)


@pytest.mark.parametrize("extra, pattern", [
    (["--names", "a"], r"--names gives 1 names for 2 files"),
    (["--names", "a,a"], r"--names repeats a name"),
    (["--names", "a,c", "--reference", "b"], r"--reference 'b' is not one of --names"),
    (["--names", "hub,c"], r"the hub space is named 'hub' like a model"),
    (["--names", "a,../c"], r"cannot name a file in the hub directory"),
])
def test_bad_names_are_usage_errors(three_models, extra, pattern):
    d, _ = three_models
    r = invoke("fit-hub", d / "a.npy", d / "c.npy", "-o", d / "hub", *extra)
    assert r.exit_code == 2 and ONE_LINE.match(r.stderr) and re.search(pattern, r.stderr), r.stderr
    assert not (d / "hub").exists()


def test_nothing_is_left_behind_on_an_error(three_models):
    d, _ = three_models
    bad = np.load(d / "c.npy")
    bad[17, 2] = np.nan
    np.save(d / "bad.npy", bad)
    r = invoke("fit-hub", d / "a.npy", d / "bad.npy", "--names", "a,c", "-o", d / "hub")
    assert r.exit_code == 4 and ONE_LINE.match(r.stderr) and "row 17" in r.stderr and "bad.npy" in r.stderr
    assert not (d / "hub").exists()
    (d / "hub").mkdir()
    (d / "hub" / "c.npz").write_bytes(b"keep me")
    r = invoke("fit-hub", d / "a.npy", d / "c.npy", "--names", "a,c", "-o", d / "hub")
    assert r.exit_code == 6 and "--overwrite" in r.stderr
    assert sorted(p.name for p in (d / "hub").iterdir()) == ["c.npz"] and (d / "hub" / "c.npz").read_bytes() == b"keep me"


def test_on_the_fixtures_a_hub_retrieves_as_well_as_a_direct_fit(fixtures, tmp_path):
    """e5 and minilm fitted on 80% of the pairs, measured on the other 20% (benchmarks/chains.py has the table)."""
    e5, minilm = np.load(fixtures / "e5.npy"), np.load(fixtures / "minilm.npy")
    held = HoldoutSplit(0.2, 7).held(0, len(e5))
    for name, x in (("e5", e5), ("minilm", minilm)):
        np.save(tmp_path / f"{name}_train.npy", x[~held])
        np.save(tmp_path / f"{name}_test.npy", x[held])
    train, test = [tmp_path / f"{n}_train.npy" for n in ("e5", "minilm")], [tmp_path / f"{n}_test.npy" for n in ("e5", "minilm")]
    assert invoke("fit", *train, "-o", tmp_path / "direct.npz", "--no-report", "--source-name", "e5",
                  "--target-name", "minilm").exit_code == 0
    assert invoke("fit-hub", *train, "--names", "e5,minilm", "-o", tmp_path / "hub").exit_code == 0
    assert invoke("compose", tmp_path / "hub" / "e5.npz", tmp_path / "hub" / "minilm.npz", "-o", tmp_path / "c.npz").exit_code == 0
    top1 = {}
    for name, chain in (("direct", [tmp_path / "direct.npz"]), ("composed", [tmp_path / "c.npz"]),
                        ("hub", [tmp_path / "hub" / "e5.npz", tmp_path / "hub" / "minilm.npz"])):
        r = invoke("evaluate", *chain, *test, "--json")
        assert r.exit_code == 0, r.output
        top1[name] = json.loads(r.stdout)["report"]["aligned"]["top1"]
    assert top1["direct"] > 0.9
    assert abs(top1["hub"] - top1["direct"]) <= 0.005 and top1["composed"] == top1["hub"]
