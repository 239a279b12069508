"""Transform files as algebra: invert one, compose a chain into one, compare a chain with a direct fit.

`load_chain` reads transform files and composes them (`transform.chain`: each must start where
the previous ends; a hub transform that ends there is used inverted); `apply` and `evaluate` map through the
result in one pass. `invert_file` and `compose_files` write the result as a transform file
(complete or not at all). `compare_on_anchors` fits the direct map between a chain's two ends on
anchor files and measures both on the same held-out pairs, with the report's metrics.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import transform_file
from ..errors import TransformFileError, UsageError
from ..formats import Location
from ..math.compose import NotComposable
from ..math.methods import METHODS, ORTHOGONAL
from ..math.procrustes import FitOptions
from ..transform import BrokenChain, Transform, chain, orient
from .delivery import Destination
from .progress import Progress


@dataclass
class Chain:
    """Transform files composed into one transform, with what the user should be told about it."""

    transform: Transform
    paths: list[str]
    inverted: list[bool]

    @property
    def label(self) -> str:
        """What error messages name: the file, or the files of the chain."""
        return " + ".join(self.paths)

    @property
    def route(self) -> str:
        """``e5 -> hub -> minilm``."""
        through = self.transform.provenance.get("composition", {}).get("through", [])
        return " -> ".join([self.transform.source.name, *(s["name"] for s in through), self.transform.target.name])

    @property
    def notes(self) -> list[str]:
        out = [f"{p} is used inverted" for p, inv in zip(self.paths, self.inverted) if inv]
        kept = self.transform.provenance.get("composition", {}).get("kept", {})
        if kept.get("projection"):
            out.append(f"the chain is a {kept['note']}")
        return out


def load_chain(paths: list[str], created: str | None = None) -> Chain:
    """Load and compose transform files; one file is returned as it was read.

    A chain's ``created`` defaults to the newest part's, so the same files compose to the same
    checksum (what an output's stamp and a resumed run identify the map by).
    """
    if not paths:
        raise UsageError("give at least one transform file")
    transforms = [transform_file.load(p) for p in paths]
    if len(transforms) == 1:
        return Chain(transforms[0], list(paths), [False])
    try:
        steps = orient(transforms)
        composed = chain(transforms, created or max(t.created for t in transforms))
    except BrokenChain as e:
        raise UsageError(f"the chain breaks here: {e}; order the transforms so that each starts where the previous "
                         f"ends (after {paths[e.index - 1]})", paths[e.index]) from None
    except NotComposable as e:
        raise UsageError(f"cannot compose {' + '.join(paths)} exactly: {e}; apply them one after the other") from None
    composed = dataclasses.replace(composed, checksum=transform_file.checksum(composed))
    return Chain(composed, list(paths), [inv for _, inv in steps])


def _write(transform: Transform, output: Path, inputs: list[str], overwrite: bool, wait: bool) -> Transform:
    with Destination(output, inputs, overwrite, wait) as dest:
        sealed = transform_file.save(transform, dest.temp)
        dest.commit()
    return sealed


def invert_file(path: str, output: Path, overwrite: bool = False, wait: bool = False) -> tuple[Transform, Transform]:
    """Write the inverse of the transform file ``path`` (``inverse_of``: its checksum); returns
    the forward transform and the inverse, sealed."""
    forward = transform_file.load(path)
    return forward, _write(forward.inverse(), output, [path], overwrite, wait)


def compose_files(paths: list[str], output: Path | None, overwrite: bool = False, wait: bool = False) -> Chain:
    """Compose a chain of transform files (at least two) and write it to ``output`` when given."""
    if len(paths) < 2:
        raise UsageError(f"compose needs at least two transform files, got {len(paths)}; to copy one, copy the file")
    found = load_chain(paths, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if output is not None:
        found = dataclasses.replace(found, transform=_write(found.transform, output, paths, overwrite, wait))
    return found


def direct_method(composed: Chain) -> str:
    """The method of the direct fit a chain is compared with: its parts' common method, else orthogonal."""
    methods = {part["method"] for part in composed.transform.provenance.get("composition", {}).get("parts", [])}
    return methods.pop() if len(methods) == 1 and methods <= set(METHODS) else ORTHOGONAL


def compare_on_anchors(composed: Chain, source: Location, target: Location, holdout: float = 0.2, seed: int = 0,
                       progress: Progress | None = None, **read) -> dict:
    """Fit the direct map between the chain's ends on anchor pairs, leaving ``holdout`` of them out,
    and measure the chain and the direct fit on those held-out pairs (`report.pair_metrics`).

    ``read`` takes `FitJob`'s reading fields (column, id_column, by_position, batch_rows, memory_mb).
    """
    from ..math.metrics import knn_indices  # here: applying a chain needs none of the fitting code
    from .fit import FitJob, fit_files
    from .report import pair_metrics
    t = composed.transform
    if not 0 < holdout < 1:
        raise UsageError(f"--holdout must be in (0, 1) to compare on pairs neither map was fitted on, got {holdout}")
    method = direct_method(composed)
    job = FitJob(source, target, FitOptions(t.options.centre, t.options.normalize), holdout=holdout, seed=seed,
                 report=False, method=method, **read)
    result = fit_files(job, progress)
    direct = result.transform
    if (direct.d_source, direct.d_target) != (t.d_source, t.d_target):
        raise TransformFileError(f"the chain maps {t.d_source}-d -> {t.d_target}-d but the anchors are "
                                 f"{direct.d_source}-d and {direct.d_target}-d; pass SOURCE then TARGET", composed.label)
    if result.heldout is None or len(result.heldout[0]) < 2:
        raise UsageError(f"--holdout {holdout} leaves fewer than 2 held-out pairs to compare on; raise it",
                         source.path)
    x, y, _ = result.heldout
    near_y = knn_indices(y, 10)
    return {"pairs": int(len(x)), "holdout": holdout, "seed": seed, "direct_method": method,
            "composed": pair_metrics(composed.transform(np.asarray(x, np.float64)), y, near_y),
            "direct": pair_metrics(direct(np.asarray(x, np.float64)), y, near_y)}
