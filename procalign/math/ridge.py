"""Unconstrained affine baseline: ridge least squares from the same streamed statistics.

``W = (Xc^T Xc + lam I)^-1 Xc^T Yc`` and ``b = mean_y - mean_x W``, with ``lam`` equal to
``alpha`` times the mean eigenvalue of ``Xc^T Xc``. Used only to show what orthogonality costs
or saves: unlike the Procrustes map it distorts the target geometry and has no exact inverse.
"""
from __future__ import annotations

import numpy as np

from .stats import AlignmentStats


def ridge_map(stats: AlignmentStats, alpha: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Return (W, b) so that x -> x W + b; needs statistics with Gram matrices."""
    if stats.gram_source is None:
        raise ValueError("the ridge baseline needs statistics with Gram matrices (with_gram=True)")
    g = stats.gram_source
    # alpha times the mean eigenvalue; a floor keeps the system solvable when the anchors are
    # constant or all zero (one anchor pair, say): then the map is just the mean shift.
    lam = max(alpha * np.trace(g) / len(g), np.finfo(float).tiny ** 0.5)
    w = np.linalg.solve(g + lam * np.eye(len(g)), stats.comoment)
    return w, stats.mean_target - stats.mean_source @ w
