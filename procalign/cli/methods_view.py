"""Rendering of the row per method, auto's choice, the anchors' geometry and the bound (Rich, stdout)."""
from __future__ import annotations

from rich.table import Table

from .render import fmt, key_value_table, stdout

METHOD_LABELS = {"orthogonal": "orthogonal", "orthogonal_scaled": "orthogonal + scale",
                 "whitened": "whitened", "affine": "affine (ridge, GCV)"}
COLUMNS = (("top-1", ("top1",)), ("top-10", ("top10",)), ("MRR", ("mrr",)), ("cos mean", ("cosine", "mean")),
           ("kNN@10 vs target", ("knn10_overlap",)), ("kNN@10 kept", ("source_knn10_overlap",)),
           ("rel. residual", ("relative_residual",)))


def _dig(d, path):
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def methods_table(rows: dict) -> Table:
    table = Table(title="every method on the held-out pairs (* = the map fitted; kNN@10 kept: source "
                        "neighbourhoods the map keeps, Euclidean)", title_justify="left")
    table.add_column("method")
    table.add_column("isometry")
    for name, _ in COLUMNS:
        table.add_column(name, justify="right")
    for name, row in rows.items():
        label = METHOD_LABELS.get(name, name) + (" *" if row.get("chosen") else "")
        table.add_row(label, "yes" if row.get("isometry") else "no",
                      *(fmt(_dig(row, path), 3) for _, path in COLUMNS))
    return table


def show_methods(heldout: dict) -> None:
    rows = heldout.get("methods")
    if not rows:
        return
    order = [name for name in METHOD_LABELS if name in rows] + [name for name in rows if name not in METHOD_LABELS]
    stdout.print(methods_table({name: rows[name] for name in order}))
    selection = heldout.get("selection")
    if selection:
        stdout.print(f"--method auto chose {selection['winner']}: {selection['reason']}")
    stdout.print("only the orthogonal map is an isometry covered by the paper's bound; the others trade "
                 "geometry for fit")


def show_diagnostics(fit: dict) -> None:
    d = fit.get("diagnostics")
    if not d:
        return
    n, r = d["norms"], d["rank"]
    stdout.print(key_value_table("anchors' geometry", [
        ("RMS norm source / target", f"{n['source_rms_norm']:.4g} / {n['target_rms_norm']:.4g} ({n['ratio']:.2f}x)"),
        ("centred RMS source / target", f"{n['source_centred_rms']:.4g} / {n['target_centred_rms']:.4g} "
                                        f"({n['centred_ratio']:.2f}x)"),
        ("effective rank of X^T Y", f"{r['effective_rank']} of {r['directions']}")]))


def bound_table(b: dict, title: str):
    verdict = "VACUOUS (guarantees nothing here)" if b["vacuous"] else "informative"
    rows = [("eps = ||XX^T - YY^T||_F", b["eps"]),
            ("guaranteed min ||XQ-Y||_F <=", b["bound"]), ("achieved ||XQ-Y||_F (best Q)", b["achieved"]),
            ("per sample: guaranteed <=", b["per_sample_bound"]), ("per sample: achieved", b["per_sample_achieved"])]
    if "transform_achieved" in b:
        rows += [("achieved by the transform ||T(X)-Y||_F", b["transform_achieved"]),
                 ("per sample: by the transform", b["transform_per_sample"])]
    rows += [("per sample: unrelated pairs", b["unrelated_per_sample"]), ("bound is", verdict)]
    return key_value_table(title, rows)
