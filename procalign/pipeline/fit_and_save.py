"""The whole `fit` job: check the destination, fit, report, gate, write the transform file.

Gates judge held-out pairs when there are any. On the anchors alone they judge only a fit with
comfortably more pairs than dimensions (`ANCHORS_PER_DIMENSION`): with fewer, any map fits the
anchors well (10 random pairs in 384-d reach a mean cosine near 1), so the gate fails and says
why rather than pass a meaningless fit. Warnings about what the anchors can support go into
the transform's provenance (``warnings``) for the CLI to print.
"""
from __future__ import annotations

from pathlib import Path

from .. import transform_file
from ..transform import Transform
from .delivery import Destination
from .fit import FitJob, FitResult, fit_files
from .fit_checks import anchor_diagnostics, chance_warnings, diagnostic_warnings
from .methods import with_method_rows
from .progress import Progress
from .report import build_report, gated_block, unmet_gates

ANCHORS_PER_DIMENSION = 4   # below this many anchor pairs per dimension, anchor metrics flatter
MIN_HELDOUT = 10            # fewer held-out pairs make top-1 and cosine too noisy to gate on
MIN_ID_OVERLAP = 0.5        # warn when fewer of the smaller file's ids than this are matched


def fit_warnings(result: FitResult) -> list[str]:
    """What the anchors cannot support, in words (empty when all is well)."""
    t, pairing, n = result.transform, result.pairing, result.stats.n
    dim = max(t.d_source, t.d_target)
    warnings = []
    if n <= dim:
        warnings.append(f"only {n} anchor pairs for {dim} dimensions: the anchors do not determine the map; "
                        f"use several times {dim} pairs")
    if pairing.mode == "id":
        smaller = min(pairing.pairs + pairing.only_source, pairing.pairs + pairing.only_target)
        if pairing.pairs < MIN_ID_OVERLAP * smaller:
            warnings.append(f"only {pairing.pairs} of {smaller} ids were matched between the two files; "
                            "check --id-column and that both files hold the same items")
    return warnings


def gate_support(transform: Transform, anchors: int) -> str | None:
    """Why the gates cannot judge this fit, or None when they can."""
    held = transform.provenance.get("report", {}).get("heldout")
    if held:
        if held["pairs"] < MIN_HELDOUT:
            return f"only {held['pairs']} held-out pairs; raise --holdout or add anchors"
        return None
    dim = max(transform.d_source, transform.d_target)
    if anchors < ANCHORS_PER_DIMENSION * dim:
        return (f"only {anchors} anchor pairs for {dim} dimensions and no hold-out: anchor metrics flatter "
                f"the map; fit with --holdout, or with at least {ANCHORS_PER_DIMENSION * dim} pairs")
    return None


def fit_and_save(job: FitJob, output: Path | None, gates: dict | None = None, overwrite: bool = False,
                 progress: Progress | None = None, wait: bool = False) -> tuple[FitResult, Transform, list[str]]:
    """Fit, build the report (when ``job.report``) and, if every gate passes, write ``output``.

    Returns the fit result, the transform (sealed when written) and the unmet gates; when any
    gate is unmet, or ``output`` is None, nothing is written.
    """
    inputs = [job.source.path, job.target.path]
    if output is None:
        return _fit_and_gate(job, gates, progress)
    # Lock before the work: a second fit to the same file fails at once (or waits) instead of
    # after a fit it cannot write.
    with Destination(output, inputs, overwrite, wait) as dest:
        result, transform, failures = _fit_and_gate(job, gates, progress)
        if not failures:
            transform = transform_file.save(transform, dest.temp)
            dest.commit()
    return result, transform, failures


def _fit_and_gate(job: FitJob, gates: dict | None, progress: Progress | None) -> tuple[FitResult, Transform, list[str]]:
    result = fit_files(job, progress)
    diagnostics = anchor_diagnostics(result.stats, result.transform.options.centre)
    warnings = fit_warnings(result) + diagnostic_warnings(diagnostics, result.transform, result.stats.n)
    transform = result.transform.with_provenance(
        warnings=warnings, fit={**result.transform.provenance["fit"], "diagnostics": diagnostics})
    if job.report:
        report = build_report(transform, result.stats, result.pairs, job.split, result.heldout, result.control,
                              result.pairing.ids, result.pairs.chunk_rows)
        warnings = warnings + chance_warnings(report.get("heldout"))
        report = {**with_method_rows(report, result.method_rows, transform.provenance["fit"].get("selection")),
                  "warnings": warnings}
        anchors = report["anchors"]
        fit = {**transform.provenance["fit"], "mean_cosine": anchors["cosine"]["mean"],
               "relative_residual": anchors["relative_residual"]}
        transform = transform.with_provenance(report=report, fit=fit, warnings=warnings)
    failures = []
    if any(v is not None for v in (gates or {}).values()):
        problem = gate_support(transform, result.stats.n)
        failures = [f"gates not judged: {problem}"] if problem else \
            unmet_gates(gated_block(transform.provenance.get("report", {})), gates)
    return result, transform, failures
