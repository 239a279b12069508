"""`procalign fit SOURCE TARGET [-o T.npz]`: learn the map from SOURCE's space into TARGET's."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..formats.registry import format_help
from .errors import exit_codes
from .options import (BatchRows, ByPosition, Column, Dataset, EngineName, EvalSize, IdColumn, Json, MaxResidual, Memory,
                      MinCosine, MinTop1, Overwrite, Quiet, Scheduler, StorageOptions, Wait, Workers, input_locations)
from .render import print_json, progress_for, stderr
from .report_view import show_fit


class Method(str, Enum):
    orthogonal = "orthogonal"
    whitened = "whitened"
    affine = "affine"
    auto = "auto"


def fit(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help=f"Anchors in the SOURCE space (the space you map from): {format_help()}.", show_default=False)],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The same items in the TARGET space (the space you map into).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Transform file to write (.npz), mapping SOURCE -> TARGET. Without it, fit only prints the report.", show_default=False)] = None,
    centre: Annotated[bool, typer.Option("--centre/--no-centre", help="Subtract each space's mean before the rotation and add the target mean back (default on: measured better on real model pairs).")] = True,
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalise inputs (and outputs when applying).")] = False,
    scale: Annotated[bool, typer.Option("--scale", help="Also fit one isotropic scale factor.")] = False,
    rotation_only: Annotated[bool, typer.Option("--rotation-only", help="Forbid reflections (det = +1); equal dimensions only.")] = False,
    method: Annotated[Method, typer.Option("--method", help="orthogonal: Procrustes, an isometry (the paper's bound holds). whitened: whiten both sides, rotate, re-weight, de-whiten (often best top-1; not an isometry). affine: ridge least squares, regulariser by GCV. auto: fit every candidate and keep the best held-out top-1 (needs --holdout).")] = Method.orthogonal,
    reweight: Annotated[Optional[float], typer.Option("--reweight", help="whitened/auto: weight shared directions by canonical correlation^P (0: none, 1: least squares; default 0.5).", min=0.0, max=1.0, metavar="P")] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="Fraction of pairs kept out of the fit to measure the map on (0 = none).", min=0.0, max=0.99)] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the hold-out split and the shuffled control (an integer >= 0).", min=0, max=2**63 - 1)] = 0,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Compute the quality report (a second pass over the anchors). --no-report fits in one pass.")] = True,
    eval_size: EvalSize = 10000,
    min_top1: MinTop1 = None,
    min_cosine: MinCosine = None,
    max_residual: MaxResidual = None,
    source_name: Annotated[Optional[str], typer.Option("--source-name", help="Name of the source space (default: SOURCE file stem).")] = None,
    target_name: Annotated[Optional[str], typer.Option("--target-name", help="Name of the target space (default: TARGET file stem).")] = None,
    column: Column = None,
    id_column: IdColumn = None,
    dataset: Dataset = None,
    by_position: ByPosition = False,
    memory: Memory = 128,
    batch_rows: BatchRows = None,
    overwrite: Overwrite = False,
    wait: Wait = False,
    json_out: Json = False,
    quiet: Quiet = False,
    engine: EngineName = "local",
    scheduler: Scheduler = None,
    workers: Workers = None,
    storage_options: StorageOptions = None,
) -> None:
    """Learn the map from SOURCE's embedding space into TARGET's (orthogonal unless --method).

    Row i of SOURCE and row i of TARGET must be the same item, or both files carry ids and the pairs are joined by id. The map is written to -o (if given) and its quality is printed.
    """
    with exit_codes(output):
        # imported here so that --help starts without numpy, pyarrow or h5py
        from ..pipeline.fit import FitJob
        from ..pipeline.fit_and_save import fit_and_save
        from ..pipeline.report import gate_error
        from ..math.procrustes import FitOptions
        gates = {"min_top1": min_top1, "min_cosine": min_cosine, "max_residual": max_residual}
        from ..pipeline.engines import engine_for
        from ..formats.parts import require_dataset
        locations = input_locations([source, target], dataset, storage_options)
        if engine == "dask":
            require_dataset(*locations)
        job = FitJob(*locations,
                     FitOptions(centre, normalize, scale, rotation_only), column, id_column, by_position,
                     batch_rows, holdout, seed, report or any(g is not None for g in gates.values()),
                     eval_size, source_name, target_name, memory, method.value, reweight)
        with engine_for(engine, scheduler, workers) as job.engine:
            _, transform, failures = fit_and_save(job, output, gates, overwrite, progress_for(quiet or json_out),
                                                  wait=wait)
        for warning in transform.provenance.get("warnings", []):
            stderr.print(f"warning: {warning}")
        written = str(output) if output is not None and not failures else None
        if json_out:
            print_json({"output": written, "gates_failed": failures, **transform.metadata})
        else:
            show_fit(transform.metadata, f"wrote {written}" if written else
                     "nothing written (quality gate failed)" if failures else "nothing written (no -o given)")
        if failures:
            raise gate_error(failures, None if output is None else str(output), "nothing was written")
