"""The whitened orthogonal map (Artetxe, Labaka and Agirre, AAAI 2018), from d x d statistics.

With centred (or raw) Gram matrices ``G_x = X^T X``, ``G_y = Y^T Y`` and cross-product
``C = X^T Y``: whiten both sides, ``W_x = G_x^{-1/2}``, ``W_y = G_y^{-1/2}``; take the SVD
``W_x C W_y = U S V^T`` (S holds the canonical correlations, in [0, 1]); re-weight the shared
directions by ``S^p``; de-whiten into the target space with ``G_y^{1/2}``:

    x -> x W_x U S^p V^T G_y^{1/2}

The factors n of the covariance matrices cancel, so the raw sums serve as they are. p = 0
maps whitened space to whitened space by a rotation; p = 1 gives ``G_x^{-1} C``, ordinary least
squares; p in between re-weights directions by how well the two spaces agree on them.

Not done here: it is no isometry and the paper's bound does not cover it. Directions that a
Gram matrix does not determine (eigenvalue below `spectral.RELATIVE_TOLERANCE` of the largest)
and canonical correlations below that tolerance get weight zero, so the map is of lower rank
there rather than amplifying round-off; its inverse is then a pseudo-inverse.

Notes
-----
Cost: three eigendecompositions or SVDs of d x d matrices, independent of the number of rows.
"""
from __future__ import annotations

import numpy as np

from .spectral import RELATIVE_TOLERANCE, symmetric_power


def whitened_matrix(gram_source: np.ndarray, gram_target: np.ndarray, cross: np.ndarray,
                    reweight: float) -> tuple[np.ndarray, dict]:
    """Return the (d_s, d_t) matrix of the whitened map and what it kept.

    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -2.0]])
    >>> w, info = whitened_matrix(x.T @ x, x.T @ x, x.T @ x, 0.5)
    >>> np.allclose(w, np.eye(2)), info["rank"]
    (True, 2)
    """
    if reweight < 0:
        raise ValueError(f"reweight must be >= 0, got {reweight}")
    whiten_x, rank_x = symmetric_power(gram_source, -0.5)
    whiten_y, rank_y = symmetric_power(gram_target, -0.5)
    dewhiten_y, _ = symmetric_power(gram_target, 0.5)
    u, s, vt = np.linalg.svd(whiten_x @ cross @ whiten_y, full_matrices=False)
    keep = s > RELATIVE_TOLERANCE
    weights = np.zeros_like(s)
    weights[keep] = s[keep] ** reweight
    matrix = ((whiten_x @ u) * weights) @ (vt @ dewhiten_y)
    info = {"reweight": float(reweight), "rank": int(keep.sum()), "source_rank": rank_x, "target_rank": rank_y,
            "canonical_correlation_mean": float(s[keep].mean()) if keep.any() else 0.0}
    return matrix, info
