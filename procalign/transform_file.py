"""The procalign transform file, format version 1.

A transform file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` members) that
loads with plain NumPy and never needs pickle: ``np.load(path, allow_pickle=False)``.

Members (all little-endian):

============== ================== ==========================================================
name           dtype, shape       meaning
============== ================== ==========================================================
matrix         <f8, (d_s, d_t)    Q, orthonormal rows (d_s <= d_t) or columns (d_s > d_t)
source_mean    <f8, (d_s,)        subtracted from source rows (zeros when not centred)
target_mean    <f8, (d_t,)        added to mapped rows (zeros when not centred)
scale          <f8, ()            isotropic factor (1.0 unless fitted with --scale)
metadata       <U (unicode), ()   one JSON object, see below
============== ================== ==========================================================

A source row x maps to ``scale * (u(x) - source_mean) @ matrix + target_mean``, with ``u``
the L2 normalisation when ``options.normalize`` is true (the output is then normalised again),
else the identity. The inverse map (target -> source) uses ``matrix.T``, ``1/scale`` and the
two means swapped.

The JSON metadata object holds string keys only:

* ``format``: ``"procalign-transform"``; ``format_version``: integer, this is 1. A reader
  refuses a larger version.
* ``source``, ``target``: ``{"name": str, "dim": int}``, the direction is source -> target.
* ``options``: ``{"centre", "normalize", "scale", "rotation_only": bool}``.
* ``anchors``: number of pairs fitted on; ``fit``: statistics on the anchors (residual,
  relative residual, mean cosine...); ``report``: the quality report when one was made.
* ``procalign_version``, ``created`` (ISO 8601 UTC).
* ``checksum``: ``"sha256:<hex>"`` of, for each array member in the order of the table
  above, its name, dtype string, shape and raw bytes (see `array_checksum`). `load` recomputes
  it and refuses a file whose arrays were changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import TransformFileError
from .jsonsafe import json_safe
from .transform import Transform

FORMAT = "procalign-transform"
FORMAT_VERSION = 1
ARRAYS = ("matrix", "source_mean", "target_mean", "scale")


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name], dtype="<f8")
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _arrays(t: Transform) -> dict[str, np.ndarray]:
    return {"matrix": np.asarray(t.matrix, "<f8"), "source_mean": np.asarray(t.source_mean, "<f8"),
            "target_mean": np.asarray(t.target_mean, "<f8"), "scale": np.asarray(t.scale, "<f8")}


def save(transform: Transform, path: str | os.PathLike, metadata: dict | None = None) -> dict:
    """Write ``transform`` to ``path`` (complete or not at all); returns the metadata written.

    ``metadata`` is merged over ``transform.metadata``; format, dimensions, version, time and
    checksum are always set here.
    """
    arrays = _arrays(transform)
    meta = {**transform.metadata, **(metadata or {})}
    meta.update({
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source": {**meta.get("source", {}), "dim": transform.d_source},
        "target": {**meta.get("target", {}), "dim": transform.d_target},
        "procalign_version": __version__,
        "created": meta.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checksum": array_checksum(arrays),
    })
    meta.setdefault("options", {"centre": transform.centred, "normalize": transform.normalize,
                                "scale": transform.scale != 1.0, "rotation_only": False})
    meta = json_safe(meta)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.procalign-tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, metadata=np.asarray(json.dumps(meta, sort_keys=True, allow_nan=False)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def load(path: str | os.PathLike) -> Transform:
    """Read and verify a transform file. Raises `TransformFileError` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise TransformFileError("transform file not found; pass the .npz written by `procalign fit`", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            members = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise TransformFileError(f"not a readable transform file ({type(e).__name__}: {e}); "
                                 "re-create it with `procalign fit`", path) from None
    missing = [k for k in (*ARRAYS, "metadata") if k not in members]
    if missing:
        raise TransformFileError(f"missing member(s) {', '.join(missing)}; not a procalign transform", path)
    try:
        meta = json.loads(str(members["metadata"]))
        assert isinstance(meta, dict)
    except (ValueError, AssertionError):
        raise TransformFileError("metadata is not a JSON object; re-create the file with `procalign fit`",
                                 path) from None
    if meta.get("format") != FORMAT:
        raise TransformFileError(f"format is {meta.get('format')!r}, expected {FORMAT!r}", path)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise TransformFileError(f"format version {version} is newer than this procalign reads "
                                 f"({FORMAT_VERSION}); upgrade procalign", path)
    arrays = {k: members[k] for k in ARRAYS}
    if array_checksum(arrays) != meta.get("checksum"):
        raise TransformFileError("checksum mismatch: the arrays were modified or damaged; "
                                 "re-create the file with `procalign fit`", path)
    m = arrays["matrix"]
    if m.ndim != 2 or arrays["source_mean"].shape != (m.shape[0],) or arrays["target_mean"].shape != (m.shape[1],):
        raise TransformFileError(f"inconsistent shapes matrix {m.shape}, means "
                                 f"{arrays['source_mean'].shape} and {arrays['target_mean'].shape}", path)
    return Transform(m, arrays["source_mean"], arrays["target_mean"], float(arrays["scale"]),
                     bool(meta.get("options", {}).get("normalize", False)), meta)
