"""procalign.math against independent references: brute-force numpy written here, scipy, and a
pure-Python splitmix64. Written to kill mutants (`make mutate`): each test pins exact values,
messages and edge cases that the broader tests leave free."""
import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from procalign.math.affine import AffineMap, ChunkMapper, NonFiniteRows, unit_rows
from procalign.math.bound import procrustes_bound
from procalign.math.fold import HoldoutSplit, NonFinitePair, PairFold, prepare_rows
from procalign.math.metrics import (Agreement, CosineHistogram, cosine_summary, knn_indices, knn_overlap,
                                    ranks_of_pairs, retrieval, row_agreement, row_cosines)
from procalign.math.procrustes import FitOptions, fit_transform, solve_orthogonal
from procalign.math.ridge import ridge_map
from procalign.math.sampling import RowSample, uniform_by_index
from procalign.math.stats import AlignmentStats, NonFiniteInput
from conftest import random_orthogonal

M64 = 1 << 64


def splitmix_reference(index: int, seed: int) -> float:
    """splitmix64 of (index + seed * golden) in Python integers, as the module docstring states."""
    g = 0x9E3779B97F4A7C15
    z = ((index + seed * g) % M64) * g % M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % M64
    z ^= z >> 31
    return (z >> 11) * 2.0 ** -53


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("first,n,seed", [(0, 40, 0), (17, 25, 1), (2**40, 8, 123456789), (5, 0, 3)])
def test_uniform_by_index_is_splitmix64(first, n, seed):
    got = uniform_by_index(first, n, seed)
    assert got.dtype == np.float64 and got.shape == (n,)
    assert got.tolist() == [splitmix_reference(first + i, seed) for i in range(n)]


def test_row_sample_keeps_the_first_cap_rows_in_order_as_copies():
    s = RowSample(cap=5)
    assert s.arrays() is None
    a, b = np.arange(12.0).reshape(6, 2), np.arange(6)
    s.add(a, None, b, mask=np.array([1, 0, 1, 1, 0, 0], bool))
    a[0] = -1  # the sample holds copies
    s.add(a, None, b, mask=np.array([0, 1, 1, 1, 1, 0], bool))
    s.add(a, None, b, mask=np.ones(6, bool))  # full: nothing more
    x, none, ids = s.arrays()
    assert none is None and s.count == 5
    np.testing.assert_array_equal(ids, [0, 2, 3, 1, 2])
    np.testing.assert_array_equal(x, [[0, 1], [4, 5], [6, 7], [2, 3], [4, 5]])


# ------------------------------------------------------------------ statistics
def brute_stats(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    return dict(n=len(x), mean_source=mx, mean_target=my, comoment=xc.T @ yc, sq_source=float((xc ** 2).sum()),
                sq_target=float((yc ** 2).sum()), gram_source=xc.T @ xc, gram_target=yc.T @ yc)


def assert_stats(got, ref, rtol=1e-10, atol=1e-9, gram=True):
    assert got.n == ref["n"]
    for k in ("mean_source", "mean_target", "comoment"):
        np.testing.assert_allclose(getattr(got, k), ref[k], rtol=rtol, atol=atol, err_msg=k)
    assert got.sq_source == pytest.approx(ref["sq_source"], rel=rtol, abs=atol)
    assert got.sq_target == pytest.approx(ref["sq_target"], rel=rtol, abs=atol)
    if gram:
        np.testing.assert_allclose(got.gram_source, ref["gram_source"], rtol=rtol, atol=atol)
        np.testing.assert_allclose(got.gram_target, ref["gram_target"], rtol=rtol, atol=atol)
    else:
        assert got.gram_source is None and got.gram_target is None


@pytest.mark.parametrize("n,block", [(1, 4), (7, 3), (23, 5), (24, 8), (50, 2048)])
def test_from_batch_matches_brute_force_over_blocks(rng, n, block):
    x = rng.normal(size=(n, 4)) * 3 + 10
    y = rng.normal(size=(n, 6)) - 4
    assert_stats(AlignmentStats.from_batch(x, y, with_gram=True, block=block), brute_stats(x, y))
    assert_stats(AlignmentStats.from_batch(x, y, block=block), brute_stats(x, y), gram=False)


def test_float64_input_is_accumulated_in_float64(rng):
    # A float32 path would lose ~1e-7 relative on these sums; float64 keeps ~1e-12.
    x = rng.normal(size=(300, 3)) + 1e4
    y = rng.normal(size=(300, 3)) * 0.5 + x[:, ::-1] - 1e4
    assert_stats(AlignmentStats.from_batch(x, y, with_gram=True, block=64), brute_stats(x, y), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_floats_are_widened_to_float32(rng, dtype):
    x = (rng.normal(size=(200, 5)) + 3).astype(dtype)
    y = (rng.normal(size=(200, 2)) - 1).astype(dtype)
    assert_stats(AlignmentStats.from_batch(x, y, with_gram=True, block=16), brute_stats(x, y), rtol=1e-5, atol=1e-3)


def test_empty_batch_and_empty_statistics(rng):
    e = AlignmentStats.from_batch(np.zeros((0, 3)), np.zeros((0, 2)), with_gram=True)
    assert e.n == 0 and e.comoment.shape == (3, 2) and e.gram_source.shape == (3, 3) and e.gram_target.shape == (2, 2)
    assert e.with_gram and e.sq_source == 0.0 and e.sq_target == 0.0
    assert not np.any(e.comoment) and not np.any(e.mean_source) and e.mean_target.shape == (2,)
    plain = AlignmentStats.empty(3, 2)
    assert plain.gram_source is None and plain.gram_target is None and not plain.with_gram


def test_from_batch_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match=r"^paired batches need shapes \(n, d_s\) and \(n, d_t\), got \(3, 2\) and \(4, 2\)$"):
        AlignmentStats.from_batch(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="paired batches"):
        AlignmentStats.from_batch(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="paired batches"):
        AlignmentStats.from_batch(np.zeros((3, 2)), np.zeros(3))


@pytest.mark.parametrize("side", ["source", "target"])
def test_non_finite_rows_are_named(rng, side):
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    bad = x if side == "source" else y
    bad[[4, 17], 1] = [np.nan, np.inf]
    with pytest.raises(NonFiniteInput) as e:
        AlignmentStats.from_batch(x, y, block=8)
    assert str(e.value) == f"NaN or Inf at {side} row 4 of the batch"
    rows = e.value.source_rows if side == "source" else e.value.target_rows
    other = e.value.target_rows if side == "source" else e.value.source_rows
    assert rows.tolist() == [4, 17] and other.tolist() == []


def test_update_and_merge_equal_one_pass(rng):
    x, y = rng.normal(size=(90, 3)) + 5, rng.normal(size=(90, 4)) * 2
    s = AlignmentStats.empty(3, 4, with_gram=True)
    assert s.update(x[:10], y[:10]) is s
    assert s.update(x[10:10], y[10:10]) is s  # an empty chunk changes nothing
    s.merge(AlignmentStats.from_batch(x[10:55], y[10:55], with_gram=True))
    other = AlignmentStats.from_batch(x[55:], y[55:], with_gram=True)
    assert s.merge(other) is s
    assert_stats(s, brute_stats(x, y))
    empty = AlignmentStats.empty(3, 4, with_gram=True)
    empty.merge(AlignmentStats.from_batch(x, y, with_gram=True))
    assert_stats(empty, brute_stats(x, y))


def test_merge_refusals():
    with pytest.raises(ValueError, match=r"^cannot merge statistics of shapes \(2, 3\) and \(3, 2\)$"):
        AlignmentStats.empty(2, 3).merge(AlignmentStats.empty(3, 2))
    one = AlignmentStats.from_batch(np.ones((2, 2)), np.ones((2, 2)))
    gram = AlignmentStats.from_batch(np.ones((2, 2)), np.ones((2, 2)), with_gram=True)
    for a, b in ((one, gram), (gram, one)):
        with pytest.raises(ValueError, match="^cannot merge statistics with and without Gram matrices$"):
            AlignmentStats.from_batch(np.ones((2, 2)), np.ones((2, 2)), with_gram=a.with_gram).merge(b)


def test_moments_raw_and_centred(rng):
    x, y = rng.normal(size=(40, 3)) + 2, rng.normal(size=(40, 2)) - 3
    s = AlignmentStats.from_batch(x, y, with_gram=True, block=7)
    raw = s.moments(centre=False)
    np.testing.assert_allclose(raw["cross"], x.T @ y, atol=1e-9)
    assert raw["sq_source"] == pytest.approx((x ** 2).sum()) and raw["sq_target"] == pytest.approx((y ** 2).sum())
    np.testing.assert_allclose(raw["gram_source"], x.T @ x, atol=1e-9)
    np.testing.assert_allclose(raw["gram_target"], y.T @ y, atol=1e-9)
    ref = brute_stats(x, y)
    c = s.moments(centre=True)
    np.testing.assert_allclose(c["cross"], ref["comoment"], atol=1e-9)
    assert c["sq_source"] == pytest.approx(ref["sq_source"]) and c["sq_target"] == pytest.approx(ref["sq_target"])
    np.testing.assert_allclose(c["gram_source"], ref["gram_source"], atol=1e-9)
    np.testing.assert_allclose(c["gram_target"], ref["gram_target"], atol=1e-9)
    plain = AlignmentStats.from_batch(x, y).moments(centre=False)
    assert plain["gram_source"] is None and plain["gram_target"] is None


# ------------------------------------------------------------------ Procrustes
@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3)])
def test_solve_orthogonal_matches_scipy(rng, shape):
    x, y = rng.normal(size=(50, shape[0])), rng.normal(size=(50, shape[1]))
    k = min(shape)
    # scipy needs equal widths: zero-pad the narrower side (the paper's construction)
    d = max(shape)
    ref, ref_sum = orthogonal_procrustes(np.pad(x, ((0, 0), (0, d - shape[0]))), np.pad(y, ((0, 0), (0, d - shape[1]))))
    q, s = solve_orthogonal(x.T @ y)
    assert q.shape == shape and s.shape == (k,)
    np.testing.assert_allclose(x @ q, (np.pad(x, ((0, 0), (0, d - shape[0]))) @ ref)[:, :shape[1]], atol=1e-9)
    assert float(s.sum()) == pytest.approx(ref_sum, rel=1e-12)
    assert float(s.sum()) == pytest.approx(float(np.trace(q.T @ (x.T @ y))), rel=1e-12)


