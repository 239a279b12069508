"""Fit the chosen method, or for `--method auto` every candidate, and measure each on held-out pairs.

Every candidate (`math.methods.CANDIDATES`: orthogonal, orthogonal with scale, whitened,
affine) is fitted from the same statistics of the fitted anchors and measured on the held-out
pairs, never used in any fit: the report's row per method. ``auto`` keeps the best held-out
top-1 (then mean reciprocal rank, then the earlier candidate: the simpler map wins a tie) and
says why. Each row also states the geometry the map costs: whether it is an isometry, and
``source_knn10_overlap``, the share of each held-out item's 10 nearest neighbours among the
source rows that are still its neighbours among the mapped rows. Neighbours by Euclidean
distance, so that the number measures the map alone: any isometry or similarity keeps every
neighbourhood (1.0; up to ties), a general linear map does not. (By cosine a centred map also
moves neighbourhoods, as it moves the origin.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..math.affine import AffineMap
from ..math.methods import (AFFINE, AUTO, CANDIDATES, DEFAULT_REWEIGHT, METHODS, WHITENED, candidate, candidate_name,
                            fit_map, geometry)
from ..math.metrics import knn_indices, neighbour_overlap
from ..math.procrustes import FitOptions
from ..math.stats import AlignmentStats
from .report import pair_metrics


@dataclass
class ChosenMap:
    map: AffineMap
    options: FitOptions
    method: str
    summary: dict
    rows: dict | None = None       # candidate name -> held-out metrics and geometry
    selection: dict | None = None  # auto: the winner and why


def check_method(method: str, options: FitOptions, holdout: float, reweight: float | None) -> None:
    """Refuse a method with options it cannot honour (`UsageError`)."""
    if method not in (*METHODS, AUTO):
        raise UsageError(f"--method {method!r} is not one of {', '.join((*METHODS, AUTO))}")
    if method == AUTO and holdout <= 0:
        raise UsageError("--method auto keeps the map with the best held-out top-1, so it needs held-out pairs; "
                         "add --holdout (e.g. 0.2)")
    for flag, on in (("--scale", options.scale), ("--rotation-only", options.rotation_only)):
        if on and method in (WHITENED, AFFINE):
            raise UsageError(f"{flag} applies to --method orthogonal or auto; the {method} map fits a general "
                             f"linear map (scale included); drop {flag}")
    if reweight is not None and method not in (WHITENED, AUTO):
        raise UsageError(f"--reweight applies to --method whitened or auto, not {method}; drop it")
    if reweight is not None and not 0 <= reweight <= 1:
        raise UsageError(f"--reweight must be in [0, 1], got {reweight}")


def method_rows(stats: AlignmentStats, options: FitOptions, reweight: float, x: np.ndarray, y: np.ndarray) -> dict:
    """Every candidate fitted on ``stats`` and measured on the held-out pairs ``(x, y)``."""
    x = np.asarray(x, np.float64)
    near_x, near_y = knn_indices(x, 10, euclidean=True), knn_indices(y, 10)
    rows = {}
    for name in CANDIDATES:
        opts, method = candidate(name, options)
        affine, summary = fit_map(stats, opts, method, reweight)
        mapped = affine(x)
        kept = neighbour_overlap(knn_indices(mapped, 10, euclidean=True), near_x)
        rows[name] = {**pair_metrics(mapped, y, near_y), "source_knn10_overlap": kept, "method": method,
                      "scale": affine.scale, **geometry(method, affine.scale, affine.d_source, affine.d_target),
                      "params": summary.get("method_params", {})}
    return rows


def choose(rows: dict) -> tuple[str, dict]:
    """The best row by held-out top-1, then MRR, then candidate order; and the reason in words."""
    order = [name for name in CANDIDATES if name in rows]
    best = max(order, key=lambda name: (rows[name]["top1"], rows[name]["mrr"], -order.index(name)))
    others = ", ".join(f"{name} {rows[name]['top1']:.3f}" for name in
                       sorted(order, key=lambda name: -rows[name]["top1"]) if name != best)
    tied = [name for name in order if name != best and rows[name]["top1"] == rows[best]["top1"]]
    reason = f"highest held-out top-1: {best} {rows[best]['top1']:.3f} (then {others})"
    if tied:
        reason += f"; tied on top-1 with {', '.join(tied)}, won on mean reciprocal rank or as the simpler map"
    return best, {"by": "heldout top1", "winner": best, "reason": reason}


def fit_chosen(stats: AlignmentStats, options: FitOptions, method: str, reweight: float | None,
               heldout: tuple | None, with_rows: bool) -> ChosenMap:
    """Fit ``method`` (for ``auto``: the best candidate on ``heldout``), with the candidates' rows
    when ``with_rows`` and there are held-out pairs to measure them on."""
    reweight = DEFAULT_REWEIGHT if reweight is None else reweight
    measurable = heldout is not None and len(heldout[0]) > 1
    if method == AUTO and not measurable:
        raise ValueError("--method auto needs at least 2 held-out pairs; raise --holdout")
    rows = method_rows(stats, options, reweight, heldout[0], heldout[1]) if measurable and \
        (with_rows or method == AUTO) else None
    selection = None
    if method == AUTO:
        name, selection = choose(rows)
        options, method = candidate(name, options)
    affine, summary = fit_map(stats, options, method, reweight)
    if rows is not None:
        chosen = candidate_name(method, options)
        for name, row in rows.items():
            row["chosen"] = name == chosen
    if selection is not None:
        summary["selection"] = selection
    return ChosenMap(affine, options, method, summary, rows, selection)


def with_method_rows(report: dict, rows: dict | None, selection: dict | None) -> dict:
    """The report with the row per method and auto's choice, when they were measured."""
    if rows is None or "heldout" not in report:
        return report
    heldout = {**report["heldout"], "methods": rows}
    if selection is not None:
        heldout["selection"] = selection
    return {**report, "heldout": heldout}
