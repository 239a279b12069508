"""`ProcrustesAligner`: the scikit-learn style face of the library.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 8))
>>> q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
>>> aligner = ProcrustesAligner(centre=False).fit(x, x @ q)
>>> bool(np.allclose(aligner.transform(x), x @ q))
True

It keeps scikit-learn's conventions (`get_params`/`set_params`, `clone`, `Pipeline`,
`check_is_fitted`, `NotFittedError`, estimator tags) without depending on scikit-learn, which
is imported only when it asks for the tags or when an unfitted aligner raises.

Notes
-----
`fit` is one `partial_fit` per ``batch_size`` rows; `partial_fit` only updates the float64
`AlignmentStats` (memory O(d_s * d_t), independent of the number of rows) and refits the
d_s x d_t SVD, O(d_s * d_t * min(d_s, d_t)). Results do not depend on the batch size.
`transform` computes in float64 block by block and rounds once into the output: float32 for
float16/float32 input, float64 otherwise; memory is the output plus O(2048 * d).
Limits: arrays in memory (files stream through `procalign.pipeline`); no sparse, complex or
NaN/Inf input; ``y`` must be 2-D; a loaded aligner cannot `partial_fit` (no statistics).
"""
from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

from . import transform_file
from .math.affine import AffineMap, ChunkMapper
from .math.fold import PairFold
from .math.methods import DEFAULT_REWEIGHT, METHODS, ORTHOGONAL, fit_map
from .math.procrustes import FitOptions
from .math.stats import AlignmentStats
from .transform import Space, Transform


class NotFittedError(ValueError, AttributeError, RuntimeError):
    """An unfitted aligner was asked to map or save. With scikit-learn installed the error raised
    is also a `sklearn.exceptions.NotFittedError`; RuntimeError is what procalign 0.1 raised."""

    def __reduce__(self):  # the raised class may be made at run time: pickle by message
        return _not_fitted, (str(self),)


@functools.cache
def _not_fitted_class() -> type:
    # Made at the first raise, not at import: importing sklearn takes about a second.
    try:
        from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    except ImportError:
        return NotFittedError
    return type("NotFittedError", (NotFittedError, SklearnNotFittedError),
                {"__module__": __name__, "__doc__": NotFittedError.__doc__})


def _not_fitted(message: str) -> NotFittedError:
    return _not_fitted_class()(message)


def _as_float_2d(a, what: str) -> np.ndarray:
    """``a`` as a 2-D float array (integers widen to float64), or a ValueError/TypeError naming
    ``what`` and the fix, worded as scikit-learn's (its checks look for those phrases)."""
    if a is None:
        raise ValueError(f"ProcrustesAligner requires y to be passed, but the target y is None; "
                         f"pass {what}, the target rows paired with X's rows")
    if hasattr(a, "tocsr"):
        raise TypeError(f"{what} is a sparse matrix; sparse input is not supported, pass a dense array")
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {what} is {a.dtype}; pass real floats")
    a = a.astype(np.float64) if a.dtype.kind in "biuO" else a
    if a.dtype.kind != "f":
        raise ValueError(f"{what} has dtype {a.dtype}; expected an array of numbers")
    if a.ndim != 2:
        raise ValueError(f"Expected a 2-D array for {what}, got shape {a.shape}. Reshape your data: "
                         "a.reshape(1, -1) for a single row, a.reshape(-1, 1) for a single column")
    for axis, unit in enumerate(("sample(s)", "feature(s)")):
        if a.shape[axis] == 0:
            raise ValueError(f"{what}: found an array with 0 {unit} (shape={a.shape}) "
                             "while a minimum of 1 is required.")
    return a


def _check_features(a: np.ndarray, dim: int, what: str) -> None:
    if a.shape[1] != dim:
        raise ValueError(f"{what} has {a.shape[1]} features, but ProcrustesAligner is expecting {dim} "
                         "features as input (the dimensions it was fitted with)")


