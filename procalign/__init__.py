"""procalign: align two embedding spaces with orthogonal Procrustes, streaming over files.

Library entry points (the CLI is a thin layer over these):

* `ProcrustesAligner`: scikit-learn style estimator (fit, partial_fit, transform,
  inverse_transform, save, load);
* `AlignmentStats`: the mergeable float64 sufficient statistics it is built on;
* `Transform`, `load_transform`, `save_transform`: the fitted map and its file format;
* `procalign.pipeline`: fit/apply/evaluate over files of any supported format.
"""
__version__ = "0.1.0"

from .errors import ProcalignError  # noqa: E402
from .stats import AlignmentStats  # noqa: E402
from .transform import Transform  # noqa: E402
from .procrustes import FitOptions, fit_transform, solve_orthogonal  # noqa: E402
from .transform_file import load as load_transform, save as save_transform  # noqa: E402
from .estimator import ProcrustesAligner  # noqa: E402

__all__ = ["AlignmentStats", "FitOptions", "ProcalignError", "ProcrustesAligner", "Transform",
           "fit_transform", "load_transform", "save_transform", "solve_orthogonal", "__version__"]
