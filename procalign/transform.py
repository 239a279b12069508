"""`Transform`: a fitted map together with what it connects, the one typed description of it.

A transform is an `AffineMap` (the arrays), the two spaces it connects (`Space`: name and
dimension), the options it was fitted with, whether it is the inverse of another transform,
and provenance (anchors, pairing, hold-out, fit statistics, quality report: informative only).
It is built here and nowhere else: `Transform.fitted` after a fit, `Transform.inverse` for the
other direction, `chain` for several transforms composed into one, and `procalign.transform_file`
reading it back. The transform file's checksum
seals everything in it (see the spec in `procalign.transform_file`).

>>> import numpy as np
>>> m = AffineMap(np.eye(2), np.zeros(2), np.zeros(2))
>>> t = Transform.fitted(m, Space("old", 2), Space("new", 2), FitOptions(centre=False))
>>> t.inverse().source.name, t.inverse().target.name, t.inverse().is_inverse
('new', 'old', True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from . import __version__
from .math.affine import AffineMap
from .math.compose import chain_rank, compose_all
from .math.methods import LINEAR as METHOD_LINEAR, ORTHOGONAL as METHOD_ORTHOGONAL, geometry
from .math.procrustes import FitOptions
from .math.spectral import PSEUDO_INVERSE_RCOND, numerical_rank


@dataclass(frozen=True)
class Space:
    """An embedding space: the name outputs are stamped with, and its dimension."""

    name: str
    dim: int

    def as_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim}


@dataclass(frozen=True, eq=False)  # identity is the checksum, not array equality
class Transform:
    """The map from ``source`` into ``target`` and everything that says what it is.

    ``inverse_of`` is the checksum of the transform this one inverts (None for a fitted one);
    ``checksum`` is set once the transform has been written or read (`procalign.transform_file`).
    """

    map: AffineMap
    source: Space
    target: Space
    options: FitOptions = field(default_factory=FitOptions)
    method: str = METHOD_ORTHOGONAL
    inverse_of: str | None = None
    provenance: dict = field(default_factory=dict, compare=False)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    procalign_version: str = __version__
    format_version: int | None = None  # the version read from a file; None until written
    checksum: str | None = None

    @classmethod
    def fitted(cls, affine: AffineMap, source: Space, target: Space, options: FitOptions,
               method: str = METHOD_ORTHOGONAL, **provenance) -> "Transform":
        """A freshly fitted transform; the spaces' dimensions must match the map's."""
        if (source.dim, target.dim) != (affine.d_source, affine.d_target):
            raise ValueError(f"spaces are {source.dim}-d -> {target.dim}-d but the map is "
                             f"{affine.d_source}-d -> {affine.d_target}-d")
        if affine.orthonormal != (method == METHOD_ORTHOGONAL):
            raise ValueError(f"a {method} transform needs {'an orthonormal' if method == METHOD_ORTHOGONAL else 'a general'}"
                             " linear map")
        return cls(affine, source, target, options, method, provenance=provenance)

    # -- the map --------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        return self.map.matrix

    @property
    def source_mean(self) -> np.ndarray:
        return self.map.source_mean

    @property
    def target_mean(self) -> np.ndarray:
        return self.map.target_mean

    @property
    def scale(self) -> float:
        return self.map.scale

    @property
    def normalize(self) -> bool:
        return self.map.normalize

    @property
    def d_source(self) -> int:
        return self.map.d_source

    @property
    def geometry(self) -> dict:
        """``isometry`` (bool) and a word for what the map does to distances."""
        return geometry(self.method, self.scale, self.d_source, self.d_target)

    @property
    def inverse_kind(self) -> str:
        """How `inverse` maps back: exactly, or as a least-squares pseudo-inverse."""
        if self.d_source > self.d_target:
            return "pseudo-inverse (least squares: the map drops dimensions)"
        if self.map.orthonormal:
            return "exact (transpose)"
        rank = numerical_rank(np.linalg.svd(self.matrix, compute_uv=False), PSEUDO_INVERSE_RCOND)
        return "exact (inverse matrix)" if rank == self.d_source else \
            f"pseudo-inverse (least squares: the matrix has rank {rank} of {self.d_source})"

    @property
    def d_target(self) -> int:
        return self.map.d_target

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Map source rows to float64 target rows, in memory."""
        return self.map(x)

    # -- identity -------------------------------------------------------------------------
    @property
    def is_inverse(self) -> bool:
        return self.inverse_of is not None

    def inverse(self) -> "Transform":
        """The map from ``target`` back into ``source`` (exact when d_source <= d_target).

        Its provenance is the forward transform's; ``inverse_of`` names the forward transform
        by its checksum (computed here if it was never written).
        """
        from .transform_file import checksum  # the file format defines the checksum

        return dataclasses.replace(
            self, map=self.map.inverse(), source=self.target, target=self.source,
            inverse_of=self.checksum or checksum(self), format_version=None, checksum=None)

    @property
    def sealed(self) -> bool:
        """True when read from (or written as) a file whose checksum covers the metadata."""
        return bool(self.format_version and self.format_version >= 2)

    @property
    def metadata(self) -> dict:
        """The JSON metadata object as the transform file holds it (see `procalign.transform_file`)."""
        from .transform_file import to_metadata

        meta = to_metadata(self)
        if self.format_version is not None:
            meta["format_version"] = self.format_version
        if self.checksum is not None:
            meta["checksum"] = self.checksum
        return meta

    def with_provenance(self, **changes) -> "Transform":
        """A copy with provenance entries added or replaced (unsealed: checksum cleared)."""
        return dataclasses.replace(self, provenance={**self.provenance, **changes}, checksum=None, format_version=None)

    def describe(self) -> str:
        """One line: ``old (384-d) -> new (384-d)``."""
        return f"{self.source.name} ({self.source.dim}-d) -> {self.target.name} ({self.target.dim}-d)"


