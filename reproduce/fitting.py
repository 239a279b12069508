"""Fit maps the way a user does: `procalign fit` on .npy anchor files, read back with
`procalign.load_transform`, and the fit report (bound included) from ``--json``.

The methods compared are the ones `procalign fit --method` offers: the orthogonal map with and
without centring, the whitened map, and ridge least squares (``affine``; its regulariser is
chosen by GCV, so with ample anchors it is the unconstrained least-squares map).
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from procalign import Transform, load_transform


@dataclass(frozen=True)
class Method:
    key: str       # column name in the reports
    label: str     # what the reader sees
    flags: tuple   # `procalign fit` options


METHODS = (
    Method("orthogonal", "orthogonal, centred", ("--method", "orthogonal", "--centre")),
    Method("orthogonal_raw", "orthogonal, not centred", ("--method", "orthogonal", "--no-centre")),
    Method("whitened", "whitened", ("--method", "whitened")),
    Method("least_squares", "least squares", ("--method", "affine")),
)


@dataclass(frozen=True)
class Fit:
    transform: Transform
    report: dict   # `procalign fit --json` output: metadata, provenance, report (with the bound)

    @property
    def bound(self) -> dict:
        return self.report["report"]["bound"]


def save_anchors(directory: Path, name: str, vectors: np.ndarray) -> Path:
    """Write ``vectors`` as ``directory/name.npy`` (procalign names the space after the file)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npy"
    np.save(path, np.ascontiguousarray(vectors, dtype=np.float32))
    return path


def fit(source: Path, target: Path, output: Path, method: Method) -> Fit:
    """Run `procalign fit SOURCE TARGET -o OUTPUT --json` with ``method``'s flags."""
    command = [sys.executable, "-m", "procalign", "fit", str(source), str(target), "-o", str(output),
               *method.flags, "--json", "--quiet", "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[1:])}` exited {done.returncode}: {done.stderr.strip()}")
    return Fit(load_transform(output), json.loads(done.stdout))