def test_solve_orthogonal_refuses_non_matrices():
    with pytest.raises(ValueError, match=r"^cross-product must be 2-D, got shape \(4,\)$"):
        solve_orthogonal(np.ones(4))
    with pytest.raises(ValueError, match=r"^rotation only needs equal dimensions, got \(2, 3\)$"):
        solve_orthogonal(np.ones((2, 3)), rotation_only=True)


def kabsch_reference(x, y):
    """Best proper rotation Q (row vectors: x Q ~ y) from scipy's Kabsch, 3-D only."""
    r, _ = Rotation.align_vectors(y, x)  # y_i ~ R x_i, so Q = R^T
    return r.as_matrix().T


def test_rotation_only_flips_the_weakest_direction_like_kabsch(rng):
    x = rng.normal(size=(200, 3)) * [3.0, 2.0, 0.5]  # the weakest direction is the third
    r = random_orthogonal(rng, 3)
    r[:, 0] *= np.sign(np.linalg.det(r))  # a proper rotation, then a reflection: det -1
    y = x @ r @ np.diag([1.0, 1.0, -1.0]) + 0.05 * rng.normal(size=(200, 3))
    free, s_free = solve_orthogonal(x.T @ y)
    assert np.linalg.det(free) == pytest.approx(-1.0)
    q, s = solve_orthogonal(x.T @ y, rotation_only=True)
    assert np.linalg.det(q) == pytest.approx(1.0)
    np.testing.assert_allclose(q, kabsch_reference(x, y), atol=1e-9)
    # only the weakest singular value changes sign; the sum is the maximised trace
    np.testing.assert_allclose(s[:-1], s_free[:-1], rtol=1e-12)
    assert s[-1] == pytest.approx(-s_free[-1], rel=1e-12) and s[-1] < 0
    assert float(s.sum()) == pytest.approx(float(np.trace(q.T @ (x.T @ y))), rel=1e-12)


def test_rotation_only_keeps_a_proper_rotation(rng):
    x = rng.normal(size=(100, 3))
    y = x @ random_orthogonal(rng, 3)
    if np.linalg.det(x.T @ y) < 0:
        y[:, 0] = -y[:, 0]
    q, s = solve_orthogonal(x.T @ y, rotation_only=True)
    free, s_free = solve_orthogonal(x.T @ y)
    np.testing.assert_allclose(q, free, atol=1e-12)
    np.testing.assert_allclose(s, s_free, rtol=1e-12)
    np.testing.assert_allclose(q, kabsch_reference(x, y), atol=1e-9)


def test_rotation_only_in_2d_against_a_brute_force_angle_search(rng):
    x = rng.normal(size=(60, 2)) * [2.0, 1.0]
    y = x @ np.array([[1.0, 0.0], [0.0, -1.0]]) + 0.1 * rng.normal(size=(60, 2))
    angles = np.linspace(0, 2 * np.pi, 200_001)
    c, s = np.cos(angles), np.sin(angles)
    # ||x R - y||^2 = const - 2 trace(R^T x^T y); R = [[c, s], [-s, c]]
    m = x.T @ y
    best = angles[np.argmax(c * (m[0, 0] + m[1, 1]) + s * (m[0, 1] - m[1, 0]))]
    ref = np.array([[np.cos(best), np.sin(best)], [-np.sin(best), np.cos(best)]])
    q, _ = solve_orthogonal(m, rotation_only=True)
    np.testing.assert_allclose(q, ref, atol=1e-4)


def fit(x, y, **options):
    stats = AlignmentStats.from_batch(x, y, with_gram=True)
    return fit_transform(stats, FitOptions(**options))


def test_fit_options_as_dict():
    assert FitOptions().as_dict() == {"centre": True, "normalize": False, "scale": False, "rotation_only": False}
    assert FitOptions(False, True, True, True).as_dict() == {"centre": False, "normalize": True, "scale": True,
                                                             "rotation_only": True}