class ProcrustesAligner:
    """Learn a map from a source embedding space into a target space: orthogonal (Procrustes) by
    default, or ``method="whitened"`` / ``"affine"`` (see `procalign.math.methods`; ``reweight``
    is the whitened map's exponent p). ``"auto"`` needs held-out pairs: use the CLI or
    `procalign.pipeline.fit`.

    Parameters are stored as given and checked by `fit`; fitted state ends in ``_``: ``stats_``
    (AlignmentStats), ``transform_`` (Transform), ``fit_summary_`` (dict), ``n_features_in_``.
    ``source_name`` and ``target_name`` name the two spaces in the transform file (and so in
    the stamps of the files `procalign apply` maps with it).

    ``y`` is 2-D (n, d_t), row i the same item as ``x``'s row i: a 1-D y is refused rather than
    read as one column, as it is far likelier a label vector passed by mistake.
    """

    def __init__(self, centre: bool = True, normalize: bool = False, scale: bool = False,
                 rotation_only: bool = False, batch_size: int = 65536, source_name: str = "source",
                 target_name: str = "target", method: str = ORTHOGONAL, reweight: float = DEFAULT_REWEIGHT):
        self.centre = centre
        self.normalize = normalize
        self.scale = scale
        self.rotation_only = rotation_only
        self.batch_size = batch_size
        self.source_name = source_name
        self.target_name = target_name
        self.method = method
        self.reweight = reweight

    # -- scikit-learn's estimator protocol ----------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        """The ``__init__`` parameters by name (none is an estimator: ``deep`` changes nothing)."""
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def set_params(self, **params) -> "ProcrustesAligner":
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for ProcrustesAligner; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:  # as scikit-learn's: the parameters that differ from the defaults
        defaults = inspect.signature(type(self)).parameters
        changed = (f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k].default)
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "transform_")

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it costs nothing. y is required, and 2-D.
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None,
                    target_tags=TargetTags(required=True, multi_output=True, single_output=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]))

    # -- fitting ------------------------------------------------------------------------------
    @property
    def options(self) -> FitOptions:
        return FitOptions(self.centre, self.normalize, self.scale, self.rotation_only)

    def _check(self, x, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        x, y = _as_float_2d(x, "X"), _as_float_2d(y, "Y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"row counts differ ({x.shape[0]} vs {y.shape[0]}): row i of each must be the same item")
        if not reset and hasattr(self, "stats_"):  # the first batch locks the dimensions
            _check_features(x, self.stats_.comoment.shape[0], "X")
            _check_features(y, self.stats_.comoment.shape[1], "Y")
        return x, y

    def _fold(self, stats: AlignmentStats | None, x: np.ndarray, y: np.ndarray) -> AlignmentStats:
        """Fold checked rows into ``stats`` (new statistics when None); returns them."""
        if stats is None:
            stats = AlignmentStats.empty(x.shape[1], y.shape[1], with_gram=self.scale or self.method != ORTHOGONAL)
        PairFold(stats, self.normalize, check_finite=False).add(stats.n, x, y)
        return stats

    def _refit(self, stats: AlignmentStats) -> None:
        """Solve from ``stats``. The fitted state is set only here: refused rows leave it as it was."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}"
                             + ("; 'auto' picks by held-out pairs, which only the file-level fit keeps"
                                if self.method == "auto" else ""))
        affine, summary = fit_map(stats, self.options, self.method, self.reweight)
        self.transform_ = Transform.fitted(
            affine, Space(self.source_name, affine.d_source), Space(self.target_name, affine.d_target),
            self.options, self.method, anchors=stats.n, fit=summary)
        self.stats_, self.fit_summary_, self.n_features_in_ = stats, summary, affine.d_source

    def partial_fit(self, x, y) -> "ProcrustesAligner":
        """Add paired rows (x[i] is the same item as y[i]) and refit; returns self."""
        if hasattr(self, "transform_") and not hasattr(self, "stats_"):
            raise ValueError("this ProcrustesAligner was loaded from a transform file, and transform files "
                             "do not store the fit's statistics, so partial_fit cannot add to them; "
                             "fit a new ProcrustesAligner on all the pairs instead")
        x, y = self._check(x, y, reset=False)
        self._refit(self._fold(getattr(self, "stats_", None), x, y))
        return self

    def fit(self, x, y) -> "ProcrustesAligner":
        """Fit from scratch on all rows, streaming them in ``batch_size`` chunks; returns self."""
        if not (isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        x, y = self._check(x, y, reset=True)
        stats = None
        for start in range(0, x.shape[0], self.batch_size):
            stats = self._fold(stats, x[start:start + self.batch_size], y[start:start + self.batch_size])
        self._refit(stats)
        return self

    # -- the fitted map -----------------------------------------------------------------------
    def _fitted(self) -> Transform:
        if not hasattr(self, "transform_"):
            raise _not_fitted("This ProcrustesAligner instance is not fitted yet; call fit or partial_fit "
                              "with paired rows first")
        return self.transform_

    def _map(self, affine: AffineMap, x, what: str) -> np.ndarray:
        x = _as_float_2d(x, what)
        _check_features(x, affine.d_source, what)
        out = np.empty((x.shape[0], affine.d_target), np.float64 if x.dtype == np.float64 else np.float32)
        return ChunkMapper(affine, np.float64).map(x, out)  # float64 products, one rounding into out

    def transform(self, x) -> np.ndarray:
        """Map source-space rows into the target space (float32 for float16/32 input, else float64)."""
        return self._map(self._fitted().map, x, "X")

    def inverse_transform(self, y) -> np.ndarray:
        """Map target-space rows back into the source space (dtype as for `transform`)."""
        return self._map(self._fitted().map.inverse(), y, "Y")

    def fit_transform(self, x, y) -> np.ndarray:
        """``fit(x, y).transform(x)``: the source rows mapped into the target space."""
        return self.fit(x, y).transform(x)

    def save(self, path, **provenance) -> Transform:
        """Write the transform file (see `procalign.transform_file`); returns it as written."""
        return transform_file.save(self._fitted().with_provenance(**provenance), path)

    @classmethod
    def load(cls, path) -> "ProcrustesAligner":
        """An aligner holding the transform read from ``path`` (no statistics: cannot partial_fit)."""
        t = transform_file.load(path)
        params = t.provenance.get("fit", {}).get("method_params", {})
        aligner = cls(**t.options.as_dict(), source_name=t.source.name, target_name=t.target.name, method=t.method,
                      reweight=params.get("reweight", DEFAULT_REWEIGHT))
        aligner.transform_ = t
        aligner.fit_summary_ = t.provenance.get("fit", {})
        aligner.n_features_in_ = t.d_source
        return aligner
