"""Human-readable rendering of fit metadata and quality reports (Rich, stdout)."""
from __future__ import annotations

from rich.table import Table

from .methods_view import bound_table, show_diagnostics, show_methods
from .render import fmt, key_value_table, stdout

COLUMNS = (("top-1", ("top1",)), ("top-10", ("top10",)), ("MRR", ("mrr",)),
           ("cos mean", ("cosine", "mean")), ("cos p5", ("cosine", "p5")), ("cos median", ("cosine", "median")),
           ("kNN@10", ("knn10_overlap",)), ("rel. residual", ("relative_residual",)))
ROWS = (("aligned (procalign)", "aligned"), ("no alignment", "unaligned"),
        ("shuffled-pair control", "shuffled_control"), ("ridge affine, alpha 1e-3 (baseline)", "ridge_affine"),
        ("composed chain", "composed"), ("direct fit", "direct"))


def _dig(d, path):
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def metrics_table(title: str, block: dict) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("map")
    for name, _ in COLUMNS:
        table.add_column(name, justify="right")
    for label, key in ROWS:
        if key in block:
            table.add_row(label, *(fmt(_dig(block[key], path), 3) for _, path in COLUMNS))
    return table


def show_report(report: dict, warnings: bool = False) -> None:
    """The report's tables; ``warnings`` also lists its warnings (fit prints them on stderr)."""
    if "heldout" in report:
        h = report["heldout"]
        stdout.print(metrics_table(f"held-out pairs ({h['pairs']}, never used in the fit)", h))
        show_methods(h)
    a = report.get("anchors")
    if a:
        stdout.print(key_value_table(f"anchors ({a['pairs']} fitted pairs)", [
            ("cosine mean / p5 / median", f"{a['cosine']['mean']:.3f} / {a['cosine']['p5']:.3f} / {a['cosine']['median']:.3f}"),
            ("relative residual", a["relative_residual"]),
            ("worst pairs", ", ".join(f"{w['id']} ({w['squared_residual']:.3f})" for w in a["worst"][:5]))]))
    b = report.get("bound")
    if b:
        stdout.print(bound_table(b, "Procrustes bound (Maystre et al. 2025), on the fitted anchors (orthogonal maps)"))
    for warning in report.get("warnings", []) if warnings else []:
        stdout.print(f"warning: {warning}")


def quality_line(meta: dict) -> str:
    h = _dig(meta, ("report", "heldout"))
    if h:
        base = _dig(h, ("unaligned", "top1"))
        return (f"quality: held-out top-1 {h['aligned']['top1']:.3f} (unaligned {fmt(base, 3)}), "
                f"mean cosine {h['aligned']['cosine']['mean']:.3f} (unaligned "
                f"{fmt(_dig(h, ('unaligned', 'cosine', 'mean')), 3)}) on {h['pairs']} held-out pairs")
    if meta.get("composition") and not meta.get("fit"):
        return ("quality: a composed transform carries no measurement of its own; compare it with a direct fit "
                "(compose --anchors SOURCE TARGET) or measure it (evaluate)")
    hub = meta.get("hub")
    if isinstance(hub, dict) and not meta.get("fit"):
        return (f"quality: {meta.get('source', {}).get('name')} sits {fmt(hub.get('relative_residual'), 3)} of its "
                f"own spread from the hub's consensus (on {hub.get('anchors')} items); measure a pair through the hub "
                "with evaluate hub/A.npz hub/B.npz A_SAMPLE B_SAMPLE")
    fit = meta.get("fit", {})
    return (f"quality: on the {meta.get('anchors')} anchors mean cosine {fmt(fit.get('mean_cosine'), 3)}, "
            f"relative residual {fmt(fit.get('relative_residual'), 3)} (use --holdout for held-out numbers)")


def show_fit(meta: dict, outcome: str) -> None:
    """The report, then what was fitted, its quality, and ``outcome`` (what happened to -o) last."""
    if meta.get("report"):
        show_report(meta["report"])
    show_diagnostics(meta.get("fit", {}))
    p = meta.get("pairing", {})
    paired = f"paired by {p.get('mode')}"
    if p.get("mode") == "id":
        paired += f" ({p['ids_only_in_source']} ids only in source, {p['ids_only_in_target']} only in target)"
    stdout.print(f"fitted {meta['source']['name']} ({meta['source']['dim']}-d) -> {meta['target']['name']} "
                 f"({meta['target']['dim']}-d) on {meta['anchors']} anchors, {paired}; method "
                 f"{meta.get('method', 'orthogonal')}")
    stdout.print(quality_line(meta))
    stdout.print(outcome)
