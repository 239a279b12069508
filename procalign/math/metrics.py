"""Alignment quality metrics, computed blockwise so no N x N matrix is ever held.

All similarity metrics use cosine similarity. Retrieval asks, for each mapped source row i,
where its own target row i ranks among all candidate target rows (rank 1 = found first; ties
count against the query). Neighbourhood agreement is the mean overlap of the k nearest
neighbours of an item among the mapped source rows and among the target rows.

Notes
-----
Cost: retrieval and kNN overlap are O(n^2 d) time and O(block * n) memory; callers cap n.
"""
from __future__ import annotations

import numpy as np


def _unit(a: np.ndarray, dtype=np.float32) -> np.ndarray:
    # Rankings and overlaps only compare similarities: float32 halves the cost of the
    # blockwise products; cosines reported as numbers use float64 (row_cosines).
    a = np.asarray(a, dtype=dtype)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between a[i] and b[i] for each row (0 where either is a zero vector)."""
    return np.einsum("ij,ij->i", _unit(a, np.float64), _unit(b, np.float64))


def row_agreement(mapped: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: cosine(mapped_i, y_i), ||mapped_i - y_i||^2 and ||y_i||^2, as float64.

    The streaming passes over millions of pairs use this, so the sums run in the rows' own
    precision, with no wider copy (in float64 they measured 2.7x slower: 0.77 against 0.29 us
    per 384-d float32 row). Precision comes from the difference instead: the squared residual
    r is summed from ``mapped_i - y_i``, so it is accurate relative to itself however close the
    rows are, and the cosine is taken from it,

        1 - cos = (r - (|m| - |y|)^2) / (2 |m| |y|),

    which keeps 1 - cos to about 1e-6 relative even for nearly equal rows (a plain m.y / |m||y|
    in float32 is off by 1e-7 sqrt(d) absolute, more than 1 - cos itself for a near-perfect
    map). When a row's float32 sums overflow or lose precision to underflow (norms past about
    1e19 or below 1e-15), or a row is zero, the whole batch is summed again in float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below
        diff = mapped - y
        mm, yy, rr = (np.einsum("ij,ij->i", a, a) for a in (mapped, y, diff))
    if mapped.dtype != np.float64 and len(mm) and not (
            np.isfinite(mm).all() and np.isfinite(yy).all() and np.isfinite(rr).all()
            and min(mm.min(), yy.min()) >= 1e-30):
        return row_agreement(np.asarray(mapped, np.float64), np.asarray(y, np.float64))
    mm, yy, rr = (np.asarray(v, np.float64) for v in (mm, yy, rr))
    nm, ny = np.sqrt(mm), np.sqrt(yy)
    den = 2 * nm * ny
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(den > 0, 1 - (rr - (nm - ny) ** 2) / den, 0.0)
    return np.clip(cos, -1.0, 1.0), rr, yy


def ranks_of_pairs(queries: np.ndarray, candidates: np.ndarray, block: int = 1024) -> np.ndarray:
    """Rank (1-based) of candidates[i] among all candidates for queries[i]."""
    q, c = _unit(queries), _unit(candidates)
    ranks = np.empty(len(q), dtype=np.int64)
    for a in range(0, len(q), block):
        sims = q[a:a + block] @ c.T
        own = sims[np.arange(len(sims)), np.arange(a, a + len(sims))]
        ranks[a:a + block] = (sims > own[:, None]).sum(axis=1) + 1
    return ranks


def retrieval(queries: np.ndarray, candidates: np.ndarray, block: int = 1024) -> dict[str, float]:
    """Identity retrieval: top-1, top-10 and mean reciprocal rank of each row's own pair."""
    r = ranks_of_pairs(queries, candidates, block)
    return {"top1": float(np.mean(r <= 1)), "top10": float(np.mean(r <= 10)),
            "mrr": float(np.mean(1.0 / r)), "candidates": int(len(candidates))}


def knn_indices(x: np.ndarray, k: int = 10, block: int = 1024, euclidean: bool = False) -> np.ndarray:
    """Indices of each row's k nearest other rows (cosine, or Euclidean distance), unordered; (n, k)."""
    return _knn(x, min(k, len(x) - 1), block, euclidean)


