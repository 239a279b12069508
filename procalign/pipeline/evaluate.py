"""Evaluate a saved transform on a later sample of pairs (a drift check)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpaceMismatchError, TransformFileError
from ..formats import Location, ReadOptions, open_source
from ..math.affine import ChunkMapper
from ..math.fold import NonFinitePair, prepare_rows
from ..math.metrics import Agreement, knn_indices, knn_overlap, retrieval
from ..math.sampling import RowSample, uniform_by_index
from ..transform import Transform
from .anchors import iter_pairs, pair_anchors
from .chunking import pair_chunk_rows
from .progress import Progress


@dataclass
class EvaluateJob:
    transform: Transform
    transform_path: str
    source: Location
    target: Location
    column: str | None = None
    id_column: str | None = None
    by_position: bool = False
    batch_rows: int | None = None  # None: from memory_mb
    eval_size: int = 10000
    seed: int = 0
    memory_mb: int = 128
    force: bool = False           # evaluate samples stamped as being in other spaces


def check_sample_space(stamp, expected: str, role: str, path, force: bool) -> None:
    """Refuse a sample stamped as being in another space than the transform's ``role`` space.

    Not `stamps.check_stamp`: its advice (--inverse) is for apply; here the fix is the
    argument order or another transform.
    """
    if force or not stamp:
        return
    if not isinstance(stamp, dict):
        raise SpaceMismatchError(f"the procalign stamp is not a JSON object ({stamp!r}); delete it or pass --force",
                                 path)
    space = stamp.get("space")
    if space != expected:
        raise SpaceMismatchError(f"the {role} sample is stamped as space {space!r} but the transform's {role} space "
                                 f"is {expected!r}; pass SOURCE then TARGET, use the matching transform, or --force",
                                 path)


def _block(agreement: Agreement, sample, y_neighbours) -> dict:
    out = agreement.summary()
    if sample is not None and len(sample[0]) > 1:
        mapped, y = sample
        out.update(retrieval(mapped, y))
        out["knn10_overlap"] = knn_overlap(mapped, y, 10, b_neighbours=y_neighbours)
    return out


def evaluate_files(job: EvaluateJob, progress: Progress | None = None) -> dict:
    """Stream all pairs (cosine, residual) and keep a sample for retrieval metrics.

    Maps in float32 with the streaming kernel; memory is one chunk (``batch_rows``, else sized
    from ``memory_mb``) plus the sample.
    """
    progress = progress or Progress()
    t = job.transform
    options = ReadOptions(job.column, job.id_column)
    with open_source(job.source, options) as src, open_source(job.target, options) as tgt:
        check_sample_space(src.stamp(), t.source.name, "source", job.source.path, job.force)
        check_sample_space(tgt.stamp(), t.target.name, "target", job.target.path, job.force)
        if (src.dim, tgt.dim) != (t.d_source, t.d_target):
            raise TransformFileError(f"transform maps {t.d_source}-d -> {t.d_target}-d but the files are "
                                     f"{src.dim}-d and {tgt.dim}-d; pass SOURCE then TARGET", job.transform_path)
        pairing = pair_anchors(src, tgt, job.by_position)
        rows = job.batch_rows or pair_chunk_rows(job.memory_mb, src, tgt)
        keep = min(1.0, job.eval_size / pairing.pairs)
        names = ["aligned", "unaligned"] if src.dim == tgt.dim else ["aligned"]
        agreements = {name: Agreement() for name in names}
        samples = {name: RowSample(job.eval_size) for name in names}
        progress.start("evaluating", pairing.pairs)
        mapper = ChunkMapper(t.map, np.float32)
        out = np.empty((rows, t.d_target), np.float32)
        for start, x, y in iter_pairs(src, tgt, pairing, rows):
            try:
                x = prepare_rows(x, start, "source", t.normalize)
                y = np.asarray(prepare_rows(y, start, "target", t.normalize), np.float32)
            except NonFinitePair as e:
                raise pairing.error(e, src, tgt) from None
            pick = uniform_by_index(start, len(x), job.seed) < keep
            for name in names:
                mapped = mapper.map(x, out[: len(x)], start) if name == "aligned" else np.asarray(x, np.float32)
                agreements[name].add(mapped, y)
                samples[name].add(mapped, y, mask=pick)
            progress.advance(len(x))
        progress.stop()
    report = {"pairs": pairing.pairs, "pairing": pairing.summary(), "sample": samples["aligned"].count}
    y_neighbours = None
    for name in names:
        sample = samples[name].arrays()
        if y_neighbours is None and sample is not None and len(sample[1]) > 1:
            y_neighbours = knn_indices(sample[1], 10)
        report[name] = _block(agreements[name], sample, y_neighbours)
    return report
