"""procalign: align two embedding spaces with orthogonal Procrustes, streaming over files.

The package has four rooms, and dependencies point one way (cli -> pipeline -> formats, math):

* the face (this module, `estimator`, `transform`, `transform_file`, `errors`, and `cli/`):
  `ProcrustesAligner` (scikit-learn style), `Transform` (a map and the spaces it connects),
  `load_transform`/`save_transform` (the file format), typed errors;
* `procalign.pipeline`: file-level jobs (fit, apply, evaluate, the report) and their delivery
  (temporary file, lock, journal, rename, stamps);
* `procalign.formats`: one source and sink per file format, and the registry of formats;
* `procalign.math`: arrays in, arrays out: the sufficient statistics, Procrustes, the map and
  its streaming kernel, the per-chunk fold, the bound, the metrics.
"""
__version__ = "0.1.0"

# Names resolve on first use, so `procalign --help` does not pay for importing numpy.
_EXPORTS = {
    "AffineMap": ("math.affine", "AffineMap"),
    "AlignmentStats": ("math.stats", "AlignmentStats"),
    "FitOptions": ("math.procrustes", "FitOptions"),
    "ProcalignError": ("errors", "ProcalignError"),
    "ProcrustesAligner": ("estimator", "ProcrustesAligner"),
    "Space": ("transform", "Space"),
    "Transform": ("transform", "Transform"),
    "fit_transform": ("math.procrustes", "fit_transform"),
    "load_transform": ("transform_file", "load"),
    "save_transform": ("transform_file", "save"),
    "solve_orthogonal": ("math.procrustes", "solve_orthogonal"),
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
