"""What the statistics say about the anchors before any map is judged: scale and rank.

* Norms: the root-mean-square norm of each side's rows, raw and centred (from the sums of
  squares; a mean norm would need another statistic). An orthogonal map keeps lengths, so when
  the two sides' lengths differ by more than `NORM_RATIO_LIMIT` the map lands every source row
  at the wrong distance from the target's rows and cosine retrieval can collapse to chance.
  The trap is checked on the raw norms and, for a centred fit, also on the centred spreads
  (centring itself absorbs a difference that is only an offset).
* Rank: the numerical rank of the cross-product ``X^T Y`` (`spectral.numerical_rank`). The
  map is arbitrary in directions the anchors do not determine; a few missing directions are
  common (a model with a constant coordinate), many mean too few or too alike anchors.
"""
from __future__ import annotations

import numpy as np

from .spectral import RELATIVE_TOLERANCE, numerical_rank
from .stats import AlignmentStats

NORM_RATIO_LIMIT = 2.0


def _ratio(a: float, b: float) -> float:
    if a == 0 or b == 0:
        return float("inf") if a != b else 1.0
    return max(a, b) / min(a, b)


def norm_summary(stats: AlignmentStats) -> dict:
    """RMS norms of source and target rows, raw and centred, and their ratios (>= 1)."""
    n = max(stats.n, 1)
    raw_s = np.sqrt((stats.sq_source + stats.n * float(stats.mean_source @ stats.mean_source)) / n)
    raw_t = np.sqrt((stats.sq_target + stats.n * float(stats.mean_target @ stats.mean_target)) / n)
    cen_s, cen_t = np.sqrt(stats.sq_source / n), np.sqrt(stats.sq_target / n)
    return {"source_rms_norm": float(raw_s), "target_rms_norm": float(raw_t), "ratio": _ratio(raw_s, raw_t),
            "source_centred_rms": float(cen_s), "target_centred_rms": float(cen_t),
            "centred_ratio": _ratio(cen_s, cen_t)}


def scale_mismatch(norms: dict, centre: bool) -> bool:
    """True when an orthogonal map (no scale) cannot match the two sides' lengths."""
    return norms["ratio"] > NORM_RATIO_LIMIT and (not centre or norms["centred_ratio"] > NORM_RATIO_LIMIT)


def cross_rank(stats: AlignmentStats, centre: bool) -> dict:
    """Numerical rank of the (centred when ``centre``) cross-product, of at most min(d_s, d_t)."""
    cross = stats.moments(centre)["cross"]
    s = np.linalg.svd(cross, compute_uv=False)
    return {"effective_rank": numerical_rank(s), "directions": int(min(cross.shape)),
            "tolerance": RELATIVE_TOLERANCE}
