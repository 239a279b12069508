"""The quality report: the paper's bound, each metric against brute force, gates, schema."""
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from procalign import AlignmentStats
from procalign.math.bound import procrustes_bound
from procalign.cli import app
from procalign.math.metrics import CosineHistogram, knn_overlap, ranks_of_pairs, retrieval, row_cosines
from procalign.math.ridge import ridge_map

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "procalign" / "report.schema.json").read_text())
runner = CliRunner(env={"COLUMNS": "120"})


def brute_bound(x, y):
    eps = np.linalg.norm(x @ x.T - y @ y.T)
    d = max(x.shape[1], y.shape[1])
    xp = np.pad(x, ((0, 0), (0, d - x.shape[1])))
    yp = np.pad(y, ((0, 0), (0, d - y.shape[1])))
    u, _, vt = np.linalg.svd(xp.T @ yp)
    return eps, np.linalg.norm(xp @ (u @ vt) - yp), (2 * d) ** 0.25 * np.sqrt(eps)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), ds=st.integers(1, 6), dt=st.integers(1, 6), seed=st.integers(0, 10**6),
       noise=st.floats(0, 2))
def test_bound_holds_and_eps_matches_gram_computation(n, ds, dt, seed, noise):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, ds))
    y = np.pad(x, ((0, 0), (0, max(dt - ds, 0))))[:, :dt] + noise * rng.normal(size=(n, dt))
    stats = AlignmentStats.from_batch(x, y, with_gram=True)
    b = procrustes_bound(stats, centre=False)
    eps, achieved, bound = brute_bound(x, y)
    # eps^2 and the achieved optimum are differences of near-equal sums: their round-off is
    # ~1e-16 of the squared norms, so compare squares with that absolute slack.
    gram_scale = np.linalg.norm(x.T @ x) ** 2 + np.linalg.norm(y.T @ y) ** 2
    norm_scale = np.linalg.norm(x) ** 2 + np.linalg.norm(y) ** 2
    assert b["eps"] ** 2 == pytest.approx(eps ** 2, rel=1e-9, abs=1e-12 * gram_scale)
    assert b["achieved"] ** 2 == pytest.approx(achieved ** 2, rel=1e-9, abs=1e-12 * norm_scale)
    assert b["bound"] ** 4 == pytest.approx(bound ** 4, rel=1e-8, abs=1e-11 * (2 * max(ds, dt)) * gram_scale)
    # the theorem, up to that round-off
    assert achieved <= bound * (1 + 1e-9) + 1e-9
    assert b["achieved"] ** 2 <= b["bound"] ** 2 + 1e-10 * norm_scale + 1e-5 * np.sqrt(gram_scale)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_bound_is_tight_on_the_papers_example(d):
    x = np.vstack([np.eye(d), np.zeros((d, d))])
    y = np.vstack([np.zeros((d, d)), np.eye(d)])
    b = procrustes_bound(AlignmentStats.from_batch(x, y, with_gram=True), centre=False)
    assert b["achieved"] == pytest.approx(b["bound"], rel=1e-12)
    assert b["achieved"] == pytest.approx(np.sqrt(2 * d))
    assert b["vacuous"]  # unit vectors, per-sample bound 2 = unrelated pairs