@pytest.mark.parametrize("centre", [True, False])
@pytest.mark.parametrize("ds,dt", [(4, 4), (3, 6), (6, 3)])
def test_fit_summary_and_scale_against_brute_force(rng, centre, ds, dt):
    x = rng.normal(size=(80, ds)) * 2 + 1.5
    y = np.pad(x, ((0, 0), (0, max(dt - ds, 0))))[:, :dt] @ random_orthogonal(rng, dt) * 0.7 + 0.3 * rng.normal(size=(80, dt)) - 2
    mx, my = (x.mean(0), y.mean(0)) if centre else (np.zeros(ds), np.zeros(dt))
    xc, yc = x - mx, y - my
    ref_q = solve_ref(xc, yc)
    ref_scale = float(np.trace(ref_q.T @ xc.T @ yc)) / float(((xc @ ref_q) ** 2).sum())
    t, summary = fit(x, y, centre=centre, scale=True)
    np.testing.assert_allclose(t.matrix, ref_q, atol=1e-9)
    assert t.scale == pytest.approx(ref_scale, rel=1e-9)
    np.testing.assert_allclose(t.source_mean, mx, atol=1e-12)
    np.testing.assert_allclose(t.target_mean, my, atol=1e-12)
    mapped = ref_scale * xc @ ref_q + my
    residual = float(((mapped - y) ** 2).sum())
    assert summary["anchors"] == 80
    assert summary["residual_sq"] == pytest.approx(residual, rel=1e-8)
    assert summary["relative_residual"] == pytest.approx(np.sqrt(residual / (y ** 2).sum()), rel=1e-8)
    assert summary["singular_values_sum"] == pytest.approx(float(np.linalg.svd(xc.T @ yc, compute_uv=False).sum()))
    t1, s1 = fit(x, y, centre=centre)
    assert t1.scale == 1.0 and not t1.normalize
    assert s1["residual_sq"] == pytest.approx(float(((xc @ ref_q + my - y) ** 2).sum()), rel=1e-8)


def solve_ref(xc, yc):
    ds, dt = xc.shape[1], yc.shape[1]
    d = max(ds, dt)
    q, _ = orthogonal_procrustes(np.pad(xc, ((0, 0), (0, d - ds))), np.pad(yc, ((0, 0), (0, d - dt))))
    return q[:ds, :dt]


def test_fit_without_gram_mapping_down(rng):
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 2))
    stats = AlignmentStats.from_batch(x, y)
    t, summary = fit_transform(stats, FitOptions())
    assert summary["residual_sq"] is None and summary["relative_residual"] is None
    assert t.scale == 1.0
    with pytest.raises(ValueError, match="^scale needs the source Gram matrix when mapping to fewer dimensions$"):
        fit_transform(stats, FitOptions(scale=True))
    # mapping up never needs the Gram matrix
    t_up, up = fit_transform(AlignmentStats.from_batch(y, x), FitOptions(scale=True))
    assert up["residual_sq"] is not None and t_up.scale > 0


def test_fit_normalize_is_carried_and_zero_targets_have_no_relative_residual(rng):
    x = rng.normal(size=(20, 3))
    t, summary = fit(x, np.zeros((20, 3)), centre=False, normalize=True)
    assert t.normalize and summary["relative_residual"] is None and summary["residual_sq"] == pytest.approx((x ** 2).sum())


def test_fit_needs_pairs():
    with pytest.raises(ValueError, match="^no anchor pairs to fit on$"):
        fit_transform(AlignmentStats.empty(2, 2), FitOptions())


def test_fit_means_are_copies(rng):
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    stats = AlignmentStats.from_batch(x, y)
    t, _ = fit_transform(stats, FitOptions())
    stats.update(x + 100, y - 100)
    np.testing.assert_allclose(t.source_mean, x.mean(0))
    np.testing.assert_allclose(t.target_mean, y.mean(0))


# ------------------------------------------------------------------ the map and its kernel
def formula(t, x):
    """scale * (u(x) - mu_s) @ Q + mu_t, normalised again when normalising; float64, by hand."""
    x = np.asarray(x, np.float64)
    if t.normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = t.scale * (x - t.source_mean) @ t.matrix + t.target_mean
    return out / np.linalg.norm(out, axis=1, keepdims=True) if t.normalize else out


@pytest.fixture
def affine(rng):
    q = random_orthogonal(rng, 6)[:, :4]  # 6 -> 4, orthonormal columns
    return AffineMap(q, rng.normal(size=6), rng.normal(size=4), 1.3)


def test_unit_rows(rng):
    x = rng.normal(size=(5, 3))
    got = unit_rows(x)
    assert got.dtype == np.float64 and got is not x
    np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-15)
    assert unit_rows(x.astype(np.float16)).dtype == np.float32
    assert unit_rows(x.astype(np.float32)).dtype == np.float32
    x[[1, 3]] = 0
    with pytest.raises(NonFiniteRows) as e:
        unit_rows(x, first_row=10)
    assert e.value.rows.tolist() == [11, 13]
    assert str(e.value) == "zero or non-finite vector cannot be normalised at row 11 (2 such rows in this chunk)"
    assert e.value.fix == "drop or repair those rows"


def test_affine_map_properties_and_inverse(affine, rng):
    assert (affine.d_source, affine.d_target) == (6, 4) and affine.centred
    assert not AffineMap(np.eye(2), np.zeros(2), np.zeros(2)).centred
    assert AffineMap(np.eye(2), np.zeros(2), np.ones(2)).centred
    assert AffineMap(np.eye(2), np.ones(2), np.zeros(2)).centred
    inv = affine.inverse()
    np.testing.assert_array_equal(inv.matrix, affine.matrix.T)
    np.testing.assert_array_equal(inv.source_mean, affine.target_mean)
    np.testing.assert_array_equal(inv.target_mean, affine.source_mean)
    assert inv.scale == pytest.approx(1 / 1.3) and inv.normalize is False
    assert AffineMap(np.eye(2), np.zeros(2), np.zeros(2), 2.0, True).inverse().normalize is True
    x = rng.normal(size=(9, 6))
    np.testing.assert_allclose(affine(x), formula(affine, x), atol=1e-12)
    np.testing.assert_allclose(affine(x[0]), formula(affine, x[:1]), atol=1e-12)  # one row
    y = rng.normal(size=(9, 4))
    np.testing.assert_allclose(inv(y), (y - affine.target_mean) @ affine.matrix.T / 1.3 + affine.source_mean, atol=1e-12)


@pytest.mark.parametrize("work,in_dtype,out_dtype,tol", [
    (np.float64, np.float64, np.float64, 1e-12), (np.float32, np.float32, np.float32, 1e-5),
    (np.float32, np.float16, np.float16, 2e-2), (np.float32, np.float32, np.float64, 1e-5),
    (np.float64, np.float32, np.float32, 1e-6)])
@pytest.mark.parametrize("normalize", [False, True])
def test_chunk_mapper_matches_the_formula_over_blocks(rng, affine, work, in_dtype, out_dtype, tol, normalize):
    t = AffineMap(affine.matrix, affine.source_mean, affine.target_mean, affine.scale, normalize)
    x = (rng.normal(size=(23, 6)) * 2).astype(in_dtype)
    out = np.empty((23, 4), out_dtype)
    mapper = ChunkMapper(t, work, block=5)
    assert mapper.map(x, out, first_row=100) is out
    np.testing.assert_allclose(out.astype(np.float64), formula(t, x), rtol=tol, atol=tol)


def test_chunk_mapper_without_means_has_no_bias(rng):
    q = random_orthogonal(rng, 3)
    m = ChunkMapper(AffineMap(q, np.zeros(3), np.zeros(3), 2.0), np.float64, block=4)
    assert m.bias is None and m.matrix.dtype == np.float64
    x = rng.normal(size=(10, 3))
    np.testing.assert_allclose(m.map(x, np.empty((10, 3))), 2.0 * x @ q, atol=1e-12)


