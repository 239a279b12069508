"""`procalign evaluate T.npz [T2.npz ...] SOURCE TARGET`: measure a saved map, or a chain, on new pairs."""
from __future__ import annotations

from typing import Annotated, List

import typer

from .errors import exit_codes
from .options import (BatchRows, ByPosition, Column, Dataset, EvalSize, Force, IdColumn, Json, MaxResidual, Memory,
                      MinCosine, MinTop1, Quiet, input_locations)
from .methods_view import bound_table
from .render import print_json, progress_for, stderr, stdout
from .report_view import metrics_table


def evaluate(
    transforms: Annotated[List[str], typer.Argument(metavar="TRANSFORM", help="Transform file (maps its SOURCE space into its TARGET space), or a chain composed into one (as for apply; a pair through a hub: hub/a.npz hub/b.npz).", show_default=False)],
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Sample of items in the SOURCE space.", show_default=False)],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The same items in the TARGET space (paired by id or by row).", show_default=False)],
    eval_size: EvalSize = 10000,
    min_top1: MinTop1 = None,
    min_cosine: MinCosine = None,
    max_residual: MaxResidual = None,
    column: Column = None,
    id_column: IdColumn = None,
    dataset: Dataset = None,
    by_position: ByPosition = False,
    memory: Memory = 128,
    batch_rows: BatchRows = None,
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Measure how well a saved SOURCE -> TARGET map aligns a new sample of pairs (drift check).

    Nothing is written. Samples stamped as being in another space than the transform's SOURCE and TARGET are refused (exit 8) unless --force.
    """
    with exit_codes():
        # imported here so that --help starts without numpy, pyarrow or h5py
        from ..pipeline.chain import load_chain
        from ..pipeline.evaluate import EvaluateJob, evaluate_files, sample_warnings, unsupported_gates
        from ..pipeline.report import gate_error, unmet_gates
        found = load_chain(transforms)
        for note in found.notes:
            stderr.print(f"note: {note}")
        job = EvaluateJob(found.transform, found.label, *input_locations([source, target], dataset),
                          column, id_column, by_position, batch_rows=batch_rows, memory_mb=memory,
                          eval_size=eval_size, force=force)
        report = evaluate_files(job, progress_for(quiet or json_out))
        gates = {"min_top1": min_top1, "min_cosine": min_cosine, "max_residual": max_residual}
        for warning in sample_warnings(report):
            stderr.print(f"warning: {warning}")
        failures = unsupported_gates(report, gates) or unmet_gates(
            report["aligned"], gates, not_measured="fewer than 2 pairs sampled; raise --eval-size")
        if json_out:
            print_json({"report": report, "gates_failed": failures, "route": found.route})
        else:
            stdout.print(metrics_table(f"{found.route}: {report['pairs']} pairs ({report['sample']} sampled for "
                                       "retrieval)", report))
            stdout.print(bound_table(report["bound"], "Procrustes bound (Maystre et al. 2025) on these pairs: how far "
                                                      "the two geometries are apart, and the transform's residual"))
        if failures:
            raise gate_error(failures, found.label, "the map does not meet it on this sample; refit it on current pairs "
                                                  "or relax the gate")
