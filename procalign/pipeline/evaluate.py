"""Evaluate a saved transform on a later sample of pairs (a drift check)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TransformFileError
from ..io import Location, open_reader
from ..metrics import CosineHistogram, knn_indices, knn_overlap, retrieval, row_agreement
from ..transform import ChunkMapper, Transform
from .anchors import iter_pairs, pair_anchors
from .fit import checked
from .progress import Progress
from .sampling import uniform_by_index


@dataclass
class EvaluateJob:
    transform: Transform
    transform_path: str
    source: Location
    target: Location
    column: str | None = None
    id_column: str | None = None
    by_position: bool = False
    batch_rows: int = 8192
    eval_size: int = 10000
    seed: int = 0


def _block(hist: CosineHistogram, res_sq: float, y_sq: float, sample, y_neighbours) -> dict:
    out = {"cosine": hist.summary(), "relative_residual": float(np.sqrt(res_sq / y_sq)) if y_sq else None}
    if sample is not None and len(sample[0]) > 1:
        mapped, y = sample
        out.update(retrieval(mapped, y))
        out["knn10_overlap"] = knn_overlap(mapped, y, 10, b_neighbours=y_neighbours)
    return out


def evaluate_files(job: EvaluateJob, progress: Progress | None = None) -> dict:
    """Stream all pairs (cosine, residual) and keep a sample for retrieval metrics.

    Maps in float32 with the streaming kernel; memory is one chunk plus the sample.
    """
    progress = progress or Progress()
    t = job.transform
    with open_reader(job.source, job.column, job.id_column) as src, \
            open_reader(job.target, job.column, job.id_column) as tgt:
        if (src.dim, tgt.dim) != (t.d_source, t.d_target):
            raise TransformFileError(f"transform maps {t.d_source}-d -> {t.d_target}-d but the files are "
                                     f"{src.dim}-d and {tgt.dim}-d; pass SOURCE then TARGET", job.transform_path)
        pairing = pair_anchors(src, tgt, job.by_position)
        keep = min(1.0, job.eval_size / pairing.pairs)
        same_dim = src.dim == tgt.dim
        blocks = {"aligned": [CosineHistogram(), 0.0, 0.0, []]}
        if same_dim:
            blocks["unaligned"] = [CosineHistogram(), 0.0, 0.0, []]
        progress.start("evaluating", pairing.pairs)
        mapper = ChunkMapper(t, np.float32)
        out = np.empty((job.batch_rows, t.d_target), np.float32)
        kept = 0
        for start, x, y in iter_pairs(src, tgt, pairing, job.batch_rows):
            x = checked(x, src.path, lambda i, first=start: first + i, t.normalize)
            y = np.asarray(checked(y, tgt.path, lambda i, first=start: first + i, t.normalize), np.float32)
            pick = np.flatnonzero(uniform_by_index(start, len(x), job.seed) < keep)[: job.eval_size - kept]
            kept += len(pick)
            for name, state in blocks.items():
                mapped = mapper.map(x, out[: len(x)], start) if name == "aligned" else np.asarray(x, np.float32)
                cos, res, yy = row_agreement(mapped, y)
                state[0].add(cos)
                state[1] += float(res.sum())
                state[2] += float(yy.sum())
                state[3].append((mapped[pick].copy(), y[pick]))
            progress.advance(len(x))
        progress.stop()
    report = {"pairs": pairing.pairs, "pairing": pairing.summary(), "sample": kept}
    y_neighbours = None
    for name, (hist, res, ysq, parts) in blocks.items():
        sample = tuple(np.concatenate(p) for p in zip(*parts)) if parts else None
        if y_neighbours is None and sample is not None and len(sample[1]) > 1:
            y_neighbours = knn_indices(sample[1], 10)
        report[name] = _block(hist, res, ysq, sample, y_neighbours)
    return report