def test_chunk_mapper_names_the_first_non_finite_row(rng, affine):
    x = rng.normal(size=(20, 6))
    x[[13, 16], 2] = [np.nan, np.inf]
    with pytest.raises(NonFiniteRows) as e:
        ChunkMapper(affine, np.float64, block=4).map(x, np.empty((20, 4)), first_row=1000)
    assert e.value.rows.tolist() == [1013] and str(e.value) == "NaN or Inf value at row 1013 (1 such rows in this chunk)"


def test_chunk_mapper_normalise_refuses_zero_rows(rng, affine):
    t = AffineMap(affine.matrix, affine.source_mean, affine.target_mean, 1.0, True)
    x = rng.normal(size=(12, 6))
    x[[7, 9]] = 0
    with pytest.raises(NonFiniteRows) as e:
        ChunkMapper(t, np.float32, block=8).map(x.astype(np.float32), np.empty((12, 4), np.float32), first_row=3)
    assert e.value.rows.tolist() == [10] and e.value.what == "zero or non-finite vector cannot be normalised"
    assert e.value.fix == "drop or repair those rows, or apply without normalisation"
    with pytest.raises(NonFiniteRows) as e:
        ChunkMapper(t, np.float32, block=4).map(x.astype(np.float32), np.empty((12, 4), np.float32))
    assert e.value.rows.tolist() == [7]  # sub-block 4..7 holds row 7 only; 9 is in the next one
    assert str(e.value).startswith("zero or non-finite vector cannot be normalised at row")


@pytest.mark.parametrize("work,out_dtype,wider", [(np.float32, np.float16, "float32 or float64"),
                                                  (np.float64, np.float32, "float64"),
                                                  (np.float64, np.float16, "float32 or float64")])
def test_overflow_of_a_narrower_output_is_refused(work, out_dtype, wider):
    big = 1e5 if out_dtype == np.float16 else 1e39
    import warnings
    t = AffineMap(np.eye(2), np.zeros(2), np.zeros(2), 1.0)
    x = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 1.0], [big, 1.0]], dtype=work)
    with warnings.catch_warnings(), pytest.raises(NonFiniteRows) as e:
        warnings.simplefilter("error")  # the overflow is reported as an error, never as a warning too
        ChunkMapper(t, work, block=2).map(x, np.empty((4, 2), out_dtype), first_row=50)
    assert e.value.rows.tolist() == [53]  # the second row of its sub-block
    assert e.value.what == f"a mapped value overflows {np.dtype(out_dtype)}"
    assert e.value.fix == f"write a wider type with --dtype {wider}"


def test_a_wider_output_never_trips_the_overflow_check():
    t = AffineMap(np.eye(2), np.zeros(2), np.zeros(2), 1.0)
    out = ChunkMapper(t, np.float32, block=2).map(np.array([[6e4, 1.0]], np.float32), np.empty((1, 2), np.float64))
    np.testing.assert_array_equal(out, [[6e4, 1.0]])


# ------------------------------------------------------------------ the fold
def test_prepare_rows(rng):
    x = rng.normal(size=(6, 3))
    assert prepare_rows(x, 0, "source", False) is x
    np.testing.assert_allclose(prepare_rows(x, 0, "source", True), x / np.linalg.norm(x, axis=1, keepdims=True))
    bad = x.copy()
    bad[[2, 4], 0] = np.nan
    with pytest.raises(NonFinitePair) as e:
        prepare_rows(bad, 40, "target", False)
    assert (e.value.side, e.value.index, str(e.value)) == ("target", 42, "NaN or Inf at target pair 42")
    assert prepare_rows(bad, 40, "target", False, check_finite=False) is bad
    zero = x.copy()
    zero[3] = 0
    with pytest.raises(NonFinitePair) as e:
        prepare_rows(zero, 7, "source", True)
    assert str(e.value) == "zero vector cannot be L2-normalised at source pair 10" and e.value.index == 10


def test_holdout_split_is_the_hash_below_the_fraction():
    ref = np.array([splitmix_reference(i, 9) for i in range(30, 130)])
    np.testing.assert_array_equal(HoldoutSplit(0.3, 9).held(30, 100), ref < 0.3)
    np.testing.assert_array_equal(HoldoutSplit(0.3, 9).uniform(30, 100), ref)
    assert not HoldoutSplit(0.0, 9).held(0, 50).any() and HoldoutSplit(0.0, 9).held(0, 50).shape == (50,)
    assert not HoldoutSplit(-0.5, 9).held(0, 50).any()


@pytest.mark.parametrize("chunk", [7, 200])
def test_pair_fold_fits_exactly_the_pairs_not_held_out(rng, chunk):
    n, seed, fraction = 200, 4, 0.25
    x, y = rng.normal(size=(n, 3)) + 1, rng.normal(size=(n, 2))
    u = np.array([splitmix_reference(i, seed) for i in range(n)])
    v = np.array([splitmix_reference(i, seed + 1) for i in range(n)])
    held = u < fraction
    ids = np.arange(n) * 10
    fold = PairFold(AlignmentStats.empty(3, 2, with_gram=True), split=HoldoutSplit(fraction, seed),
                    heldout=RowSample(1000), keep_heldout=0.5, control=RowSample(1000), keep_control=0.4)
    for a in range(0, n, chunk):
        assert fold.add(a, x[a:a + chunk], y[a:a + chunk], ids[a:a + chunk]) == len(x[a:a + chunk])
    assert_stats(fold.stats, brute_stats(x[~held], y[~held]))
    hx, hy, hid = fold.heldout.arrays()
    kept = held & (u < fraction * 0.5)
    np.testing.assert_array_equal(hid, ids[kept])
    np.testing.assert_array_equal(hx, x[kept])
    np.testing.assert_array_equal(hy, y[kept])
    cx, cy = fold.control.arrays()
    control = ~held & (v < 0.4)
    np.testing.assert_array_equal(cx, x[control])
    np.testing.assert_array_equal(cy, y[control])


def test_pair_fold_without_holdout_keeps_control_and_normalises(rng):
    x, y = rng.normal(size=(50, 3)) * 4, rng.normal(size=(50, 3)) * 2
    v = np.array([splitmix_reference(i, 1) for i in range(50)])
    fold = PairFold(AlignmentStats.empty(3, 3), normalize=True, control=RowSample(100), keep_control=0.5)
    fold.add(0, x[:20], y[:20])
    fold.add(20, x[20:], y[20:])
    ux, uy = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    assert_stats(fold.stats, brute_stats(ux, uy), gram=False)
    cx, _ = fold.control.arrays()
    np.testing.assert_allclose(cx, ux[v < 0.5])


@pytest.mark.parametrize("side", ["source", "target"])
def test_pair_fold_names_the_pair_index_of_a_non_finite_row(rng, side):
    n, seed = 60, 2
    held = np.array([splitmix_reference(i, seed) for i in range(n)]) < 0.3
    bad = int(np.flatnonzero(~held)[5])
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    (x if side == "source" else y)[bad, 1] = np.inf
    fold = PairFold(AlignmentStats.empty(3, 3), split=HoldoutSplit(0.3, seed), check_finite=False)
    with pytest.raises(NonFinitePair) as e:
        fold.add(0, x, y)
    assert (e.value.side, e.value.index) == (side, bad)
    fold = PairFold(AlignmentStats.empty(3, 3), check_finite=False)
    with pytest.raises(NonFinitePair) as e:
        fold.add(100, x, y)
    assert (e.value.side, e.value.index, e.value.what) == (side, 100 + bad, "NaN or Inf")


