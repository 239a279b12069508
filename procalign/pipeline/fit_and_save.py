"""The whole `fit` job: check the destination, fit, report, gate, write the transform file."""
from __future__ import annotations

from pathlib import Path

from .. import transform_file
from .destination import Destination, check_destination
from .fit import FitJob, FitResult, fit_files
from .progress import Progress
from .report import build_report, gated_block, unmet_gates


def fit_and_save(job: FitJob, output: Path | None, gates: dict | None = None, overwrite: bool = False,
                 progress: Progress | None = None) -> tuple[FitResult, dict, list[str]]:
    """Fit, build the report (when ``job.report``) and, if every gate passes, write ``output``.

    Returns the fit result, the metadata (as written, or as it would have been) and the unmet
    gates; when any gate is unmet nothing is written.
    """
    inputs = [job.source.path, job.target.path]
    if output is not None:
        check_destination(output, inputs, overwrite)  # fail before the work, not after
    result = fit_files(job, progress)
    metadata = dict(result.metadata)
    if job.report:
        metadata["report"] = build_report(job, result)
        anchors = metadata["report"]["anchors"]
        metadata["fit"]["mean_cosine"] = anchors["cosine"]["mean"]
        metadata["fit"]["relative_residual"] = anchors["relative_residual"]
    failures = unmet_gates(gated_block(metadata.get("report", {})), gates or {})
    if output is not None and not failures:
        with Destination(output, inputs, overwrite) as dest:
            metadata = transform_file.save(result.transform, dest.temp, metadata)
            dest.commit()
    return result, metadata, failures
