"""Composition of affine maps: a chain of maps as the one map it equals (arrays in, arrays out).

With the `AffineMap` convention ``x -> s (x - m_s) W + m_t``, first A then B is

    B(A(x)) = s_A s_B (x - a_s) W_A W_B + s_B (a_t - b_s) W_B + b_t

so the composed map has ``matrix = W_A W_B``, ``source_mean = a_s``,
``target_mean = s_B (a_t - b_s) W_B + b_t`` and ``scale = s_A s_B``: exact for every method,
since every method stores an affine map. When the product of the linear parts is no longer
orthonormal (orthogonal maps into fewer and then more dimensions, or any general linear map in
the chain) the result is a general linear map and the scale is folded into the matrix.

L2 normalisation (``normalize``) is not affine. Both maps must agree on it; when both normalise,
the renormalisation between them disappears exactly when B is linear (no bias: it then only
rescales B's output, which B normalises again) or when A already sends unit rows to unit rows
(an uncentred isometry with scale 1). Any other chain is refused (`NotComposable`) rather than
composed approximately.

>>> a = AffineMap(np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros(2), np.ones(2), 2.0)
>>> b = AffineMap(np.eye(2), np.ones(2), np.zeros(2), 0.5)
>>> c = compose(a, b)
>>> x = np.array([[1.0, 2.0]])
>>> bool(np.allclose(c(x), b(a(x)))), c.scale
(True, 1.0)

Notes
-----
Cost: one d_1 x d_2 x d_3 product per link and one SVD of the result (its rank, `chain_rank`).
"""
from __future__ import annotations

import numpy as np

from .affine import AffineMap
from .spectral import numerical_rank

ORTHONORMAL_TOLERANCE = 1e-8  # products of orthonormal float64 matrices stay within ~1e-15


class NotComposable(ValueError):
    """Two maps whose chain is no single affine map (their L2 normalisation differs or does not fold)."""


def bias(m: AffineMap) -> np.ndarray:
    """The constant added after the linear part: ``m_t - s m_s W``."""
    return m.target_mean - m.scale * (m.source_mean @ m.matrix)


def is_orthonormal(matrix: np.ndarray, tolerance: float = ORTHONORMAL_TOLERANCE) -> bool:
    """Orthonormal rows (d_s <= d_t) or columns (d_s > d_t), to ``tolerance``."""
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return bool(np.abs(gram - np.eye(len(gram))).max() <= tolerance)


def keeps_unit_rows(m: AffineMap) -> bool:
    """True when every unit row maps to a unit row: an isometry without bias and with scale 1."""
    return m.orthonormal and m.d_source <= m.d_target and m.scale == 1.0 and not np.any(bias(m))


def check_composable(a: AffineMap, b: AffineMap) -> None:
    """Raise `NotComposable` when first ``a`` then ``b`` is not one affine map."""
    if a.d_target != b.d_source:
        raise NotComposable(f"the first map's output is {a.d_target}-d but the second takes {b.d_source}-d rows")
    if a.normalize != b.normalize:
        raise NotComposable("one map L2-normalises its rows and the other does not; a chain of both is not one "
                            "affine map")
    if a.normalize and np.any(bias(b)) and not keeps_unit_rows(a):
        raise NotComposable("both maps L2-normalise and the second is centred, so the normalisation between them "
                            "does not fold into one affine map")


def compose(a: AffineMap, b: AffineMap) -> AffineMap:
    """The map equal to first ``a`` then ``b`` (see the module docstring)."""
    check_composable(a, b)
    matrix = a.matrix @ b.matrix
    target_mean = b.scale * ((a.target_mean - b.source_mean) @ b.matrix) + b.target_mean
    scale = a.scale * b.scale
    orthonormal = a.orthonormal and b.orthonormal and is_orthonormal(matrix)
    if not orthonormal:
        matrix, scale = scale * matrix, 1.0
    return AffineMap(matrix, a.source_mean.copy(), target_mean, scale, a.normalize, orthonormal)


def compose_all(maps: list[AffineMap]) -> AffineMap:
    """First ``maps[0]``, then ``maps[1]``, ...: one map."""
    if not maps:
        raise ValueError("a chain needs at least one map")
    out = maps[0]
    for m in maps[1:]:
        out = compose(out, m)
    return out


def chain_rank(m: AffineMap) -> int:
    """The numerical rank of the linear part: how many dimensions the map keeps."""
    return numerical_rank(np.linalg.svd(m.matrix, compute_uv=False), 1e-10)
