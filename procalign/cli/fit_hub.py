"""`procalign fit-hub A B C [...] --names a,b,c -o hub/`: one shared space for several models."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from ..formats.registry import format_help
from .errors import exit_codes
from .options import BatchRows, ByPosition, Column, Dataset, IdColumn, Json, Memory, Overwrite, Quiet, Wait, input_locations
from .render import fmt, print_json, progress_for, stdout


def fit_hub(
    files: Annotated[List[str], typer.Argument(metavar="FILE", help=f"Two or more anchor files, one per model, holding the same items ({format_help()}); joined by id when all carry ids, else by row.", show_default=False)],
    names: Annotated[str, typer.Option("--names", help="The models' space names, comma-separated, one per FILE in order (e.g. minilm,e5,bge).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write NAME.npz per model and manifest.json into (created if missing).", show_default=False)],
    reference: Annotated[Optional[str], typer.Option("--reference", help="Align every model to this one (one of --names): the hub is its space. Default: the consensus of all.", show_default=False)] = None,
    hub_name: Annotated[Optional[str], typer.Option("--hub-name", help="Name of the hub space (default: the output directory's name).", show_default=False)] = None,
    centre: Annotated[bool, typer.Option("--centre/--no-centre", help="Subtract each model's mean before aligning (as fit).")] = True,
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalise inputs (and outputs when applying).")] = False,
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
    """Align several models at once (generalized Procrustes): every model maps isometrically into one hub space, as wide as the widest model.

    One streaming pass collects every pairwise cross product; each model is then aligned to the consensus of the others until the objective stops improving.

    Writes OUTPUT/NAME.npz (NAME -> hub) per model and OUTPUT/manifest.json.

    Any pair of models meets through the hub: procalign apply hub/a.npz hub/b.npz X (b's map is used inverted).
    """
    with exit_codes(output):
        # imported here so that --help starts without numpy, pyarrow or h5py
        from ..math.procrustes import FitOptions
        from ..pipeline.hub import HubJob, fit_hub as run
        job = HubJob(input_locations(files, dataset), [n.strip() for n in names.split(",")], output, hub_name, reference,
                     FitOptions(centre, normalize), column, id_column, by_position, batch_rows, memory, overwrite, wait)
        result = run(job, progress_for(quiet or json_out))
        m = result.manifest
        if json_out:
            return print_json({"output": str(output), **m})
        table = Table(title=f"hub {m['name']!r} ({m['dim']}-d) from {len(m['files'])} models on {m['anchors']} shared "
                            f"items -> {output}", title_justify="left")
        for column_name in ("model", "dim", "file", "residual to consensus", "checksum"):
            table.add_column(column_name, overflow="fold")
        for f in m["files"]:
            table.add_row(f["name"], str(f["dim"]), f["file"], fmt(f["relative_residual"]), f["checksum"])
        stdout.print(table)
        n = m["iterations"]
        how = f"aligned to {m['reference']}" if m["reference"] else \
            f"{'converged after' if m['converged'] else 'stopped, not converged, after'} {n} iteration{'' if n == 1 else 's'}"
        stdout.print(f"{how}; objective {m['objective']:.6g} ({m['relative_objective']:.4g} of the total variance)")