# ------------------------------------------------------------------ bound and ridge
@pytest.mark.parametrize("centre", [True, False])
def test_bound_against_brute_force(rng, centre):
    x = rng.normal(size=(30, 3)) + 2
    y = np.pad(x, ((0, 0), (0, 2))) @ random_orthogonal(rng, 5) + 0.2 * rng.normal(size=(30, 5))
    xc, yc = (x - x.mean(0), y - y.mean(0)) if centre else (x, y)
    b = procrustes_bound(AlignmentStats.from_batch(x, y, with_gram=True), centre=centre)
    eps = np.linalg.norm(xc @ xc.T - yc @ yc.T)
    q = solve_ref(xc, yc)
    achieved_sq = float(((xc @ q - yc) ** 2).sum())
    unrelated = float(((xc ** 2).sum() + (yc ** 2).sum()) / 30)
    assert (b["dimension"], b["pairs"], b["centred"]) == (5, 30, centre)
    assert b["eps"] == pytest.approx(eps, rel=1e-8)
    assert b["bound"] == pytest.approx(10 ** 0.25 * np.sqrt(eps), rel=1e-8)
    assert b["achieved"] == pytest.approx(np.sqrt(achieved_sq), rel=1e-8)
    assert b["per_sample_bound"] == pytest.approx(np.sqrt(10) * eps / 30, rel=1e-8)
    assert b["per_sample_achieved"] == pytest.approx(achieved_sq / 30, rel=1e-8)
    assert b["unrelated_per_sample"] == pytest.approx(unrelated, rel=1e-12)
    assert b["vacuous"] is bool(np.sqrt(10) * eps / 30 >= unrelated)


def test_bound_vacuous_flag_both_ways(rng):
    x = rng.normal(size=(400, 3))
    near = procrustes_bound(AlignmentStats.from_batch(x, x @ random_orthogonal(rng, 3), with_gram=True), centre=False)
    assert near["vacuous"] is False and near["eps"] < 1e-9
    far = procrustes_bound(AlignmentStats.from_batch(x, 5 * rng.normal(size=(400, 3)), with_gram=True), centre=False)
    assert far["vacuous"] is True
    with pytest.raises(ValueError, match=r"^the bound needs statistics with Gram matrices \(with_gram=True\)$"):
        procrustes_bound(AlignmentStats.from_batch(x, x), centre=True)


@pytest.mark.parametrize("alpha", [1e-3, 0.5])
def test_ridge_against_brute_force(rng, alpha):
    x, y = rng.normal(size=(50, 4)) + 3, rng.normal(size=(50, 2)) - 1
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = alpha * np.trace(xc.T @ xc) / 4
    w_ref = np.linalg.solve(xc.T @ xc + lam * np.eye(4), xc.T @ yc)
    w, b = ridge_map(AlignmentStats.from_batch(x, y, with_gram=True), alpha)
    np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, y.mean(0) - x.mean(0) @ w_ref, rtol=1e-9, atol=1e-12)


def test_ridge_on_constant_anchors_is_the_mean_shift():
    x, y = np.ones((5, 3)), np.full((5, 2), 4.0)
    w, b = ridge_map(AlignmentStats.from_batch(x, y, with_gram=True))
    np.testing.assert_array_equal(w, np.zeros((3, 2)))
    np.testing.assert_allclose(b, [4.0, 4.0])
    with pytest.raises(ValueError, match=r"^the ridge baseline needs statistics with Gram matrices \(with_gram=True\)$"):
        ridge_map(AlignmentStats.from_batch(x, y))


# ------------------------------------------------------------------ metrics
def brute_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.array([0.0 if p == 0 or q == 0 else float(u @ v) / (p * q) for u, v, p, q in zip(a, b, na, nb)])


def test_row_cosines_and_agreement(rng):
    a, b = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    a[2] = 0
    np.testing.assert_allclose(row_cosines(a, b), brute_cos(a, b), atol=1e-15)
    cos, r, yy = row_agreement(a.astype(np.float32), b.astype(np.float32))
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    assert cos.dtype == r.dtype == yy.dtype == np.float64
    # float32 rows are summed in float32: a few 1e-7, relative
    np.testing.assert_allclose(cos, brute_cos(a32, b32), atol=1e-6)
    np.testing.assert_allclose(r, ((a32 - b32) ** 2).sum(1), rtol=1e-6)
    np.testing.assert_allclose(yy, (b32 ** 2).sum(1), rtol=1e-6)
    # float64 rows keep float64 precision
    cos, r, yy = row_agreement(a, b)
    np.testing.assert_allclose(cos, brute_cos(a, b), atol=1e-14)
    np.testing.assert_allclose(r, ((a - b) ** 2).sum(1), rtol=1e-13)
    np.testing.assert_allclose(yy, (b ** 2).sum(1), rtol=1e-13)
    # nearly equal rows: the residual comes from the difference, not |m|^2 + |y|^2 - 2 m.y
    m = rng.normal(size=(6, 384)).astype(np.float32)
    near = m + np.float32(1e-4) * rng.normal(size=m.shape).astype(np.float32)
    exact = ((m.astype(np.float64) - near.astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(row_agreement(m, near)[1], exact, rtol=1e-5)
    same = rng.normal(size=(3, 4))
    np.testing.assert_array_equal(row_agreement(same, same)[1] >= 0, True)  # no negative round-off


def float64_agreement(m, y):
    m, y = m.astype(np.float64), y.astype(np.float64)
    return 1 - (m * y).sum(1) / np.sqrt((m * m).sum(1) * (y * y).sum(1)), ((m - y) ** 2).sum(1), (y * y).sum(1)


def test_row_agreement_keeps_one_minus_cosine_for_nearly_equal_rows(rng):
    # large common offset, tiny difference: 1 - cos ~ 2e-8, below float32's resolution of cos
    y = (50 + rng.normal(size=(200, 1024))).astype(np.float32)
    m = (y + 0.01 * rng.normal(size=y.shape)).astype(np.float32)
    cos, r, yy = row_agreement(m, y)
    one_minus, r64, yy64 = float64_agreement(m, y)
    np.testing.assert_allclose(1 - cos, one_minus, rtol=1e-3)
    np.testing.assert_allclose(r, r64, rtol=1e-5)
    np.testing.assert_allclose(yy, yy64, rtol=1e-5)


@pytest.mark.parametrize("scale", [1e20, 1e-21, 5e37])
def test_row_agreement_of_extreme_float32_rows_falls_back_to_float64(rng, scale):
    y = rng.normal(size=(50, 64))
    m = y + 0.3 * rng.normal(size=y.shape)
    y32, m32 = (y * scale).astype(np.float32), (m * scale).astype(np.float32)
    cos, r, yy = row_agreement(m32, y32)
    one_minus, r64, yy64 = float64_agreement(m32, y32)
    assert np.isfinite(cos).all() and np.isfinite(r).all() and np.isfinite(yy).all()
    np.testing.assert_allclose(1 - cos, one_minus, rtol=1e-9)
    np.testing.assert_allclose(r, r64, rtol=1e-9)


def test_row_agreement_of_zero_rows_is_a_zero_cosine():
    m = np.zeros((2, 3), np.float32)
    y = np.array([[1, 2, 3], [0, 0, 0]], np.float32)
    cos, r, yy = row_agreement(m, y)
    np.testing.assert_array_equal(cos, [0.0, 0.0])
    np.testing.assert_array_equal(r, [14.0, 0.0])
    assert len(row_agreement(np.empty((0, 3), np.float32), np.empty((0, 3), np.float32))[0]) == 0


def brute_ranks(q, c):
    s = np.array([[float(u @ v) for v in c] for u in q]) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(c, axis=1))
    return np.array([1 + int((s[i] > s[i, i] + 1e-6).sum()) for i in range(len(q))])


def test_ranks_and_retrieval_against_brute_force(rng):
    c = rng.normal(size=(40, 6))
    q = c + rng.normal(size=(40, 6)) * 1.2
    ranks = ranks_of_pairs(q, c, block=7)
    np.testing.assert_array_equal(ranks, brute_ranks(q, c))
    assert ranks.min() == 1 and ranks.max() > 10
    r = retrieval(q, c, block=9)
    assert r == {"top1": pytest.approx(np.mean(ranks <= 1)), "top10": pytest.approx(np.mean(ranks <= 10)),
                 "mrr": pytest.approx(np.mean(1.0 / ranks)), "candidates": 40}
    assert isinstance(r["candidates"], int)


def brute_knn(x, k):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in s]


