"""Checks that every baseline computed what procalign computed.

A baseline that computes something else is not a baseline, so a failed check stops the
benchmark (SystemExit) with the largest difference found. Outputs are compared chunk by chunk
with np.allclose tolerances for the output dtype: float16 keeps about 3 decimal digits, so two
correct float32 computations may round to neighbouring float16 values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

# (rtol, atol) by output dtype; outputs are O(1) values
TOLERANCE = {np.dtype(np.float16): (1e-3, 1e-3), np.dtype(np.float32): (1e-5, 1e-5),
             np.dtype(np.float64): (1e-9, 1e-9)}
# X.T @ Y in float32 summed over N rows, against a float64 reference: relative Frobenius error
CROSS_PRODUCT_RTOL = 1e-5
# Q fitted in float32 (scipy on float32 data) against procalign's float64 solve
FIT_MATRIX_ATOL = 1e-5
CHUNK = 65536


def fail(what: str) -> None:
    raise SystemExit(f"benchmark baseline check failed: {what}")


# ---------------------------------------------------------------- reading outputs
def embedding_batches(path: Path) -> Iterator[np.ndarray]:
    """The embedding matrix of an output file, in row chunks, in its stored dtype."""
    suffix = path.suffix
    if suffix == ".npy":
        x = np.load(path, mmap_mode="r")
        for a in range(0, len(x), CHUNK):
            yield np.asarray(x[a:a + CHUNK])
    elif suffix == ".h5":
        import h5py
        with h5py.File(path, "r") as f:
            ds = f["emb"]
            for a in range(0, ds.shape[0], CHUNK):
                yield ds[a:a + CHUNK]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        for rb in pf.iter_batches(batch_size=CHUNK, columns=["embedding"]):
            col = rb.column(0)
            yield col.flatten().to_numpy().reshape(len(col), -1)
    else:
        raise ValueError(f"unknown output type {path}")


def rechunk(batches: Iterator[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Chunks of exactly `rows` rows (the last may be shorter), whatever the file's batching,
    so that two files can be compared in lockstep."""
    pending: list[np.ndarray] = []
    have = 0
    for b in batches:
        pending.append(b)
        have += len(b)
        while have >= rows:
            block = np.concatenate(pending)
            yield block[:rows]
            pending, have = [block[rows:]], have - rows
    if have:
        yield np.concatenate(pending)


def ids(path: Path) -> np.ndarray | None:
    """The pass-through id column/dataset of a parquet or h5 output (None for .npy)."""
    if path.suffix == ".h5":
        import h5py
        with h5py.File(path, "r") as f:
            return f["ids"][()] if "ids" in f else np.array([])
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        return pf.read(columns=["id"]).column(0).to_numpy() if "id" in pf.schema_arrow.names else np.array([])
    return None


def shape_and_dtype(path: Path) -> tuple[tuple[int, int], np.dtype]:
    rows, dim, dtype = 0, None, None
    for b in embedding_batches(path):
        rows, dim, dtype = rows + len(b), b.shape[1], b.dtype
    return (rows, dim), dtype


def reference_summary(path: Path, rows: np.ndarray) -> dict:
    """What the compute floor's check is compared with: procalign's output at `rows`, and the
    float64 column sums and absolute column sums of the whole output."""
    taken = []
    colsum = colabs = 0.0
    start = 0
    for b in embedding_batches(path):
        b64 = b.astype(np.float64)
        colsum = colsum + b64.sum(0)
        colabs = colabs + np.abs(b64).sum(0)
        here = rows[(rows >= start) & (rows < start + len(b))]
        taken.append(b[here - start])
        start += len(b)
    return {"rows": np.concatenate(taken), "colsum": colsum, "colabs": colabs, "n": start}


