"""Spectral pieces the methods share: powers of a Gram matrix, numerical rank, pseudo-inverse,
and the trace of a product of matrices.

One relative tolerance, `RELATIVE_TOLERANCE`, decides which directions the anchors determine:
an eigenvalue of a Gram matrix, or a singular value of the cross-product, below that fraction
of the largest one is treated as zero. Both are sums of products of the input values, which
are accumulated in float32 for float32 input (`AlignmentStats`), so their round-off is of the
order of 1e-7 of the largest; a direction below 1e-6 carries nothing the data can vouch for.
Whitening such a direction would multiply its noise by a thousand or more.

`pseudo_inverse` is the rule that inverts a stored general linear map (see
`procalign.transform_file`): it works on a float64 matrix, so its cut-off is much smaller.

>>> g = np.diag([4.0, 1.0, 1e-12])
>>> p, rank = symmetric_power(g, -0.5)
>>> np.round(np.diag(p), 6).tolist(), rank
([0.5, 1.0, 0.0], 2)
"""
from __future__ import annotations

import numpy as np

RELATIVE_TOLERANCE = 1e-6
PSEUDO_INVERSE_RCOND = 1e-10


def symmetric_power(gram: np.ndarray, power: float, tolerance: float = RELATIVE_TOLERANCE) -> tuple[np.ndarray, int]:
    """``gram ** power`` for a symmetric positive semi-definite matrix, and its numerical rank.

    Directions whose eigenvalue is at most ``tolerance`` times the largest are given weight
    zero, for any power (so a negative power is a pseudo-inverse power, never a blow-up).
    """
    values, vectors = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    top = values.max(initial=0.0)
    keep = values > tolerance * top if top > 0 else np.zeros(len(values), dtype=bool)
    weights = np.zeros_like(values)
    weights[keep] = values[keep] ** power
    return (vectors * weights) @ vectors.T, int(keep.sum())


def numerical_rank(singular_values: np.ndarray, tolerance: float = RELATIVE_TOLERANCE) -> int:
    """How many singular values exceed ``tolerance`` times the largest."""
    s = np.abs(np.asarray(singular_values, dtype=np.float64))
    top = s.max(initial=0.0)
    return int((s > tolerance * top).sum()) if top > 0 else 0


def pseudo_inverse(matrix: np.ndarray, rcond: float = PSEUDO_INVERSE_RCOND) -> np.ndarray:
    """Moore-Penrose pseudo-inverse; singular values at most ``rcond`` times the largest count as zero.

    It is the exact inverse of a square matrix of full rank, and a left inverse
    (``matrix @ pinv = I``) of a wide matrix of full row rank: a map into more dimensions
    comes back exactly.
    """
    u, s, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)
    keep = s > rcond * s.max(initial=0.0)
    inv = np.zeros_like(s)
    inv[keep] = 1.0 / s[keep]
    return (vt.T * inv) @ u.T


def trace_of_product(a: np.ndarray, s: np.ndarray, b: np.ndarray) -> float:
    """``tr(A^T S B)`` as one product and one dot. An unoptimised three-way einsum loops over
    every index triple: seconds per term at 768-d, where this takes milliseconds."""
    return float(np.vdot(a, s @ b))
