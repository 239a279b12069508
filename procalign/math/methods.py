"""Every map procalign fits, from the one set of streamed statistics.

==========  ==========================================================  =====================
method      map (x_c: x minus the source mean when centred)             geometry
==========  ==========================================================  =====================
orthogonal  ``scale * x_c Q + mean_y``, Q orthonormal (`procrustes`)     isometry (scale = 1,
                                                                        d_s <= d_t)
whitened    ``x_c W_x U S^p V^T G_y^{1/2} + mean_y`` (`whitened`)        general linear
affine      ``x_c (G_x + lam I)^-1 C + mean_y``, lam by GCV (`ridge`)    general linear
linear      a chain of maps composed into one (`compose`), not fitted     general linear
==========  ==========================================================  =====================

All three read the same `AlignmentStats` (whitened and affine need its Gram matrices), so each
streams and merges like the default, and each returns an `AffineMap` (a general linear map is
a matrix plus the two means, scale 1). Only the orthogonal map is covered by the paper's bound.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .affine import AffineMap
from .procrustes import FitOptions, fit_transform
from .ridge import gcv_ridge
from .spectral import trace_of_product
from .stats import AlignmentStats
from .whitened import whitened_matrix

ORTHOGONAL, WHITENED, AFFINE, AUTO = "orthogonal", "whitened", "affine", "auto"
METHODS = (ORTHOGONAL, WHITENED, AFFINE)
# Not fitted but stored: a chain of maps whose product is a general linear map (`compose`).
LINEAR = "linear"
STORED_METHODS = (*METHODS, LINEAR)
DEFAULT_REWEIGHT = 0.5  # measured on the fixtures and across anchor counts: see the README
# What `--method auto` tries, in this order; a tie goes to the earlier (the simpler map).
CANDIDATES = ("orthogonal", "orthogonal_scaled", WHITENED, AFFINE)


def linear_residual(moments: dict, w: np.ndarray) -> float:
    """``||X W - Y||_F^2`` from the moments (``tr W^T G_x W - 2 tr W^T C + ||Y||^2``)."""
    quad = trace_of_product(w, moments["gram_source"], w)
    return max(quad - 2 * float(np.sum(w * moments["cross"])) + moments["sq_target"], 0.0)


def fit_map(stats: AlignmentStats, options: FitOptions, method: str = ORTHOGONAL,
            reweight: float = DEFAULT_REWEIGHT) -> tuple[AffineMap, dict]:
    """Fit ``method`` and return the map with its anchor statistics (`fit_transform`'s summary,
    plus ``method_params`` for the linear methods)."""
    if method == ORTHOGONAL:
        return fit_transform(stats, options)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if options.scale or options.rotation_only:
        raise ValueError(f"scale and rotation_only apply to the orthogonal method; the {method} map fits "
                         "its own scale and is no rotation")
    if stats.n == 0:
        raise ValueError("no anchor pairs to fit on")
    if not stats.with_gram:
        raise ValueError(f"the {method} method needs statistics with Gram matrices (with_gram=True)")
    m = stats.moments(options.centre)
    if method == WHITENED:
        w, params = whitened_matrix(m["gram_source"], m["gram_target"], m["cross"], reweight)
    else:
        w, params = gcv_ridge(m["gram_source"], m["cross"], m["sq_target"], stats.n, options.centre)
    d_s, d_t = w.shape
    affine = AffineMap(w, stats.mean_source.copy() if options.centre else np.zeros(d_s),
                       stats.mean_target.copy() if options.centre else np.zeros(d_t),
                       1.0, options.normalize, orthonormal=False)
    residual = linear_residual(m, w)
    raw_sq_target = stats.sq_target + stats.n * float(stats.mean_target @ stats.mean_target)
    summary = {"anchors": stats.n, "residual_sq": residual,
               "relative_residual": None if raw_sq_target == 0 else float(np.sqrt(residual / raw_sq_target)),
               "method_params": params}
    return affine, summary


def candidate(name: str, options: FitOptions) -> tuple[FitOptions, str]:
    """The options and method of one of `CANDIDATES`, from the user's options."""
    if name in (ORTHOGONAL, "orthogonal_scaled"):
        return dataclasses.replace(options, scale=name == "orthogonal_scaled"), ORTHOGONAL
    if name not in CANDIDATES:
        raise ValueError(f"unknown candidate {name!r}; choose one of {', '.join(CANDIDATES)}")
    return dataclasses.replace(options, scale=False, rotation_only=False), name


def candidate_name(method: str, options: FitOptions) -> str:
    """The `CANDIDATES` name of a fitted method and options."""
    return ("orthogonal_scaled" if options.scale else ORTHOGONAL) if method == ORTHOGONAL else method


def geometry(method: str, scale: float, d_source: int, d_target: int) -> dict:
    """What a map does to distances: ``isometry`` (bool) and a word for it."""
    if method != ORTHOGONAL:
        return {"isometry": False, "geometry": "general linear (distances and angles change)"}
    if d_source > d_target:
        return {"isometry": False, "geometry": "orthogonal projection (drops dimensions)"}
    if scale != 1.0:
        return {"isometry": False, "geometry": f"similarity (an isometry times {scale:.4g})"}
    return {"isometry": True, "geometry": "isometry"}
