"""The quality report: what the map achieves on held-out pairs and anchors, against baselines.

Held-out metrics are computed on the held-out pairs kept in memory (at most ``eval_size``);
anchor metrics stream over every fitted anchor in a second pass. The report is a plain dict of
numbers (its JSON schema is ``procalign/report.schema.json``).
"""
from __future__ import annotations

import heapq

import numpy as np

from ..bound import procrustes_bound
from ..errors import QualityGateError
from ..io import open_reader
from ..metrics import (CosineHistogram, cosine_summary, knn_indices, knn_overlap, retrieval, row_agreement,
                       row_cosines)
from ..procrustes import FitOptions, fit_transform
from ..ridge import ridge_map
from ..stats import AlignmentStats
from ..transform import ChunkMapper, Transform, unit_rows
from .anchors import iter_pairs
from .fit import FitJob, FitResult, chunk_rows
from .sampling import uniform_by_index
from .stream import run_stages

WORST = 10


def pair_metrics(mapped: np.ndarray, y: np.ndarray, y_neighbours: np.ndarray | None = None) -> dict:
    """Cosine, retrieval, relative residual of mapped vs y, and neighbourhood agreement when
    y's neighbours (`knn_indices`) are given."""
    out = {"cosine": cosine_summary(row_cosines(mapped, y)), **retrieval(mapped, y),
           "relative_residual": float(np.linalg.norm(mapped - y) / np.linalg.norm(y))}
    if y_neighbours is not None:
        out["knn10_overlap"] = knn_overlap(mapped, y, 10, b_neighbours=y_neighbours)
    return out


def heldout_report(transform: Transform, x, y, control, stats: AlignmentStats, seed: int) -> dict:
    ny = knn_indices(y, 10) if len(y) > 1 else None
    report = {"pairs": int(len(x)), "aligned": pair_metrics(transform(x), y, ny)}
    if x.shape[1] == y.shape[1]:
        report["unaligned"] = pair_metrics(np.asarray(x, np.float64), y, ny)
    if control is not None and len(control[0]) > 1:
        cx, cy = control
        perm = np.random.default_rng(seed).permutation(len(cy))
        shuffled = AlignmentStats.empty(cx.shape[1], cy.shape[1]).update(cx, cy[perm])
        opts = transform.metadata.get("options", {})
        t, _ = fit_transform(shuffled, FitOptions(**{**opts, "scale": False}))
        report["shuffled_control"] = {"fitted_on": int(len(cx)), **pair_metrics(t(x), y)}
    if stats.with_gram:
        w, b = ridge_map(stats)
        report["ridge_affine"] = pair_metrics(np.asarray(x, np.float64) @ w + b, y, ny)
    return report


def anchor_report(job: FitJob, result: FitResult) -> dict:
    """Second pass over the fitted anchors: cosine distribution, residual, worst pairs.

    Maps in float32 with the streaming kernel and measures with `row_agreement`, so this pass
    costs about one product per chunk.
    """
    hist = CosineHistogram()
    worst: list[tuple[float, str]] = []
    totals = {"res_sq": 0.0, "y_sq": 0.0}
    pairing = result.pairing
    mapper = ChunkMapper(result.transform, np.float32)

    def measure(item):
        start, x, y = item
        if job.options.normalize:
            x, y = unit_rows(x), unit_rows(y)
        keep = uniform_by_index(start, len(x), job.seed) >= job.holdout
        mapped = mapper.map(x, out[: len(x)], start)[keep]
        cos, r, yy = row_agreement(mapped, np.asarray(y, np.float32)[keep])
        hist.add(cos)
        totals["res_sq"] += float(r.sum())
        totals["y_sq"] += float(yy.sum())
        index = np.flatnonzero(keep) + start
        for j in np.argpartition(r, -WORST)[-WORST:] if len(r) > WORST else range(len(r)):
            name = str(pairing.ids[index[j]]) if pairing.ids is not None else f"row {index[j]}"
            item = (float(r[j]), name)
            heapq.heappush(worst, item) if len(worst) < WORST else heapq.heappushpop(worst, item)
        return None

    with open_reader(job.source, job.column, job.id_column) as src, \
            open_reader(job.target, job.column, job.id_column) as tgt:
        rows = chunk_rows(job, src, tgt)
        out = np.empty((rows, result.transform.d_target), np.float32)
        run_stages(iter_pairs(src, tgt, pairing, rows), measure, lambda _: None)
    res_sq, y_sq = totals["res_sq"], totals["y_sq"]
    return {"pairs": hist.n, "cosine": hist.summary(),
            "relative_residual": float(np.sqrt(res_sq / y_sq)) if y_sq else None,
            "worst": [{"id": name, "squared_residual": r} for r, name in sorted(worst, reverse=True)]}


def build_report(job: FitJob, result: FitResult) -> dict:
    report = {"anchors": anchor_report(job, result),
              "bound": procrustes_bound(result.stats, job.options.centre)}
    if result.heldout is not None:
        x, y, _ = result.heldout
        report["heldout"] = heldout_report(result.transform, x, y, result.control, result.stats, job.seed)
    return report


GATES = {  # option name -> (metric path in a metrics block, higher is better)
    "min_top1": (("top1",), True),
    "min_cosine": (("cosine", "mean"), True),
    "max_residual": (("relative_residual",), False),
}


def gated_block(report: dict) -> dict:
    """The metrics the gates judge: held-out pairs when there are any, else the anchors."""
    held = report.get("heldout")
    return held["aligned"] if held else report.get("anchors", {})


def unmet_gates(block: dict, gates: dict[str, float | None]) -> list[str]:
    """Unmet gates as text ("--min-top1 0.9: got 0.8500 (short by 0.0500)"); empty if all pass."""
    failures = []
    for name, limit in gates.items():
        if limit is None:
            continue
        path, higher = GATES[name]
        value = block
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        flag = "--" + name.replace("_", "-")
        if value is None:
            failures.append(f"{flag} {limit}: not measured (fit with --holdout)")
        elif (value < limit) if higher else (value > limit):
            failures.append(f"{flag} {limit}: got {value:.4f} ({'short' if higher else 'over'} by {abs(value - limit):.4f})")
    return failures


def gate_error(failures: list[str], where: str) -> QualityGateError:
    return QualityGateError("quality gate failed: " + "; ".join(failures) + "; nothing was written", where)
