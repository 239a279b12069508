"""The whitened and affine methods against closed forms written here, from statistics in any chunking."""
import numpy as np
import pytest

from procalign import AlignmentStats, FitOptions
from procalign.math.methods import AFFINE, ORTHOGONAL, WHITENED, fit_map, geometry
from procalign.math.ridge import GCV_ALPHAS, gcv_ridge
from procalign.math.spectral import PSEUDO_INVERSE_RCOND, numerical_rank, pseudo_inverse, symmetric_power
from conftest import random_orthogonal

METHODS = (ORTHOGONAL, WHITENED, AFFINE)


def anisotropic_pairs(rng, n=600, d_s=12, d_t=12, noise=0.3):
    """x with unequal variances and an offset; y a general linear image of x plus noise and offset."""
    x = rng.normal(size=(n, d_s)) * np.linspace(0.3, 3.0, d_s) + 2.0
    a = rng.normal(size=(d_s, d_t))
    return x, x @ a + noise * rng.normal(size=(n, d_t)) - 1.0


def inv_sqrt(c):
    w, v = np.linalg.eigh(c)
    return v @ np.diag(w ** -0.5) @ v.T


def sqrt(c):
    w, v = np.linalg.eigh(c)
    return v @ np.diag(w ** 0.5) @ v.T


def whitened_reference(x, y, p):
    """Artetxe et al. (2018) as PAPER.md writes it, on covariance matrices."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = len(x)
    cx, cy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    wx, wy = inv_sqrt(cx), inv_sqrt(cy)
    u, s, vt = np.linalg.svd(wx @ cxy @ wy, full_matrices=False)
    return wx @ u @ np.diag(s ** p) @ vt @ sqrt(cy)


@pytest.mark.parametrize("d_s,d_t", [(12, 12), (8, 15), (15, 8)])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_whitened_equals_the_closed_form(rng, d_s, d_t, p):
    x, y = anisotropic_pairs(rng, d_s=d_s, d_t=d_t)
    affine, summary = fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(), WHITENED, p)
    w = whitened_reference(x, y, p)
    np.testing.assert_allclose(affine.matrix, w, atol=1e-9 * np.abs(w).max())
    np.testing.assert_allclose(affine(x), (x - x.mean(0)) @ w + y.mean(0), atol=1e-8)
    assert summary["method_params"]["reweight"] == p and not affine.orthonormal


def test_whitened_with_p_1_is_least_squares(rng):
    x, y = anisotropic_pairs(rng)
    affine, _ = fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(), WHITENED, 1.0)
    w, *_ = np.linalg.lstsq(x - x.mean(0), y - y.mean(0), rcond=None)
    np.testing.assert_allclose(affine.matrix, w, atol=1e-9)


def test_whitened_maps_a_whitened_rotation_exactly(rng):
    # y = x A exactly: every canonical correlation is 1, so p does not matter and the map is A.
    x, _ = anisotropic_pairs(rng)
    a = rng.normal(size=(12, 12))
    for p in (0.0, 0.5):
        affine, _ = fit_map(AlignmentStats.from_batch(x, x @ a, with_gram=True), FitOptions(centre=False), WHITENED, p)
        np.testing.assert_allclose(affine.matrix, a, atol=1e-8)


def brute_gcv_alpha(x, y):
    """GCV with the n x n hat matrix, the intercept counted as one more parameter."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, g = len(x), xc.T @ xc
    scores = []
    for alpha in GCV_ALPHAS:
        lam = alpha * np.trace(g) / len(g)
        hat = xc @ np.linalg.solve(g + lam * np.eye(len(g)), xc.T)
        rss = np.sum((yc - hat @ yc) ** 2)
        scores.append(rss / n / (1 - (np.trace(hat) + 1) / n) ** 2)
    return GCV_ALPHAS[int(np.argmin(scores))], np.trace(g) / len(g)


@pytest.mark.parametrize("n,noise", [(60, 2.0), (300, 0.5), (2000, 0.05)])
def test_affine_is_ridge_with_the_gcv_alpha(rng, n, noise):
    x, y = anisotropic_pairs(rng, n=n, noise=noise)
    affine, summary = fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(), AFFINE)
    alpha, mean_eig = brute_gcv_alpha(x, y)
    assert summary["method_params"]["alpha"] == pytest.approx(alpha)
    xc, yc = x - x.mean(0), y - y.mean(0)
    w = np.linalg.solve(xc.T @ xc + alpha * mean_eig * np.eye(12), xc.T @ yc)
    np.testing.assert_allclose(affine.matrix, w, atol=1e-9 * np.abs(w).max())
    np.testing.assert_allclose(affine(x), x @ w + (y.mean(0) - x.mean(0) @ w), atol=1e-8)


