"""Mergeable float64 sufficient statistics for orthogonal Procrustes.

`AlignmentStats` summarises paired rows (x_i, y_i) by their count, their two means and the
*centred* co-moment ``C = sum_i (x_i - mean_x)^T (y_i - mean_y)``, plus the centred squared
norms and, optionally, the two centred Gram matrices (needed only for the quality report:
the paper's bound and the ridge baseline).

Everything the fit needs follows from these: the uncentred cross-product is
``C + n mean_x^T mean_y``. Partial results from different chunks, files or machines combine
with `merge`, the pairwise update of Chan, Golub and LeVeque (1979), so a streaming fit, a
Dask reduction and an in-memory fit are the same computation.

Notes
-----
Per chunk, rows are shifted by a provisional mean (that of the chunk's first block) and the
products are taken in the chunk's float precision (float32 stays float32, so BLAS runs at full
speed), block by block so each shifted block is still in cache for its product; block results
are promoted to float64 and the small difference between the provisional and the exact mean is
corrected exactly afterwards. Shifting first is what keeps the centred co-moment free of
catastrophic cancellation. Cost per chunk of b rows: one b x d_s x d_t product (three with
Gram matrices); memory: d_s x d_t float64 (plus d_s^2 + d_t^2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NonFiniteInput(ValueError):
    """NaN or Inf in a batch; ``source_rows``/``target_rows`` index the offending rows."""

    def __init__(self, source_rows: np.ndarray, target_rows: np.ndarray):
        self.source_rows, self.target_rows = source_rows, target_rows
        where = f"source row {source_rows[0]}" if len(source_rows) else f"target row {target_rows[0]}"
        super().__init__(f"NaN or Inf at {where} of the batch")


def _work_dtype(a: np.ndarray) -> np.dtype:
    # float16 has no BLAS path; float64 input keeps full precision.
    return np.dtype(np.float64) if a.dtype == np.float64 else np.dtype(np.float32)


@dataclass
class AlignmentStats:
    n: int
    mean_source: np.ndarray
    mean_target: np.ndarray
    comoment: np.ndarray          # (d_s, d_t), centred
    sq_source: float              # sum |x - mean_x|^2
    sq_target: float
    gram_source: np.ndarray | None = None  # (d_s, d_s), centred, optional
    gram_target: np.ndarray | None = None

    @classmethod
    def empty(cls, d_source: int, d_target: int, with_gram: bool = False) -> "AlignmentStats":
        z = np.zeros
        return cls(0, z(d_source), z(d_target), z((d_source, d_target)), 0.0, 0.0,
                   z((d_source, d_source)) if with_gram else None,
                   z((d_target, d_target)) if with_gram else None)

    @property
    def with_gram(self) -> bool:
        return self.gram_source is not None

    @classmethod
    def from_batch(cls, x: np.ndarray, y: np.ndarray, with_gram: bool = False,
                   block: int = 1024) -> "AlignmentStats":
        """Statistics of one chunk of paired rows (x[i] pairs with y[i])."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"paired batches need shapes (n, d_s) and (n, d_t), got {x.shape} and {y.shape}")
        n, d_s = x.shape
        d_t = y.shape[1]
        if n == 0:
            return cls.empty(d_s, d_t, with_gram)
        wx, wy = _work_dtype(x), _work_dtype(y)
        shift_x = x[:block].mean(axis=0, dtype=np.float64)
        shift_y = y[:block].mean(axis=0, dtype=np.float64)
        sx, sy = shift_x.astype(wx), shift_y.astype(wy)
        bx, by = np.empty((min(block, n), d_s), wx), np.empty((min(block, n), d_t), wy)
        cross = np.zeros((d_s, d_t))
        sum_x, sum_y = np.zeros(d_s), np.zeros(d_t)
        sq_x = sq_y = 0.0
        gram_x = np.zeros((d_s, d_s)) if with_gram else None
        gram_y = np.zeros((d_t, d_t)) if with_gram else None
        # block products land in these and are added in float64 without a temporary: fresh
        # megabyte-sized temporaries per block measured as much system time as the products
        prod = np.empty((d_s, d_t), np.result_type(wx, wy))
        prod_x = np.empty((d_s, d_s), wx) if with_gram else None
        prod_y = np.empty((d_t, d_t), wy) if with_gram else None
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are handled below
            for a in range(0, n, block):
                xs = np.subtract(x[a:a + block], sx, out=bx[: min(block, n - a)], casting="unsafe")
                ys = np.subtract(y[a:a + block], sy, out=by[: len(xs)], casting="unsafe")
                cross += np.matmul(xs.T, ys, out=prod)
                sum_x += xs.sum(axis=0)
                sum_y += ys.sum(axis=0)
                flat_x, flat_y = xs.reshape(-1), ys.reshape(-1)
                sq_x += float(flat_x @ flat_x)
                sq_y += float(flat_y @ flat_y)
                if with_gram:
                    gram_x += np.matmul(xs.T, xs, out=prod_x)
                    gram_y += np.matmul(ys.T, ys, out=prod_y)
        if not (np.isfinite(sum_x).all() and np.isfinite(sum_y).all()):
            # NaN/Inf reach the block sums; only now are the rows inspected.
            bad_x = np.flatnonzero(~np.isfinite(x).all(axis=1))
            bad_y = np.flatnonzero(~np.isfinite(y).all(axis=1))
            if len(bad_x) or len(bad_y):
                raise NonFiniteInput(bad_x, bad_y)
        finite = np.isfinite(cross).all() and np.isfinite(sq_x + sq_y) and \
            (not with_gram or (np.isfinite(gram_x).all() and np.isfinite(gram_y).all()))
        if (wx != np.float64 or wy != np.float64) and not finite:
            # finite float32 values whose products overflow float32 (|x| ~ 1e19 and up): redo
            # this chunk in float64, which is only ever needed for such extreme values
            return cls.from_batch(np.asarray(x, np.float64), np.asarray(y, np.float64), with_gram, block)
        # Move from the provisional shift to the exact mean: small terms, no cancellation.
        dx, dy = sum_x / n, sum_y / n
        stats = cls(n, shift_x + dx, shift_y + dy, cross - n * np.outer(dx, dy),
                    sq_x - n * float(dx @ dx), sq_y - n * float(dy @ dy))
        if with_gram:
            stats.gram_source = gram_x - n * np.outer(dx, dx)
            stats.gram_target = gram_y - n * np.outer(dy, dy)
        return stats

    @classmethod
    def from_pieces(cls, x: np.ndarray, y: np.ndarray, with_gram: bool, run) -> "AlignmentStats":
        """`from_batch` of pieces of the rows, merged in piece order. ``run(fn, n)`` calls
        ``fn(start, stop)`` for pieces covering ``range(n)`` and returns the results in order
        (on several cores, say: the merge makes the split exact up to rounding)."""
        def piece(a: int, b: int) -> "AlignmentStats":
            try:
                return cls.from_batch(x[a:b], y[a:b], with_gram)
            except NonFiniteInput as e:
                raise NonFiniteInput(e.source_rows + a, e.target_rows + a) from None

        total = cls.empty(x.shape[1], y.shape[1], with_gram)
        for part in run(piece, len(x)):
            total.merge(part)
        return total

    def update(self, x: np.ndarray, y: np.ndarray) -> "AlignmentStats":
        """Fold one chunk of paired rows in; returns self."""
        return self.merge(AlignmentStats.from_batch(x, y, self.with_gram))

    def merge(self, other: "AlignmentStats") -> "AlignmentStats":
        """Combine with statistics of disjoint rows, in place; returns self."""
        if self.comoment.shape != other.comoment.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.comoment.shape} and {other.comoment.shape}")
        if other.n == 0:
            return self
        n = self.n + other.n
        dx = other.mean_source - self.mean_source
        dy = other.mean_target - self.mean_target
        w = self.n * other.n / n
        self.comoment += other.comoment + w * np.outer(dx, dy)
        self.sq_source += other.sq_source + w * float(dx @ dx)
        self.sq_target += other.sq_target + w * float(dy @ dy)
        if self.with_gram and other.with_gram:
            self.gram_source += other.gram_source + w * np.outer(dx, dx)
            self.gram_target += other.gram_target + w * np.outer(dy, dy)
        elif self.with_gram or other.with_gram:
            raise ValueError("cannot merge statistics with and without Gram matrices")
        self.mean_source += dx * (other.n / n)
        self.mean_target += dy * (other.n / n)
        self.n = n
        return self

    def moments(self, centre: bool) -> dict[str, np.ndarray | float]:
        """Cross-product, squared norms and (if kept) Gram matrices, centred or raw."""
        if centre:
            out = {"cross": self.comoment, "sq_source": self.sq_source, "sq_target": self.sq_target,
                   "gram_source": self.gram_source, "gram_target": self.gram_target}
            return out
        ms, mt, n = self.mean_source, self.mean_target, self.n
        out = {"cross": self.comoment + n * np.outer(ms, mt),
               "sq_source": self.sq_source + n * float(ms @ ms),
               "sq_target": self.sq_target + n * float(mt @ mt),
               "gram_source": None, "gram_target": None}
        if self.with_gram:
            out["gram_source"] = self.gram_source + n * np.outer(ms, ms)
            out["gram_target"] = self.gram_target + n * np.outer(mt, mt)
        return out