def test_knn_indices_and_overlap_against_brute_force(rng):
    a = rng.normal(size=(30, 4))
    b = a + rng.normal(size=(30, 4)) * 0.8
    got = knn_indices(a, k=5, block=4)
    assert got.shape == (30, 5) and [set(r) for r in got.tolist()] == brute_knn(a, 5)
    assert knn_indices(a[:4], k=10).shape == (4, 3)  # k clipped to n - 1
    ra, rb = brute_knn(a, 5), brute_knn(b, 5)
    expected = sum(len(p & q) for p, q in zip(ra, rb)) / (5 * 30)
    assert knn_overlap(a, b, k=5, block=4) == pytest.approx(expected)
    assert knn_overlap(a, b, k=5, b_neighbours=knn_indices(b, 5)) == pytest.approx(expected)
    assert knn_overlap(a, a, k=5) == 1.0
    assert knn_overlap(a[:3], b[:3], k=10) == pytest.approx(
        sum(len(p & q) for p, q in zip(brute_knn(a[:3], 2), brute_knn(b[:3], 2))) / 6)
    assert np.isnan(knn_overlap(a[:1], b[:1]))


def test_cosine_histogram_against_numpy(rng):
    cos = np.clip(rng.normal(0.4, 0.3, size=5000), -1, 1)
    cos[:3] = [-1.0, 1.0, 1.5]  # 1.5 is clipped to 1
    h = CosineHistogram(bins=2000)
    h.add(cos[:1000])
    other = CosineHistogram(bins=2000)
    other.add(cos[1000:])
    assert h.merge(other) is h
    clipped = np.clip(cos, -1, 1)
    assert h.n == 5000 and h.total == pytest.approx(clipped.sum())
    assert h.counts[0] >= 1 and h.counts[-1] >= 2  # both ends land in a bin
    np.testing.assert_array_equal(h.counts, np.histogram(clipped, bins=2000, range=(-1, 1))[0])
    for q in (0.05, 0.5, 0.95):
        assert abs(h.quantile(q) - np.quantile(clipped, q)) <= 2 / 2000
    s = h.summary()
    assert s["mean"] == pytest.approx(clipped.mean()) and s["count"] == 5000
    assert abs(s["p5"] - np.quantile(clipped, 0.05)) <= 1e-3 and abs(s["median"] - np.median(clipped)) <= 1e-3
    empty = CosineHistogram().summary()
    assert np.isnan(empty["mean"]) and np.isnan(empty["median"]) and empty["count"] == 0
    assert len(CosineHistogram().counts) == 20000


def test_histogram_quantile_picks_the_bin_centre():
    h = CosineHistogram(bins=4)  # bins [-1,-.5) [-.5,0) [0,.5) [.5,1]
    h.add(np.array([-0.9, 0.1, 0.2, 0.7]))
    assert h.counts.tolist() == [1, 0, 2, 1]
    assert h.quantile(0.25) == -0.75 and h.quantile(0.5) == 0.25 and h.quantile(0.75) == 0.25
    assert h.quantile(1.0) == 0.75 and h.quantile(0.26) == 0.25


def test_cosine_summary(rng):
    cos = rng.uniform(-1, 1, 101)
    assert cosine_summary(cos) == {"mean": pytest.approx(cos.mean()), "p5": pytest.approx(np.percentile(cos, 5)),
                                   "median": pytest.approx(np.median(cos)), "count": 101}


def test_agreement_streams_and_merges(rng):
    m, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    a, b = Agreement(), Agreement()
    cos, r = a.add(m[:25], y[:25])
    np.testing.assert_allclose(cos, brute_cos(m[:25], y[:25]), atol=1e-12)
    np.testing.assert_allclose(r, ((m[:25] - y[:25]) ** 2).sum(1))
    b.add(m[25:], y[25:])
    assert a.merge(b) is a
    s = a.summary()
    assert s["relative_residual"] == pytest.approx(np.linalg.norm(m - y) / np.linalg.norm(y), rel=1e-12)
    assert s["cosine"]["count"] == 60 and s["cosine"]["mean"] == pytest.approx(brute_cos(m, y).mean())
    assert Agreement().summary()["relative_residual"] is None


# ------------------------------------------------------------------ second round: what survived the first
def test_splitmix_never_warns_on_its_intended_overflow():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # uint64 products wrap by design; a warning would be noise
        assert uniform_by_index(3, 4, 987654321).tolist() == [splitmix_reference(i, 987654321) for i in range(3, 7)]


def test_holdout_masks_are_boolean():
    assert HoldoutSplit(0.0).held(0, 4).dtype == np.bool_ and HoldoutSplit(0.5).held(0, 4).dtype == np.bool_


def test_bound_on_all_zero_anchors_is_vacuous_and_achieved_stays_small(rng):
    z = procrustes_bound(AlignmentStats.from_batch(np.zeros((4, 2)), np.zeros((4, 2)), with_gram=True), centre=False)
    assert z["vacuous"] is True and z["per_sample_bound"] == z["unrelated_per_sample"] == 0.0  # 0 >= 0
    x = rng.normal(size=(50, 3)) * 0.1
    exact = procrustes_bound(AlignmentStats.from_batch(x, x @ random_orthogonal(rng, 3), with_gram=True), centre=False)
    assert exact["achieved"] < 1e-6 and exact["per_sample_achieved"] < 1e-12


def test_ridge_default_alpha(rng):
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = 1e-3 * np.trace(xc.T @ xc) / 3
    w, _ = ridge_map(AlignmentStats.from_batch(x, y, with_gram=True))
    np.testing.assert_allclose(w, np.linalg.solve(xc.T @ xc + lam * np.eye(3), xc.T @ yc), rtol=1e-10)


def test_row_cosines_are_float64_whatever_the_input(rng):
    a, b = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    got = row_cosines(a, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, brute_cos(a, b), rtol=0, atol=1e-14)  # float32 arithmetic is ~1e-7 off
    np.testing.assert_allclose(row_cosines(b, a), brute_cos(b, a), rtol=0, atol=1e-14)


