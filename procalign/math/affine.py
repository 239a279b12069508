"""The affine map and the per-chunk kernel that applies it (pure math: arrays in, arrays out).

An `AffineMap` sends a source row x to ``scale * (u(x) - source_mean) @ matrix + target_mean``
where ``u`` is L2 normalisation when ``normalize`` is set (and the output is then normalised
again) and the identity otherwise. When ``orthonormal`` (the Procrustes map) ``matrix`` has
orthonormal rows or columns and `AffineMap.inverse` is the same form with the transpose;
otherwise ``matrix`` is a general linear map and the inverse uses its pseudo-inverse
(`spectral.pseudo_inverse`: exact when square and of full rank). What a map connects (space
names, options, provenance) is described by `procalign.transform.Transform`, which wraps one.

`ChunkMapper` is the hot path: it folds the scale and both means into one matrix and one bias
row, works in the chunk's float precision (float16 is widened to float32, never to float64),
and writes into caller-owned buffers so a streaming loop allocates nothing per chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import half
from .spectral import pseudo_inverse


def _half_to_single(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `half` can convert between a float16 ``a`` and a float32 ``b`` (same shape, both
    C-contiguous), its arithmetic matching numpy's in this process."""
    return a.dtype == np.float16 and b.dtype == np.float32 and a.shape == b.shape \
        and a.flags.c_contiguous and b.flags.c_contiguous and half.exact()


def _overflow_limit(dtype: np.dtype) -> float:
    """The smallest magnitude that rounds to Inf in ``dtype``: its max plus half its last ulp."""
    top = np.finfo(dtype).max
    return float(top) + (float(top) - float(np.nextafter(top, dtype.type(0)))) / 2


class NonFiniteRows(ValueError):
    """Rows whose values are NaN/Inf, or zero vectors that cannot be normalised."""

    def __init__(self, rows: np.ndarray, what: str, fix: str = "drop or repair those rows"):
        self.rows = rows
        self.what = what
        self.fix = fix
        super().__init__(f"{what} at row {int(rows[0])} ({len(rows)} such rows in this chunk)")


