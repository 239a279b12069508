"""`threshold`: translate a cosine cut-off from the SOURCE space to the TARGET space, estimated
on anchor pairs (see `math.thresholds`). Items are a hash-chosen sample of the anchors (at most
``items``), so memory is bounded whatever the anchor files' size."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..errors import TransformFileError, UsageError
from ..formats import Location, ReadOptions, open_source
from ..math.sampling import uniform_by_index
from ..math.thresholds import pair_cosines, translate
from ..transform import Transform
from .anchors import pair_anchors, take_pairs
from .spool import random_access, spool_dir


@dataclass
class ThresholdJob:
    transform: Transform
    transform_path: str
    source: Location
    target: Location
    threshold: float
    column: str | None = None
    id_column: str | None = None
    by_position: bool = False
    items: int = 3000
    seed: int = 0


def _sample(source, target, pairing, items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``items`` pairs chosen by a hash of the pair index (as the hold-out is)."""
    chosen = np.flatnonzero(uniform_by_index(0, pairing.pairs, seed) < items / pairing.pairs)[:items]
    return take_pairs(source, target, pairing, chosen)


def translate_threshold(job: ThresholdJob) -> dict:
    if not -1.0 <= job.threshold <= 1.0:
        raise UsageError(f"a cosine threshold lies in [-1, 1], got {job.threshold}")
    t, options = job.transform, ReadOptions(job.column, job.id_column)
    spool = spool_dir()
    with spool, contextlib.ExitStack() as opened:
        src, tgt = (opened.enter_context(random_access(open_source(loc, options), spool.name))
                    for loc in (job.source, job.target))
        if (src.dim, tgt.dim) != (t.d_source, t.d_target):
            raise TransformFileError(f"transform maps {t.d_source}-d -> {t.d_target}-d but the anchors are "
                                     f"{src.dim}-d and {tgt.dim}-d; pass SOURCE then TARGET", job.transform_path)
        pairing = pair_anchors(src, tgt, job.by_position)
        x, y = _sample(src, tgt, pairing, job.items, job.seed)
    if len(x) < 3:
        raise UsageError(f"only {len(x)} anchor pairs; a threshold needs many item pairs", job.source.path)
    source_cos = pair_cosines(x)
    result = translate(source_cos, pair_cosines(y), job.threshold)
    # the same cut-off for vectors mapped into the target space (a rewritten corpus)
    mapped = translate(source_cos, pair_cosines(t(x)), job.threshold)
    return {**result, "mapped_threshold": mapped["target_threshold"], "mapped_agreement": mapped["agreement"],
            "items": int(len(x)), "source": t.source.name, "target": t.target.name}
