"""`Transform`: a fitted map together with what it connects, the one typed description of it.

A transform is an `AffineMap` (the arrays), the two spaces it connects (`Space`: name and
dimension), the options it was fitted with, whether it is the inverse of another transform,
and provenance (anchors, pairing, hold-out, fit statistics, quality report: informative only).
It is built here and nowhere else: `Transform.fitted` after a fit, `Transform.inverse` for the
other direction, and `procalign.transform_file` reading it back. The transform file's checksum
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
from .math.methods import ORTHOGONAL as METHOD_ORTHOGONAL, geometry
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
