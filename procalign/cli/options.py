"""Options shared by several commands: one alias each, so the name and help are the same everywhere."""
from __future__ import annotations

import math
from typing import Annotated, Optional

import typer


def _finite(value: Optional[float]) -> Optional[float]:
    # A NaN threshold compares false with everything, so a NaN gate could never fail.
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (it is also off when stderr is not a terminal).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Column = Annotated[Optional[str], typer.Option("--column", help="Parquet: the embedding column (default: the only list-of-float column).")]
IdColumn = Annotated[Optional[str], typer.Option("--id-column", help="Parquet column, or HDF5 dataset, holding row ids (default: 'id' / 'ids' when present).")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", help="HDF5: the embedding dataset (e.g. /group/emb) of every HDF5 input that does not name one as file.h5:/group/emb.")]
Memory = Annotated[int, typer.Option("--memory", help="Memory budget in MB for the streaming buffers (sets the chunk size).", min=8)]
BatchRows = Annotated[Optional[int], typer.Option("--batch-rows", help="Rows per chunk (overrides --memory).", min=1)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the destination if it exists.")]
Wait = Annotated[bool, typer.Option("--wait", help="If another run writes the same destination, wait for it instead of failing.")]
Force = Annotated[bool, typer.Option("--force", help="Go ahead even if an input is stamped as being in another space than the transform expects.")]
ByPosition = Annotated[bool, typer.Option("--by-position", help="Pair row i with row i even when both files carry ids.")]
EvalSize = Annotated[int, typer.Option("--eval-size", help="At most this many pairs (held out, or of the sample) are kept in memory for retrieval and neighbour metrics.", min=2)]
MinTop1 = Annotated[Optional[float], typer.Option("--min-top1", callback=_finite, help="Gate: exit 3 if top-1 identity retrieval (held-out pairs, or the evaluated sample) is below this (fit then writes nothing).")]
MinCosine = Annotated[Optional[float], typer.Option("--min-cosine", callback=_finite, help="Gate: exit 3 if the mean cosine (held-out pairs, else anchors, or the evaluated sample) is below this (fit then writes nothing).")]
MaxResidual = Annotated[Optional[float], typer.Option("--max-residual", callback=_finite, help="Gate: exit 3 if the relative residual ||XQ-Y||/||Y|| is above this (fit then writes nothing).")]

EngineName = Annotated[str, typer.Option("--engine", help="Where parts are processed: local (threads on this machine) or dask (a Dask cluster: --scheduler, or a local one of --workers processes; needs procalign\\[dask]).", metavar="local|dask")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler", help="--engine dask: address of a running Dask scheduler (tcp://host:8786). Without it a LocalCluster is started.", show_default=False)]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Parts mapped at once by the local engine (apply; default: half the cores, at most 4), or the worker processes of the LocalCluster that --engine dask starts without --scheduler (default 2).", min=1)]
StorageOptions = Annotated[Optional[str], typer.Option("--storage-options", help="JSON object passed to the fsspec filesystem of s3://, gs://, ... paths (endpoint_url, key, secret, ...); default: the standard environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).", metavar="JSON")]


def input_locations(texts: list[str], dataset: Optional[str], storage: Optional[str] = None, outputs: tuple = ()):
    """Parse input paths (a file, or a dataset's directory, glob or URL); ``--dataset`` names the dataset of each HDF5 input that names none.

    An explicit ``file.h5:/ds`` wins, so one option serves commands with two inputs. A
    --dataset that no input takes is an error rather than silently ignored.
    """
    from ..errors import UsageError
    from ..formats.parts import dataset_location
    from ..formats.storage import is_url, parse_options
    options = parse_options(storage)
    if options and not any(is_url(text) for text in [*texts, *outputs]):
        raise UsageError("--storage-options applies to object-storage URLs (s3://, gs://, ...) and every path "
                         "given is local; drop it")
    parse_location = lambda text, inner=None: dataset_location(text, inner, options)  # noqa: E731
    locations = [parse_location(text) for text in texts]
    if dataset is None:
        return locations
    takers = [i for i, loc in enumerate(locations) if loc.format.inner and loc.inner is None]
    if not takers:
        raise UsageError(f"--dataset {dataset} applies only to HDF5 inputs that do not name a dataset "
                         f"(file.h5:/ds), and {' and '.join(texts)} include none; drop it")
    return [parse_location(text, dataset) if i in takers else loc for i, (text, loc) in enumerate(zip(texts, locations))]
