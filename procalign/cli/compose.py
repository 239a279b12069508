"""`procalign compose T1.npz T2.npz [...] -o OUT.npz`: a chain of transforms as the one transform it equals."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional, Tuple

import typer

from .errors import exit_codes
from .options import BatchRows, ByPosition, Column, Dataset, IdColumn, Json, Memory, Overwrite, Quiet, Wait, input_locations
from .render import key_value_table, print_json, progress_for, stderr, stdout
from .report_view import metrics_table


def compose(
    transforms: Annotated[List[str], typer.Argument(metavar="TRANSFORM", help="Two or more transform files, in the order they apply; each must start where the previous ends (a fit-hub transform that ends there is used inverted).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Transform file to write (.npz), mapping the first SOURCE -> the last TARGET. Without it, compose only prints what the chain is.", show_default=False)] = None,
    anchors: Annotated[Optional[Tuple[str, str]], typer.Option("--anchors", metavar="SOURCE TARGET", help="Anchor files in the chain's first and last space: also fit the direct map on them and show both maps on the same held-out pairs.", show_default=False)] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="With --anchors: the fraction of pairs the direct fit leaves out, on which both maps are measured.", min=0.01, max=0.99)] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="With --anchors: seed of the hold-out split.", min=0, max=2**63 - 1)] = 0,
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
) -> None:
    """Compose a chain of transforms into one exact transform (an affine map: centring, scale and every method included).

    The spaces must connect by name and dimension, else nothing is written (exit 2).

    A chain through fewer dimensions than its ends is a projection: the file says so, and so does inspect.
    """
    with exit_codes(output):
        # imported here so that --help starts without numpy, pyarrow or h5py
        from ..pipeline.chain import compare_on_anchors, compose_files
        found = compose_files(transforms, output, overwrite, wait)
        for note in found.notes:
            stderr.print(f"note: {note}")
        comparison = None
        if anchors is not None:
            comparison = compare_on_anchors(found, *input_locations(list(anchors), dataset), holdout, seed,
                                            progress_for(quiet or json_out), column=column, id_column=id_column,
                                            by_position=by_position, batch_rows=batch_rows, memory_mb=memory)
        t = found.transform
        if json_out:
            return print_json({"output": None if output is None else str(output), "route": found.route,
                               "comparison": comparison, **t.metadata})
        kept = t.provenance["composition"]["kept"]
        stdout.print(key_value_table(f"wrote {output}" if output is not None else "composed (nothing written: no -o)", [
            ("chain", found.route), ("files", found.label),
            ("method", f"{t.method}: {t.geometry['geometry']}"), ("keeps", kept["note"]),
            ("checksum", t.checksum if output is not None else "-")]))
        if comparison is not None:
            stdout.print(metrics_table(f"{comparison['pairs']} held-out pairs of the anchors (direct fit: "
                                       f"{comparison['direct_method']}, on the other pairs)", comparison))
