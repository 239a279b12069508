"""procalign: align two embedding spaces with orthogonal Procrustes, streaming over files.

Library entry points (the CLI is a thin layer over these):

* `ProcrustesAligner`: scikit-learn style estimator (fit, partial_fit, transform,
  inverse_transform, save, load);
* `AlignmentStats`: the mergeable float64 sufficient statistics it is built on;
* `Transform`, `load_transform`, `save_transform`: the fitted map and its file format;
* `procalign.pipeline`: fit/apply/evaluate over files of any supported format.
"""
__version__ = "0.1.0"

# Names resolve on first use, so `procalign --help` does not pay for importing numpy.
_EXPORTS = {
    "AlignmentStats": ("stats", "AlignmentStats"),
    "FitOptions": ("procrustes", "FitOptions"),
    "ProcalignError": ("errors", "ProcalignError"),
    "ProcrustesAligner": ("estimator", "ProcrustesAligner"),
    "Transform": ("transform", "Transform"),
    "fit_transform": ("procrustes", "fit_transform"),
    "load_transform": ("transform_file", "load"),
    "save_transform": ("transform_file", "save"),
    "solve_orthogonal": ("procrustes", "solve_orthogonal"),
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'procalign' has no attribute {name!r}")
    import importlib
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value
