"""float16 <-> float32 conversions by integer arithmetic on the bits, exactly as numpy casts.

numpy converts float16 one value at a time in scalar code: per million 384-d rows, 0.63 s of CPU
to widen and 0.95 s to narrow, as much as the product they surround. Here each conversion is a
few vectorised integer ufuncs over pieces small enough to stay in cache:

* widening: the half's bits, sign-extended and shifted into a float32's places, times 2^112
  (127 - 15, the difference of the exponent biases). That is exact for normal and subnormal
  halves alike; infinities and NaN (exponent 31) come out at 65,536 or more and their piece is
  redone by numpy;
* narrowing: round to nearest even on the 13 dropped bits (add 0xFFF plus the lowest kept bit),
  move the exponent bias, shift down, put the sign back. Values whose half is subnormal or zero
  (below 2^-14) are converted by numpy one by one; a piece with a value of 65,520 or more (it
  rounds to infinity), Inf or NaN, is narrowed by numpy whole.

Results are bit for bit numpy's (the tests check every half, `matches_numpy`). `exact()` checks a
sample once per process, and the callers fall back to numpy's casts if it fails (a library that
set the CPU to flush subnormals to zero, say).
"""
from __future__ import annotations

import functools

import numpy as np

PIECE = 1 << 16               # values per piece: 256 KB of float32, in cache with its scratch
SCALE = np.float32(2.0 ** 112)
KEEP = np.int32(-0x70002000)  # 0x8FFFE000: the sign and the 15 bits of exponent and mantissa
ABS = np.uint32(0x7FFFFFFF)
SMALLEST_NORMAL = np.uint32(113 << 23)   # 2^-14: below it the half is subnormal or zero
ROUNDS_TO_INF = np.uint32(0x477FF000)    # 65,520: from here up the half is infinite
REBIAS = np.uint32((0xFFF - (112 << 23)) & 0xFFFFFFFF)


def widen(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = src`` from float16 to float32, both C-contiguous and of the same shape."""
    halves = src.reshape(-1).view(np.int16)
    words = out.reshape(-1).view(np.int32)
    for a in range(0, halves.size, PIECE):
        h, w = halves[a:a + PIECE], words[a:a + PIECE]
        np.left_shift(h, 13, out=w, dtype=np.int32)
        np.bitwise_and(w, KEEP, out=w)
        f = w.view(np.float32)
        np.multiply(f, SCALE, out=f)
        if f.max() >= 65536 or f.min() <= -65536:  # an Inf or NaN half
            np.copyto(f, h.view(np.float16))
    return out


def narrow(src: np.ndarray, out: np.ndarray,
           scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``out[...] = src`` from float32 to float16 (round to nearest even), both C-contiguous
    and of the same shape. ``scratch``: two uint32 arrays of `PIECE` values, reused if given."""
    values = src.reshape(-1)
    words = values.view(np.uint32)
    halves = out.reshape(-1).view(np.uint16)
    mag, low = scratch if scratch is not None else (np.empty(PIECE, np.uint32), np.empty(PIECE, np.uint32))
    for a in range(0, words.size, PIECE):
        w, h = words[a:a + PIECE], halves[a:a + PIECE]
        m, r = mag[:len(w)], low[:len(w)]
        np.bitwise_and(w, ABS, out=m)
        if m.max() >= ROUNDS_TO_INF:  # overflow, Inf or NaN: numpy's rules, for the whole piece
            np.copyto(h.view(np.float16), values[a:a + PIECE], casting="unsafe")
            continue
        np.right_shift(m, 13, out=r)
        np.bitwise_and(r, 1, out=r)          # the lowest kept bit: ties go to even
        np.add(r, m, out=r)
        np.add(r, REBIAS, out=r)
        np.right_shift(r, 13, out=r)
        np.right_shift(w, 16, out=m)
        np.bitwise_and(m, 0x8000, out=m)     # the sign
        np.bitwise_or(r, m, out=h, casting="unsafe")
        tiny = np.flatnonzero(np.bitwise_and(w, ABS, out=m) < SMALLEST_NORMAL)
        if len(tiny):
            h[tiny] = values[a + tiny].astype(np.float16).view(np.uint16)
    return out


def matches_numpy(stride: int = 1) -> bool:
    """Whether `widen` and `narrow` give numpy's bits: every half, and float32 values of every
    ``stride``-th half: the half itself, its float32 neighbours, the midpoint to the next half
    (a tie), plus values that round to zero, to the smallest subnormal and to infinity."""
    every_half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    wide = widen(every_half, np.empty(every_half.shape, np.float32))
    if not np.array_equal(wide.view(np.uint32), every_half.astype(np.float32).view(np.uint32)):
        return False
    finite = np.sort(np.abs(every_half[np.isfinite(every_half)].astype(np.float32)))[::stride]
    ulp = np.spacing(finite)
    probes = np.concatenate([finite, finite + ulp, finite - ulp, (finite[1:] + finite[:-1]) / 2,
                             np.float32([1e-30, 3e-8, 6e-8, 65504.0, 65519.0, 65520.0, 1e30])])
    probes = np.concatenate([probes, -probes])
    with np.errstate(over="ignore"):
        want = probes.astype(np.float16).view(np.uint16)
        got = narrow(probes, np.empty(probes.shape, np.float16)).view(np.uint16)
    return bool(np.array_equal(got, want))


@functools.cache
def exact() -> bool:
    """`matches_numpy` on every 61st half, once per process (about a millisecond); the tests
    check every half."""
    return matches_numpy(61)