def test_bound_is_informative_for_nearly_rotated_data(rng):
    x = rng.normal(size=(2000, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    b = procrustes_bound(AlignmentStats.from_batch(x, x @ q + 0.001 * rng.normal(size=(2000, 8)), with_gram=True), True)
    assert not b["vacuous"] and b["achieved"] <= b["bound"]


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_blockwise_retrieval_equals_full_matrix(rng, block):
    q, c = rng.normal(size=(150, 6)), rng.normal(size=(150, 6))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    full = qn @ cn.T
    ranks = np.array([1 + np.sum(full[i] > full[i, i]) for i in range(150)])
    np.testing.assert_array_equal(ranks_of_pairs(q, c, block), ranks)
    r = retrieval(q, c, block)
    assert r["top1"] == pytest.approx(np.mean(ranks == 1)) and r["top10"] == pytest.approx(np.mean(ranks <= 10))
    assert r["mrr"] == pytest.approx(np.mean(1 / ranks))


def test_retrieval_is_perfect_for_identical_sets(rng):
    x = rng.normal(size=(200, 5))
    assert retrieval(x, x)["top1"] == 1.0


def test_knn_overlap_equals_brute_force(rng):
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    def nn(m):
        u = m / np.linalg.norm(m, axis=1, keepdims=True)
        s = u @ u.T
        np.fill_diagonal(s, -np.inf)
        return [set(np.argsort(-row)[:10]) for row in s]
    expect = np.mean([len(p & q) / 10 for p, q in zip(nn(a), nn(b))])
    assert knn_overlap(a, b, 10, block=7) == pytest.approx(expect)
    assert knn_overlap(a, a @ np.linalg.qr(rng.normal(size=(5, 5)))[0], 10) == pytest.approx(1.0)


def test_cosine_histogram_matches_numpy(rng):
    cos = np.clip(rng.normal(0.5, 0.2, 10_000), -1, 1)
    h = CosineHistogram()
    for part in np.array_split(cos, 7):
        h.add(part)
    s = h.summary()
    assert s["mean"] == pytest.approx(cos.mean())
    assert abs(s["p5"] - np.percentile(cos, 5)) <= 2e-4
    assert abs(s["median"] - np.median(cos)) <= 2e-4


def test_row_cosines(rng):
    a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    expect = [ai @ bi / np.linalg.norm(ai) / np.linalg.norm(bi) for ai, bi in zip(a, b)]
    np.testing.assert_allclose(row_cosines(a, b), expect)


def test_ridge_from_statistics_equals_direct_solve(rng):
    x, y = rng.normal(size=(300, 6)) + 2, rng.normal(size=(300, 4)) - 1
    w, b = ridge_map(AlignmentStats.from_batch(x, y, with_gram=True), alpha=0.1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = 0.1 * np.trace(xc.T @ xc) / 6
    w_ref = np.linalg.solve(xc.T @ xc + lam * np.eye(6), xc.T @ yc)
    np.testing.assert_allclose(w, w_ref, atol=1e-10)
    np.testing.assert_allclose(b, y.mean(0) - x.mean(0) @ w_ref, atol=1e-10)


def fit_cli(fixtures, out, *extra):
    return runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "-o", str(out),
                               "--holdout", "0.2", "--seed", "7", *map(str, extra)])


def test_fit_json_validates_against_schema(fixtures, tmp_path):
    r = fit_cli(fixtures, tmp_path / "t.npz", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    rep = doc["report"]
    assert set(rep["heldout"]) >= {"aligned", "unaligned", "shuffled_control", "ridge_affine"}
    assert len(rep["anchors"]["worst"]) == 10
    assert rep["bound"]["achieved"] <= rep["bound"]["bound"]


def test_evaluate_json_validates_against_schema(fixtures, tmp_path):
    fit_cli(fixtures, tmp_path / "t.npz")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "t.npz"), str(fixtures / "e5.h5"), str(fixtures / "minilm.h5"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["report"]["aligned"]["top1"] > 0.8 and doc["report"]["unaligned"]["top1"] < 0.05


def test_a_bad_document_fails_the_schema():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"report": {"pairs": 3}, "gates_failed": []}, SCHEMA)


@pytest.mark.parametrize("gate", [["--min-top1", "0.999"], ["--min-cosine", "0.99"], ["--max-residual", "0.01"]])
def test_fit_gates_exit_3_and_write_nothing(fixtures, tmp_path, gate):
    out = tmp_path / "t.npz"
    r = fit_cli(fixtures, out, *gate, "--json")
    assert r.exit_code == 3
    assert gate[0] in r.stderr and "by" in r.stderr
    assert json.loads(r.stdout)["gates_failed"]
    assert list(tmp_path.iterdir()) == []


def test_fit_gates_pass_when_met(fixtures, tmp_path):
    r = fit_cli(fixtures, tmp_path / "t.npz", "--min-top1", "0.8", "--min-cosine", "0.5", "--max-residual", "0.9")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.npz").exists()


def test_evaluate_gate_exits_3(fixtures, tmp_path):
    fit_cli(fixtures, tmp_path / "t.npz")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "t.npz"), str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"),
                            "--min-top1", "0.999"])
    assert r.exit_code == 3 and "--min-top1" in r.stderr


def test_top1_gate_without_holdout_says_not_measured(fixtures, tmp_path):
    r = runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "-o",
                            str(tmp_path / "t.npz"), "--min-top1", "0.5"])
    assert r.exit_code == 3 and "not measured" in r.stderr


def test_row_agreement_equals_direct_computation(rng):
    from procalign.math.metrics import row_agreement
    m, y = rng.normal(size=(30, 6)).astype(np.float32), rng.normal(size=(30, 6)).astype(np.float32)
    cos, sq, yy = row_agreement(m, y)
    m64, y64 = m.astype(np.float64), y.astype(np.float64)
    np.testing.assert_allclose(cos, row_cosines(m64, y64), atol=1e-6)
    np.testing.assert_allclose(sq, ((m64 - y64) ** 2).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(yy, (y64 ** 2).sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize("holdout", [0.0, 0.25])
def test_report_from_pairs_kept_in_memory_equals_report_from_a_second_read(holdout):
    """Under --memory the fit keeps the pairs for the report's second pass; above it, the pass
    reads the files again. Both must see the same pairs, in the same order, with the same split."""
    from dataclasses import replace
    from procalign.formats import parse_location
    from procalign.pipeline.fit import FitJob, fit_files
    from procalign.pipeline.report import build_report
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    jobs = {memory: FitJob(parse_location(str(fixtures / "e5.parquet")), parse_location(str(fixtures / "minilm.parquet")),
                           id_column="id", holdout=holdout, seed=3, memory_mb=memory) for memory in (1, 128)}
    assert fit_files(jobs[1]).pairs.in_memory is None  # 2,580 pairs x 3 KB: over 1 MB
    res = fit_files(jobs[128])
    assert res.pairs.in_memory is not None
    reports = [build_report(res.transform, res.stats, pairs, jobs[128].split, res.heldout, res.control,
                            res.pairing.ids, res.pairs.chunk_rows)
               for pairs in (res.pairs, replace(res.pairs, in_memory=None))]
    assert reports[0]["anchors"]["pairs"] == res.stats.n
    assert reports[0] == reports[1]
