"""`procalign threshold T.npz 0.85 --anchors SOURCE TARGET`: a cosine cut-off, translated."""
from __future__ import annotations

from typing import Annotated

import typer

from .errors import exit_codes
from .options import ByPosition, Column, Dataset, IdColumn, Json, Quiet, input_locations
from .render import key_value_table, print_json, stdout


def threshold(
    transform: Annotated[str, typer.Argument(metavar="TRANSFORM", help="Transform file (maps its SOURCE space into its TARGET space).", show_default=False)],
    cut: Annotated[float, typer.Argument(metavar="THRESHOLD", help="A cosine-similarity cut-off used in the SOURCE space.", show_default=False)],
    anchors: Annotated[tuple[str, str], typer.Option("--anchors", metavar="SOURCE TARGET", help="Paired anchors in the SOURCE and TARGET spaces (as for fit).", show_default=False)],
    items: Annotated[int, typer.Option("--items", help="At most this many anchor items are sampled; all pairs among them are compared.", min=3)] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the item sample.", min=0, max=2**63 - 1)] = 0,
    column: Column = None,
    dataset: Dataset = None,
    id_column: IdColumn = None,
    by_position: ByPosition = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Translate a cosine-similarity cut-off from the SOURCE space to the TARGET space.

    The translated cut-off keeps the same share of item pairs above it, estimated on anchor pairs: similarity thresholds shift after mapping.
    """
    with exit_codes():
        import math

        from .. import transform_file
        from ..errors import UsageError
        from ..pipeline.threshold import ThresholdJob, translate_threshold
        if not math.isfinite(cut):
            raise UsageError(f"THRESHOLD must be a finite number, got {cut}")
        job = ThresholdJob(transform_file.load(transform), transform, *input_locations(list(anchors), dataset),
                           cut, column, id_column, by_position, items, seed)
        result = translate_threshold(job)
        if json_out:
            return print_json(result)
        stdout.print(key_value_table(f"cosine threshold {result['source']} -> {result['target']}", [
            (f"in {result['source']} (given)", result["source_threshold"]),
            (f"in {result['target']} (native vectors)", result["target_threshold"]),
            (f"in {result['target']} (vectors mapped by the transform)", result["mapped_threshold"]),
            ("share of pairs above", result["share_above"]),
            ("pairs on the same side of both", result["agreement"]),
            ("item pairs compared", f"{result['pairs']} ({result['items']} items)")]))
