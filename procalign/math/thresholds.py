"""Translate a cosine-similarity cut-off from one space to another by matching shares of pairs.

Given the same items in two spaces, a cut-off ``t`` in the first keeps the share ``p`` of item
pairs whose cosine is at least ``t``; the translated cut-off is the cosine in the second space
above which the same share ``p`` of pairs falls (a quantile). Pairs are all i < j among the
items given, computed blockwise (memory: one block of rows times the items, plus the pair
cosines of each space, n(n-1)/2 float32 values: callers cap n).
"""
from __future__ import annotations

import numpy as np

from .metrics import _unit


def pair_cosines(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """Cosines of every pair i < j of rows of x, in a fixed order (row-major upper triangle)."""
    u = _unit(x)
    parts = []
    for a in range(0, len(u), block):
        sims = u[a:a + block] @ u.T
        for k in range(len(sims)):
            parts.append(sims[k, a + k + 1:])
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def share_above(cosines: np.ndarray, cut: float) -> float:
    return float(np.mean(cosines >= cut)) if len(cosines) else float("nan")


def matching_cut(cosines: np.ndarray, share: float) -> float:
    """The cut-off above which ``share`` of ``cosines`` fall."""
    if share <= 0:
        return float(np.nextafter(np.max(cosines), np.inf))
    if share >= 1:
        return float(np.min(cosines))
    return float(np.quantile(cosines, 1.0 - share, method="higher"))


def translate(source_cos: np.ndarray, target_cos: np.ndarray, cut: float) -> dict:
    """The translated cut-off and how well the two sides agree on which pairs pass."""
    p = share_above(source_cos, cut)
    target_cut = matching_cut(target_cos, p)
    agree = float(np.mean((source_cos >= cut) == (target_cos >= target_cut)))
    return {"source_threshold": float(cut), "target_threshold": target_cut, "share_above": p,
            "target_share_above": share_above(target_cos, target_cut), "agreement": agree,
            "pairs": int(len(source_cos))}
