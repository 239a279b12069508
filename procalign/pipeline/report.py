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
from ..metrics import CosineHistogram, cosine_summary, knn_overlap, retrieval, row_cosines
from ..procrustes import fit_transform
from ..ridge import ridge_map
from ..stats import AlignmentStats
from ..transform import Transform
from .anchors import iter_pairs
from .fit import FitJob, FitResult, checked
from .sampling import uniform_by_index

WORST = 10


def pair_metrics(mapped: np.ndarray, y: np.ndarray, knn: bool = True) -> dict:
    """Cosine, retrieval, neighbourhood agreement and relative residual of mapped vs y."""
    out = {"cosine": cosine_summary(row_cosines(mapped, y)), **retrieval(mapped, y),
           "relative_residual": float(np.linalg.norm(mapped - y) / np.linalg.norm(y))}
    if knn:
        out["knn10_overlap"] = knn_overlap(mapped, y, 10)
    return out


def heldout_report(transform: Transform, x, y, control, stats: AlignmentStats, seed: int) -> dict:
    report = {"pairs": int(len(x)), "aligned": pair_metrics(transform(x), y)}
    if x.shape[1] == y.shape[1]:
        report["unaligned"] = pair_metrics(np.asarray(x, np.float64), y)
    if control is not None and len(control[0]) > 1:
        cx, cy = control
        perm = np.random.default_rng(seed).permutation(len(cy))
        shuffled = AlignmentStats.empty(cx.shape[1], cy.shape[1]).update(cx, cy[perm])
        opts = transform.metadata.get("options", {})
        from ..procrustes import FitOptions
        t, _ = fit_transform(shuffled, FitOptions(**{**opts, "scale": False}))
        report["shuffled_control"] = {"fitted_on": int(len(cx)), **pair_metrics(t(x), y, knn=False)}
    if stats.with_gram:
        w, b = ridge_map(stats)
        report["ridge_affine"] = pair_metrics(np.asarray(x, np.float64) @ w + b, y)
    return report


def anchor_report(job: FitJob, result: FitResult) -> dict:
    """Second pass over the fitted anchors: cosine distribution, residual, worst pairs."""
    hist = CosineHistogram()
    worst: list[tuple[float, str]] = []
    res_sq = y_sq = 0.0
    t, pairing = result.transform, result.pairing
    with open_reader(job.source, job.column, job.id_column) as src, \
            open_reader(job.target, job.column, job.id_column) as tgt:
        for start, x, y in iter_pairs(src, tgt, pairing, job.batch_rows):
            x = checked(x, src.path, lambda i: i, job.options.normalize)
            y = checked(y, tgt.path, lambda i: i, job.options.normalize)
            fit_rows = uniform_by_index(start, len(x), job.seed) >= job.holdout
            x, y = x[fit_rows], y[fit_rows]
            mapped = t(x)
            hist.add(row_cosines(mapped, y))
            r = np.einsum("ij,ij->i", mapped - y, mapped - y)
            res_sq += float(r.sum())
            y_sq += float(np.einsum("ij,ij->", y, y, dtype=np.float64))
            index = np.flatnonzero(fit_rows) + start
            for j in np.argsort(r)[-WORST:]:
                name = str(pairing.ids[index[j]]) if pairing.ids is not None else f"row {index[j]}"
                item = (float(r[j]), name)
                heapq.heappush(worst, item) if len(worst) < WORST else heapq.heappushpop(worst, item)
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
