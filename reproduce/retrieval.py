"""Experiments 1, 2 and 4: cross-model retrieval, the anchor-count curve, the bound.

Documents are embedded with one model, queries with another; the query model is mapped into
the document model's space by a map fitted on anchor texts that no query or document contains.
Each query has one relevant document, so nDCG@10 is 1/log2(1 + rank) when the rank is at most
10 (else 0) and recall@10 is the share of queries whose document ranks in the top 10.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from procalign import ProcrustesAligner

from .fitting import METHODS, Fit, fit, save_anchors

K = 10
CURVE_METHODS = ("orthogonal", "whitened", "affine")


@dataclass(frozen=True)
class ModelSpace:
    """What one model produced: anchors, queries and documents (row i answers query i)."""
    name: str
    anchors: np.ndarray
    queries: np.ndarray
    documents: np.ndarray


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _pad(a: np.ndarray, dim: int) -> np.ndarray:
    """Zero-pad the columns to ``dim`` (the paper's convention for unaligned spaces)."""
    return np.pad(a, ((0, 0), (0, max(dim - a.shape[1], 0))))


def ranks(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """1-based rank of document i for query i by cosine (ties count against the document)."""
    dim = max(queries.shape[1], documents.shape[1])
    sims = _unit(_pad(queries, dim)) @ _unit(_pad(documents, dim)).T
    return (sims >= np.diag(sims)[:, None]).sum(axis=1)


def scores(queries: np.ndarray, documents: np.ndarray) -> dict[str, float]:
    r = ranks(queries, documents)
    hit = r <= K
    return {"ndcg@10": float(np.mean(np.where(hit, 1 / np.log2(r + 1), 0.0))), "recall@10": float(np.mean(hit))}


@dataclass
class PairResult:
    query_model: str
    document_model: str
    scores: dict      # column key -> {"ndcg@10", "recall@10"}
    fits: dict        # method key -> Fit


def evaluate_pair(q: ModelSpace, d: ModelSpace, workdir: Path) -> PairResult:
    """Every column of the retrieval table for queries from ``q`` against documents from ``d``."""
    source = save_anchors(workdir, f"anchors-{q.name}", q.anchors)
    target = save_anchors(workdir, f"anchors-{d.name}", d.anchors)
    table = {"none": scores(q.queries, d.documents)}
    fits = {}
    for method in METHODS:
        fits[method.key] = fit(source, target, workdir / f"{q.name}-to-{d.name}-{method.key}.npz", method)
        table[method.key] = scores(fits[method.key].transform(q.queries), d.documents)
    table["native_document_model"] = scores(d.queries, d.documents)
    table["native_query_model"] = scores(q.queries, q.documents)
    return PairResult(q.name, d.name, table, fits)


def anchor_counts(available: int, start: int = 100) -> list[int]:
    """100, 200, 500, 1000, 2000, 5000, ... up to and including every available anchor."""
    counts, base = [], start
    while base < available:
        counts += [c for c in (base, 2 * base, 5 * base) if c < available]
        base *= 10
    return sorted(set(counts)) + [available]


def anchor_curve(q: ModelSpace, d: ModelSpace, counts: list[int], seed: int = 0) -> dict[str, list[dict]]:
    """nDCG@10 and recall@10 of each method fitted on the first ``n`` anchors of a seeded random
    order, for every ``n`` in ``counts``; via `ProcrustesAligner`."""
    order = np.random.default_rng(seed).permutation(len(q.anchors))
    curve = {m: [] for m in CURVE_METHODS}
    for n in counts:
        rows = np.sort(order[:n])
        for method in CURVE_METHODS:
            aligner = ProcrustesAligner(method=method).fit(q.anchors[rows], d.anchors[rows])
            curve[method].append({"anchors": n, **scores(aligner.transform(q.queries), d.documents)})
    return curve


def saturation(points: list[dict], metric: str = "ndcg@10", tolerance: float = 0.01) -> int:
    """The fewest anchors whose score is within ``tolerance`` of the score with all of them."""
    final = points[-1][metric]
    return next(p["anchors"] for p in points if p[metric] >= final - tolerance)
