"""invert, compose and chains in apply/evaluate, on real transform files, against numpy written here.

The reference for a transform file is the spec's formula on the arrays as plain numpy loads them
(`np.load`, no procalign): ``scale * (x - source_mean) @ matrix + target_mean``; its inverse is
``matrix.T`` (orthogonal) or ``np.linalg.pinv(matrix)``.
"""
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from procalign import AlignmentStats, FitOptions, Space, Transform, load_transform, save_transform
from procalign.cli import app
from procalign.math.methods import AFFINE, ORTHOGONAL, WHITENED, fit_map

runner = CliRunner(env={"COLUMNS": "200"})
ONE_LINE = re.compile(r"^procalign: error: [^\n]+\n$")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def by_spec(path, x, normalize=False):
    """A transform file applied as its spec says, from the raw arrays."""
    a = arrays(path)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    y = float(a["scale"]) * ((unit(x) if normalize else x) - a["source_mean"]) @ a["matrix"] + a["target_mean"]
    return unit(y) if normalize else y


def make(tmp_path, rng, name, source, target, d_s, d_t, method=ORTHOGONAL, scale=False, centre=True,
         normalize=False):
    """Fit ``source -> target`` on random related pairs and write it as ``name``."""
    x = rng.normal(size=(400, d_s)) * np.linspace(0.5, 2.0, d_s) + rng.normal(size=d_s)
    y = x @ rng.normal(size=(d_s, d_t)) + 0.1 * rng.normal(size=(400, d_t)) + rng.normal(size=d_t)
    if normalize:
        x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    options = FitOptions(centre=centre, normalize=normalize, scale=scale)
    stats = AlignmentStats.empty(d_s, d_t, with_gram=True).update(x, y)
    affine, summary = fit_map(stats, options, method)
    t = Transform.fitted(affine, Space(source, d_s), Space(target, d_t), options, method, fit=summary)
    path = tmp_path / name
    save_transform(t, path)
    return path


CHAINS = {  # links (source, target, d_s, d_t, method, scale), composed in order
    "orthogonal centred": [("a", "b", 8, 8, ORTHOGONAL, False), ("b", "c", 8, 8, ORTHOGONAL, False)],
    "orthogonal scaled": [("a", "b", 8, 8, ORTHOGONAL, True), ("b", "c", 8, 8, ORTHOGONAL, True)],
    "whitened then affine": [("a", "b", 8, 8, WHITENED, False), ("b", "c", 8, 8, AFFINE, False)],
    "affine up, orthogonal up": [("a", "b", 6, 8, AFFINE, False), ("b", "c", 8, 10, ORTHOGONAL, False)],
    "orthogonal up then down": [("a", "b", 6, 10, ORTHOGONAL, False), ("b", "c", 10, 8, ORTHOGONAL, True)],
    "orthogonal down then up": [("a", "b", 10, 6, ORTHOGONAL, False), ("b", "c", 6, 10, ORTHOGONAL, False)],
    "three links, every method": [("a", "b", 8, 9, WHITENED, False), ("b", "c", 9, 9, ORTHOGONAL, True),
                                  ("c", "d", 9, 7, AFFINE, False)],
}