class BrokenChain(ValueError):
    """Transforms that do not connect: ``index`` is the position of the one that does not follow."""

    def __init__(self, index: int, before: Space, after: Transform):
        self.index = index
        hint = " (it ends there: to go back through it, invert it first)" if after.target == before else ""
        super().__init__(f"the chain so far ends in {before.name!r} ({before.dim}-d) but the next transform maps "
                         f"{after.describe()}{hint}")


def into_hub(t: Transform) -> bool:
    """True for a transform written by fit-hub: it maps a model into the hub space."""
    hub = t.provenance.get("hub")
    return isinstance(hub, dict) and hub.get("name") == t.target.name and not t.is_inverse


def orient(transforms: list[Transform]) -> list[tuple[Transform, bool]]:
    """Each transform of a chain with whether it is used inverted.

    The first is used as it is. Each next one must start where the chain so far ends (same space
    name and dimension). The one exception is how two models meet in a hub: a hub transform
    (`into_hub`) that ends where the chain ends is used inverted, so ``a -> hub`` then
    ``b -> hub`` is ``a -> hub -> b``. Anything else raises `BrokenChain`.
    """
    if not transforms:
        raise ValueError("a chain needs at least one transform")
    steps = [(transforms[0], False)]
    end = transforms[0].target
    for i, t in enumerate(transforms[1:], start=1):
        if t.source == end:
            steps.append((t, False))
        elif t.target == end and into_hub(t):
            steps.append((t, True))
        else:
            raise BrokenChain(i, end, t)
        end = steps[-1][0].source if steps[-1][1] else steps[-1][0].target
    return steps


def chain(transforms: list[Transform], created: str | None = None) -> Transform:
    """The transforms of a chain (see `orient`) composed into one exact transform.

    Its method is "orthogonal" when the product stays orthonormal, else "linear" (a general
    linear map); its provenance ``composition`` names each part by checksum and says how many
    dimensions the chain keeps. ``created`` defaults to now. Raises `BrokenChain`, and
    `procalign.math.compose.NotComposable` when L2 normalisation does not fold.
    """
    from .transform_file import checksum

    steps = orient(transforms)
    used = [t.inverse() if inverted else t for t, inverted in steps]
    if len(used) == 1:
        return used[0]
    m = compose_all([t.map for t in used])
    source, target = used[0].source, used[-1].target
    rank, full = chain_rank(m), min(source.dim, target.dim)
    through = [t.target for t in used[:-1]]
    narrowest = min(through, key=lambda space: space.dim)
    parts = [{"source": u.source.as_dict(), "target": u.target.as_dict(), "method": t.method, "inverted": inv,
              "checksum": t.checksum or checksum(t)} for (t, inv), u in zip(steps, used)]
    kept = {"rank": rank, "of": full, "projection": rank < full,
            "note": f"lossless: keeps all {full} dimensions" if rank >= full else
            f"projection: keeps {rank} of {full} dimensions (the chain passes through {narrowest.name!r}, "
            f"{narrowest.dim}-d)"}
    orthogonal = m.orthonormal
    options = FitOptions(m.centred, m.normalize, orthogonal and m.scale != 1.0,
                         orthogonal and all(t.options.rotation_only for t in used))
    composed = Transform(m, source, target, options, METHOD_ORTHOGONAL if orthogonal else METHOD_LINEAR,
                         provenance={"composition": {"parts": parts, "through": [s.as_dict() for s in through],
                                                     "kept": kept}})
    return composed if created is None else dataclasses.replace(composed, created=created)
