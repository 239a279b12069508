"""The procalign transform file, format version 2 (version 1 is still read).

A transform file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` members) that
loads with plain NumPy and never needs pickle: ``np.load(path, allow_pickle=False)``.

Members (all little-endian):

============== ================== ==========================================================
name           dtype, shape       meaning
============== ================== ==========================================================
matrix         <f8, (d_s, d_t)    method "orthogonal": Q, orthonormal rows (d_s <= d_t) or
                                  columns (d_s > d_t); "whitened", "affine", "linear": W,
                                  any matrix
source_mean    <f8, (d_s,)        subtracted from source rows (zeros when not centred)
target_mean    <f8, (d_t,)        added to mapped rows (zeros when not centred)
scale          <f8, ()            isotropic factor, > 0 (1.0 unless fitted with --scale;
                                  always 1.0 for "whitened" and "affine")
metadata       <U (unicode), ()   one JSON object, see below
============== ================== ==========================================================

A source row x maps to ``scale * (u(x) - source_mean) @ matrix + target_mean``, with ``u``
the L2 normalisation when ``options.normalize`` is true (the output is then normalised again),
else the identity. For every method this is an affine map: the general linear map ``matrix``
(scaled) plus the bias ``target_mean - scale * source_mean @ matrix``.

The inverse map (target -> source) has the same form with ``1/scale``, the two means swapped
and, in place of ``matrix``: ``matrix.T`` for "orthogonal"; for the other methods the
Moore-Penrose pseudo-inverse of ``matrix`` computed in float64 from its SVD, singular values at
most 1e-10 times the largest counting as zero. That rule, not a stored array, defines the
inverse: it is the exact inverse when ``matrix`` is square and of full rank (and maps exactly
back when d_s < d_t and ``matrix`` has rank d_s), and the least-squares inverse otherwise.

The JSON metadata object. Identity (what `apply` computes and checks):

* ``format``: ``"procalign-transform"``; ``format_version``: integer, this is 2. A reader
  refuses a larger version.
* ``source``, ``target``: ``{"name": str, "dim": int}``; the direction is source -> target and
  the dimensions equal the matrix's.
* ``method``: ``"orthogonal"`` (Procrustes, `procalign.math.procrustes`), ``"whitened"``
  (whitened orthogonal map, `procalign.math.whitened`) or ``"affine"`` (ridge least squares,
  `procalign.math.ridge`), or ``"linear"``: a chain of transforms composed into one whose linear
  part is no longer orthonormal (`procalign.math.compose`; written by `procalign compose`, never
  fitted); see `procalign.math.methods`. A reader refuses a method it does not
  know, before it looks at the arrays (procalign 0.1.0 without methods checks orthonormality
  first and so refuses such a file as "not orthonormal"; either way nothing is mapped).
  Version 2 expresses every method through this field, so adding methods changed no version.
* ``options``: ``{"centre", "normalize", "scale", "rotation_only": bool}``; ``scale`` and
  ``rotation_only`` are false unless the method is "orthogonal".
* ``inverse_of``: ``null``, or the checksum of the transform this file inverts.

Provenance (informative): ``anchors`` (pairs fitted on), ``pairing``, ``holdout``, ``files``,
``fit`` (statistics on the anchors), ``report`` (the quality report when one was made), and
any other key a writer adds; ``procalign_version`` and ``created`` (ISO 8601 UTC).

``checksum``: ``"sha256:<hex>"`` of, for each array member in the order of the table above,
its name, dtype string, shape and raw bytes (`_hash_arrays`), followed by ``metadata|`` and
the metadata object without ``checksum`` as canonical JSON (keys sorted, no spaces, ASCII).
It therefore seals the arrays *and* every metadata field: a file whose options, space names
or report were edited is refused. A checksum is not a signature, so `load` also validates what
the file claims: types, shapes, finite values, scale > 0, and for "orthogonal" orthonormal rows
or columns; for the other methods scale 1.0 and a matrix that is not all zeros.

Provenance of a composed chain (`procalign.transform.chain`): ``composition`` with ``parts``
(each part's ``source``, ``target``, ``method``, ``checksum`` and whether it was used
``inverted``), ``through`` (the spaces in between) and ``kept`` (``rank`` of the matrix, ``of``
= min(d_s, d_t), ``projection``: true when the chain keeps fewer dimensions than that, and a
``note`` in words). Of a `fit-hub` transform: ``hub`` (``name``, ``dim``, ``models``,
``reference``, ``anchors``, ``iterations``, ``converged``, ``objective``, ``relative_objective``,
``model``, ``relative_residual``).

Provenance of the linear methods: ``fit.method_params`` (whitened: ``reweight``, ``rank``;
affine: ``alpha``, ``lambda`` and the GCV score), and ``fit.selection`` when `--method auto`
chose the method.

Version 1 files (procalign 0.1) have the same members; their checksum covers the arrays only
(the metadata is *unsealed*) and space names may be missing (then ``source``/``target``).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import TransformFileError
from .jsonsafe import json_safe
from .math.affine import AffineMap
from .math.procrustes import FitOptions
from .math.methods import STORED_METHODS
from .transform import METHOD_ORTHOGONAL, Space, Transform

FORMAT = "procalign-transform"
FORMAT_VERSION = 2
ARRAYS = ("matrix", "source_mean", "target_mean", "scale")
IDENTITY = ("format", "format_version", "source", "target", "method", "options", "inverse_of",
            "procalign_version", "created", "checksum")
ORTHONORMAL_TOLERANCE = 1e-6
MAX_MEMBER_BYTES = 1 << 31  # a d x d float64 matrix of 16k x 16k; refuse zip bombs beyond


def _hash_arrays(h, arrays: dict[str, np.ndarray]) -> None:
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name], dtype="<f8")
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """The version-1 checksum: the arrays only."""
    h = hashlib.sha256()
    _hash_arrays(h, arrays)
    return "sha256:" + h.hexdigest()


def _canonical(meta: dict) -> bytes:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sealed_checksum(arrays: dict[str, np.ndarray], meta: dict) -> str:
    """The version-2 checksum: the arrays, then the canonical metadata."""
    h = hashlib.sha256()
    _hash_arrays(h, arrays)
    h.update(b"metadata|" + _canonical(meta))
    return "sha256:" + h.hexdigest()


def _arrays(t: Transform) -> dict[str, np.ndarray]:
    return {"matrix": np.asarray(t.matrix, "<f8"), "source_mean": np.asarray(t.source_mean, "<f8"),
            "target_mean": np.asarray(t.target_mean, "<f8"), "scale": np.asarray(t.scale, "<f8")}


def to_metadata(t: Transform) -> dict:
    """The JSON metadata object of ``t`` as version 2 writes it (without the checksum)."""
    clash = sorted(set(t.provenance) & set(IDENTITY))
    if clash:
        raise ValueError(f"provenance may not set identity keys {clash}")
    meta = {**t.provenance, "format": FORMAT, "format_version": FORMAT_VERSION,
            "source": t.source.as_dict(), "target": t.target.as_dict(), "method": t.method,
            "options": t.options.as_dict(), "inverse_of": t.inverse_of,
            "procalign_version": t.procalign_version, "created": t.created}
    return json_safe(meta)


def checksum(t: Transform) -> str:
    """The checksum ``t`` has (or would have once written) in version 2."""
    return sealed_checksum(_arrays(t), to_metadata(t))


def save(transform: Transform, path: str | os.PathLike) -> Transform:
    """Write ``transform`` to ``path`` (complete or not at all); returns it sealed.

    The returned transform carries the checksum and format version that were written.
    """
    arrays = _arrays(transform)
    meta = to_metadata(transform)
    meta["checksum"] = sealed_checksum(arrays, meta)
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
    return _from_metadata(arrays, meta, path)


def load(path: str | os.PathLike) -> Transform:
    """Read, verify and validate a transform file. Raises `TransformFileError` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise TransformFileError("transform file not found; pass the .npz written by `procalign fit`", path)
    members = _read_members(path)
    try:
        meta = json.loads(str(members["metadata"]))
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise TransformFileError("metadata is not a JSON object; re-create the file with `procalign fit`", path)
    if meta.get("format") != FORMAT:
        raise TransformFileError(f"format is {meta.get('format')!r}, expected {FORMAT!r}", path)
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise TransformFileError(f"format_version {version!r} is not a positive integer; re-create the file", path)
    if version > FORMAT_VERSION:
        raise TransformFileError(f"format version {version} is newer than this procalign reads "
                                 f"({FORMAT_VERSION}); upgrade procalign", path)
    arrays = {k: members[k] for k in ARRAYS}
    for name, a in arrays.items():
        if a.dtype.kind != "f":
            raise TransformFileError(f"member {name!r} has dtype {a.dtype}, expected float64; re-create the file", path)
    try:
        expected = array_checksum(arrays) if version == 1 else sealed_checksum(arrays, meta)
    except (ValueError, RecursionError):  # NaN/Infinity tokens, absurd nesting: not what save writes
        expected = None
    if expected != meta.get("checksum"):
        what = "arrays" if version == 1 else "arrays or metadata"
        raise TransformFileError(f"checksum mismatch: the {what} were modified or damaged; "
                                 "re-create the file with `procalign fit`", path)
    return _from_metadata(arrays, meta, path)


