"""Fit a transform from two anchor files, streaming, in one pass (plus one for the report)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, UsageError
from ..io import Location, open_reader
from ..procrustes import FitOptions, fit_transform
from ..stats import AlignmentStats, NonFiniteInput
from ..transform import NonFiniteRows, Transform, unit_rows
from .anchors import Pairing, iter_pairs, pair_anchors
from .progress import Progress
from .sampling import uniform_by_index
from .stream import run_stages


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


def chunk_rows(job: FitJob, source, target) -> int:
    """Rows per chunk: ``job.batch_rows``, or what keeps both readers' buffers in the budget."""
    if job.batch_rows:
        return job.batch_rows
    per_row = source.ring_size * (source.dim * source.dtype.itemsize + target.dim * target.dtype.itemsize) \
        + 4 * (source.dim + target.dim)  # plus the shifted float32 copies of a block
    return int(max(256, min(1 << 16, job.memory_mb * 2**20 // per_row)))


@dataclass
class FitResult:
    transform: Transform
    metadata: dict
    pairing: Pairing
    stats: AlignmentStats
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None   # (x, y, ids)
    control: tuple[np.ndarray, np.ndarray] | None = None                      # fit-side sample


def non_finite(path: str, row: int) -> InputError:
    return InputError(f"NaN or Inf at row {row}; drop or repair that row", path)


def checked(x: np.ndarray, path: str, rows_of, normalize: bool, check_finite: bool = True) -> np.ndarray:
    """Reject NaN/Inf rows (and zero rows when normalising), naming the file row.

    ``check_finite=False`` when the caller's statistics already trip on NaN/Inf (the fit).
    """
    if check_finite and not np.isfinite(np.sum(x)):  # one contiguous sum is the cheap tripwire
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if len(bad):
            raise non_finite(path, rows_of(bad[0]))
    if normalize:
        try:
            return unit_rows(x)
        except NonFiniteRows as e:
            raise InputError(f"zero vector at row {rows_of(e.rows[0])} cannot be L2-normalised; drop it "
                             "or fit without --normalize", path) from None
    return x


class _Sample:
    """Up to ``cap`` rows kept in memory, chosen by a per-row hash (chunking does not matter)."""

    def __init__(self, cap: int):
        self.cap, self.parts, self.count = cap, [], 0

    def add(self, *arrays, mask: np.ndarray) -> None:
        take = np.flatnonzero(mask)[: self.cap - self.count]
        if len(take):
            self.parts.append(tuple(None if a is None else np.array(a[take]) for a in arrays))
            self.count += len(take)

    def arrays(self):
        if not self.parts:
            return None
        return tuple(None if p[0] is None else np.concatenate(p) for p in zip(*self.parts))


def fit_files(job: FitJob, progress: Progress | None = None) -> FitResult:
    progress = progress or Progress()
    if not 0 <= job.holdout < 1:
        raise UsageError(f"--holdout must be in [0, 1), got {job.holdout}")
    if job.source.path.resolve() == job.target.path.resolve() and job.source.dataset == job.target.dataset:
        raise UsageError("source and target are the same file; fit needs the same items embedded twice",
                         job.source.path)
    with open_reader(job.source, job.column, job.id_column) as src, \
            open_reader(job.target, job.column, job.id_column) as tgt:
        if job.options.rotation_only and src.dim != tgt.dim:
            raise UsageError(f"--rotation-only needs equal dimensions, got {src.dim} -> {tgt.dim}", job.source.path)
        pairing = pair_anchors(src, tgt, job.by_position)
        n = pairing.pairs
        expected_holdout = max(n * job.holdout, 1)
        keep_eval = min(1.0, job.eval_size / expected_holdout)
        keep_control = min(1.0, job.eval_size / max(n - expected_holdout, 1))
        with_gram = job.report or (job.options.scale and src.dim > tgt.dim)
        stats = AlignmentStats.empty(src.dim, tgt.dim, with_gram=with_gram)
        heldout, control = _Sample(job.eval_size), _Sample(job.eval_size)

        def source_row(i, start):
            return int(pairing.source_index[start + i]) if pairing.mode == "id" else start + i

        def target_row(i, start):
            return int(pairing.target_index[start + i]) if pairing.mode == "id" else start + i

        progress.start("fitting", n)

        # The one-pass fit lets the statistics trip on NaN/Inf (no extra pass over the data);
        # with a hold-out or report, rows are checked up front as some never reach them.
        check = job.holdout > 0 or job.report

        def add(item):
            start, x, y = item
            x = checked(x, src.path, lambda i: source_row(i, start), job.options.normalize, check)
            y = checked(y, tgt.path, lambda i: target_row(i, start), job.options.normalize, check)
            try:
                return _add(start, x, y)
            except NonFiniteInput as e:
                if len(e.source_rows):
                    raise non_finite(src.path, source_row(int(e.source_rows[0]), start)) from None
                raise non_finite(tgt.path, target_row(int(e.target_rows[0]), start)) from None

        def _add(start, x, y):
            if job.holdout == 0 and not job.report:
                stats.update(x, y)
                return len(x)
            u = uniform_by_index(start, len(x), job.seed)
            held = u < job.holdout
            if held.any():
                ids = None if pairing.ids is None else pairing.ids[start:start + len(x)]
                heldout.add(x, y, ids, mask=held & (u < job.holdout * keep_eval))
                stats.update(x[~held], y[~held])
            else:
                stats.update(x, y)
            if job.report:
                # A second, independent hash picks the fit-side rows for the shuffled control.
                v = uniform_by_index(start, len(x), job.seed + 1)
                control.add(x, y, mask=~held & (v < keep_control))
            return len(x)

        # Reading both files overlaps the products (see stream.py).
        run_stages(iter_pairs(src, tgt, pairing, chunk_rows(job, src, tgt)), add, progress.advance)
        progress.stop()
        if stats.n == 0:
            raise UsageError(f"--holdout {job.holdout} leaves no anchor pair to fit on ({n} pairs)", job.source.path)
        try:
            transform, fit_summary = fit_transform(stats, job.options)
        except ValueError as e:
            raise UsageError(str(e), job.source.path) from None
        metadata = {
            "source": {"name": job.source_name or job.source.path.stem, "file": job.source.path.name,
                       "dim": src.dim},
            "target": {"name": job.target_name or job.target.path.stem, "file": job.target.path.name,
                       "dim": tgt.dim},
            "options": job.options.as_dict(),
            "anchors": stats.n,
            "pairing": pairing.summary(),
            "holdout": {"fraction": job.holdout, "seed": job.seed, "pairs": n - stats.n},
            "fit": fit_summary,
        }
    return FitResult(Transform(transform.matrix, transform.source_mean, transform.target_mean,
                               transform.scale, transform.normalize, metadata),
                     metadata, pairing, stats, heldout.arrays(), control.arrays())
