"""Deterministic per-row random choices that do not depend on how rows are chunked."""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def uniform_by_index(first: int, n: int, seed: int) -> np.ndarray:
    """A uniform [0, 1) number for each row index first..first+n-1 (splitmix64 of index, seed)."""
    with np.errstate(over="ignore"):
        z = (np.arange(first, first + n, dtype=np.uint64) + np.uint64(seed) * _GOLDEN) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


class RowSample:
    """Up to ``cap`` rows of several aligned arrays kept in memory, in the order offered."""

    def __init__(self, cap: int):
        self.cap, self.parts, self.count = cap, [], 0

    def add(self, *arrays, mask: np.ndarray) -> None:
        take = np.flatnonzero(mask)[: self.cap - self.count]
        if len(take):
            self.parts.append(tuple(None if a is None else np.array(a[take]) for a in arrays))
            self.count += len(take)

    def arrays(self) -> tuple | None:
        if not self.parts:
            return None
        return tuple(None if p[0] is None else np.concatenate(p) for p in zip(*self.parts))