def _knn(x: np.ndarray, k: int, block: int, euclidean: bool = False) -> np.ndarray:
    if euclidean:
        # Distances ignore a shift, and centred rows keep float32 products accurate. Nearest by
        # distance = largest u_i.u_j - |u_j|^2 / 2 (|u_i|^2 is the same along a row).
        u = np.asarray(x - np.mean(x, axis=0, dtype=np.float64), np.float32)
        half_sq = 0.5 * np.einsum("ij,ij->i", u, u)
    else:
        u = _unit(x)
    out = np.empty((len(u), k), dtype=np.int64)
    for a in range(0, len(u), block):
        sims = u[a:a + block] @ u.T
        if euclidean:
            sims -= half_sq
        sims[np.arange(len(sims)), np.arange(a, a + len(sims))] = -np.inf  # not its own neighbour
        out[a:a + block] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10, block: int = 1024,
                b_neighbours: np.ndarray | None = None) -> float:
    """Mean |kNN_a(i) & kNN_b(i)| / k over items; needs more than k rows.

    ``b_neighbours`` (from `knn_indices`) saves recomputing b's neighbours across calls.
    """
    k = min(k, len(a) - 1)
    if k < 1:
        return float("nan")
    na = _knn(a, k, block)
    return neighbour_overlap(na, _knn(b, k, block) if b_neighbours is None else b_neighbours)


def neighbour_overlap(na: np.ndarray, nb: np.ndarray) -> float:
    """Mean share of each row's neighbours (`knn_indices`) that two neighbour lists agree on."""
    if na.size == 0:
        return float("nan")
    hits = (na[:, :, None] == nb[:, None, :]).any(axis=2).sum()
    return float(hits / na.size)


class CosineHistogram:
    """Streaming, mergeable histogram of cosines on [-1, 1] for mean and percentiles.

    Percentiles are exact to the bin width (2 / bins); the mean is exact.
    """

    def __init__(self, bins: int = 20000):
        self.counts = np.zeros(bins, dtype=np.int64)
        self.total = 0.0
        self.n = 0

    def add(self, cos: np.ndarray) -> None:
        cos = np.clip(np.asarray(cos, dtype=np.float64), -1.0, 1.0)
        idx = np.minimum(((cos + 1.0) * (len(self.counts) / 2.0)).astype(np.int64), len(self.counts) - 1)
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.total += float(cos.sum())
        self.n += len(cos)

    def merge(self, other: "CosineHistogram") -> "CosineHistogram":
        self.counts += other.counts
        self.total += other.total
        self.n += other.n
        return self

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        return -1.0 + (i + 0.5) * 2.0 / len(self.counts)

    def summary(self) -> dict[str, float]:
        return {"mean": self.total / self.n if self.n else float("nan"),
                "p5": self.quantile(0.05), "median": self.quantile(0.5), "count": self.n}


def cosine_summary(cos: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(cos)), "p5": float(np.percentile(cos, 5)),
            "median": float(np.median(cos)), "count": int(len(cos))}


class Agreement:
    """Streaming agreement of mapped rows with their targets: cosine histogram and the
    residual totals behind the relative residual. Mergeable like the statistics."""

    def __init__(self):
        self.hist = CosineHistogram()
        self.res_sq = 0.0
        self.y_sq = 0.0

    def add(self, mapped: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fold in one chunk; returns its per-row cosines and squared residuals."""
        cos, r, yy = row_agreement(mapped, y)
        self.add_rows(cos, r, yy)
        return cos, r

    def add_rows(self, cos: np.ndarray, r: np.ndarray, yy: np.ndarray) -> None:
        """Fold in `row_agreement` results computed elsewhere (on other cores, say)."""
        self.hist.add(cos)
        self.res_sq += float(r.sum())
        self.y_sq += float(yy.sum())

    def merge(self, other: "Agreement") -> "Agreement":
        self.hist.merge(other.hist)
        self.res_sq += other.res_sq
        self.y_sq += other.y_sq
        return self

    def summary(self) -> dict:
        return {"cosine": self.hist.summary(),
                "relative_residual": float(np.sqrt(self.res_sq / self.y_sq)) if self.y_sq else None}
