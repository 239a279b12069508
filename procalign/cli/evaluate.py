"""`procalign evaluate T.npz SOURCE TARGET`: measure a saved map on new pairs."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from .errors import exit_codes
from .options import Column, IdColumn, Json, Quiet
from .render import print_json, progress_for, stdout
from .report_view import metrics_table


def evaluate(
    transform: Annotated[str, typer.Argument(help="Transform file (maps its SOURCE space into its TARGET space).", show_default=False)],
    source: Annotated[str, typer.Argument(help="Sample of items in the SOURCE space.", show_default=False)],
    target: Annotated[str, typer.Argument(help="The same items in the TARGET space (paired by id or by row).", show_default=False)],
    eval_size: Annotated[int, typer.Option("--eval-size", help="At most this many pairs are used for retrieval metrics.", min=2)] = 10000,
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", help="Gate: exit 3 if top-1 identity retrieval is below this.")] = None,
    min_cosine: Annotated[Optional[float], typer.Option("--min-cosine", help="Gate: exit 3 if the mean cosine is below this.")] = None,
    max_residual: Annotated[Optional[float], typer.Option("--max-residual", help="Gate: exit 3 if ||XQ-Y||/||Y|| is above this.")] = None,
    column: Column = None,
    id_column: IdColumn = None,
    by_position: Annotated[bool, typer.Option("--by-position", help="Pair row i with row i even when both files carry ids.")] = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Measure how well a saved SOURCE -> TARGET map aligns a new sample of pairs (drift check)."""
    with exit_codes():
        # imported here so that --help starts without numpy, pyarrow or h5py
        from .. import transform_file
        from ..io import parse_location
        from ..pipeline.evaluate import EvaluateJob, evaluate_files
        from ..pipeline.report import gate_error, unmet_gates
        job = EvaluateJob(transform_file.load(transform), transform, parse_location(source), parse_location(target),
                          column, id_column, by_position, eval_size=eval_size)
        report = evaluate_files(job, progress_for(quiet or json_out))
        failures = unmet_gates(report["aligned"], {"min_top1": min_top1, "min_cosine": min_cosine,
                                                   "max_residual": max_residual})
        if json_out:
            print_json({"report": report, "gates_failed": failures})
        else:
            stdout.print(metrics_table(f"{report['pairs']} pairs ({report['sample']} sampled for retrieval)", report))
        if failures:
            raise gate_error(failures, transform)
