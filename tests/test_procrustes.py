"""Numerics: against scipy, by properties, and independent of chunking."""
import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from procalign import AlignmentStats, FitOptions, ProcrustesAligner, fit_transform, solve_orthogonal
from conftest import paired_data, random_orthogonal


@pytest.mark.parametrize("n,d", [(50, 3), (400, 32), (1000, 96)])
def test_matches_scipy_on_random_data(rng, n, d):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    expected, scale = orthogonal_procrustes(x, y)
    aligner = ProcrustesAligner(centre=False).fit(x, y)
    np.testing.assert_allclose(aligner.transform_.matrix, expected, atol=1e-10)
    # scipy's scale is the sum of singular values, i.e. the maximised trace
    assert aligner.fit_summary_["singular_values_sum"] == pytest.approx(scale, rel=1e-12)


def test_recovers_a_known_rotation_exactly(rng):
    x, y, q = paired_data(rng, noise=0.0)
    t = ProcrustesAligner(centre=False).fit(x, y).transform_
    np.testing.assert_allclose(t.matrix, q, atol=1e-12)
    assert t.scale == 1.0


def test_centering_recovers_rotation_with_offsets(rng):
    x, y, q = paired_data(rng, noise=0.0, shift=7.0)
    aligner = ProcrustesAligner(centre=True).fit(x, y)
    np.testing.assert_allclose(aligner.transform_.matrix, q, atol=1e-10)
    np.testing.assert_allclose(aligner.transform(x), y, atol=1e-9)


def test_result_is_orthogonal(rng):
    x, y, _ = paired_data(rng, noise=0.5)
    m = ProcrustesAligner().fit(x, y).transform_.matrix
    np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-12)


def test_rotation_only_gives_det_plus_one(rng):
    x = rng.normal(size=(300, 8))
    reflect = np.diag([-1.0] + [1.0] * 7)
    y = x @ reflect
    free = ProcrustesAligner(centre=False).fit(x, y).transform_.matrix
    assert np.linalg.det(free) == pytest.approx(-1.0)
    rot = ProcrustesAligner(centre=False, rotation_only=True).fit(x, y).transform_.matrix
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(rot.T @ rot, np.eye(8), atol=1e-12)


def test_rotation_only_refuses_different_dimensions(rng):
    with pytest.raises(ValueError, match="equal dimensions"):
        solve_orthogonal(rng.normal(size=(4, 6)), rotation_only=True)


@pytest.mark.parametrize("d_s,d_t", [(8, 20), (20, 8)])
def test_cross_dimension_maps(rng, d_s, d_t):
    x = rng.normal(size=(400, d_s))
    y = rng.normal(size=(400, d_t))
    a = ProcrustesAligner(centre=False).fit(x, y)
    m = a.transform_.matrix
    assert m.shape == (d_s, d_t)
    k = min(d_s, d_t)
    gram = m @ m.T if d_s <= d_t else m.T @ m
    np.testing.assert_allclose(gram, np.eye(k), atol=1e-12)
    # matches the paper's zero-padding on the target's d_t real coordinates
    big = max(d_s, d_t)
    xp, yp = np.zeros((400, big)), np.zeros((400, big))
    xp[:, :d_s], yp[:, :d_t] = x, y
    padded, _ = orthogonal_procrustes(xp, yp)
    np.testing.assert_allclose((xp @ padded)[:, :d_t], x @ m, atol=1e-9)
    assert np.linalg.norm(x @ m - y) == pytest.approx(np.linalg.norm((xp @ padded)[:, :d_t] - y))


def test_cross_dimension_round_trip_up_is_exact(rng):
    x = rng.normal(size=(300, 8))
    y = np.hstack([x @ random_orthogonal(rng, 8), np.zeros((300, 4))]) @ random_orthogonal(rng, 12)
    a = ProcrustesAligner(centre=True).fit(x, y)
    np.testing.assert_allclose(a.transform(x), y, atol=1e-9)
    np.testing.assert_allclose(a.inverse_transform(a.transform(x)), x, atol=1e-9)  # 8 -> 12 -> 8
    a_down = ProcrustesAligner(centre=True).fit(y, x)
    np.testing.assert_allclose(a_down.transform(y), x, atol=1e-9)  # 12 -> 8 projection


