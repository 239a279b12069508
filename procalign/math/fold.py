"""The one per-chunk fold of anchor pairs: normalise, check finite, split off the hold-out,
update the statistics.

The estimator, the file-level fit, the quality report's second pass and `evaluate` all go
through `prepare_rows` and `HoldoutSplit`, so a row is held out (or normalised, or refused)
the same way everywhere. `PairFold` is the fit's accumulator built on them.

Rows are identified by their *pair index* (position in the stream of pairs, from 0), never by
their position inside a chunk, so results do not depend on how the pairs were chunked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .affine import NonFiniteRows, unit_rows
from .sampling import RowSample, uniform_by_index
from .stats import AlignmentStats, NonFiniteInput


class NonFinitePair(ValueError):
    """A pair that cannot be used; ``side`` is "source" or "target", ``index`` the pair index."""

    def __init__(self, side: str, index: int, what: str):
        self.side, self.index, self.what = side, int(index), what
        super().__init__(f"{what} at {side} pair {index}")


def prepare_rows(x: np.ndarray, first: int, side: str, normalize: bool, check_finite: bool = True) -> np.ndarray:
    """Refuse NaN/Inf rows (and zero rows when normalising); L2-normalise when asked.

    ``check_finite=False`` when the caller's statistics already trip on NaN/Inf (`AlignmentStats`).
    """
    if check_finite and not np.isfinite(np.sum(x)):  # one contiguous sum is the cheap tripwire
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if len(bad):
            raise NonFinitePair(side, first + bad[0], "NaN or Inf")
    if normalize:
        try:
            return unit_rows(x)
        except NonFiniteRows as e:
            raise NonFinitePair(side, first + e.rows[0], "zero vector cannot be L2-normalised") from None
    return x


@dataclass(frozen=True)
class HoldoutSplit:
    """Which pairs are held out: those whose hash of (pair index, seed) falls below ``fraction``."""

    fraction: float = 0.0
    seed: int = 0

    def uniform(self, first: int, n: int) -> np.ndarray:
        return uniform_by_index(first, n, self.seed)

    def held(self, first: int, n: int) -> np.ndarray:
        if self.fraction <= 0:
            return np.zeros(n, dtype=bool)
        return self.uniform(first, n) < self.fraction


class PairFold:
    """Fold chunks of pairs into `AlignmentStats`, keeping optional samples on the side.

    ``run`` (see `AlignmentStats.from_pieces`) computes a chunk's statistics piece by piece,
    on several cores; by default in one piece. ``heldout`` keeps up to its cap of held-out pairs (x, y, ids), the first ``keep_heldout``
    share of the held-out hash range; ``control`` keeps fitted pairs chosen by an independent
    hash (seed + 1) with probability ``keep_control``, for the shuffled-pair control.
    """

    def __init__(self, stats: AlignmentStats, normalize: bool = False, split: HoldoutSplit = HoldoutSplit(),
                 check_finite: bool = True, heldout: RowSample | None = None, keep_heldout: float = 1.0,
                 control: RowSample | None = None, keep_control: float = 1.0, run=None):
        self.run = run
        self.stats, self.normalize, self.split, self.check_finite = stats, normalize, split, check_finite
        self.heldout, self.keep_heldout = heldout, keep_heldout
        self.control, self.keep_control = control, keep_control

    def add(self, first: int, x: np.ndarray, y: np.ndarray, ids: np.ndarray | None = None) -> int:
        """Fold pairs ``first .. first+len(x)-1`` in; returns how many were offered."""
        x = prepare_rows(x, first, "source", self.normalize, self.check_finite)
        y = prepare_rows(y, first, "target", self.normalize, self.check_finite)
        held = None
        if self.split.fraction > 0:
            u = self.split.uniform(first, len(x))
            held = u < self.split.fraction
            if self.heldout is not None and held.any():
                self.heldout.add(x, y, ids, mask=held & (u < self.split.fraction * self.keep_heldout))
        if held is not None and held.any():
            self._update(first, x[~held], y[~held], np.flatnonzero(~held))
        else:
            self._update(first, x, y, None)
        if self.control is not None:
            fitted = ~held if held is not None else np.ones(len(x), dtype=bool)
            v = uniform_by_index(first, len(x), self.split.seed + 1)
            self.control.add(x, y, mask=fitted & (v < self.keep_control))
        return len(x)

    def _update(self, first: int, x: np.ndarray, y: np.ndarray, kept: np.ndarray | None) -> None:
        try:
            if self.run is None:
                self.stats.update(x, y)
            else:
                self.stats.merge(AlignmentStats.from_pieces(x, y, self.stats.with_gram, self.run))
        except NonFiniteInput as e:
            side, rows = ("source", e.source_rows) if len(e.source_rows) else ("target", e.target_rows)
            index = int(rows[0]) if kept is None else int(kept[rows[0]])
            raise NonFinitePair(side, first + index, "NaN or Inf") from None
