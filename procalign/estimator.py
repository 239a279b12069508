"""`ProcrustesAligner`: the scikit-learn style face of the library.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 8))
>>> q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
>>> aligner = ProcrustesAligner(centre=False).fit(x, x @ q)
>>> bool(np.allclose(aligner.transform(x), x @ q))
True

Notes
-----
`fit` is one `partial_fit` per ``batch_size`` rows; `partial_fit` only updates the float64
`AlignmentStats` (memory O(d_s * d_t), independent of the number of rows) and refits the
d_s x d_t SVD, O(d_s * d_t * min(d_s, d_t)). Results do not depend on the batch size.
"""
from __future__ import annotations

import numpy as np

from . import transform_file
from .math.fold import PairFold
from .math.procrustes import FitOptions, fit_transform
from .math.stats import AlignmentStats
from .transform import Space, Transform


class ProcrustesAligner:
    """Learn an orthogonal map from a source embedding space into a target space.

    Parameters are stored as given; fitted state ends in ``_``: ``stats_`` (AlignmentStats),
    ``transform_`` (Transform), ``fit_summary_`` (dict), ``n_features_in_``. ``source_name`` and
    ``target_name`` name the two spaces in the transform (and in the stamps of mapped files).
    """

    def __init__(self, centre: bool = True, normalize: bool = False, scale: bool = False,
                 rotation_only: bool = False, batch_size: int = 65536, source_name: str = "source",
                 target_name: str = "target"):
        self.centre = centre
        self.normalize = normalize
        self.scale = scale
        self.rotation_only = rotation_only
        self.batch_size = batch_size
        self.source_name = source_name
        self.target_name = target_name

    @property
    def options(self) -> FitOptions:
        return FitOptions(self.centre, self.normalize, self.scale, self.rotation_only)

    def _check(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or y.ndim != 2:
            raise ValueError(f"expected 2-D arrays, got shapes {x.shape} and {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"row counts differ ({x.shape[0]} vs {y.shape[0]}): row i of each must be the same item")
        if hasattr(self, "stats_") and self.stats_.comoment.shape != (x.shape[1], y.shape[1]):
            raise ValueError(f"dimensions {(x.shape[1], y.shape[1])} differ from the first batch's "
                             f"{self.stats_.comoment.shape}")
        if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
            raise ValueError(f"expected float arrays, got {x.dtype} and {y.dtype}")
        return x, y

    def _accumulate(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fold checked rows into the statistics, creating them on the first call."""
        if not hasattr(self, "stats_"):
            self.stats_ = AlignmentStats.empty(x.shape[1], y.shape[1], with_gram=self.scale)
            self.n_features_in_ = x.shape[1]
        PairFold(self.stats_, self.normalize, check_finite=False).add(self.stats_.n, x, y)

    def _refit(self) -> None:
        affine, self.fit_summary_ = fit_transform(self.stats_, self.options)
        self.transform_ = Transform.fitted(
            affine, Space(self.source_name, affine.d_source), Space(self.target_name, affine.d_target),
            self.options, anchors=self.stats_.n, fit=self.fit_summary_)

    def partial_fit(self, x, y) -> "ProcrustesAligner":
        """Add paired rows (x[i] is the same item as y[i]) and refit; returns self."""
        self._accumulate(*self._check(x, y))
        self._refit()
        return self

    def fit(self, x, y) -> "ProcrustesAligner":
        """Fit from scratch on all rows, streaming them in ``batch_size`` chunks."""
        for attr in ("stats_", "transform_", "fit_summary_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        x, y = self._check(x, y)
        for start in range(0, x.shape[0], self.batch_size):
            self._accumulate(x[start:start + self.batch_size], y[start:start + self.batch_size])
        self._refit()
        return self

    def _fitted(self) -> Transform:
        if not hasattr(self, "transform_"):
            raise RuntimeError("this ProcrustesAligner is not fitted yet; call fit or partial_fit")
        return self.transform_

    def transform(self, x) -> np.ndarray:
        """Map source-space rows into the target space (float64)."""
        return self._fitted()(x)

    def inverse_transform(self, y) -> np.ndarray:
        """Map target-space rows back into the source space (float64)."""
        return self._fitted().inverse()(y)

    def save(self, path, **provenance) -> Transform:
        """Write the transform file (see `procalign.transform_file`); returns it as written."""
        return transform_file.save(self._fitted().with_provenance(**provenance), path)

    @classmethod
    def load(cls, path) -> "ProcrustesAligner":
        """An aligner holding the transform read from ``path`` (no statistics: cannot partial_fit)."""
        t = transform_file.load(path)
        aligner = cls(**t.options.as_dict(), source_name=t.source.name, target_name=t.target.name)
        aligner.transform_ = t
        aligner.fit_summary_ = t.provenance.get("fit", {})
        aligner.n_features_in_ = t.d_source
        return aligner
