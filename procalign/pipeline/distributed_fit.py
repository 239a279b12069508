"""The fit's one pass over the anchor pairs, spread over a cluster: a tree reduction of the
same mergeable statistics the local fit accumulates.

The client pairs the anchors (ids only, joined by id across parts as in single files) and cuts
the pairs into tasks, about one per source part (or equal ranges for a single file), cut on
the chunk boundaries of the local fit. Each task opens
the anchors on its worker, folds its pairs with the fit's own `PairFold` (same normalisation,
hold-out split by pair index, samples) into `AlignmentStats`, and the results are merged
pairwise in pair order (`AlignmentStats.merge`, samples concatenated and capped), so the
statistics, and hence the transform, equal the local fit's up to rounding.

Notes
-----
Cost per task: reading its pairs plus one b x d_s x d_t product per chunk; each merge moves
and adds one d_s x d_t matrix (plus the Gram matrices and the capped samples when the report
or the method needs them). Workers read the anchor files by the paths the client was given:
local paths must be visible to every worker (a shared filesystem), URLs always are.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..formats import Location, open_source
from ..formats.parts import PartsSource, with_row_counts
from ..math.fold import NonFinitePair
from ..math.sampling import RowSample
from ..math.stats import AlignmentStats
from .anchors import Pairing, take_pairs
from .progress import Progress


@dataclass(frozen=True)
class FoldTask:
    job: object                 # the FitJob, without its engine
    source: Location
    target: Location
    first: int                  # pair index of this task's first pair
    source_rows: np.ndarray     # rows of the source holding the pairs first, first+1, ...
    target_rows: np.ndarray
    ids: np.ndarray | None
    pairs: int                  # pairs in the whole fit (the fold's sample shares depend on it)
    chunk_rows: int
    with_gram: bool


@dataclass
class FoldPart:
    """One task's share: its statistics and its (capped) samples, in pair order."""

    stats: AlignmentStats
    heldout: tuple | None
    control: tuple | None
    cap: int


def _concat(a: tuple | None, b: tuple | None, cap: int) -> tuple | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(None if x is None else np.concatenate([x, y])[:cap] for x, y in zip(a, b))


def merge_parts(a: FoldPart, b: FoldPart) -> FoldPart:
    """``a`` then ``b``: statistics merged, samples concatenated and capped (runs on a worker)."""
    return FoldPart(a.stats.merge(b.stats), _concat(a.heldout, b.heldout, a.cap),
                    _concat(a.control, b.control, a.cap), a.cap)


def fold_range(task: FoldTask) -> FoldPart:
    """Fold one task's pairs (runs on a worker)."""
    from .fit import _fold_for
    job, n = task.job, len(task.source_rows)
    pairing = Pairing("id", n, source_index=task.source_rows, target_index=task.target_rows, ids=task.ids)
    with open_source(task.source, job.read_options) as src, open_source(task.target, job.read_options) as tgt:
        fold = _fold_for(job, AlignmentStats.empty(src.dim, tgt.dim, task.with_gram), task.pairs)
        for a in range(0, n, task.chunk_rows):
            x, y = take_pairs(src, tgt, pairing, np.arange(a, min(a + task.chunk_rows, n)))
            try:
                fold.add(task.first + a, x, y, pairing.ids_of(a, len(x)))
            except NonFinitePair as e:
                raise pairing.error(NonFinitePair(e.side, e.index - task.first, e.what), src, tgt) from None
    samples = [s.arrays() if s is not None else None for s in (fold.heldout, fold.control)]
    return FoldPart(fold.stats, *samples, job.eval_size)


def _cuts(src, rows: np.ndarray, chunk: int, workers: int) -> list[int]:
    """Where to cut the pairs (sorted by source row) into tasks: near part boundaries, or into
    equal ranges, always on a multiple of the chunk size, so that every chunk holds the same
    pairs as in the local fit and its statistics are bitwise the local ones."""
    if isinstance(src, PartsSource):
        inner = np.searchsorted(rows, src.offsets[1:-1])
    else:
        tasks = max(1, min(2 * workers, math.ceil(len(rows) / chunk)))
        inner = np.arange(1, tasks) * len(rows) / tasks
    on_chunks = [min(len(rows), int(round(c / chunk)) * chunk) for c in inner]
    return sorted(set([0] + on_chunks + [len(rows)]))


def fold_tasks(job, src, tgt, pairing: Pairing, rows: int, with_gram: bool, workers: int) -> list[FoldTask]:
    if job.source.is_stdio or job.target.is_stdio:
        raise UsageError("--engine dask reads the anchors on its workers; give files, not standard input")
    everything = np.arange(pairing.pairs, dtype=np.int64)
    source_rows = everything if pairing.mode == "position" else pairing.source_index
    target_rows = everything if pairing.mode == "position" else pairing.target_index
    locations = [with_row_counts(loc, s) if isinstance(s, PartsSource) else loc
                 for loc, s in ((job.source, src), (job.target, tgt))]
    plain = dataclasses.replace(job, engine=None)
    cuts = _cuts(src, source_rows, rows, workers)
    return [FoldTask(plain, *locations, a, source_rows[a:b], target_rows[a:b], pairing.ids_of(a, b - a),
                     pairing.pairs, rows, with_gram) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def fold_distributed(job, src, tgt, pairing: Pairing, fold, rows: int, progress: Progress) -> None:
    """Fold every pair on the engine's workers into ``fold`` (its statistics and samples)."""
    engine = job.engine
    tasks = fold_tasks(job, src, tgt, pairing, rows, fold.stats.with_gram, engine.workers)
    progress.start("fitting", len(tasks), unit="tasks")
    try:
        total = engine.reduce(fold_range, merge_parts, tasks, lambda: progress.advance(1))
    finally:
        progress.stop()
    fold.stats.merge(total.stats)
    for sample, arrays in ((fold.heldout, total.heldout), (fold.control, total.control)):
        if isinstance(sample, RowSample) and arrays is not None:
            sample.add(*arrays, mask=np.ones(len(arrays[0]), dtype=bool))
