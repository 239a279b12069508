"""`python -m reproduce`: every experiment, end to end, and the report.

    python -m reproduce [--out reports] [--cache .cache/reproduce] [--models e5,minilm,mpnet] [--pairs 800]

Embeddings are cached under --cache (a rerun only refits and re-evaluates); the fitted
transform files go to --cache/fits. Deterministic: every sample and split has a seed.
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from itertools import permutations
from pathlib import Path
from typing import Callable

import numpy as np

from . import corpus, environment, hub, report, retrieval, wordvectors
from .models import MODELS, Embedder, fixture_pool


def _cpu_seconds() -> float:
    """CPU time of this process and of the finished `procalign` commands it ran."""
    return sum(os.times()[:4])


@contextmanager
def timed(timings: dict, step: str):
    """Record the wall time and the CPU time of ``step``: on a shared machine the wall time
    also counts the time other people's work held the cores."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    print(f"[reproduce] {step} ...", flush=True)
    yield
    timings[step] = {"wall": time.perf_counter() - start, "cpu": _cpu_seconds() - cpu}
    print(f"[reproduce] {step}: {timings[step]['wall']:.1f} s", flush=True)


def embed_spaces(texts: corpus.RetrievalTexts, models: list[str], embedder: Embedder, timings: dict):
    """A ModelSpace per model, and how well each model reproduced its fixture anchors."""
    spaces, agreement = [], {}
    for model in models:
        embedder.counts = {"embedded": 0, "cached": 0}
        with timed(timings, f"embed with {model}"):
            anchors, agreement[model] = embedder.anchors(model, texts.anchors, texts.anchor_rows)
            if texts.extra_anchors:
                anchors = np.vstack([anchors, embedder.embed(model, texts.extra_anchors, "passage")])
            spaces.append(retrieval.ModelSpace(model, anchors, embedder.embed(model, texts.queries, "query"),
                                               embedder.embed(model, texts.documents, "passage")))
        step = f"embed with {model}"
        timings[f"{step}: {embedder.counts['embedded']} texts embedded, {embedder.counts['cached']} from the cache"] = \
            timings.pop(step)
    return spaces, agreement


def experiments(spaces: list, fits: Path, timings: dict, words: Callable[[], list],
                settings: wordvectors.WordVectorSettings, pairs: list | None = None,
                counts: list[int] | None = None) -> dict:
    """Experiments 1 to 4 on embedded ``spaces``, for every ordered pair of them (or ``pairs``);
    ``words()`` gives the retraining corpus; ``counts`` the anchor counts of the curve."""
    pairs = list(permutations(spaces, 2)) if pairs is None else pairs
    counts = retrieval.anchor_counts(len(spaces[0].anchors)) if counts is None else counts
    results = {}
    with timed(timings, "1. retrieval, every ordered pair and method (procalign fit)"):
        results["retrieval"] = [retrieval.evaluate_pair(q, d, fits) for q, d in pairs]
    with timed(timings, "2. anchor-count curves (ProcrustesAligner)"):
        results["curve"] = {f"{q.name} -> {d.name}": retrieval.anchor_curve(q, d, counts) for q, d in pairs}
        results["saturation"] = {pair: retrieval.saturation(curve["orthogonal"]) for pair, curve in results["curve"].items()}
    with timed(timings, "3. retraining: word vectors on two corpus halves"):
        results["retraining"] = wordvectors.retraining_experiment(words(), fits, settings)
    with timed(timings, "5. one hub for every model (procalign fit-hub)"):
        results["hub"] = hub.hub_experiment(spaces, results["retrieval"], fits)
    results["bound"] = report.bound_rows(results["retrieval"], results["retraining"])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report directory (default: reports)")
    parser.add_argument("--cache", type=Path, default=Path(".cache/reproduce"), help="embeddings and fits")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--pairs", type=int, default=800, help="query/document pairs of the retrieval task")
    parser.add_argument("--extra-anchors", type=int, default=3000,
                        help="anchor paragraphs embedded on top of the 2,600 fixture anchors (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or len(models) < 2:
        parser.error(f"--models needs at least two of {', '.join(MODELS)}; got {args.models!r}")
    timings: dict[str, float] = {}
    start, cpu = time.perf_counter(), _cpu_seconds()
    with timed(timings, "texts from the standard library"):
        texts = corpus.retrieval_texts(*fixture_pool(), args.pairs, args.seed, extra=args.extra_anchors)
    spaces, agreement = embed_spaces(texts, models, Embedder(args.cache), timings)
    settings = wordvectors.WordVectorSettings(seed=args.seed)
    results = experiments(spaces, args.cache / "fits", timings, corpus.word_documents, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = report.figures(args.out, results)
    timings["total"] = {"wall": time.perf_counter() - start, "cpu": _cpu_seconds() - cpu}
    setup = {"models": models, "pairs": len(texts.queries), "anchors": len(spaces[0].anchors),
             "fixture_anchors": len(texts.anchors),
             "fixture_agreement": agreement,
             "window": settings.window}
    env = environment.describe()
    (args.out / "README.md").write_text(report.render(results, figures, env, timings, setup))
    report.write_json(args.out / "results.json", {**results, "setup": setup, "environment": env, "timings": timings})
    print(f"[reproduce] wrote {args.out / 'README.md'} in {timings['total']['wall']:.0f} s", flush=True)
