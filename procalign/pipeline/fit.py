"""Fit a transform from two anchor files, streaming, in one pass over the pairs.

The pairs go through the one per-chunk fold (`math.fold.PairFold`): normalise, check finite,
split off the hold-out, update the float64 statistics. The result carries what the quality
report needs (statistics, samples) and a way to read the pairs again (`AnchorPairs`), so the
report never needs this module.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterator

import numpy as np

from ..errors import UsageError
from ..formats import Location, ReadOptions, open_source
from ..formats.storage import has_glob
from ..math.fold import HoldoutSplit, NonFinitePair, PairFold
from ..math.methods import ORTHOGONAL
from ..math.procrustes import FitOptions
from ..math.sampling import RowSample
from ..math.stats import AlignmentStats
from ..transform import Space, Transform
from .anchors import Pairing, iter_pairs, pair_anchors
from .chunking import pair_chunk_rows
from .cores import CorePool
from .methods import check_method, fit_chosen
from .progress import Progress
from .spool import random_access, spool_dir
from .stream import read_guard, run_stages


# Rows per piece of the statistics. Each piece has its own d x d float64 sums, merged in order:
# at d = 384 with Gram matrices that is nine 1.2 MB arrays made, filled and merged per piece.
# 1M x 384 pairs, 2 cores: 8,192-row pieces against 2,048 took 7.3-7.4 s against 7.9-8.2 (with
# the report) and 2.7-2.8 s against 3.0 (--no-report).
STATS_PIECE_ROWS = 8192


@dataclass
class FitJob:
    source: Location
    target: Location
    options: FitOptions = field(default_factory=FitOptions)
    column: str | None = None
    id_column: str | None = None
    by_position: bool = False
    batch_rows: int | None = None  # None: from memory_mb
    holdout: float = 0.0
    seed: int = 0
    report: bool = True
    eval_size: int = 10000
    source_name: str | None = None
    target_name: str | None = None
    memory_mb: int = 128
    method: str = ORTHOGONAL      # or whitened, affine, auto (see pipeline.methods)
    reweight: float | None = None  # whitened: None for the default
    engine: object = None          # a distributed engine (pipeline.engines) folds the pairs on its workers

    @property
    def read_options(self) -> ReadOptions:
        return ReadOptions(self.column, self.id_column)

    @property
    def split(self) -> HoldoutSplit:
        return HoldoutSplit(self.holdout, self.seed)


@dataclass
class AnchorPairs:
    """Two anchor files, their pairing and chunk size: enough to read the pairs again."""

    source: Location
    target: Location
    read_options: ReadOptions
    pairing: Pairing
    chunk_rows: int
    spool: object = None  # keeps spooled copies of streamed anchors on disk while needed
    in_memory: list | None = None  # the pairs themselves, kept by the fit when they fit --memory

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if self.in_memory is not None:
            yield from self.in_memory
            return
        with open_source(self.source, self.read_options) as src, open_source(self.target, self.read_options) as tgt:
            yield from iter_pairs(src, tgt, self.pairing, self.chunk_rows)


@dataclass
class FitResult:
    transform: Transform
    pairing: Pairing
    stats: AlignmentStats
    pairs: AnchorPairs
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None   # (x, y, ids)
    control: tuple[np.ndarray, np.ndarray] | None = None                      # fit-side sample
    method_rows: dict | None = None  # every candidate method measured on the held-out pairs


def _check_job(job: FitJob) -> None:
    if not 0 <= job.holdout < 1:
        raise UsageError(f"--holdout must be in [0, 1), got {job.holdout}")
    if job.source.is_stdio and job.target.is_stdio:
        raise UsageError("only one input can come from standard input ('-'); give the other as a file")
    if job.source.path.resolve() == job.target.path.resolve() and job.source.inner == job.target.inner:
        raise UsageError("source and target are the same file; fit needs the same items embedded twice",
                         job.source.path)
    check_method(job.method, job.options, job.holdout, job.reweight)


def default_names(source: Location, target: Location) -> tuple[str, str]:
    """Space names from the file names: the stems, or more of the path when the stems agree,
    because two spaces with one name defeat the stamps (a double apply would go unnoticed)."""
    for name in (lambda loc: _naming(loc)[0], lambda loc: "/".join(_naming(loc)[::-1]),
                 lambda loc: f"{loc.path.name}{':' + loc.inner if loc.inner else ''}", str):
        s, t = name(source), name(target)
        if s != t:
            return s, t
    return f"{_naming(source)[0]} (source)", f"{_naming(target)[0]} (target)"


def _naming(location: Location) -> tuple[str, str]:
    """The name of a file (its stem) or of a dataset (its directory's name; for a glob, the
    directory it lists: ``dump/*.parquet`` is ``dump``), and the name of the directory above."""
    if not location.parts:
        return location.path.stem, location.path.parent.name
    path = PurePath(str(location.path).rstrip("/"))
    while has_glob(path.name) and path.parent != path:
        path = path.parent
    return path.name, path.parent.name


def _fold_for(job: FitJob, stats: AlignmentStats, pairs: int) -> PairFold:
    expected_holdout = max(pairs * job.holdout, 1)
    return PairFold(
        stats, job.options.normalize, job.split,
        # The statistics trip on NaN/Inf (no extra pass over the data); with a hold-out, rows
        # are checked up front, as the held-out ones never reach the statistics.
        check_finite=job.holdout > 0,
        heldout=RowSample(job.eval_size) if job.holdout > 0 else None,
        keep_heldout=min(1.0, job.eval_size / expected_holdout),
        control=RowSample(job.eval_size) if job.report else None,
        keep_control=min(1.0, job.eval_size / max(pairs - expected_holdout, 1)))


def _fold_local(src, tgt, pairing: Pairing, fold: PairFold, rows: int, progress: Progress,
                keep: list | None = None) -> None:
    """One pass over the pairs into ``fold``: reads overlap the math, and each chunk's
    statistics are computed in pieces on every core. A copy of every chunk goes to ``keep``
    when given (for the report's second pass)."""
    def add(item):
        start, x, y = item
        if keep is not None:  # chunks may be mapped windows or reused buffers: copy
            keep.append((start, np.array(x), np.array(y)))
        try:
            return fold.add(start, x, y, pairing.ids_of(start, len(x)))
        except NonFinitePair as e:
            raise pairing.error(e, src, tgt) from None

    progress.start("fitting", pairing.pairs)
    try:
        with CorePool(piece_rows=STATS_PIECE_ROWS) as cores:
            fold.run = cores.run
            # read errors name the file that could not be read
            run_stages(read_guard(iter_pairs(src, tgt, pairing, rows), f"{src.path} or {tgt.path}"), add,
                       progress.advance)
    finally:
        fold.run = None
        progress.stop()


def fit_files(job: FitJob, progress: Progress | None = None) -> FitResult:
    progress = progress or Progress()
    _check_job(job)
    spool = spool_dir()  # streams are copied here, so pairs can be read again and by id
    with contextlib.ExitStack() as opened:
        distributed = getattr(job.engine, "distributed", False)  # workers read the files themselves
        src, tgt = (opened.enter_context(random_access(open_source(loc, job.read_options), spool.name,
                                                       by_id=not distributed))
                    for loc in (job.source, job.target))
        if job.options.rotation_only and src.dim != tgt.dim:
            raise UsageError(f"--rotation-only needs equal dimensions, got {src.dim} -> {tgt.dim}", job.source.path)
        pairing = pair_anchors(src, tgt, job.by_position)
        with_gram = job.report or (job.options.scale and src.dim > tgt.dim) or job.method != ORTHOGONAL
        stats = AlignmentStats.empty(src.dim, tgt.dim, with_gram=with_gram)
        fold = _fold_for(job, stats, pairing.pairs)
        rows = max(1, min(job.batch_rows or pair_chunk_rows(job.memory_mb, src, tgt), pairing.pairs))
        pair_bytes = src.dim * src.dtype.itemsize + tgt.dim * tgt.dtype.itemsize
        # the report reads the pairs again: from memory when they fit the budget
        kept = [] if job.report and pairing.pairs * pair_bytes <= job.memory_mb << 20 else None
        if distributed:
            from .distributed_fit import fold_distributed
            fold_distributed(job, src, tgt, pairing, fold, rows, progress)
        else:
            _fold_local(src, tgt, pairing, fold, rows, progress, kept)
        if stats.n == 0:
            raise UsageError(f"--holdout {job.holdout} leaves no anchor pair to fit on ({pairing.pairs} pairs)",
                             job.source.path)
        try:
            chosen = fit_chosen(stats, job.options, job.method, job.reweight,
                                fold.heldout.arrays() if fold.heldout else None, with_rows=job.report)
        except ValueError as e:
            raise UsageError(str(e), job.source.path) from None
        names = default_names(job.source, job.target)
        if (job.source_name or names[0]) == (job.target_name or names[1]):
            raise UsageError(f"both spaces would be named {job.source_name or names[0]!r}; give --source-name "
                             "and --target-name different names", job.source.path)
        transform = Transform.fitted(
            chosen.map, Space(job.source_name or names[0], src.dim), Space(job.target_name or names[1], tgt.dim),
            chosen.options, chosen.method,
            anchors=stats.n, pairing=pairing.summary(), files={"source": job.source.path.name, "target": job.target.path.name},
            holdout={"fraction": job.holdout, "seed": job.seed, "pairs": pairing.pairs - stats.n}, fit=chosen.summary)
    pairs = AnchorPairs(getattr(src, "location", job.source), getattr(tgt, "location", job.target),
                        job.read_options, pairing, rows, spool, None if distributed else kept)
    samples = (fold.heldout.arrays() if fold.heldout else None, fold.control.arrays() if fold.control else None)
    return FitResult(transform, pairing, stats, pairs, *samples, method_rows=chosen.rows)
