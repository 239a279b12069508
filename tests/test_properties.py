"""Property tests: reader/writer round trips and fit invariants, over generated cases."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from procalign import AlignmentStats, ProcrustesAligner
from procalign.formats import SinkSpec, open_reader, parse_location, sink_class

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from(["float16", "float32", "float64"])


@SETTINGS
@given(ext=st.sampled_from(["npy", "parquet", "h5"]), dtype=DTYPES, rows=st.integers(0, 40),
       dim=st.integers(1, 6), write_chunk=st.integers(1, 17), read_chunk=st.integers(1, 23),
       seed=st.integers(0, 2**31))
def test_writer_reader_round_trip(tmp_path_factory, ext, dtype, rows, dim, write_chunk, read_chunk, seed):
    path = tmp_path_factory.mktemp("rt") / f"x.{ext}"
    data = np.random.default_rng(seed).normal(size=(rows, dim)).astype(dtype)
    loc = parse_location(str(path))
    w = sink_class(loc)(path, SinkSpec(dim, np.dtype(dtype), rows))
    for a in range(0, rows, write_chunk):
        w.write(data[a:a + write_chunk])
    w.finish()
    with open_reader(loc) as r:
        assert (r.rows, r.dtype) == (rows, np.dtype(dtype))
        if rows:
            assert r.dim == dim
        got = [b.embeddings.copy() for b in r.batches(read_chunk)]
        assert sum(len(g) for g in got) == rows
        if rows:
            np.testing.assert_array_equal(np.concatenate(got), data)
            idx = np.unique(np.random.default_rng(seed).integers(0, rows, size=5))
            np.testing.assert_array_equal(r.take(idx), data[idx])


def _pairs(seed, n, ds, dt, offset):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, ds)) + offset, rng.normal(size=(n, dt)) - offset


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(2, 60), ds=st.integers(1, 7), dt=st.integers(1, 7),
       offset=st.floats(-20, 20), centre=st.booleans())
def test_map_has_orthonormal_rows_or_columns(seed, n, ds, dt, offset, centre):
    x, y = _pairs(seed, n, ds, dt, offset)
    m = ProcrustesAligner(centre=centre).fit(x, y).transform_.matrix
    k = min(ds, dt)
    np.testing.assert_allclose(m @ m.T if ds <= dt else m.T @ m, np.eye(k), atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(2, 60), ds=st.integers(1, 6), extra=st.integers(0, 4),
       offset=st.floats(-20, 20))
def test_inverse_round_trip_when_mapping_up(seed, n, ds, extra, offset):
    x, y = _pairs(seed, n, ds, ds + extra, offset)
    a = ProcrustesAligner().fit(x, y)
    np.testing.assert_allclose(a.inverse_transform(a.transform(x)), x, atol=1e-8 * (1 + abs(offset)))


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(3, 80), d=st.integers(1, 6), chunk=st.integers(1, 80),
       offset=st.floats(-50, 50))
def test_chunk_size_invariance(seed, n, d, chunk, offset):
    x, y = _pairs(seed, n, d, d, offset)
    y = y + x @ np.eye(d)  # some signal, so the map is well determined
    ref = ProcrustesAligner(batch_size=n).fit(x, y)
    got = ProcrustesAligner(batch_size=chunk).fit(x, y)
    np.testing.assert_allclose(got.transform(x), ref.transform(x), atol=1e-7 * (1 + abs(offset)))


@SETTINGS
@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(0, 50), max_size=5), ds=st.integers(1, 5),
       dt=st.integers(1, 5), offset=st.floats(-30, 30))
def test_merge_of_partial_statistics_equals_one_pass(seed, cuts, ds, dt, offset):
    x, y = _pairs(seed, 50, ds, dt, offset)
    bounds = [0, *sorted(cuts), 50]
    merged = AlignmentStats.empty(ds, dt, with_gram=True)
    for a, b in zip(bounds, bounds[1:]):
        merged.merge(AlignmentStats.from_batch(x[a:b], y[a:b], with_gram=True))
    whole = AlignmentStats.from_batch(x, y, with_gram=True)
    assert merged.n == whole.n
    scale = 1 + offset ** 2
    for name in ("mean_source", "mean_target", "comoment", "gram_source", "gram_target"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), atol=1e-8 * scale)
    assert merged.sq_source == pytest.approx(whole.sq_source, rel=1e-9, abs=1e-8 * scale)
