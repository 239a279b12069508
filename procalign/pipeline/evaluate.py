"""Evaluate a saved transform on a later sample of pairs (a drift check).

Besides the transform's agreement with the sample, the report holds the paper's bound on the
sample (`math.bound`: eps, the guarantee, the best orthogonal map's residual on the sample) and
the residual the transform itself achieves there, so a drift check also says how far the two
models' geometries have moved apart (eps per pair) and how much of the best attainable fit the
saved map still reaches. The statistics cost two more products per chunk (the Gram matrices).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..errors import SpaceMismatchError, TransformFileError
from ..formats import Location, ReadOptions, open_source
from ..math.affine import ChunkMapper
from ..math.bound import procrustes_bound
from ..math.fold import NonFinitePair, prepare_rows
from ..math.metrics import Agreement, knn_indices, knn_overlap, retrieval
from ..math.sampling import RowSample, uniform_by_index
from ..math.stats import AlignmentStats
from ..transform import Transform
from .anchors import iter_pairs, pair_anchors
from .spool import random_access, spool_dir
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
    spool = spool_dir()  # streamed samples are copied so they can be paired by id
    with spool, contextlib.ExitStack() as opened:
        src, tgt = (opened.enter_context(random_access(open_source(loc, options), spool.name))
                    for loc in (job.source, job.target))
        check_sample_space(src.stamp(), t.source.name, "source", job.source.path, job.force)
        check_sample_space(tgt.stamp(), t.target.name, "target", job.target.path, job.force)
        if (src.dim, tgt.dim) != (t.d_source, t.d_target):
            raise TransformFileError(f"transform maps {t.d_source}-d -> {t.d_target}-d but the files are "
                                     f"{src.dim}-d and {tgt.dim}-d; pass SOURCE then TARGET", job.transform_path)
        pairing = pair_anchors(src, tgt, job.by_position)
        rows = max(1, min(job.batch_rows or pair_chunk_rows(job.memory_mb, src, tgt), pairing.pairs))
        keep = min(1.0, job.eval_size / pairing.pairs)
        names = ["aligned", "unaligned"] if src.dim == tgt.dim else ["aligned"]
        agreements = {name: Agreement() for name in names}
        samples = {name: RowSample(job.eval_size) for name in names}
        stats = AlignmentStats.empty(t.d_source, t.d_target, with_gram=True)
        progress.start("evaluating", pairing.pairs)
        mapper = ChunkMapper(t.map, np.float32)
        out = np.empty((rows, t.d_target), np.float32)
        for start, x, y in iter_pairs(src, tgt, pairing, rows):
            try:
                x = prepare_rows(x, start, "source", t.normalize)
                y = np.asarray(prepare_rows(y, start, "target", t.normalize), np.float32)
            except NonFinitePair as e:
                raise pairing.error(e, src, tgt) from None
            stats.update(x, y)
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
    report["bound"] = sample_bound(stats, t, agreements["aligned"])
    return report


def sample_bound(stats: AlignmentStats, t: Transform, aligned: Agreement) -> dict:
    """The paper's bound on the evaluated pairs, and what the transform achieves on them."""
    bound = procrustes_bound(stats, t.options.centre)
    bound.update(transform_achieved=float(np.sqrt(aligned.res_sq)), transform_per_sample=aligned.res_sq / stats.n,
                 transform_method=t.method)
    return bound


MIN_PAIRS = 10  # as for a fit's held-out pairs: fewer make top-1 and cosine too noisy to gate on


def unsupported_gates(report: dict, gates: dict) -> list[str]:
    """Gates cannot judge a sample too small to support them: say so instead of passing."""
    if any(v is not None for v in gates.values()) and report["pairs"] < MIN_PAIRS:
        return [f"gates not judged: only {report['pairs']} pairs in the sample; evaluate on at least {MIN_PAIRS}"]
    return []


def sample_warnings(report: dict) -> list[str]:
    p = report["pairing"]
    if p["mode"] == "id":
        smaller = p["pairs"] + min(p["ids_only_in_source"], p["ids_only_in_target"])
        if p["pairs"] < 0.5 * smaller:
            return [f"only {p['pairs']} of {smaller} ids were matched between the two files; check --id-column"]
    return []