@pytest.mark.parametrize("batch", [1, 7, 64, 10_000])
def test_chunk_size_invariance(rng, batch):
    x, y, _ = paired_data(rng, n=700, noise=0.3, shift=3.0)
    ref = ProcrustesAligner(batch_size=700).fit(x, y).transform_
    got = ProcrustesAligner(batch_size=batch).fit(x, y).transform_
    np.testing.assert_allclose(got.matrix, ref.matrix, atol=1e-10)
    np.testing.assert_allclose(got.source_mean, ref.source_mean, atol=1e-12)


def test_fit_equals_partial_fit_loop(rng):
    x, y, _ = paired_data(rng, n=600, noise=0.3, shift=1.0)
    one = ProcrustesAligner().fit(x, y)
    loop = ProcrustesAligner()
    for a in range(0, 600, 97):
        loop.partial_fit(x[a:a + 97], y[a:a + 97])
    np.testing.assert_allclose(loop.transform_.matrix, one.transform_.matrix, atol=1e-10)
    assert loop.stats_.n == 600


def test_merge_of_partial_statistics_equals_one_pass(rng):
    x, y, _ = paired_data(rng, n=500, noise=0.3, shift=2.0)
    whole = AlignmentStats.from_batch(x, y, with_gram=True)
    parts = [AlignmentStats.from_batch(x[a:b], y[a:b], with_gram=True) for a, b in ((0, 123), (123, 400), (400, 500))]
    merged = AlignmentStats.empty(16, 16, with_gram=True)
    for p in parts[::-1]:  # order must not matter
        merged.merge(p)
    for name in ("mean_source", "mean_target", "comoment", "gram_source", "gram_target"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), atol=1e-9)
    assert merged.sq_source == pytest.approx(whole.sq_source)


def test_float32_chunks_match_float64_reference_despite_large_mean(rng):
    # A large common offset is where accumulating raw float32 products would cancel badly.
    x, y, _ = paired_data(rng, n=20_000, d=64, noise=0.2, shift=50.0)
    ref = ProcrustesAligner(batch_size=20_000).fit(x, y).transform_.matrix
    got = ProcrustesAligner(batch_size=4096).fit(x.astype(np.float32), y.astype(np.float32)).transform_.matrix
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_isotropic_scale(rng):
    x, _, q = paired_data(rng, noise=0.0)
    a = ProcrustesAligner(centre=False, scale=True).fit(x, 2.5 * x @ q)
    assert a.transform_.scale == pytest.approx(2.5)
    np.testing.assert_allclose(a.inverse_transform(a.transform(x)), x, atol=1e-9)


def test_normalize_maps_to_unit_vectors(rng):
    x, y, _ = paired_data(rng, noise=0.1, shift=1.0)
    out = ProcrustesAligner(normalize=True).fit(x, y).transform(x * 3.0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-12)


def test_anchor_residual_from_statistics_matches_direct(rng):
    x, y, _ = paired_data(rng, noise=0.4, shift=1.0)
    a = ProcrustesAligner().fit(x, y)
    direct = np.linalg.norm(a.transform(x) - y) / np.linalg.norm(y)
    assert a.fit_summary_["relative_residual"] == pytest.approx(direct, rel=1e-9)


def test_fit_transform_needs_pairs():
    with pytest.raises(ValueError, match="no anchor pairs"):
        fit_transform(AlignmentStats.empty(3, 3), FitOptions())


def test_estimator_validates_input(rng):
    with pytest.raises(ValueError, match=r"row counts differ \(5 vs 4\)"):
        ProcrustesAligner().fit(rng.normal(size=(5, 3)), rng.normal(size=(4, 3)))
    a = ProcrustesAligner().partial_fit(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        a.partial_fit(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        ProcrustesAligner().transform(np.zeros((1, 3)))
