"""`procalign inspect FILE`: a transform file's metadata and report, or a data file's stamp."""
from __future__ import annotations

from typing import Annotated

import typer

from ..formats.registry import format_help
from .errors import exit_codes
from .options import Column, Dataset, Json, Quiet, input_locations
from .render import key_value_table, print_json, stdout
from .report_view import quality_line, show_report


def inspect(
    path: Annotated[str, typer.Argument(metavar="FILE", help=f"A transform file (.npz) or an embedding file ({format_help()}).", show_default=False)],
    column: Column = None,
    dataset: Dataset = None,
    json_out: Json = False,
    quiet: Quiet = False,  # inspect shows no progress; accepted so that every command takes -q
) -> None:
    """Show what a transform file holds (direction, options, fit and quality), or the shape and space stamp of an embedding file."""
    with exit_codes():
        # imported here so that --help starts without numpy, pyarrow or h5py
        from .. import transform_file
        from ..errors import UsageError
        from ..formats import open_reader
        if path.lower().endswith(".npz"):
            if column is not None or dataset is not None:
                raise UsageError("--column and --dataset select data in an embedding file, not in a transform file; "
                                 "drop them", path)
            t = transform_file.load(path)
            meta = t.metadata
            if json_out:
                return print_json(meta)
            stdout.print(key_value_table(f"transform {path}", [
                ("direction", t.describe()),
                ("method", f"{t.method}: {t.geometry['geometry']}"), ("inverse (--inverse)", t.inverse_kind),
                ("options", ", ".join(f"{k}={v}" for k, v in meta.get("options", {}).items())),
                ("anchors", meta.get("anchors")), ("scale", t.scale),
                ("format version", f"{t.format_version}" + ("" if t.sealed else
                                   " (unsealed: the checksum covers the arrays only)")),
                ("inverse of", t.inverse_of or "-"), *chain_rows(meta),
                ("procalign", meta.get("procalign_version")),
                ("created", meta.get("created")), ("checksum", meta.get("checksum"))]))
            if meta.get("report"):
                show_report(meta["report"], warnings=True)
            stdout.print(quality_line(meta))
            return
        with open_reader(*input_locations([path], dataset), column) as reader:
            info = {"path": path, "rows": reader.rows, "dim": reader.dim, "dtype": str(reader.dtype),
                    "stamp": reader.stamp()}
        if json_out:
            return print_json(info)
        stamp = info["stamp"]
        stdout.print(key_value_table(f"embeddings {path}", [
            ("shape", f"{info['rows']} x {info['dim']} {info['dtype']}"),
            ("space", stamp.get("space") if stamp else "(no stamp: not written by procalign apply)"),
            ("mapped from", stamp.get("from_space") if stamp else "-"),
            ("by transform", stamp.get("transform") if stamp else "-")]))


def chain_rows(meta: dict) -> list[tuple[str, str]]:
    """What a composed transform is made of and keeps; what hub a hub transform maps into."""
    rows = []
    composition = meta.get("composition")
    if isinstance(composition, dict):
        parts = composition.get("parts", [])
        route = [p["source"]["name"] for p in parts[:1]] + [p["target"]["name"] for p in parts]
        rows.append(("composed of", f"{' -> '.join(route)} ({len(parts)} transforms"
                     f"{', some used inverted' if any(p.get('inverted') for p in parts) else ''})"))
        rows.append(("chain keeps", composition.get("kept", {}).get("note", "-")))
    hub = meta.get("hub")
    if isinstance(hub, dict):
        models = ", ".join(f"{m['name']} ({m['dim']}-d)" for m in hub.get("models", []))
        rows.append(("hub", f"{hub.get('name')} ({hub.get('dim')}-d) of {models}; {hub.get('iterations')} iterations, "
                            f"relative objective {hub.get('relative_objective', 0):.4g}"
                            + (f", reference {hub['reference']}" if hub.get("reference") else "")))
    return rows

