"""`procalign invert T.npz -o OUT.npz`: the transform that maps the other way, as a file."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .errors import exit_codes
from .options import Json, Overwrite, Quiet, Wait
from .render import key_value_table, print_json, stdout


def invert(
    transform: Annotated[str, typer.Argument(metavar="TRANSFORM", help="Transform file mapping SOURCE -> TARGET.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Transform file to write, mapping TARGET -> SOURCE.", show_default=False)],
    overwrite: Overwrite = False,
    wait: Wait = False,
    json_out: Json = False,
    quiet: Quiet = False,  # nothing streams; accepted so that every command takes -q
) -> None:
    """Write the inverse of TRANSFORM: exact for an orthogonal map into as many or more dimensions (transpose, means swapped, scale inverted); the pseudo-inverse otherwise.

    The file records that it is an inverse, and of which transform (inverse_of: its checksum).
    """
    with exit_codes(output):
        # imported here so that --help starts without numpy
        from ..pipeline.chain import invert_file
        forward, inverse = invert_file(transform, output, overwrite, wait)
        if json_out:
            return print_json({"output": str(output), **inverse.metadata})
        stdout.print(key_value_table(f"wrote {output}", [
            ("direction", inverse.describe()), ("method", f"{inverse.method}: {inverse.geometry['geometry']}"),
            ("inverse of", inverse.inverse_of), ("exact?", forward.inverse_kind),
            ("checksum", inverse.checksum)]))

