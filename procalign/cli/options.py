"""Option types shared by several commands."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (it is also off when stderr is not a terminal).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Column = Annotated[Optional[str], typer.Option("--column", help="Parquet: the embedding column (default: the only list-of-float column).")]
IdColumn = Annotated[Optional[str], typer.Option("--id-column", help="Parquet column, or HDF5 dataset, holding row ids (default: 'id' / 'ids' when present).")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", help="HDF5: the embedding dataset, e.g. /group/emb (or write file.h5:/group/emb).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the destination if it exists.")]
Wait = Annotated[bool, typer.Option("--wait", help="If another run writes the same destination, wait for it instead of failing.")]
ByPosition = Annotated[bool, typer.Option("--by-position", help="Pair row i with row i even when both files carry ids.")]
EvalSize = Annotated[int, typer.Option("--eval-size", help="At most this many pairs (held out, or of the sample) are kept in memory for retrieval and neighbour metrics.", min=2)]
MinTop1 = Annotated[Optional[float], typer.Option("--min-top1", help="Gate: exit 3 and write nothing if top-1 identity retrieval (held-out pairs) is below this.")]
MinCosine = Annotated[Optional[float], typer.Option("--min-cosine", help="Gate: exit 3 and write nothing if the mean cosine (held-out pairs, else anchors) is below this.")]
MaxResidual = Annotated[Optional[float], typer.Option("--max-residual", help="Gate: exit 3 and write nothing if the relative residual ||XQ-Y||/||Y|| is above this.")]
