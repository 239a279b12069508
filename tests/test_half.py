"""math/half.py: float16 <-> float32 by bit arithmetic, bit for bit numpy's casts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from procalign.math import half
from procalign.math.affine import AffineMap, ChunkMapper, NonFiniteRows


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


def numpy_narrow(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(np.float16)


def narrow(a: np.ndarray, *scratch) -> np.ndarray:
    with np.errstate(over="ignore"):  # overflow to Inf warns, as numpy's cast does
        return half.narrow(a, np.empty(a.shape, np.float16), *scratch)


def test_every_half_and_every_rounding_case_match_numpy():
    # every half widened; every half's float32 value, its neighbours and the tie to the next
    # half narrowed (the check `exact()` samples once per process)
    assert half.matches_numpy(stride=1)
    assert half.exact()


@pytest.mark.parametrize("broken", ["narrow", "widen"])
def test_the_self_check_catches_a_conversion_that_flushes_subnormals(monkeypatch, broken):
    # what a process whose CPU flushes subnormals to zero would give: the check must say no
    real = getattr(half, broken)

    def flushing(src, out, *scratch):
        real(src, out, *scratch)
        out[np.abs(out.astype(np.float32)) < 2.0 ** -14] = 0
        return out
    monkeypatch.setattr(half, broken, flushing)
    assert not half.matches_numpy(stride=61)


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=300), scale=st.sampled_from([1, 2**-20, 2**-13]))
def test_narrow_equals_numpy_on_any_bits(words, scale):
    # any float32: NaN with payloads, infinities, overflow, subnormal halves, negative zero
    a = np.array(words, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.where(np.isfinite(a), a * np.float32(scale), a).astype(np.float32)
    got = narrow(a)
    np.testing.assert_array_equal(bits(got), bits(numpy_narrow(a)))


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.integers(0, 2**16 - 1), min_size=0, max_size=300))
def test_widen_equals_numpy_on_any_bits(words):
    h = np.array(words, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = half.widen(h, np.empty(h.shape, np.float32))
    np.testing.assert_array_equal(bits(got), bits(h.astype(np.float32)))


@pytest.mark.parametrize("where", [0, half.PIECE - 1, half.PIECE, 2 * half.PIECE + 5])
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf, 70000.0, 65520.0, 1e-9, 0.0, -0.0])
def test_a_special_value_in_any_piece(rng, where, special):
    # pieces are converted separately; a special value falls back for its own piece only
    a = (rng.normal(size=2 * half.PIECE + 17) * 0.05).astype(np.float32)
    a[where] = special
    got = narrow(a)
    np.testing.assert_array_equal(bits(got), bits(numpy_narrow(a)))
    h = numpy_narrow(a)
    np.testing.assert_array_equal(bits(half.widen(h, np.empty(h.shape, np.float32))), bits(h.astype(np.float32)))


def test_two_dimensional_arrays_and_reused_scratch(rng):
    a = (rng.normal(size=(300, 384)) * 3).astype(np.float32)
    scratch = (np.empty(half.PIECE, np.uint32), np.empty(half.PIECE, np.uint32))
    out = np.empty(a.shape, np.float16)
    for _ in range(2):
        assert half.narrow(a, out, scratch) is out
        np.testing.assert_array_equal(bits(out), bits(numpy_narrow(a)))
    wide = np.empty(a.shape, np.float32)
    assert half.widen(out, wide) is wide
    np.testing.assert_array_equal(wide, out.astype(np.float32))


def test_the_mapper_gives_numpys_bits_with_or_without_half(rng, monkeypatch):
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    affine = AffineMap(q, rng.normal(size=24), rng.normal(size=24), 1.5)
    x = (rng.normal(size=(1000, 24)) * 4).astype(np.float16)
    x[3, 5] = np.float16(6e-8)  # a subnormal half
    fast = ChunkMapper(affine, np.float32, block=256).map(x, np.empty((1000, 24), np.float16))
    monkeypatch.setattr(half, "exact", lambda: False)  # numpy's casts, as where `half` is not exact
    plain = ChunkMapper(affine, np.float32, block=256).map(x, np.empty((1000, 24), np.float16))
    np.testing.assert_array_equal(bits(fast), bits(plain))


def test_the_mapper_still_reports_float16_overflow(rng):
    affine = AffineMap(np.eye(4), np.zeros(4), np.zeros(4), 1.0)
    x = np.ones((10, 4), np.float32)
    x[6, 1] = 1e6  # fine in float32, infinite in float16
    with pytest.raises(NonFiniteRows) as e:
        ChunkMapper(affine, np.float32, block=4).map(x, np.empty((10, 4), np.float16))
    assert e.value.rows.tolist() == [6] and "overflows float16" in str(e.value)


def test_the_mapper_rejects_a_nan_in_float16_input(rng):
    affine = AffineMap(np.eye(4), np.zeros(4), np.zeros(4), 1.0)
    x = np.ones((10, 4), np.float16)
    x[8, 2] = np.nan
    with pytest.raises(NonFiniteRows) as e:
        ChunkMapper(affine, np.float32, block=4).map(x, np.empty((10, 4), np.float16))
    assert e.value.rows.tolist() == [8]