@pytest.mark.parametrize("case", CHAINS)
def test_composition_equals_applying_in_sequence(tmp_path, rng, case):
    paths = [make(tmp_path, rng, f"{s}2{t}.npz", s, t, ds, dt, m, sc) for s, t, ds, dt, m, sc in CHAINS[case]]
    x = rng.normal(size=(50, CHAINS[case][0][2])) * 3
    np.save(tmp_path / "x.npy", x)
    sequence = x
    for p in paths:
        sequence = by_spec(p, sequence)
    r = invoke("compose", *paths, "-o", tmp_path / "c.npz")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(by_spec(tmp_path / "c.npz", x), sequence, rtol=1e-9, atol=1e-9)
    r = invoke("apply", *paths, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--dtype", "float64")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), sequence, rtol=1e-9, atol=1e-9)
    t = load_transform(tmp_path / "c.npz")
    assert (t.source.name, t.target.name) == ("a", CHAINS[case][-1][1])
    assert [p["checksum"] for p in t.provenance["composition"]["parts"]] == [load_transform(p).checksum for p in paths]


def test_the_composed_map_has_the_documented_arrays(tmp_path, rng):
    """matrix W_A W_B, source mean a_s, target mean s_B (a_t - b_s) W_B + b_t, scale s_A s_B."""
    pa = make(tmp_path, rng, "a.npz", "a", "b", 8, 8, scale=True)
    pb = make(tmp_path, rng, "b.npz", "b", "c", 8, 8, scale=True)
    assert invoke("compose", pa, pb, "-o", tmp_path / "c.npz").exit_code == 0
    a, b, c = arrays(pa), arrays(pb), arrays(tmp_path / "c.npz")
    np.testing.assert_allclose(c["matrix"], a["matrix"] @ b["matrix"], atol=1e-12)
    np.testing.assert_allclose(c["source_mean"], a["source_mean"])
    np.testing.assert_allclose(c["target_mean"],
                               b["scale"] * (a["target_mean"] - b["source_mean"]) @ b["matrix"] + b["target_mean"])
    assert float(c["scale"]) == pytest.approx(float(a["scale"]) * float(b["scale"]))
    assert load_transform(tmp_path / "c.npz").method == ORTHOGONAL


def test_down_then_up_is_a_projection_and_says_so(tmp_path, rng):
    pa = make(tmp_path, rng, "a.npz", "big", "small", 10, 6)
    pb = make(tmp_path, rng, "b.npz", "small", "wide", 6, 10)
    assert invoke("compose", pa, pb, "-o", tmp_path / "c.npz").exit_code == 0
    t = load_transform(tmp_path / "c.npz")
    kept = t.provenance["composition"]["kept"]
    assert t.method == "linear" and kept["projection"] and kept["rank"] == 6
    assert np.linalg.matrix_rank(arrays(tmp_path / "c.npz")["matrix"]) == 6
    shown = invoke("inspect", tmp_path / "c.npz").stdout
    assert "projection: keeps 6 of 10 dimensions (the chain passes through 'small', 6-d)" in shown
    assert "big -> small -> wide" in shown


def test_up_then_back_down_is_lossless(tmp_path, rng):
    up = make(tmp_path, rng, "up.npz", "small", "big", 6, 10)
    assert invoke("invert", up, "-o", tmp_path / "down.npz").exit_code == 0
    assert invoke("compose", up, tmp_path / "down.npz", "-o", tmp_path / "c.npz").exit_code == 0
    t = load_transform(tmp_path / "c.npz")
    assert t.method == ORTHOGONAL and not t.provenance["composition"]["kept"]["projection"]
    x = rng.normal(size=(20, 6))
    np.testing.assert_allclose(by_spec(tmp_path / "c.npz", x), x, atol=1e-10)


@pytest.mark.parametrize("method, d_s, d_t", [(ORTHOGONAL, 8, 8), (ORTHOGONAL, 6, 9), (WHITENED, 8, 8),
                                              (AFFINE, 7, 9)])
def test_invert_round_trips_and_records_what_it_inverts(tmp_path, rng, method, d_s, d_t):
    fwd = make(tmp_path, rng, "f.npz", "old", "new", d_s, d_t, method, scale=method == ORTHOGONAL)
    r = invoke("invert", fwd, "-o", tmp_path / "i.npz", "--json")
    assert r.exit_code == 0, r.output
    a, i = arrays(fwd), arrays(tmp_path / "i.npz")
    expected = a["matrix"].T if method == ORTHOGONAL else np.linalg.pinv(a["matrix"])
    np.testing.assert_allclose(i["matrix"], expected, atol=1e-10)
    np.testing.assert_array_equal(i["source_mean"], a["target_mean"])
    np.testing.assert_array_equal(i["target_mean"], a["source_mean"])
    assert float(i["scale"]) == pytest.approx(1 / float(a["scale"]))
    meta = json.loads(r.stdout)
    assert meta["inverse_of"] == load_transform(fwd).checksum
    assert (meta["source"]["name"], meta["target"]["name"]) == ("new", "old")
    x = rng.normal(size=(30, d_s))
    np.testing.assert_allclose(by_spec(tmp_path / "i.npz", by_spec(fwd, x)), x, atol=1e-8)


def test_normalising_chains_compose_exactly_or_are_refused(tmp_path, rng):
    pa = make(tmp_path, rng, "a.npz", "a", "b", 8, 8, normalize=True)
    pb = make(tmp_path, rng, "b.npz", "b", "c", 8, 8, normalize=True, centre=False)
    x = rng.normal(size=(20, 8))
    assert invoke("compose", pa, pb, "-o", tmp_path / "c.npz").exit_code == 0
    np.testing.assert_allclose(by_spec(tmp_path / "c.npz", x, True), by_spec(pb, by_spec(pa, x, True), True), atol=1e-9)
    pc = make(tmp_path, rng, "bc.npz", "b", "c", 8, 8, normalize=True)  # centred: the renormalisation stays
    r = invoke("compose", pa, pc, "-o", tmp_path / "d.npz")
    assert r.exit_code == 2 and ONE_LINE.match(r.stderr) and "does not fold" in r.stderr
    assert not (tmp_path / "d.npz").exists()


@pytest.mark.parametrize("links, pattern", [
    ([("a", "b", 8, 8), ("c", "d", 8, 8)], r"ends in 'b' \(8-d\) but the next transform maps c \(8-d\) -> d"),
    ([("a", "b", 8, 8), ("b", "c", 6, 8)], r"ends in 'b' \(8-d\) but the next transform maps b \(6-d\)"),
    ([("a", "b", 8, 8), ("a", "b", 8, 8)], r"\(it ends there: to go back through it, invert it first\)"),
])
def test_broken_chains_are_refused_and_nothing_is_written(tmp_path, rng, links, pattern):
    paths = [make(tmp_path, rng, f"t{k}.npz", s, t, ds, dt) for k, (s, t, ds, dt) in enumerate(links)]
    np.save(tmp_path / "x.npy", rng.normal(size=(5, 8)))
    for args in (["compose", *paths, "-o", tmp_path / "out.npz"], ["apply", *paths, tmp_path / "x.npy", "-o",
                                                                     tmp_path / "out.npy"]):
        r = invoke(*args)
        assert r.exit_code == 2 and ONE_LINE.match(r.stderr), r.stderr
        assert re.search(pattern, r.stderr) and str(paths[1]) in r.stderr
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "out.npy").exists()


