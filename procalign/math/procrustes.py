"""Orthogonal Procrustes from sufficient statistics.

``solve_orthogonal(cross)`` returns the matrix Q with orthonormal rows or columns that
maximises ``trace(Q^T cross)``, i.e. minimises ``||X Q - Y||_F`` for ``cross = X^T Y``
(Schoenemann 1966): with the thin SVD ``cross = U S V^T``, ``Q = U V^T``. When the two
dimensions differ this is the paper's zero-padding solution without the padding: an isometric
embedding when mapping up (``Q Q^T = I``), an orthogonal projection when mapping down.

``fit_transform(stats, options)`` turns `AlignmentStats` into an `AffineMap`.

Not done here: no translation unless ``centre``; no scaling unless ``scale`` (then one isotropic
factor, never per-axis); no shear (see `ridge` for the unconstrained baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import AlignmentStats
from .affine import AffineMap
from .spectral import trace_of_product


@dataclass(frozen=True)
class FitOptions:
    """How to fit. ``centre`` subtracts each space's mean (and adds the target's back);
    ``normalize`` L2-normalises inputs and outputs; ``scale`` adds one isotropic factor;
    ``rotation_only`` forbids reflections (det Q = +1, same dimensions only)."""

    centre: bool = True
    normalize: bool = False
    scale: bool = False
    rotation_only: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {"centre": self.centre, "normalize": self.normalize, "scale": self.scale,
                "rotation_only": self.rotation_only}


def solve_orthogonal(cross: np.ndarray, rotation_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(Q, s)``: the maximiser of ``trace(Q^T cross)`` and the (signed) singular
    values, whose sum is that maximum.

    >>> q, s = solve_orthogonal(np.diag([3.0, -2.0]))
    >>> np.allclose(q, np.diag([1.0, -1.0])), float(s.sum())
    (True, 5.0)
    """
    cross = np.asarray(cross, dtype=np.float64)
    if cross.ndim != 2:
        raise ValueError(f"cross-product must be 2-D, got shape {cross.shape}")
    u, s, vt = np.linalg.svd(cross, full_matrices=False)
    if rotation_only:
        if cross.shape[0] != cross.shape[1]:
            raise ValueError(f"rotation only needs equal dimensions, got {cross.shape}")
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            # Kabsch: flip the direction of the weakest singular pair.
            u[:, -1] = -u[:, -1]
            s = s.copy()
            s[-1] = -s[-1]
    return u @ vt, s


def fit_transform(stats: AlignmentStats, options: FitOptions) -> tuple[AffineMap, dict]:
    """Fit the map and return it with its anchor statistics (from the sums alone)."""
    if stats.n == 0:
        raise ValueError("no anchor pairs to fit on")
    m = stats.moments(options.centre)
    q, s = solve_orthogonal(m["cross"], options.rotation_only)
    d_s, d_t = q.shape
    # ||X Q||^2: equals ||X||^2 unless Q projects down, then it needs the Gram matrix.
    if d_s <= d_t:
        sq_mapped = m["sq_source"]
    elif m["gram_source"] is not None:
        sq_mapped = trace_of_product(q, m["gram_source"], q)
    else:
        sq_mapped = None
    scale = 1.0
    if options.scale:
        if not sq_mapped:
            raise ValueError("scale needs the source Gram matrix when mapping to fewer dimensions")
        scale = float(s.sum()) / sq_mapped
    transform = AffineMap(
        matrix=q,
        source_mean=stats.mean_source.copy() if options.centre else np.zeros(d_s),
        target_mean=stats.mean_target.copy() if options.centre else np.zeros(d_t),
        scale=scale, normalize=options.normalize)
    raw_sq_target = stats.sq_target + stats.n * float(stats.mean_target @ stats.mean_target)
    residual = None
    if sq_mapped is not None:
        residual = max(scale * scale * sq_mapped + m["sq_target"] - 2 * scale * float(s.sum()), 0.0)
    summary = {
        "anchors": stats.n,
        "residual_sq": residual,
        "relative_residual": None if residual is None or raw_sq_target == 0
        else float(np.sqrt(residual / raw_sq_target)),
        "singular_values_sum": float(s.sum()),
    }
    return transform, summary
