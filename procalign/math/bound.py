"""The Procrustes bound of Maystre et al. (2025), from d x d statistics only.

If ``eps = ||X X^T - Y Y^T||_F`` then ``min_Q ||X Q - Y||_F <= (2D)^(1/4) sqrt(eps)``, with D the
larger dimension (the smaller space zero-padded). ``eps`` never needs the N x N Gram matrices:

    eps^2 = ||X^T X||_F^2 + ||Y^T Y||_F^2 - 2 ||X^T Y||_F^2

and the achieved optimum is ``||X||_F^2 + ||Y||_F^2 - 2 * sum(singular values of X^T Y)``.
The bound is one-way (a small eps guarantees a good map; a large one says nothing) and concerns
the fitted rows only. It is vacuous once the per-sample bound reaches the mean squared distance
of unrelated pairs, ``(||X||^2 + ||Y||^2) / N`` (2 for unit vectors).
"""
from __future__ import annotations

import numpy as np

from .stats import AlignmentStats


def procrustes_bound(stats: AlignmentStats, centre: bool) -> dict[str, float | bool]:
    """Bound and achieved optimum for the rows summarised by ``stats`` (needs Gram matrices)."""
    m = stats.moments(centre)
    if m["gram_source"] is None:
        raise ValueError("the bound needs statistics with Gram matrices (with_gram=True)")
    n = stats.n
    d = max(m["cross"].shape)
    eps2 = (np.sum(m["gram_source"] ** 2) + np.sum(m["gram_target"] ** 2) - 2 * np.sum(m["cross"] ** 2))
    eps = float(np.sqrt(max(eps2, 0.0)))
    sv = np.linalg.svd(m["cross"], compute_uv=False)
    achieved_sq = max(m["sq_source"] + m["sq_target"] - 2 * float(sv.sum()), 0.0)
    bound = (2 * d) ** 0.25 * np.sqrt(eps)
    per_sample_bound = np.sqrt(2 * d) * eps / n
    unrelated = (m["sq_source"] + m["sq_target"]) / n
    return {
        "dimension": d, "pairs": n, "centred": centre,
        "eps": eps,
        "bound": float(bound),
        "achieved": float(np.sqrt(achieved_sq)),
        "per_sample_bound": float(per_sample_bound),
        "per_sample_achieved": float(achieved_sq / n),
        "unrelated_per_sample": float(unrelated),
        "vacuous": bool(per_sample_bound >= unrelated),
    }
