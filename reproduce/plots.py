"""The report's figures (matplotlib, headless). Each function writes one PNG and returns its path."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .fitting import METHODS  # noqa: E402

LABELS = {"none": "no alignment", **{m.key: m.label for m in METHODS},
          "native_document_model": "native (document model)", "native_query_model": "native (query model)",
          "affine": "least squares", "version2_own_index": "version 2 on its own index"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def retrieval_bars(pairs: list, path: Path) -> Path:
    """nDCG@10 per ordered pair (query model -> document model), one bar per column."""
    columns = list(pairs[0].scores)
    fig, ax = plt.subplots(figsize=(10.5, 3.8))
    width = 0.8 / len(columns)
    for j, col in enumerate(columns):
        ax.bar([i + j * width for i in range(len(pairs))], [p.scores[col]["ndcg@10"] for p in pairs],
               width, label=LABELS[col])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(pairs))],
                  [f"queries {p.query_model}\ndocuments {p.document_model}" for p in pairs])
    ax.set_ylabel("nDCG@10")
    ax.set_title("Cross-model retrieval: queries from one model, documents from another")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def anchor_curves(curves: dict, path: Path) -> Path:
    """nDCG@10 against the number of anchors, one panel per ordered pair."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, (pair, curve) in zip(axes[0], curves.items()):
        for method, points in curve.items():
            ax.plot([p["anchors"] for p in points], [p["ndcg@10"] for p in points], marker="o", label=LABELS.get(method, method))
        ax.set_xscale("log")
        ax.set_xlabel("anchor pairs")
        ax.set_ylabel("nDCG@10")
        ax.set_title(pair, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def retraining_bars(recall: dict, k: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(recall)
    ax.barh([LABELS[n] for n in names], [recall[n] for n in names])
    ax.set_xlabel(f"neighbour recall@{k} against version 1")
    ax.set_title("Word vectors retrained on the other half of the corpus")
    return _save(fig, path)


def bound_chart(rows: list[dict], path: Path) -> Path:
    """Per pair (per sample, squared): the theorem's guarantee, the achieved error, and the
    error of unrelated vectors (above which the guarantee says nothing)."""
    fig, ax = plt.subplots(figsize=(10.5, 3.8))
    x = range(len(rows))
    for offset, key, label in ((-0.27, "per_sample_bound", "guarantee sqrt(2D)·eps/N"),
                               (0.0, "per_sample_achieved", "achieved min_Q ‖XQ − Y‖²/N"),
                               (0.27, "unrelated_per_sample", "unrelated pairs (vacuous above)")):
        ax.bar([i + offset for i in x], [r[key] for r in rows], 0.27, label=label)
    ax.set_xticks(list(x), [r["pair"] for r in rows], fontsize=7, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("squared error per anchor")
    ax.set_title("The Procrustes bound on the fitted anchors")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)
