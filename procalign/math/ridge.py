"""Ridge least squares from the same streamed statistics: the report's baseline and the affine method.

``W = (G + lam I)^-1 C`` with ``G = Xc^T Xc`` and ``C = Xc^T Yc`` (centred, or raw when the fit
is not centred), and ``b = mean_y - mean_x W``; ``lam`` is ``alpha`` times the mean eigenvalue
of ``G``. Unlike the Procrustes map it distorts the target geometry; its inverse is a
pseudo-inverse (exact when the map is square and of full rank).

`ridge_map` is the report's fixed-alpha baseline. `gcv_ridge` chooses alpha by generalised
cross-validation (Golub, Heath and Wahba 1979) from the statistics alone: with the
eigendecomposition ``G = E diag(e) E^T`` and ``r_i = ||(E^T C)_i||^2``, the residual sum of
squares of the fit with ``lam`` is ``||Y||^2 - sum_i r_i (e_i + 2 lam) / (e_i + lam)^2`` and its
degrees of freedom ``sum_i e_i / (e_i + lam)`` (plus one for the mean when centred), so
``GCV(lam) = (RSS / n) / (1 - df / n)^2`` costs O(d^2) per candidate, no pass over the rows.
GCV estimates the squared error on unseen pairs; it is not tuned for retrieval.
"""
from __future__ import annotations

import numpy as np

from .stats import AlignmentStats

GCV_ALPHAS = 10.0 ** np.arange(-6.0, 1.01, 0.25)


def _lambda(gram: np.ndarray, alpha) -> np.ndarray:
    # alpha times the mean eigenvalue; a floor keeps the system solvable when the anchors are
    # constant or all zero (one anchor pair, say): then the map is just the mean shift.
    return np.maximum(np.asarray(alpha) * np.trace(gram) / len(gram), np.finfo(float).tiny ** 0.5)


def ridge_solution(gram: np.ndarray, cross: np.ndarray, lam: float) -> np.ndarray:
    """``(gram + lam I)^-1 cross``."""
    return np.linalg.solve(gram + lam * np.eye(len(gram)), cross)


def ridge_map(stats: AlignmentStats, alpha: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Return (W, b) so that x -> x W + b; needs statistics with Gram matrices."""
    if stats.gram_source is None:
        raise ValueError("the ridge baseline needs statistics with Gram matrices (with_gram=True)")
    w = ridge_solution(stats.gram_source, stats.comoment, float(_lambda(stats.gram_source, alpha)))
    return w, stats.mean_target - stats.mean_source @ w


def gcv_ridge(gram: np.ndarray, cross: np.ndarray, sq_target: float, n: int, intercept: bool,
              alphas: np.ndarray = GCV_ALPHAS) -> tuple[np.ndarray, dict]:
    """The ridge matrix whose alpha (from ``alphas``) minimises GCV, and the choice made."""
    e, vectors = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    e = np.maximum(e, 0.0)
    r = np.einsum("ij,ij->i", vectors.T @ cross, vectors.T @ cross)
    lams = _lambda(gram, alphas)[:, None]
    rss = np.maximum(sq_target - (r * (e + 2 * lams) / (e + lams) ** 2).sum(axis=1), 0.0)
    df = (e / (e + lams)).sum(axis=1) + (1.0 if intercept else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gcv = np.where(df < n, rss / n / (1.0 - df / n) ** 2, np.inf)
    # with no finite score (more parameters than pairs at every alpha) the strongest ridge is safest
    best = int(np.argmin(gcv)) if np.isfinite(gcv).any() else len(alphas) - 1
    lam = float(lams[best, 0])
    info = {"alpha": float(alphas[best]), "lambda": lam, "gcv": float(gcv[best]),
            "degrees_of_freedom": float(df[best]), "alphas_tried": [float(alphas[0]), float(alphas[-1])]}
    return ridge_solution(gram, cross, lam), info