def _read_members(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            sizes = {info.filename: info.file_size for info in zf.infolist()}
        too_big = [k for k, v in sizes.items() if v > MAX_MEMBER_BYTES]
        if too_big:
            raise TransformFileError(f"member {too_big[0]} expands to {sizes[too_big[0]]} bytes; "
                                     "not a procalign transform", path)
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*ARRAYS, "metadata") if k not in z.files]
            if missing:
                raise TransformFileError(f"missing member(s) {', '.join(missing)}; not a procalign transform", path)
            return {k: z[k] for k in (*ARRAYS, "metadata")}
    except TransformFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise TransformFileError(f"not a readable transform file ({type(e).__name__}: {e}); "
                                 "re-create it with `procalign fit`", path) from None


def _space(meta: dict, key: str, dim: int, path: Path, version: int) -> Space:
    doc = meta.get(key)
    if version == 1 and isinstance(doc, dict) and "name" not in doc:
        doc = {**doc, "name": key}
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or type(doc.get("dim")) is not int:
        raise TransformFileError(f"metadata {key!r} must be {{\"name\": str, \"dim\": int}}, got {doc!r}", path)
    if doc["dim"] != dim:
        raise TransformFileError(f"metadata says the {key} space is {doc['dim']}-d but the matrix has {dim}", path)
    return Space(doc["name"], dim)