def test_ranks_are_integers_with_every_row_set(rng):
    c = rng.normal(size=(16, 4))
    q = c + rng.normal(size=(16, 4))
    junk = np.full(16, -7, np.int64)  # leave a recognisable pattern where np.empty may land
    del junk
    ranks = ranks_of_pairs(q, c, block=16)
    assert ranks.dtype == np.int64 and ranks.tolist() == brute_ranks(q, c).tolist()
    assert ranks_of_pairs(q, c).tolist() == brute_ranks(q, c).tolist()


def test_top10_counts_rank_ten_but_not_eleven():
    # 40 unit candidates at angles j/100; query 0 sits where exactly 10 others beat its own pair
    angles = np.arange(40) / 100
    c = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    q = c.copy()
    q[0] = [np.cos(0.055), np.sin(0.055)]
    assert brute_ranks(q, c)[0] == 11
    r = retrieval(q, c)
    assert r["top10"] == 39 / 40 and r["top1"] == 39 / 40 and r["mrr"] == pytest.approx((39 + 1 / 11) / 40)
    q[0] = [np.cos(0.05), np.sin(0.05)]  # now 9 beat it: rank 10 counts
    assert brute_ranks(q, c)[0] == 10 and retrieval(q, c)["top10"] == 1.0


def test_knn_defaults_dtype_and_the_k_th_neighbour(rng):
    a = rng.normal(size=(300, 6))
    got = knn_indices(a)
    assert got.shape == (300, 10) and got.dtype == np.int64
    assert [set(r) for r in got.tolist()] == brute_knn(a, 10)
    for k in (3, 7):
        assert [set(r) for r in knn_indices(a, k=k, block=64).tolist()] == brute_knn(a, k)
    b = a + rng.normal(size=(300, 6))
    assert knn_overlap(a, b) == pytest.approx(knn_overlap(a, b, k=10))
    assert knn_overlap(a, b) == pytest.approx(
        sum(len(p & q) for p, q in zip(brute_knn(a, 10), brute_knn(b, 10))) / 3000)
    two = rng.normal(size=(2, 3))
    assert knn_overlap(two, two + 1e-3) == 1.0  # k clipped to 1: each row's only neighbour is the other
    three = rng.normal(size=(3, 3))
    assert knn_overlap(three, three) == 1.0  # k = 2


def test_histogram_and_agreement_accumulate_over_several_adds(rng):
    h = CosineHistogram()
    assert h.counts.dtype == np.int64
    parts = [rng.uniform(-1, 1, 300).astype(np.float32) for _ in range(3)]
    parts[1][:2] = [-1.5, 1.5]  # clipped into the end bins
    for p in parts:
        h.add(p)
    allc = np.clip(np.concatenate(parts).astype(np.float64), -1, 1)
    assert h.n == 900 and h.counts.sum() == 900 and h.counts[0] >= 1 and h.counts[-1] >= 1
    assert h.total == pytest.approx(float(allc.sum()), rel=0, abs=1e-12)  # summed in float64
    np.testing.assert_array_equal(h.counts, np.histogram(allc, bins=20000, range=(-1, 1))[0])
    a = Agreement()
    m, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    a.add(m[:15], y[:15])
    a.add(m[15:], y[15:])
    assert a.res_sq == pytest.approx(((m - y) ** 2).sum()) and a.y_sq == pytest.approx((y ** 2).sum())
    assert a.summary()["cosine"]["count"] == 40


def test_merging_a_single_pair(rng):
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 3))
    s = AlignmentStats.from_batch(x[:4], y[:4], with_gram=True)
    s.merge(AlignmentStats.from_batch(x[4:], y[4:], with_gram=True))
    assert_stats(s, brute_stats(x, y))


@pytest.mark.parametrize("with_gram", [False, True])
@pytest.mark.parametrize("wide", ["x", "y"])
def test_float32_values_whose_products_overflow_are_redone_in_float64(rng, with_gram, wide):
    # finite float32 values near 1e20: their squares overflow float32 but not float64
    x = (rng.normal(size=(20, 3)) * 1e20).astype(np.float32)
    y = rng.normal(size=(20, 2)).astype(np.float32)
    if wide == "y":
        x, y = y, x
    got = AlignmentStats.from_batch(x, y, with_gram=with_gram, block=8)
    ref = brute_stats(x, y)
    assert got.n == 20 and np.isfinite(got.comoment).all() and np.isfinite(got.sq_source + got.sq_target)
    assert_stats(got, ref, rtol=1e-6, atol=0, gram=with_gram)
    x64 = AlignmentStats.from_batch(x.astype(np.float64), y, with_gram=with_gram)  # one side float64 already
    assert_stats(x64, ref, rtol=1e-6, atol=0, gram=with_gram)


@pytest.mark.parametrize("value, overflows", [(65519.0, False), (65520.0, True), (-65520.0, True), (-65504.0, False)])
def test_narrowing_to_float16_fails_exactly_from_the_rounding_limit(value, overflows):
    affine = AffineMap(np.eye(2), np.zeros(2), np.zeros(2))
    x = np.array([[1.0, 2.0], [value, 0.5]], np.float32)
    out = np.empty((2, 2), np.float16)
    if overflows:
        with pytest.raises(NonFiniteRows, match="overflows float16 at row 1"):
            ChunkMapper(affine, np.float32).map(x, out)
    else:
        ChunkMapper(affine, np.float32).map(x, out)
        assert np.isfinite(out).all() and abs(float(out[1, 0])) >= 65504


# ------------------------------------------------------------------ GCV ridge and pieces
from procalign.math.ridge import GCV_ALPHAS, gcv_ridge  # noqa: E402


