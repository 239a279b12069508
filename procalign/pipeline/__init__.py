"""File-level jobs: fit from anchor files, apply to a dump, evaluate on a sample.

The pipeline opens files through `procalign.io`, does the math through the library modules
and returns plain results; it never prints. The CLI is a thin layer over it.
"""
from .apply import ApplyJob, ApplyResult, apply_file
from .fit import FitJob, FitResult, fit_files
from .progress import Progress

__all__ = ["ApplyJob", "ApplyResult", "FitJob", "FitResult", "Progress", "apply_file", "fit_files"]