def unit_rows(x: np.ndarray, first_row: int = 0) -> np.ndarray:
    """L2-normalised copy of x in a float working precision; zero rows raise."""
    work = np.float64 if x.dtype == np.float64 else np.float32
    out = np.array(x, dtype=work, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    bad = np.flatnonzero(~(norms > 0))
    if len(bad):
        raise NonFiniteRows(bad + first_row, "zero or non-finite vector cannot be normalised")
    out /= norms[:, None]
    return out


@dataclass(frozen=True)
class AffineMap:
    matrix: np.ndarray        # (d_source, d_target), float64
    source_mean: np.ndarray   # (d_source,)
    target_mean: np.ndarray   # (d_target,)
    scale: float = 1.0
    normalize: bool = False
    orthonormal: bool = True  # False: a general linear map (methods "whitened", "affine")

    @property
    def d_source(self) -> int:
        return self.matrix.shape[0]

    @property
    def d_target(self) -> int:
        return self.matrix.shape[1]

    @property
    def centred(self) -> bool:
        return bool(np.any(self.source_mean) or np.any(self.target_mean))

    def inverse(self) -> "AffineMap":
        """The map back from the target space: exact when d_source <= d_target (and, for a
        general linear map, when its matrix has full rank)."""
        back = self.matrix.T.copy() if self.orthonormal else pseudo_inverse(self.matrix)
        return AffineMap(back, self.target_mean, self.source_mean, 1.0 / self.scale, self.normalize,
                         self.orthonormal)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Map rows of x (any float dtype) to float64 in memory; see `ChunkMapper` to stream."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out = np.empty((x.shape[0], self.d_target))
        ChunkMapper(self, np.float64).map(x, out)
        return out


class ChunkMapper:
    """Apply an `AffineMap` chunk by chunk, computing in dtype ``work`` (float32 or float64).

    Notes
    -----
    The product, the bias, the normalisation and the NaN/Inf check run on sub-blocks of
    ``block`` rows (16,384 by default): large enough that each product keeps both BLAS threads
    busy (2,048-row blocks cost 30-50% more CPU than one product, in thread hand-offs), small
    enough to bound the widening and cast buffers. The output may have another float dtype
    than ``work`` (it is cast per sub-block, no extra copy). Buffers are allocated on first
    need: a float32 -> float32 map allocates nothing.
    """

    def __init__(self, transform: AffineMap, work=np.float32, block: int = 16384):
        self.work = np.dtype(work)
        self.block = block
        self.normalize = transform.normalize
        m = transform.scale * transform.matrix
        # Stored as the transpose of a C-contiguous array: BLAS then reads the small matrix
        # along its rows, which measured as fast or faster for the tall-times-small product.
        self.matrix = np.ascontiguousarray(m.T, dtype=self.work).T
        bias = transform.target_mean - transform.scale * (transform.source_mean @ transform.matrix)
        self.bias = bias.astype(self.work) if np.any(bias) else None
        self.d_source, self.d_target = m.shape
        self._x = self._y = self._scratch = None

    def map(self, x: np.ndarray, out: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Write the image of rows x into out (same row count, any float dtype); returns out.

        Raises `NonFiniteRows` naming the first offending row (offset by ``first_row``).
        """
        for a in range(0, len(x), self.block):
            xs = x[a:a + self.block]
            if xs.dtype != self.work:
                if self._x is None:
                    self._x = np.empty((self.block, self.d_source), self.work)
                widened = self._x[: len(xs)]
                if _half_to_single(xs, widened):
                    half.widen(xs, widened)
                else:
                    np.copyto(widened, xs, casting="unsafe")
                xs = widened
            target = out[a:a + self.block]
            if target.dtype == self.work:
                self._map_block(xs, target, first_row + a)
            else:
                if self._y is None:
                    self._y = np.empty((self.block, self.d_target), self.work)
                result = self._y[: len(xs)]
                self._map_block(xs, result, first_row + a)
                self._cast(result, target, first_row + a)
        return out

    def _cast(self, result: np.ndarray, target: np.ndarray, first_row: int) -> None:
        """Copy into the output dtype; a narrower one may overflow to Inf, so check after the cast."""
        with np.errstate(over="ignore"):
            if _half_to_single(target, result):
                if self._scratch is None:
                    self._scratch = (np.empty(half.PIECE, np.uint32), np.empty(half.PIECE, np.uint32))
                half.narrow(result, target, self._scratch)
            else:
                np.copyto(target, result, casting="unsafe")
        # A finite value overflows the narrower type only from its rounding limit up: the
        # min/max of the result rule that out cheaply (isfinite of float16 costs half a cast)
        if target.dtype.itemsize < result.dtype.itemsize and len(result) \
                and max(result.max(), -result.min()) >= _overflow_limit(target.dtype) \
                and not np.isfinite(target).all():
            bad = np.flatnonzero(~np.isfinite(target).all(axis=1))
            wider = " or ".join(t for t in ("float32", "float64") if np.dtype(t).itemsize > target.dtype.itemsize)
            raise NonFiniteRows(bad + first_row, f"a mapped value overflows {target.dtype}",
                                f"write a wider type with --dtype {wider}")

    def _map_block(self, x: np.ndarray, out: np.ndarray, first_row: int) -> None:
        np.matmul(x, self.matrix, out=out)
        if self.normalize:
            # (x/|x|) M = (x M)/|x|: normalise after the product, no copy of the input.
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))
            if not np.all(norms > 0):
                bad = np.flatnonzero(~(norms > 0))
                raise NonFiniteRows(bad + first_row, "zero or non-finite vector cannot be normalised",
                                    "drop or repair those rows, or apply without normalisation")
            out /= norms[:, None]
        if self.bias is not None:
            out += self.bias
        if self.normalize:
            out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
        # A NaN/Inf anywhere in an input row reaches its output row and this one contiguous
        # (SIMD) sum; only then are rows inspected, which also clears a mere overflow of the sum.
        with np.errstate(invalid="ignore", over="ignore"):
            total = np.sum(out)
        if not np.isfinite(total):
            bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
            if len(bad):
                raise NonFiniteRows(bad + first_row, "NaN or Inf value")