def test_affine_without_regulariser_is_lstsq(rng):
    x, y = anisotropic_pairs(rng)
    xc, yc = x - x.mean(0), y - y.mean(0)
    w, _ = gcv_ridge(xc.T @ xc, xc.T @ yc, float(np.sum(yc ** 2)), len(x), True, alphas=np.array([1e-14]))
    np.testing.assert_allclose(w, np.linalg.lstsq(xc, yc, rcond=None)[0], atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("d_s,d_t", [(12, 12), (8, 15), (15, 8)])
def test_chunking_and_merging_do_not_change_any_method(rng, method, d_s, d_t):
    x, y = anisotropic_pairs(rng, n=700, d_s=d_s, d_t=d_t)
    whole = AlignmentStats.from_batch(x, y, with_gram=True)
    chunked = AlignmentStats.empty(d_s, d_t, with_gram=True)
    for a in range(0, len(x), 37):
        chunked.update(x[a:a + 37], y[a:a + 37])
    left = AlignmentStats.from_batch(x[:250], y[:250], with_gram=True)
    merged = left.merge(AlignmentStats.from_batch(x[250:], y[250:], with_gram=True))
    reference, _ = fit_map(whole, FitOptions(), method)
    for stats in (chunked, merged):
        other, _ = fit_map(stats, FitOptions(), method)
        np.testing.assert_allclose(other.matrix, reference.matrix, atol=1e-9 * np.abs(reference.matrix).max())
        np.testing.assert_allclose(other.target_mean, reference.target_mean, atol=1e-12)


@pytest.mark.parametrize("method", (WHITENED, AFFINE))
@pytest.mark.parametrize("d_s,d_t", [(12, 12), (8, 15)])
def test_linear_inverse_round_trips_when_full_rank(rng, method, d_s, d_t):
    x, y = anisotropic_pairs(rng, d_s=d_s, d_t=d_t)
    affine, _ = fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(), method)
    np.testing.assert_allclose(affine.inverse()(affine(x)), x, atol=1e-8)
    if d_s == d_t:
        np.testing.assert_allclose(affine(affine.inverse()(y)), y, atol=1e-8)


def test_orthogonal_inverse_is_still_the_transpose(rng):
    x = rng.normal(size=(200, 6))
    affine, _ = fit_map(AlignmentStats.from_batch(x, x @ random_orthogonal(rng, 6)), FitOptions(), ORTHOGONAL)
    np.testing.assert_array_equal(affine.inverse().matrix, affine.matrix.T)


def test_rank_deficient_anchors_give_a_finite_lower_rank_map(rng):
    # 5 pairs in 12-d: the Gram matrices have rank 4 after centring; nothing may blow up.
    x, y = anisotropic_pairs(rng, n=5)
    for method in (WHITENED, AFFINE):
        affine, summary = fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(), method)
        assert np.isfinite(affine.matrix).all()
        assert numerical_rank(np.linalg.svd(affine.matrix, compute_uv=False), PSEUDO_INVERSE_RCOND) == 4
    assert summary["method_params"]["alpha"] > 0


def test_linear_methods_refuse_scale_and_rotation_only_and_need_gram(rng):
    x, y = anisotropic_pairs(rng)
    with pytest.raises(ValueError, match="apply to the orthogonal method"):
        fit_map(AlignmentStats.from_batch(x, y, with_gram=True), FitOptions(scale=True), WHITENED)
    with pytest.raises(ValueError, match="needs statistics with Gram matrices"):
        fit_map(AlignmentStats.from_batch(x, y), FitOptions(), AFFINE)
    with pytest.raises(ValueError, match="unknown method"):
        fit_map(AlignmentStats.from_batch(x, y), FitOptions(), "cca")


def test_symmetric_power_and_pseudo_inverse(rng):
    b = rng.normal(size=(9, 4))
    gram = b @ b.T  # rank 4 of 9
    half, rank = symmetric_power(gram, 0.5)
    assert rank == 4
    np.testing.assert_allclose(half @ half, gram, atol=1e-10)
    inv_half, _ = symmetric_power(gram, -0.5)
    np.testing.assert_allclose(inv_half @ gram @ inv_half, np.linalg.pinv(gram) @ gram, atol=1e-9)
    m = rng.normal(size=(5, 8))
    np.testing.assert_allclose(pseudo_inverse(m), np.linalg.pinv(m), atol=1e-12)


def test_geometry_says_which_maps_are_isometries():
    assert geometry(ORTHOGONAL, 1.0, 8, 8)["isometry"] and geometry(ORTHOGONAL, 1.0, 8, 16)["isometry"]
    assert not geometry(ORTHOGONAL, 2.0, 8, 8)["isometry"]
    assert not geometry(ORTHOGONAL, 1.0, 16, 8)["isometry"]
    assert not geometry(WHITENED, 1.0, 8, 8)["isometry"] and not geometry(AFFINE, 1.0, 8, 8)["isometry"]
