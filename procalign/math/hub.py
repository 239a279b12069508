"""Generalized Procrustes: one shared space (a hub) for N models, from their cross products alone.

N models embed the same n items: X_1 (n x d_1), ..., X_N (n x d_N), centred or not. The hub has
D = max d_i dimensions; model i maps in by Q_i (d_i x D, orthonormal rows: an isometry into the
hub, padded with zeros when d_i < D, as `procrustes` maps up). With the consensus
``C = (1/N) sum_j X_j Q_j`` the objective is

    f = sum_i ||X_i Q_i - C||^2 = sum_i tr S_ii - (1/N) sum_ij tr(Q_i^T S_ij Q_j),   S_ij = X_i^T X_j

so the d_i x d_j cross products S_ij (one streaming pass, see `AlignmentStats`) are all it needs.
f is minimised by block coordinate descent: with the others fixed, f depends on Q_i only through
``-(2/N) tr(Q_i^T sum_{j != i} S_ij Q_j)`` (``tr(Q_i^T S_ii Q_i) = tr S_ii`` as Q_i Q_i^T = I), so
the best Q_i is the orthogonal Procrustes solution of that sum. Each update can only lower f;
sweeps stop when a sweep improves f by less than ``tolerance`` of its value.

With a reference model r the hub is r's space (padded to D): Q_r = [I 0] stays fixed and every
other model is aligned to it by one Procrustes solution, no iteration.

The hub is fixed only up to one rotation of all Q_i together; starting from the first largest
model's own coordinates makes the result deterministic.

Notes
-----
Cost: per sweep, N Procrustes solutions (an SVD of d_i x D) and N^2 products of d_i x d_j by
d_j x D; memory: the (sum d_i)^2 float64 cross products. Independent of the number of items.
Not done here: no scaling per model, no weighting of models or items.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .procrustes import solve_orthogonal
from .spectral import trace_of_product

MAX_SWEEPS = 500
TOLERANCE = 1e-10


@dataclass(frozen=True)
class HubSolution:
    maps: list[np.ndarray]    # Q_i, (d_i, D), orthonormal rows
    objective: float          # f at the solution
    total: float              # sum_i tr S_ii: f relative to it is the share of variance not shared
    sweeps: int               # coordinate-descent sweeps run (0 with a reference)
    converged: bool
    history: list[float]      # f after the start and after each sweep


def blocks(cross: np.ndarray, dims: list[int]) -> list[list[np.ndarray]]:
    """Split the (sum d, sum d) cross-product matrix of all models side by side into S_ij."""
    edges = np.cumsum([0, *dims])
    return [[cross[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] for j in range(len(dims))] for i in range(len(dims))]


def objective(s: list[list[np.ndarray]], maps: list[np.ndarray]) -> float:
    """f from the cross products (see the module docstring), never below 0."""
    n = len(maps)
    total = sum(float(np.trace(s[i][i])) for i in range(n))
    shared = sum(trace_of_product(maps[i], s[i][j], maps[j]) for i in range(n) for j in range(n))
    return max(total - shared / n, 0.0)


def embedding(d: int, hub_dim: int) -> np.ndarray:
    """[I 0]: a model's own coordinates as the first d of the hub's."""
    return np.eye(d, hub_dim)


def _best_map(s: list[list[np.ndarray]], maps: list[np.ndarray | None], i: int) -> np.ndarray:
    pull = sum(s[i][j] @ maps[j] for j in range(len(maps)) if j != i and maps[j] is not None)
    return solve_orthogonal(pull)[0]


def generalized_procrustes(cross: np.ndarray, dims: list[int], reference: int | None = None,
                           tolerance: float = TOLERANCE, max_sweeps: int = MAX_SWEEPS) -> HubSolution:
    """Hub maps for models of dimensions ``dims`` from their stacked cross products ``cross``.

    ``cross`` is ``Z^T Z`` for ``Z = [X_1 | ... | X_N]`` (centred when the caller centres).
    """
    if len(dims) < 2:
        raise ValueError(f"a hub needs at least 2 models, got {len(dims)}")
    if cross.shape != (sum(dims), sum(dims)):
        raise ValueError(f"cross products of shape {cross.shape} do not fit dimensions {dims}")
    s = blocks(np.asarray(cross, dtype=np.float64), dims)
    hub_dim = max(dims)
    first = dims.index(hub_dim) if reference is None else reference
    maps: list[np.ndarray | None] = [None] * len(dims)
    maps[first] = embedding(dims[first], hub_dim)
    for i in [*range(first + 1, len(dims)), *range(first)]:  # each joins the ones placed so far
        maps[i] = _best_map(s, maps if reference is None else [m if j == first else None for j, m in enumerate(maps)], i)
    total = sum(float(np.trace(s[i][i])) for i in range(len(dims)))
    history = [objective(s, maps)]
    sweeps, converged = 0, reference is not None
    while not converged and sweeps < max_sweeps:
        for i in range(len(dims)):
            maps[i] = _best_map(s, maps, i)
        sweeps += 1
        history.append(objective(s, maps))
        converged = history[-2] - history[-1] <= tolerance * max(history[-2], 1e-300)
    return HubSolution(maps, history[-1], total, sweeps, converged, history)


def model_residuals(cross: np.ndarray, dims: list[int], maps: list[np.ndarray]) -> list[float]:
    """Per model, ``||X_i Q_i - C|| / ||X_i||``: how far it sits from the consensus."""
    s, n = blocks(np.asarray(cross, dtype=np.float64), dims), len(dims)
    pair = [[trace_of_product(maps[i], s[i][j], maps[j]) for j in range(n)] for i in range(n)]
    consensus = sum(map(sum, pair)) / n ** 2
    out = []
    for i in range(n):
        own = float(np.trace(s[i][i]))
        sq = max(own - 2 * sum(pair[i]) / n + consensus, 0.0)
        out.append(float(np.sqrt(sq / own)) if own > 0 else 0.0)
    return out
