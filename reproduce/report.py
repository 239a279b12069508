"""The report: ``reports/README.md`` (tables), its PNG figures and ``results.json``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import plots
from .plots import LABELS


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def retrieval_table(pairs: list, metric: str) -> str:
    columns = list(pairs[0].scores)
    rows = [[p.query_model, p.document_model] + [f"{p.scores[c][metric]:.3f}" for c in columns] for p in pairs]
    return _table(["queries", "documents"] + [LABELS[c] for c in columns], rows)


def curve_table(curves: dict) -> str:
    rows = []
    for pair, curve in curves.items():
        for i, point in enumerate(next(iter(curve.values()))):
            rows.append([pair, point["anchors"]] + [f"{curve[m][i]['ndcg@10']:.3f}" for m in curve])
    methods = next(iter(curves.values()))
    return _table(["pair", "anchors"] + [f"nDCG@10 {LABELS.get(m, m)}" for m in methods], rows)


def bound_rows(pairs: list, retraining: dict) -> list[dict]:
    """One row per orthogonal fit (centred and not): the fit report's bound block."""
    fits = [(f"{p.query_model} -> {p.document_model}", p.fits) for p in pairs]
    fits.append(("words v2 -> v1", retraining["fits"]))
    rows = []
    for name, by_method in fits:
        for key in ("orthogonal", "orthogonal_raw"):
            bound = by_method[key].bound
            rows.append({"pair": f"{name}{'' if bound['centred'] else ' (raw)'}", **bound})
    return rows


def bound_table(rows: list[dict]) -> str:
    return _table(["pair", "centred", "anchors N", "D", "eps", "guarantee (2D)^¼·√eps", "achieved min ‖XQ−Y‖",
                   "per anchor: guarantee", "achieved", "unrelated", "vacuous"],
                  [[r["pair"], r["centred"], r["pairs"], r["dimension"], f"{r['eps']:.1f}", f"{r['bound']:.2f}",
                    f"{r['achieved']:.2f}", f"{r['per_sample_bound']:.3f}", f"{r['per_sample_achieved']:.3f}",
                    f"{r['unrelated_per_sample']:.3f}", r["vacuous"]] for r in rows])


def retraining_table(result: dict) -> str:
    return _table(["version 2 vectors", f"neighbour recall@{result['k']}"],
                  [[LABELS[k], f"{v:.3f}"] for k, v in result["recall"].items()])


def hub_summary(rows: list[dict]) -> str:
    """What the hub costs against the direct fits, in words."""
    if not rows:
        return ""
    n = rows[0]["models_in_hub"]
    if n == 2:
        return ("With two models the hub is the direct fit (the two hub maps compose to the Procrustes "
                "solution); a third model (`--models e5,minilm,mpnet`) makes it a real hub.")
    change = [r["hub"]["ndcg@10"] - r["direct"]["ndcg@10"] for r in rows]
    worst = rows[int(np.argmin(change))]["pair"]
    return (f"With {n} models, one shared space changes nDCG@10 by {min(change):+.3f} to {max(change):+.3f} "
            f"against the {len(rows)} direct pairwise fits (mean {np.mean(change):+.3f}; most lost: {worst}), "
            f"with {n} maps to keep instead of {n * (n - 1)}.")


def hub_table(rows: list[dict]) -> str:
    return _table(["pair", "models in the hub", "nDCG@10 direct fit", "nDCG@10 through the hub",
                   "recall@10 direct fit", "recall@10 through the hub"],
                  [[r["pair"], r["models_in_hub"], f"{r['direct']['ndcg@10']:.3f}", f"{r['hub']['ndcg@10']:.3f}",
                    f"{r['direct']['recall@10']:.3f}", f"{r['hub']['recall@10']:.3f}"] for r in rows])


def environment_text(env: dict, timings: dict) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v != "not installed")
    times = _table(["step", "wall time (s)", "CPU time (s)"],
                   [[k, f"{v['wall']:.1f}", f"{v['cpu']:.1f}"] for k, v in timings.items()])
    return (f"Python {env['python']} on {env['platform']}; CPU: {env['cpu']}, {env['cores']} cores.\n\n"
            f"Packages: {packages}.\n\n{times}\n")


def write_json(path: Path, results: dict) -> None:
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k != "fits"}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if hasattr(value, "scores"):
            return {"query_model": value.query_model, "document_model": value.document_model, "scores": value.scores}
        return value
    path.write_text(json.dumps(plain(results), indent=1) + "\n")