# ---------------------------------------------------------------- comparisons
def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def same_embeddings(ref: Path, other: Path, label: str) -> dict:
    """Every value of other's output equals procalign's within the dtype's tolerance."""
    (shape_r, dtype_r), (shape_o, dtype_o) = shape_and_dtype(ref), shape_and_dtype(other)
    if shape_r != shape_o or dtype_r != dtype_o:
        fail(f"{label}: output is {shape_o} {dtype_o}, procalign's is {shape_r} {dtype_r}")
    rtol, atol = TOLERANCE[dtype_r]
    worst = 0.0
    for a, b in zip(rechunk(embedding_batches(ref), CHUNK), rechunk(embedding_batches(other), CHUNK)):
        worst = max(worst, _diff(a, b))
        if not np.allclose(b, a, rtol=rtol, atol=atol):
            fail(f"{label}: output differs from procalign's (max abs diff {_diff(a, b):.3g}, "
                 f"tolerance rtol={rtol:g} atol={atol:g} for {dtype_r})")
    ids_r, ids_o = ids(ref), ids(other)
    if ids_r is not None and not np.array_equal(ids_r, ids_o):
        fail(f"{label}: the id column/dataset differs from procalign's")
    return {"max_abs_diff": worst, "rtol": rtol, "atol": atol, "dtype": str(dtype_r)}


def same_shape(ref: Path, other: Path, label: str) -> dict:
    """An I/O floor writes as many rows of the same width and dtype as procalign."""
    (shape_r, dtype_r), (shape_o, dtype_o) = shape_and_dtype(ref), shape_and_dtype(other)
    if shape_r != shape_o or dtype_r != dtype_o:
        fail(f"{label}: writes {shape_o} {dtype_o}, procalign writes {shape_r} {dtype_r}")
    return {"shape": list(shape_o), "dtype": str(dtype_o), "bytes": other.stat().st_size,
            "procalign_bytes": ref.stat().st_size}


def compute_floor_matches(ref: dict, check: Path, label: str) -> dict:
    """The compute floor's sampled rows and column sums match procalign's output."""
    with np.load(check) as z:
        values, colsum = z["values"], z["colsum"]
    dtype = ref["rows"].dtype
    rtol, atol = TOLERANCE[dtype]
    if values.shape != ref["rows"].shape or not np.allclose(values, ref["rows"], rtol=rtol, atol=atol):
        fail(f"{label}: sampled rows differ from procalign's output "
             f"(max abs diff {_diff(values, ref['rows']) if values.shape == ref['rows'].shape else 'shape'})")
    # the sums of n values each within rtol/atol can differ by at most this much
    bound = rtol * ref["colabs"] + atol * ref["n"]
    if not np.all(np.abs(colsum - ref["colsum"]) <= bound):
        fail(f"{label}: column sums differ from procalign's output (not every row was computed alike)")
    return {"max_abs_diff_sampled_rows": _diff(values, ref["rows"]), "rtol": rtol, "atol": atol}


def cross_product_matches(reference: np.ndarray, check: Path, label: str) -> dict:
    """The compute floor for fit computed X.T @ Y (compared with the float64 product)."""
    got = np.load(check).astype(np.float64)
    rel = float(np.linalg.norm(got - reference) / np.linalg.norm(reference))
    if got.shape != reference.shape or rel > CROSS_PRODUCT_RTOL:
        fail(f"{label}: X.T @ Y differs from the float64 product (relative error {rel:.3g})")
    return {"relative_error_vs_float64": rel, "rtol": CROSS_PRODUCT_RTOL}


def npy_data_bytes(path: Path) -> int:
    """Bytes of array data in a .npy file (its size without the header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        return path.stat().st_size - f.tell()


def io_fit_read_all(result: dict, paths: list[Path], label: str) -> dict:
    """The fit I/O floor read every byte of both files."""
    want = sum(npy_data_bytes(p) for p in paths)
    if result.get("bytes_read") != want:
        fail(f"{label}: read {result.get('bytes_read')} bytes, the two inputs hold {want}")
    return {"bytes_read": want}


def fit_matches(procalign_q: np.ndarray, q_path: Path, label: str) -> dict:
    """The naive fit found the same map, and maps vectors the same way."""
    q = np.load(q_path).astype(np.float64)
    diff = _diff(q, procalign_q) if q.shape == procalign_q.shape else float("inf")
    if diff > FIT_MATRIX_ATOL:
        fail(f"{label}: fitted matrix differs from procalign's (max abs diff {diff:.3g})")
    return {"max_abs_diff_matrix": diff, "atol": FIT_MATRIX_ATOL}
