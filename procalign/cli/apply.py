"""`procalign apply T.npz [T2.npz ...] INPUT -o OUTPUT`: stream a dump through a transform or a chain."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from ..formats.registry import format_help
from .errors import exit_codes
from .options import (BatchRows, Column, Dataset, EngineName, Force, Json, Memory, Overwrite, Quiet, Scheduler,
                      StorageOptions, Wait, Workers, input_locations)
from .render import print_json, progress_for, stderr, stdout

DTYPES = ("float16", "float32", "float64")


def apply(
    transforms: Annotated[List[str], typer.Argument(metavar="TRANSFORM", help="Transform file written by `procalign fit` (maps its SOURCE space into its TARGET space), or several: a chain, composed into one map first (each must start where the previous ends; a fit-hub transform that ends there is used inverted: hub/a.npz hub/b.npz maps a -> hub -> b).", show_default=False)],
    input: Annotated[str, typer.Argument(metavar="INPUT", help=f"Vectors to map ({format_help()}), in the SOURCE space (TARGET with --inverse).", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help=f"Where to write the mapped vectors ({format_help()}).", show_default=False)],
    inverse: Annotated[bool, typer.Option("--inverse", help="Map the other way: from the transform's TARGET space back into its SOURCE space.")] = False,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="Output float type (default: the input's): float16, float32 or float64.")] = None,
    column: Column = None,
    dataset: Dataset = None,
    memory: Memory = 128,
    batch_rows: BatchRows = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run that was killed, from its last completed chunk (same input, transform and options).")] = False,
    fsync: Annotated[bool, typer.Option("--fsync", help="fsync the output before renaming it into place: durable across power loss, at the cost of writing it all to disk first.")] = False,
    force: Force = False,
    overwrite: Overwrite = False,
    wait: Wait = False,
    json_out: Json = False,
    quiet: Quiet = False,
    engine: EngineName = "local",
    scheduler: Scheduler = None,
    workers: Workers = None,
    storage_options: StorageOptions = None,
) -> None:
    """Map every vector of INPUT with the transform and write OUTPUT, streaming in chunks.

    Other columns (parquet) and datasets (HDF5) pass through. OUTPUT appears only when complete; on any error nothing is left there.
    """
    with exit_codes(output):
        # imported here so that --help starts without numpy, pyarrow or h5py
        from ..errors import UsageError
        from ..formats import parse_location
        from ..pipeline import ApplyJob, apply_file
        from ..formats.parts import output_location
        from ..pipeline.chain import load_chain
        if dtype is not None and dtype not in DTYPES:
            raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}; pick one of those")
        if output == "-" and json_out:
            raise UsageError("-o - sends the records to stdout, which --json needs too; drop one")
        found = load_chain(transforms)
        for note in found.notes:
            stderr.print(f"note: {note}")
        source = input_locations([input], dataset, storage_options, outputs=(output,))[0]
        partitioned = bool(source.parts) or engine != "local"  # one output part per input part
        job = ApplyJob(found.transform, found.label, source,
                       output_location(output, source) if partitioned else parse_location(output),
                       inverse, dtype, column, memory, batch_rows, overwrite, wait, force, resume, fsync,
                       chain=tuple(found.paths))
        if partitioned:
            return apply_parts(job, job.destination.label, (engine, scheduler, workers), quiet or json_out, json_out)
        result = apply_file(job, progress_for(quiet or json_out))
        for note in result.notes:
            stderr.print(f"note: {note}")
        if json_out:
            print_json({"rows": result.rows, "seconds": result.seconds, "rows_per_second": result.rows_per_second,
                        "output": result.destination, "dtype": result.dtype, "direction": result.direction})
        else:  # with -o - stdout holds the records and nothing else
            (stderr if output == "-" else stdout).print(
                f"mapped {result.rows} rows ({result.direction}) in {result.seconds:.2f} s "
                f"({result.rows_per_second:,.0f} rows/s) -> {'stdout' if output == '-' else result.destination}")


def apply_parts(job, output: str, engine_spec: tuple, quiet: bool, json_out: bool) -> None:
    """A partitioned input (directory, glob, URL): one output part per input part, on an engine."""
    from ..pipeline.dataset_apply import apply_dataset
    from ..pipeline.engines import engine_for
    with engine_for(*engine_spec) as engine:
        result = apply_dataset(job, output, engine, progress_for(quiet))
    for part in result.parts:
        for note in part.notes:
            stderr.print(f"note: {part.destination}: {note}")
    skipped = len(result.parts) - result.written
    if json_out:
        print_json({"rows": result.rows, "parts": len(result.parts), "parts_written": result.written,
                    "parts_skipped": skipped, "seconds": result.seconds, "rows_per_second": result.rows_per_second,
                    "output": result.destination, "direction": result.direction, "engine": engine.name})
    else:
        stdout.print(f"mapped {result.rows} rows in {len(result.parts)} parts ({result.direction}; {result.written} "
                     f"written, {skipped} already complete) in {result.seconds:.2f} s -> {result.destination}")
