"""Experiment 3: one model trained twice, with and without alignment (retraining compatibility).

The model is word vectors from a factorisation of co-occurrences: positive PMI (context counts
smoothed by ^0.75) of words within a window, then a seeded randomised truncated SVD, the vector
of a word being its row of U sqrt(S). Version 1 is trained on one half of a real corpus,
version 2 on the other half (documents split at random with a seed). Downstream, similar-word
retrieval is indexed with version 1; the question is how much of version 1's neighbourhoods a
search with version-2 vectors finds (neighbour recall@k), as they are and after `procalign fit`
maps version 2 into version 1 on anchor words disjoint from the evaluated words.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fitting import METHODS, fit, save_anchors

K = 10


@dataclass(frozen=True)
class WordVectorSettings:
    vocabulary: int = 3000
    min_count: int = 5      # in each half
    window: int = 4
    dim: int = 100
    anchor_share: float = 0.5
    seed: int = 0


def split_halves(documents: list[list[str]], seed: int) -> tuple[list, list]:
    order = np.random.default_rng(seed).permutation(len(documents))
    half = len(order) // 2
    return [documents[i] for i in order[:half]], [documents[i] for i in order[half:]]


def vocabulary(a: list[list[str]], b: list[list[str]], size: int, min_count: int) -> list[str]:
    """The ``size`` most frequent words seen at least ``min_count`` times in each half."""
    ca, cb = Counter(w for d in a for w in d), Counter(w for d in b for w in d)
    shared = [w for w in ca if ca[w] >= min_count and cb[w] >= min_count]
    return sorted(shared, key=lambda w: (-(ca[w] + cb[w]), w))[:size]


def cooccurrence(documents: list[list[str]], words: list[str], window: int) -> np.ndarray:
    """Symmetric counts of vocabulary words within ``window`` tokens of each other."""
    index = {w: i for i, w in enumerate(words)}
    gap = [-1] * window  # documents never share a window
    ids = np.array([index.get(w, -1) for d in documents for w in d + gap], dtype=np.int64)
    v = len(words)
    counts = np.zeros(v * v, np.float64)
    for offset in range(1, window + 1):
        left, right = ids[:-offset], ids[offset:]
        keep = (left >= 0) & (right >= 0)
        counts += np.bincount(left[keep] * v + right[keep], minlength=v * v)
    counts = counts.reshape(v, v)
    return counts + counts.T


def ppmi(counts: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    rows = counts.sum(axis=1, keepdims=True)
    contexts = counts.sum(axis=0, keepdims=True) ** alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * contexts.sum() / (np.maximum(rows, 1) * np.maximum(contexts, 1e-12)))
    return np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)


def truncated_svd_vectors(matrix: np.ndarray, dim: int, seed: int, power: int = 3) -> np.ndarray:
    """Rows of U_dim sqrt(S_dim) by a seeded randomised SVD (Halko, Martinsson and Tropp)."""
    probe = np.random.default_rng(seed).normal(size=(matrix.shape[1], dim + 20))
    basis, _ = np.linalg.qr(matrix @ probe)
    for _ in range(power):
        basis, _ = np.linalg.qr(matrix @ (matrix.T @ basis))
    u, s, _ = np.linalg.svd(basis.T @ matrix, full_matrices=False)
    return (basis @ u[:, :dim]) * np.sqrt(s[:dim])


def train(documents: list[list[str]], words: list[str], settings: WordVectorSettings) -> np.ndarray:
    return truncated_svd_vectors(ppmi(cooccurrence(documents, words, settings.window)), settings.dim, settings.seed)


def _neighbours(index: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Top-k cosine neighbours in ``index`` of each query, the query's own word excluded."""
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    sims = unit(queries) @ unit(index).T
    sims[np.arange(len(rows)), rows] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def neighbour_recall(v1: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int = K,
                     index: np.ndarray | None = None) -> float:
    """Share of each word's k version-1 neighbours found by searching ``index`` (version 1 by
    default) with ``queries`` (the words ``rows``, in some version)."""
    truth = _neighbours(v1, v1[rows], rows, k)
    found = _neighbours(v1 if index is None else index, queries, rows, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))


def retraining_experiment(documents: list[list[str]], workdir: Path,
                          settings: WordVectorSettings = WordVectorSettings()) -> dict:
    half_a, half_b = split_halves(documents, settings.seed)
    words = vocabulary(half_a, half_b, settings.vocabulary, settings.min_count)
    v1, v2 = train(half_a, words, settings), train(half_b, words, settings)
    order = np.random.default_rng(settings.seed + 1).permutation(len(words))
    cut = int(len(words) * settings.anchor_share)
    anchors, test = np.sort(order[:cut]), np.sort(order[cut:])
    source = save_anchors(workdir, "words-version2", v2[anchors])
    target = save_anchors(workdir, "words-version1", v1[anchors])
    recall = {"none": neighbour_recall(v1, v2[test], test),
              "version2_own_index": neighbour_recall(v1, v2[test], test, index=v2)}
    fits = {}
    for method in METHODS:
        fits[method.key] = fit(source, target, workdir / f"words-v2-to-v1-{method.key}.npz", method)
        recall[method.key] = neighbour_recall(v1, fits[method.key].transform(v2[test]), test)
    return {"words": len(words), "anchors": len(anchors), "evaluated": len(test),
            "tokens": [sum(map(len, half_a)), sum(map(len, half_b))], "dim": settings.dim,
            "k": K, "recall": recall, "fits": fits}
