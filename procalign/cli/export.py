"""`procalign export T.npz -o t.faiss`: the map for query time, as FAISS or JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .errors import exit_codes
from .options import Overwrite, Quiet
from .render import stdout


def export(
    transform: Annotated[str, typer.Argument(metavar="TRANSFORM", help="Transform file written by `procalign fit`.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: a FAISS VectorTransform (read it with faiss.read_VectorTransform) or JSON.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="faiss (a LinearTransform) or json (matrix A and bias b with y = A x + b).")] = "faiss",
    inverse: Annotated[bool, typer.Option("--inverse", help="Export the map from TARGET back to SOURCE.")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Export the map so that a query-time system can apply it without procalign: FAISS's LinearTransform (faiss-cpu needed) or plain JSON."""
    with exit_codes(str(output)):
        from .. import transform_file
        from ..pipeline.export import export as write
        t = transform_file.load(transform)
        t = t.inverse() if inverse else t
        write(t, output, fmt, overwrite)
        stdout.print(f"exported {t.describe()} as {fmt} -> {output}")
