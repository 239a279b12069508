"""The whole `fit` job: check the destination, fit, report, gate, write the transform file."""
from __future__ import annotations

from pathlib import Path

from .. import transform_file
from ..transform import Transform
from .delivery import Destination, check_destination
from .fit import FitJob, FitResult, fit_files
from .progress import Progress
from .report import build_report, gated_block, unmet_gates


def fit_and_save(job: FitJob, output: Path | None, gates: dict | None = None, overwrite: bool = False,
                 progress: Progress | None = None) -> tuple[FitResult, Transform, list[str]]:
    """Fit, build the report (when ``job.report``) and, if every gate passes, write ``output``.

    Returns the fit result, the transform (sealed when written) and the unmet gates; when any
    gate is unmet, or ``output`` is None, nothing is written.
    """
    inputs = [job.source.path, job.target.path]
    if output is not None:
        check_destination(output, inputs, overwrite)  # fail before the work, not after
    result = fit_files(job, progress)
    transform = result.transform
    if job.report:
        report = build_report(transform, result.stats, result.pairs, job.split, result.heldout, result.control,
                              result.pairing.ids, result.pairs.chunk_rows)
        anchors = report["anchors"]
        fit = {**transform.provenance["fit"], "mean_cosine": anchors["cosine"]["mean"],
               "relative_residual": anchors["relative_residual"]}
        transform = transform.with_provenance(report=report, fit=fit)
    failures = unmet_gates(gated_block(transform.provenance.get("report", {})), gates or {})
    if output is not None and not failures:
        with Destination(output, inputs, overwrite) as dest:
            transform = transform_file.save(transform, dest.temp)
            dest.commit()
    return result, transform, failures
