"""The quality report: what the map achieves on held-out pairs and anchors, against baselines.

Held-out metrics are computed on the held-out pairs kept in memory (at most ``eval_size``);
anchor metrics stream over every fitted anchor in a second pass. The report is a plain dict of
numbers (its JSON schema is ``procalign/report.schema.json``).

It takes the statistics, the samples and an iterable that reads the pairs again; it does not
know how they were fitted. The anchor pass uses the fit's own `HoldoutSplit` and
`prepare_rows`, so held-out pairs are excluded exactly as the fit excluded them.
"""
from __future__ import annotations

import heapq
import threading
from typing import Iterable

import numpy as np

from ..errors import QualityGateError
from ..math.affine import ChunkMapper
from ..math.bound import procrustes_bound
from ..math.fold import HoldoutSplit, prepare_rows
from ..math.metrics import Agreement, cosine_summary, knn_indices, knn_overlap, retrieval, row_agreement, row_cosines
from ..math.procrustes import FitOptions, fit_transform
from ..math.ridge import ridge_map
from ..math.stats import AlignmentStats
from ..transform import Transform
from .cores import CorePool
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
        opts = transform.options
        t, _ = fit_transform(shuffled, FitOptions(opts.centre, opts.normalize, False, opts.rotation_only))
        report["shuffled_control"] = {"fitted_on": int(len(cx)), **pair_metrics(t(x), y)}
    if stats.with_gram:
        w, b = ridge_map(stats)
        report["ridge_affine"] = pair_metrics(np.asarray(x, np.float64) @ w + b, y, ny)
    return report


def anchor_report(transform: Transform, pairs: Iterable[tuple[int, np.ndarray, np.ndarray]], split: HoldoutSplit,
                  ids: np.ndarray | None = None, chunk_rows: int = 8192) -> dict:
    """Second pass over the fitted anchors: cosine distribution, residual, worst pairs.

    ``pairs`` yields ``(first pair index, x, y)`` chunks; pairs that ``split`` holds out are
    skipped. Maps in float32 with the streaming kernel and measures with `row_agreement`,
    piece by piece on every core, so this pass costs about one product per chunk.
    """
    agreement = Agreement()
    worst: list[tuple[float, str]] = []
    kernels = threading.local()
    out = np.empty((chunk_rows, transform.d_target), np.float32)

    def piece(start: int, x: np.ndarray, y: np.ndarray, out: np.ndarray, a: int, b: int):
        x = prepare_rows(x[a:b], start + a, "source", transform.normalize, check_finite=False)
        y = prepare_rows(y[a:b], start + a, "target", transform.normalize, check_finite=False)
        if getattr(kernels, "mapper", None) is None:
            kernels.mapper = ChunkMapper(transform.map, np.float32)
        mapped, y = kernels.mapper.map(x, out[a:b], start + a), np.asarray(y, np.float32)
        index = np.arange(start + a, start + b)
        keep = ~split.held(start + a, b - a)
        if not keep.all():  # copies only when some pairs of the piece are held out
            mapped, y, index = mapped[keep], y[keep], index[keep]
        return (*row_agreement(mapped, y), index)

    def measure(item, cores: CorePool):
        nonlocal out
        start, x, y = item
        if len(x) > len(out):
            out = np.empty((len(x), transform.d_target), np.float32)
        for cos, r, yy, index in cores.run(lambda a, b: piece(start, x, y, out, a, b), len(x)):
            agreement.add_rows(cos, r, yy)
            for j in np.argpartition(r, -WORST)[-WORST:] if len(r) > WORST else range(len(r)):
                name = str(ids[index[j]]) if ids is not None else f"row {index[j]}"
                entry = (float(r[j]), name)
                heapq.heappush(worst, entry) if len(worst) < WORST else heapq.heappushpop(worst, entry)

    with CorePool() as cores:
        run_stages(pairs, lambda item: measure(item, cores), lambda _: None)
    return {"pairs": agreement.hist.n, **agreement.summary(),
            "worst": [{"id": name, "squared_residual": r} for r, name in sorted(worst, reverse=True)]}


def build_report(transform: Transform, stats: AlignmentStats, pairs: Iterable, split: HoldoutSplit,
                 heldout=None, control=None, ids: np.ndarray | None = None, chunk_rows: int = 8192) -> dict:
    """The whole report: anchors (a pass over ``pairs``), the bound, and held-out metrics when
    a held-out sample ``(x, y, ids)`` is given."""
    report = {"anchors": anchor_report(transform, pairs, split, ids, chunk_rows),
              "bound": procrustes_bound(stats, transform.options.centre)}
    if heldout is not None:
        x, y, _ = heldout
        report["heldout"] = heldout_report(transform, x, y, control, stats, split.seed)
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


def unmet_gates(block: dict, gates: dict[str, float | None], not_measured: str = "fit with --holdout") -> list[str]:
    """Unmet gates as text ("--min-top1 0.9: got 0.8500 (short by 0.0500)"); empty if all pass.

    A metric that is missing (``not_measured`` says why) or not finite fails its gate: NaN
    compares false with any limit, so it would otherwise always pass.
    """
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
            failures.append(f"{flag} {limit}: not measured ({not_measured})")
        elif not np.isfinite(value):
            failures.append(f"{flag} {limit}: got {value} (not a finite number)")
        elif (value < limit) if higher else (value > limit):
            failures.append(f"{flag} {limit}: got {value:.4f} ({'short' if higher else 'over'} by {abs(value - limit):.4f})")
    return failures


def gate_error(failures: list[str], where: str | None, outcome: str) -> QualityGateError:
    """The error for unmet gates; ``outcome`` is the caller's word on what follows
    ("nothing was written" from fit; evaluate writes nothing anyway)."""
    return QualityGateError("quality gate failed: " + "; ".join(failures) + f"; {outcome}", where)