def test_compose_needs_two_files_and_invert_refuses_a_bad_destination(tmp_path, rng):
    p = make(tmp_path, rng, "t.npz", "a", "b", 8, 8)
    r = invoke("compose", p, "-o", tmp_path / "c.npz")
    assert r.exit_code == 2 and "at least two" in r.stderr
    r = invoke("invert", p, "-o", p)
    assert r.exit_code == 6 and ONE_LINE.match(r.stderr)
    assert load_transform(p).checksum  # untouched


def test_a_chain_stamps_its_output_and_the_stamp_rules_hold(tmp_path, rng):
    pa = make(tmp_path, rng, "a.npz", "v1", "v2", 8, 8)
    pb = make(tmp_path, rng, "b.npz", "v2", "v3", 8, 8)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 8)).astype(np.float32))
    assert invoke("apply", pa, pb, tmp_path / "x.npy", "-o", tmp_path / "y.npy").exit_code == 0
    stamp = json.loads(invoke("inspect", tmp_path / "y.npy", "--json").stdout)["stamp"]
    assert (stamp["space"], stamp["from_space"]) == ("v3", "v1")
    r = invoke("apply", pa, pb, tmp_path / "y.npy", "-o", tmp_path / "z.npy")  # a double application
    assert r.exit_code == 8 and "already in space 'v3'" in r.stderr and not (tmp_path / "z.npy").exists()
    assert invoke("apply", pa, tmp_path / "x.npy", "-o", tmp_path / "half.npy").exit_code == 0
    r = invoke("apply", pa, pb, tmp_path / "half.npy", "-o", tmp_path / "z.npy")  # already one step along
    assert r.exit_code == 8 and "stamped as space 'v2'" in r.stderr
    r = invoke("apply", pa, pb, tmp_path / "y.npy", "-o", tmp_path / "back.npy", "--inverse", "--dtype", "float64")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), np.load(tmp_path / "x.npy"), atol=1e-4)
    # the same chain composes to the same checksum, so a resumed run recognises it
    assert invoke("apply", pa, pb, tmp_path / "x.npy", "-o", tmp_path / "y2.npy").exit_code == 0
    assert json.loads(invoke("inspect", tmp_path / "y2.npy", "--json").stdout)["stamp"] == stamp


def test_compose_with_anchors_shows_the_chain_next_to_a_direct_fit(fixtures, tmp_path):
    e5, minilm = fixtures / "e5.npy", fixtures / "minilm.npy"
    # fitted with the hold-out split compose uses (0.2, seed 0): both maps see the same pairs
    assert invoke("fit", e5, minilm, "-o", tmp_path / "f.npz", "--holdout", "0.2", "--seed", "0",
                  "--no-report").exit_code == 0
    assert invoke("invert", tmp_path / "f.npz", "-o", tmp_path / "b.npz").exit_code == 0
    # e5 -> minilm -> e5 -> minilm: the same map, three files long
    r = invoke("compose", tmp_path / "f.npz", tmp_path / "b.npz", tmp_path / "f.npz", "--anchors", e5, minilm,
               "--json", "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["output"] is None and doc["route"] == "e5 -> minilm -> e5 -> minilm"
    cmp = doc["comparison"]
    assert cmp["pairs"] > 400 and cmp["direct_method"] == ORTHOGONAL
    assert cmp["composed"]["top1"] > 0.9 and cmp["composed"]["top1"] == pytest.approx(cmp["direct"]["top1"])
    assert cmp["composed"]["cosine"]["mean"] == pytest.approx(cmp["direct"]["cosine"]["mean"], abs=1e-9)
    shown = invoke("compose", tmp_path / "f.npz", tmp_path / "b.npz", tmp_path / "f.npz", "--anchors", e5, minilm).stdout
    assert "composed chain" in shown and "direct fit" in shown
