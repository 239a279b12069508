"""File-level jobs and their delivery: fit from anchor files, apply to a dump, evaluate a sample.

A job opens sources through `procalign.formats`, does the math through `procalign.math` and
returns plain results; it never prints. Apply is a source, the stream core (`stream`) and a
delivery (`delivery`: temporary file, lock, journal, rename, stamp). A partitioned dataset is
applied part by part (`dataset_apply`) on an engine (`engines`: threads, or a Dask cluster that
also runs the fit's pass over the pairs, `distributed_fit`). The CLI is a thin layer over these.
"""
from .progress import Progress

_EXPORTS = {"ApplyJob": "apply", "ApplyResult": "apply", "apply_file": "apply",
            "FitJob": "fit", "FitResult": "fit", "fit_files": "fit"}
__all__ = sorted(_EXPORTS) + ["Progress"]


def __getattr__(name):  # lazy, so the CLI starts without numpy
    if name not in _EXPORTS:
        raise AttributeError(f"module 'procalign.pipeline' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
