"""Export a transform for use at query time without procalign: a FAISS `LinearTransform`, or
plain JSON (matrix and bias) for any other runtime.

Both write the map as ``y = A x + b`` on column vectors (FAISS's convention): with
``x -> scale * (x - source_mean) @ matrix + target_mean``, ``A = scale * matrix^T`` and
``b = target_mean - scale * source_mean @ matrix``. A normalising transform is not one affine
map (it normalises before and after), so FAISS export refuses it; the JSON says so in its
``normalize_input`` / ``normalize_output`` fields, for a runtime to apply.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..transform import Transform
from .delivery import Destination

FORMATS = ("faiss", "json")


def affine_parts(t: Transform) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``y = A x + b``: A is (d_target, d_source)."""
    a = t.scale * t.matrix.T
    b = t.target_mean - t.scale * (t.source_mean @ t.matrix)
    return a, b


def _write_faiss(t: Transform, path: Path) -> None:
    try:
        import faiss
    except ImportError:
        raise UsageError("FAISS export needs faiss-cpu: pip install 'procalign[faiss]', or use --format json") from None
    a, b = affine_parts(t)
    lt = faiss.LinearTransform(t.d_source, t.d_target, True)
    faiss.copy_array_to_vector(np.ascontiguousarray(a, np.float32).ravel(), lt.A)
    faiss.copy_array_to_vector(np.ascontiguousarray(b, np.float32), lt.b)
    lt.is_trained = True
    faiss.write_VectorTransform(lt, str(path))


def _write_json(t: Transform, path: Path) -> None:
    a, b = affine_parts(t)
    doc = {"format": "procalign-linear-map", "version": 1, "convention": "y = A x + b (x, y column vectors)",
           "source": t.source.as_dict(), "target": t.target.as_dict(), "method": t.method,
           "normalize_input": t.normalize, "normalize_output": t.normalize,
           "transform": t.checksum, "inverse_of": t.inverse_of, "A": a.tolist(), "b": b.tolist()}
    path.write_text(json.dumps(doc))


def export(transform: Transform, output: Path, fmt: str = "faiss", overwrite: bool = False) -> None:
    """Write ``transform`` (already inverted if asked) to ``output`` atomically."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "faiss" and transform.normalize:
        raise UsageError("this transform L2-normalises before and after the map, which one FAISS "
                         "LinearTransform cannot express; use --format json (it says so) or fit without --normalize",
                         output)
    with Destination(output, [], overwrite) as dest:
        (_write_faiss if fmt == "faiss" else _write_json)(transform, dest.temp)
        dest.commit()