def _options(meta: dict, path: Path) -> FitOptions:
    raw = meta.get("options", {})
    fields = FitOptions().as_dict()
    if not isinstance(raw, dict) or any(k not in fields or type(v) is not bool for k, v in raw.items()):
        raise TransformFileError(f"metadata 'options' must map {', '.join(fields)} to true/false, got {raw!r}", path)
    return FitOptions(**{**fields, **raw})


def _check_arrays(arrays: dict[str, np.ndarray], method: str, path: Path) -> None:
    m, s, t, scale = (arrays[k] for k in ARRAYS)
    if m.ndim != 2 or 0 in m.shape or s.shape != (m.shape[0],) or t.shape != (m.shape[1],) or scale.shape != ():
        raise TransformFileError(f"inconsistent shapes: matrix {m.shape}, means {s.shape} and {t.shape}, "
                                 f"scale {scale.shape}; re-create the file", path)
    if not all(np.isfinite(a).all() for a in (m, s, t, scale)):
        raise TransformFileError("the arrays hold NaN or Inf; re-create the file", path)
    if not float(scale) > 0:
        raise TransformFileError(f"scale is {float(scale)}, must be > 0; re-create the file", path)
    if method != METHOD_ORTHOGONAL:
        if float(scale) != 1.0 or not np.any(m):
            raise TransformFileError(f"a {method} transform needs scale 1.0 and a non-zero matrix, got scale "
                                     f"{float(scale)}; re-create the file", path)
        return
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    err = float(np.abs(gram - np.eye(len(gram))).max())
    if err > ORTHONORMAL_TOLERANCE:
        raise TransformFileError(f"matrix is not orthonormal (max |QQ^T - I| = {err:.2e}); "
                                 "re-create the file with `procalign fit`", path)


def _from_metadata(arrays: dict[str, np.ndarray], meta: dict, path: Path) -> Transform:
    version = meta["format_version"]
    method = meta.get("method", METHOD_ORTHOGONAL)
    if method not in STORED_METHODS:  # before the arrays: a newer method's matrix need not be orthonormal
        raise TransformFileError(f"method {method!r} is not one this procalign knows ({', '.join(STORED_METHODS)}); "
                                 "upgrade procalign", path)
    _check_arrays(arrays, method, path)
    m = arrays["matrix"]
    inverse_of = meta.get("inverse_of")
    if inverse_of is not None and not isinstance(inverse_of, str):
        raise TransformFileError(f"metadata 'inverse_of' must be a checksum string or null, got {inverse_of!r}", path)
    options = _options(meta, path)
    if method != METHOD_ORTHOGONAL and (options.scale or options.rotation_only):
        raise TransformFileError(f"options scale and rotation_only apply to orthogonal transforms, not {method}; "
                                 "re-create the file", path)
    affine = AffineMap(np.array(m, "<f8"), np.array(arrays["source_mean"], "<f8"),
                       np.array(arrays["target_mean"], "<f8"), float(arrays["scale"]), options.normalize,
                       orthonormal=method == METHOD_ORTHOGONAL)
    provenance = {k: v for k, v in meta.items() if k not in IDENTITY}
    return Transform(affine, _space(meta, "source", m.shape[0], path, version),
                     _space(meta, "target", m.shape[1], path, version), options, method, inverse_of,
                     provenance, str(meta.get("created", "")), str(meta.get("procalign_version", "")),
                     version, meta.get("checksum"))