def figures(out: Path, results: dict) -> dict[str, Path]:
    return {"retrieval": plots.retrieval_bars(results["retrieval"], out / "retrieval.png"),
            "curve": plots.anchor_curves(results["curve"], out / "anchor_curve.png"),
            "retraining": plots.retraining_bars(results["retraining"]["recall"], results["retraining"]["k"],
                                                out / "retraining.png"),
            "bound": plots.bound_chart(results["bound"], out / "bound.png")}


def _agreement(setup: dict) -> str:
    found = [f"{m} {a:.4f}" for m, a in setup["fixture_agreement"].items() if a is not None]
    return ("; mean cosine between the stored vectors and the installed models' output on the first "
            f"rows: {', '.join(found)}") if found else ""


def render(results: dict, figs: dict[str, Path], env: dict, timings: dict, setup: dict) -> str:
    """The whole markdown report (figures linked by file name, next to it)."""
    ret, curve = results["retraining"], results["curve"]
    saturation = ", ".join(f"{pair}: {n}" for pair, n in results["saturation"].items())
    return f"""# procalign on real models and real text

Generated by `make reproduce` (`python -m reproduce`). Models: {', '.join(setup['models'])}.
Every map is fitted by `procalign fit` (CLI) or `ProcrustesAligner` (library); the bound is the
one `procalign fit --json` reports.

## 1. Cross-model retrieval

Task: {setup['pairs']} functions, classes and methods of the Python {env['python']} standard library;
the query is the docstring's one-line summary, the one relevant document is the rest of the
docstring (first 500 characters). Documents are embedded with one model, queries with
another; maps take the query model into the document model's space, fitted on
{setup['anchors']:,} anchors: {setup['fixture_anchors']:,} from the committed fixtures (first paragraphs of
other objects' docstrings{_agreement(setup)}) and a seeded sample of
{setup['anchors'] - setup['fixture_anchors']:,} more paragraphs of docstrings and help topics (`--extra-anchors`),
none of which shares a paragraph with the task. "no alignment" compares
the raw vectors (the shorter zero-padded when dimensions differ); "native" embeds both sides
with one model.

nDCG@10:

{retrieval_table(results['retrieval'], 'ndcg@10')}

recall@10:

{retrieval_table(results['retrieval'], 'recall@10')}

![retrieval]({figs['retrieval'].name})

## 2. Number of anchors

The same task with the maps fitted on n anchors (the first n of a seeded random order).
Anchors where the centred orthogonal map's nDCG@10 comes within 0.01 of its value with every
anchor: {saturation}.

{curve_table(curve)}

![anchor curve]({figs['curve'].name})

## 3. Retraining compatibility

Word vectors (PPMI of co-occurrences within {setup['window']} words, randomised truncated SVD to
{ret['dim']} dimensions) trained twice: on two random halves of the standard library's
docstrings, comments and help topics ({ret['tokens'][0]:,} and {ret['tokens'][1]:,} tokens),
{ret['words']:,} shared words. Version 1 indexes every word; for each of the {ret['evaluated']:,}
evaluated words (disjoint from the {ret['anchors']:,} anchor words the maps are fitted on),
recall@{ret['k']} is the share of its {ret['k']} version-1 neighbours found when the version-2
vector searches the version-1 index. "version 2 on its own index" is the agreement between the
two trainings' own neighbourhoods: what retraining itself changed.

{retraining_table(ret)}

![retraining]({figs['retraining'].name})

## 4. The bound

For every orthogonal fit above (centred, and raw): eps = ‖XXᵀ − YYᵀ‖_F, the theorem's
guarantee (2D)^¼·√eps on min_Q ‖XQ − Y‖_F, the achieved minimum, and the same per anchor
(squared: √(2D)·eps/N against the achieved mean squared error, next to the mean squared
distance of unrelated pairs, above which the guarantee says nothing). The guarantee always
holds; on these real pairs it is loose, and vacuous wherever the last column says so.

{bound_table(results['bound'])}

![bound]({figs['bound'].name})

## 5. One hub for every model

`procalign fit-hub` on every model's anchors (generalised Procrustes, centred): each model maps
isometrically into one hub space, and queries reach the document model through the hub (the
query model's map, then the document model's map inverted), next to the direct orthogonal fit
of section 1. {hub_summary(results['hub'])}

{hub_table(results['hub'])}

## Environment and wall time

{environment_text(env, timings)}"""
