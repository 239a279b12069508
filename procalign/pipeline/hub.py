"""`fit-hub`: one shared space for N models, from anchor files joined by id, in one streaming pass.

The N files are joined as `fit` pairs two (`anchors.join_anchors`); each chunk of shared items
is checked and normalised per file (`fold.prepare_rows`), the files' rows are put side by side
and folded into one `AlignmentStats` of that wide row with itself: its co-moment holds every
pairwise d_i x d_j cross product, centred, and its means each file's mean. The generalized
Procrustes solution (`math.hub`) then needs nothing else. The hub is as wide as the widest
model; each model maps in isometrically (an orthogonal map, padded when narrower).

The outputs are one transform file per model, ``NAME.npz`` mapping space NAME into the hub
space (named like the hub), and ``manifest.json``; each file is complete or absent.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__, transform_file
from ..errors import InputError, UsageError
from ..formats import Location, ReadOptions, open_source
from ..math.affine import AffineMap
from ..math.fold import NonFinitePair, prepare_rows
from ..math.hub import HubSolution, generalized_procrustes, model_residuals
from ..math.methods import ORTHOGONAL
from ..math.procrustes import FitOptions
from ..math.stats import AlignmentStats
from ..transform import Space, Transform
from .anchors import Joined, iter_joined, join_anchors
from .chunking import RING, rows_for_budget
from .delivery import Destination
from .progress import Progress
from .spool import random_access, spool_dir
from .stream import read_guard, run_stages

MANIFEST = "manifest.json"


@dataclass
class HubJob:
    sources: list[Location]
    names: list[str]
    output: Path
    hub_name: str | None = None     # default: the output directory's name
    reference: str | None = None    # a model name: the hub is that model's space
    options: FitOptions = field(default_factory=FitOptions)
    column: str | None = None
    id_column: str | None = None
    by_position: bool = False
    batch_rows: int | None = None
    memory_mb: int = 128
    overwrite: bool = False
    wait: bool = False

    @property
    def hub(self) -> str:
        return self.hub_name or self.output.resolve().name


@dataclass
class HubResult:
    transforms: list[Transform]     # sealed, one per model, in the order given
    manifest: dict
    solution: HubSolution


def check_job(job: HubJob) -> None:
    """Refuse names and options a hub cannot honour (`UsageError`)."""
    if len(job.sources) < 2:
        raise UsageError(f"a hub needs at least 2 models, got {len(job.sources)}")
    if sum(loc.is_stdio for loc in job.sources) > 1:
        raise UsageError("only one input can come from standard input ('-'); give the others as files")
    if len(job.names) != len(job.sources):
        raise UsageError(f"--names gives {len(job.names)} names for {len(job.sources)} files; give one per file, "
                         "in the same order")
    bad = [n for n in job.names if not n or n in (".", "..") or "/" in n or "\\" in n or n.startswith(".")]
    if bad:
        raise UsageError(f"model name {bad[0]!r} cannot name a file in the hub directory; use letters, digits, - or _")
    if len(set(job.names)) != len(job.names):
        raise UsageError(f"--names repeats a name ({', '.join(job.names)}); every model needs its own")
    if job.hub in job.names:
        raise UsageError(f"the hub space is named {job.hub!r} like a model; pass --hub-name or choose another -o")
    if job.reference is not None and job.reference not in job.names:
        raise UsageError(f"--reference {job.reference!r} is not one of --names ({', '.join(job.names)})")
    if job.options.scale or job.options.rotation_only:
        raise UsageError("a hub maps every model by an isometry; scale and rotation_only do not apply")


def _stats(sources, joined: Joined, job: HubJob, progress: Progress) -> AlignmentStats:
    width = sum(r.dim for r in sources)
    per_row = sum((RING + r.extra_buffers) * r.dim * r.dtype.itemsize for r in sources) + 8 * width
    rows = max(1, min(job.batch_rows or rows_for_budget(job.memory_mb, per_row), joined.pairs))
    stats = AlignmentStats.empty(width, width)

    def add(item):
        start, blocks = item
        try:
            prepared = [prepare_rows(x, start, str(k), job.options.normalize) for k, x in enumerate(blocks)]
        except NonFinitePair as e:
            k = int(e.side)
            row = e.index if joined.indices is None else int(joined.indices[k][e.index])
            raise InputError(f"{e.what} at row {row}; drop or repair that row", sources[k].path) from None
        wide = np.hstack([np.asarray(x, np.float64 if x.dtype == np.float64 else np.float32) for x in prepared])
        stats.update(wide, wide)
        return len(wide)

    progress.start("fitting hub", joined.pairs)
    try:
        run_stages(read_guard(iter_joined(sources, joined, rows), " or ".join(str(r.path) for r in sources)), add,
                   progress.advance)
    finally:
        progress.stop()
    return stats


def solve(job: HubJob, progress: Progress | None = None) -> tuple[list[Transform], HubSolution, Joined]:
    """Join, stream, solve: the hub transforms (not yet written)."""
    check_job(job)
    spool = spool_dir()
    with spool, contextlib.ExitStack() as opened:
        sources = [opened.enter_context(random_access(open_source(loc, ReadOptions(job.column, job.id_column)),
                                                      spool.name)) for loc in job.sources]
        joined = join_anchors(sources, job.by_position)
        stats = _stats(sources, joined, job, progress or Progress())
        dims = [r.dim for r in sources]
        files = [loc.path.name for loc in job.sources]
    cross = stats.moments(job.options.centre)["cross"]
    reference = None if job.reference is None else job.names.index(job.reference)
    solution = generalized_procrustes(cross, dims, reference)
    edges = np.cumsum([0, *dims])
    means = [stats.mean_source[edges[k]:edges[k + 1]] for k in range(len(dims))]
    hub_dim = max(dims)
    if not job.options.centre:
        hub_mean = np.zeros(hub_dim)
    elif reference is not None:
        hub_mean = means[reference] @ solution.maps[reference]
    else:
        hub_mean = sum(m @ q for m, q in zip(means, solution.maps)) / len(dims)
    residuals = model_residuals(cross, dims, solution.maps)
    about = hub_summary(job, solution, joined, dims)
    transforms = []
    for k, (name, q) in enumerate(zip(job.names, solution.maps)):
        mean = means[k] if job.options.centre else np.zeros(dims[k])
        affine = AffineMap(q, mean.copy(), hub_mean.copy(), 1.0, job.options.normalize, orthonormal=True)
        transforms.append(Transform.fitted(
            affine, Space(name, dims[k]), Space(job.hub, hub_dim), FitOptions(job.options.centre, job.options.normalize),
            ORTHOGONAL, anchors=joined.pairs, pairing=joined.summary(), files={"source": files[k]},
            hub={**about, "model": name, "relative_residual": residuals[k]}))
    return transforms, solution, joined


def hub_summary(job: HubJob, solution: HubSolution, joined: Joined, dims: list[int]) -> dict:
    return {"name": job.hub, "dim": max(dims), "models": [{"name": n, "dim": d} for n, d in zip(job.names, dims)],
            "reference": job.reference, "anchors": joined.pairs, "iterations": solution.sweeps,
            "converged": solution.converged, "objective": solution.objective,
            "relative_objective": solution.objective / solution.total if solution.total > 0 else 0.0}


def fit_hub(job: HubJob, progress: Progress | None = None) -> HubResult:
    """Fit the hub and write ``NAME.npz`` per model and the manifest into ``job.output``."""
    check_job(job)
    created = not job.output.exists()
    if created and not job.output.parent.resolve().is_dir():
        raise UsageError(f"directory {job.output.parent} does not exist; create it first", job.output)
    job.output.mkdir(exist_ok=True)
    try:
        return _fit_into(job, progress)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                job.output.rmdir()  # only if nothing is in it
        raise


def _fit_into(job: HubJob, progress: Progress | None) -> HubResult:
    inputs = [loc.path for loc in job.sources]
    targets = [job.output / f"{name}.npz" for name in job.names] + [job.output / MANIFEST]
    with contextlib.ExitStack() as held:
        # every destination is checked and locked before the work; none is renamed into place
        # until all are written
        dests = [held.enter_context(Destination(p, inputs, job.overwrite, job.wait)) for p in targets]
        transforms, solution, joined = solve(job, progress)
        sealed = [transform_file.save(t, d.temp) for t, d in zip(transforms, dests)]
        manifest = {"format": "procalign-hub", "format_version": 1, **hub_summary(job, solution, joined,
                                                                                  [t.d_source for t in sealed]),
                    "options": {"centre": job.options.centre, "normalize": job.options.normalize},
                    "pairing": joined.summary(),
                    "files": [{"name": t.source.name, "dim": t.d_source, "file": p.name, "checksum": t.checksum,
                               "source": loc.path.name, "relative_residual": t.provenance["hub"]["relative_residual"]}
                              for t, p, loc in zip(sealed, targets, job.sources)],
                    "procalign_version": __version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        dests[-1].temp.write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
        for d in dests:
            d.commit()
    return HubResult(sealed, manifest, solution)