def gcv_reference(x, y, intercept, alphas):
    """GCV by the explicit hat matrix H = X (X^T X + lam I)^-1 X^T on the (centred) rows."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if intercept:
        x, y = x - x.mean(0), y - y.mean(0)
    n, d = x.shape
    g = x.T @ x
    scores, dfs, lams = [], [], []
    for alpha in alphas:
        lam = max(alpha * np.trace(g) / d, np.finfo(float).tiny ** 0.5)
        h = x @ np.linalg.solve(g + lam * np.eye(d), x.T)
        rss = float(((y - h @ y) ** 2).sum())
        df = float(np.trace(h)) + intercept
        scores.append(rss / n / (1 - df / n) ** 2 if df < n else np.inf)
        dfs.append(df)
        lams.append(lam)
    best = int(np.argmin(scores))
    w = np.linalg.solve(g + lams[best] * np.eye(d), x.T @ y)
    return w, {"alpha": float(alphas[best]), "lambda": lams[best], "gcv": scores[best],
               "degrees_of_freedom": dfs[best], "alphas_tried": [float(alphas[0]), float(alphas[-1])]}


def gcv_case(rng, n, d_s, d_t, noise, scale):
    x = rng.normal(size=(n, d_s)) * scale * np.linspace(0.05, 1.0, d_s)  # small and spread eigenvalues
    y = x @ rng.normal(size=(d_s, d_t)) + noise * rng.normal(size=(n, d_t)) + 0.3
    return x, y


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("noise,scale", [(0.02, 0.05), (0.5, 1.0), (3.0, 0.3)])
def test_gcv_ridge_against_the_hat_matrix(rng, intercept, noise, scale):
    x, y = gcv_case(rng, 30, 6, 4, noise, scale)
    alphas = np.array([1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0])
    xs, ys = (x - x.mean(0), y - y.mean(0)) if intercept else (x, y)
    w_ref, info_ref = gcv_reference(x, y, intercept, alphas)
    with np.errstate(all="raise"):
        w, info = gcv_ridge(xs.T @ xs, xs.T @ ys, float((ys ** 2).sum()), len(x), intercept, alphas)
    assert info.keys() == info_ref.keys()
    for key in ("alpha", "lambda", "gcv", "degrees_of_freedom"):
        assert info[key] == pytest.approx(info_ref[key], rel=1e-9), key
    assert info["alphas_tried"] == info_ref["alphas_tried"] == [1e-5, 10.0]
    np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-12)


def test_gcv_ridge_default_alphas_and_a_float32_gram(rng):
    x, y = gcv_case(rng, 40, 5, 3, 0.4, 0.1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    w_ref, info_ref = gcv_reference(x, y, True, GCV_ALPHAS)
    gram = (xc.T @ xc).astype(np.float32)  # decomposed in float64 all the same
    w, info = gcv_ridge(gram, xc.T @ yc, float((yc ** 2).sum()), len(x), True)
    ref32, info32 = gcv_reference(x, y, True, GCV_ALPHAS)
    assert info["alphas_tried"] == [1e-6, 10.0] and len(GCV_ALPHAS) == 29
    assert info["alpha"] == info_ref["alpha"] and info["gcv"] == pytest.approx(info_ref["gcv"], rel=1e-5)
    np.testing.assert_allclose(w, w_ref, rtol=1e-4)
    e = np.linalg.eigvalsh(gram.astype(np.float64))
    lam = info["lambda"]
    assert info["degrees_of_freedom"] == pytest.approx(float((e / (e + lam)).sum() + 1), rel=1e-12)


def test_gcv_ridge_of_a_single_pair_is_quiet_and_the_mean_shift():
    # one centred pair: G = C = 0 and df = n = 1, so no alpha has a GCV score (0/0 is not one)
    with np.errstate(all="raise"):
        w, info = gcv_ridge(np.zeros((2, 2)), np.zeros((2, 3)), 0.0, 1, True, np.array([1e-2, 1.0]))
    assert info["alpha"] == 1.0 and info["degrees_of_freedom"] == 1.0 and info["gcv"] == np.inf
    np.testing.assert_array_equal(w, np.zeros((2, 3)))


def in_pieces(bounds):
    calls = []

    def run(fn, n):
        calls.append(n)
        edges = [0, *bounds, n]
        return [fn(a, b) for a, b in zip(edges[:-1], edges[1:])]
    return run, calls


@pytest.mark.parametrize("with_gram", [False, True])
def test_from_pieces_merges_the_pieces_in_order(rng, with_gram):
    x, y = rng.normal(size=(23, 4)) + 2.0, rng.normal(size=(23, 3)) - 1.0
    run, calls = in_pieces([5, 6, 17])
    got = AlignmentStats.from_pieces(x, y, with_gram, run)
    assert calls == [23] and got.n == 23 and got.with_gram is with_gram
    ref = brute_stats(x, y)
    for key in ("mean_source", "mean_target", "comoment", "sq_source", "sq_target"):
        np.testing.assert_allclose(getattr(got, key), ref[key], rtol=1e-12, atol=1e-12)
    if with_gram:
        xc, yc = x - x.mean(0), y - y.mean(0)
        np.testing.assert_allclose(got.gram_source, xc.T @ xc, rtol=1e-12)
        np.testing.assert_allclose(got.gram_target, yc.T @ yc, rtol=1e-12)
    else:
        assert got.gram_source is None and got.gram_target is None


def test_from_pieces_of_no_rows_is_empty():
    got = AlignmentStats.from_pieces(np.zeros((0, 4)), np.zeros((0, 2)), True, in_pieces([])[0])
    assert got.n == 0 and got.comoment.shape == (4, 2) and got.gram_source.shape == (4, 4)
    assert got.gram_target.shape == (2, 2) and got.mean_target.shape == (2,)


@pytest.mark.parametrize("side", ["source", "target"])
def test_from_pieces_reports_non_finite_rows_by_their_index_in_the_whole(rng, side):
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    (x if side == "source" else y)[[12, 15]] = np.nan
    with pytest.raises(NonFiniteInput) as e:
        AlignmentStats.from_pieces(x, y, False, in_pieces([10])[0])
    found = e.value.source_rows if side == "source" else e.value.target_rows
    other = e.value.target_rows if side == "source" else e.value.source_rows
    assert found.tolist() == [12, 15] and other.tolist() == []
    assert str(e.value) == f"NaN or Inf at {side} row 12 of the batch"


def test_from_batch_shifts_each_column_by_its_own_mean(rng):
    # float32 columns far from zero in opposite directions: a single shift for all columns
    # leaves values of 3e4 whose squares cancel catastrophically in float32
    x = (rng.normal(size=(300, 3)) * 0.01).astype(np.float32)
    y = (rng.normal(size=(300, 2)) * 0.01 + [3e4, -3e4]).astype(np.float32)
    got, ref = AlignmentStats.from_batch(x, y, with_gram=True), brute_stats(x, y)
    assert got.sq_target == pytest.approx(ref["sq_target"], rel=1e-3)
    np.testing.assert_allclose(got.comoment, ref["comoment"], rtol=1e-3, atol=1e-6)
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(got.gram_target, (y64 - y64.mean(0)).T @ (y64 - y64.mean(0)), rtol=1e-3)


@pytest.mark.parametrize("wide", ["source", "target", "both"])
def test_float32_overflow_is_redone_in_float64_without_warnings(rng, wide):
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    x32 = (x * 1e20).astype(np.float32) if wide != "target" else x
    y32 = (y * 1e20).astype(np.float32) if wide != "source" else y
    with np.errstate(all="raise"):
        got = AlignmentStats.from_batch(x32, y32, with_gram=True, block=16)
    ref = brute_stats(x32, y32)
    np.testing.assert_allclose(got.comoment, ref["comoment"], rtol=1e-9)
    assert got.sq_source == pytest.approx(ref["sq_source"], rel=1e-9)
    assert np.isfinite(got.gram_source).all() and np.isfinite(got.gram_target).all()


def test_float64_overflow_gives_non_finite_statistics(rng):
    x = rng.normal(size=(20, 3)) * 1e200
    with np.errstate(all="ignore"):  # float64 has no wider type to redo the chunk in
        got = AlignmentStats.from_batch(x, rng.normal(size=(20, 2)) * 1e200)
    assert not np.isfinite(got.comoment).all() and got.n == 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_rows_raise_without_warnings(rng, dtype):
    x = rng.normal(size=(10, 3)).astype(dtype)
    x[4, 1] = np.inf
    x[7, 0] = -np.inf
    with np.errstate(all="raise"), pytest.raises(NonFiniteInput) as e:
        AlignmentStats.from_batch(x, rng.normal(size=(10, 2)).astype(dtype), with_gram=True, block=4)
    assert e.value.source_rows.tolist() == [4, 7]


@pytest.mark.parametrize("wide_side", ["source", "target"])
def test_mixed_precision_products_are_taken_in_float64(rng, wide_side):
    # float32 rows with exactly zero column means (so their shifted copies are exact) against
    # float64 rows: the product is float64, not rounded to float32
    half = rng.integers(-1000, 1000, size=(8, 3)).astype(np.float32)
    narrow, wide = np.vstack([half, -half]), rng.normal(size=(16, 4))
    x, y = (wide, narrow) if wide_side == "source" else (narrow, wide)
    got, ref = AlignmentStats.from_batch(x, y), brute_stats(x, y)
    np.testing.assert_allclose(got.comoment, ref["comoment"], rtol=1e-12, atol=1e-9)
