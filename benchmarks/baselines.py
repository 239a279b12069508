"""Baseline programs the benchmark runs in their own processes, next to procalign.

    python baselines.py KIND ARGS...

Each prints one JSON line on stdout. Where a figure is timed inside the program ("seconds"),
only the measured part is timed: the compute floor excludes loading, allocation and the check.
Every baseline computes what procalign computes (the harness checks its output against
procalign's and fails if it differs), except the I/O floors, which move the same bytes and
compute nothing. Kinds:

* compute-apply X.npy T.npz CHECK.npz: the affine map's product X @ Q (the faster of the two
  layouts X @ Q and X @ Qt.T) into a preallocated, already-touched output; after the timing
  the bias is added and sampled rows and column sums go to CHECK.npz for the harness;
* compute-fit X.npy Y.npy CHECK.npy: X.T @ Y into a preallocated output, saved to CHECK.npy;
* io-npy IN OUT ROWS: read IN and write OUT chunk by chunk with readinto/write, nothing else;
* io-parquet IN OUT ROWS: pyarrow iter_batches of all columns, ParquetWriter with procalign's
  encoding;
* io-h5 IN OUT ROWS: h5py read_direct of the dataset and write into a chunked dataset;
* io-fit X.npy Y.npy ROWS: read both files chunk by chunk;
* naive-apply T.npz IN OUT: load everything, one matmul plus the bias, save (npy, parquet or
  h5, with the other columns/datasets, in procalign's parquet encoding);
* naive-fit X.npy Y.npy OUT: load both, centre, scipy.linalg.orthogonal_procrustes, save Q;
* blas-info: the BLAS/OpenMP libraries a process of this environment loads (threadpoolctl).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

CHECK_ROWS = 256  # rows of the compute floor's result kept for the harness to compare


def _header(f):
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _writer_options(schema, column):
    """procalign's parquet encoding, so that baselines differ from it only in the work done."""
    from procalign.formats.parquet import writer_options
    return writer_options(schema, column)


def _affine(t_path):
    """The transform as one float32 matrix and one bias row, as procalign applies it:
    scale * (x - source_mean) @ matrix + target_mean == x @ (scale * matrix) + bias."""
    with np.load(t_path, allow_pickle=False) as z:
        if json.loads(str(z["metadata"]))["options"].get("normalize"):
            raise SystemExit("baselines do not implement --normalize transforms")
        scale = float(z["scale"])
        q = scale * z["matrix"]
        bias = z["target_mean"] - scale * (z["source_mean"] @ z["matrix"])
    return q.astype(np.float32), bias.astype(np.float32)


def check_rows(n: int) -> np.ndarray:
    """Row indices the compute floor reports, spread over the whole file (harness uses the same)."""
    return np.unique(np.linspace(0, n - 1, min(n, CHECK_ROWS)).astype(np.int64))


def compute_apply(x_path, t_path, check_path):
    x = np.load(x_path)
    if x.dtype != np.float32:
        x = x.astype(np.float32)  # float16 has no BLAS product; widening is not the floor's work
    q, bias = _affine(t_path)
    qt = np.ascontiguousarray(q.T)
    # Allocated and written once before the timing: a fresh np.empty would page-fault on first
    # write inside the product, which measured 5-30% of the floor.
    out = np.empty((x.shape[0], q.shape[1]), np.float32)
    out.fill(0)
    np.matmul(x[:1024], q, out=out[:1024])  # start the BLAS threads outside the timing
    variants = {}
    for name, m in (("X @ Q", q), ("X @ Qt.T", qt.T)):
        t0 = time.perf_counter()
        np.matmul(x, m, out=out)
        variants[name] = time.perf_counter() - t0
    out += bias  # untimed: completes the same map procalign applies, for the check only
    rows = check_rows(len(out))
    np.savez(check_path, rows=rows, values=out[rows], colsum=out.sum(axis=0, dtype=np.float64))
    return {"seconds": min(variants.values()), "variants": variants}


def compute_fit(x_path, y_path, check_path):
    x, y = np.load(x_path), np.load(y_path)
    out = np.empty((x.shape[1], y.shape[1]), np.result_type(x, y))
    out.fill(0)
    np.matmul(x[:1024].T, y[:1024], out=out)  # start the BLAS threads outside the timing
    t0 = time.perf_counter()
    np.matmul(x.T, y, out=out)
    seconds = time.perf_counter() - t0
    np.save(check_path, out)
    return {"seconds": seconds}


def io_npy(src, dst, rows):
    rows = int(rows)
    with open(src, "rb") as f, open(dst, "wb") as g:
        shape, _, dtype = _header(f)
        header_len = f.tell()
        f.seek(0)
        g.write(f.read(header_len))
        view = memoryview(bytearray(rows * shape[1] * dtype.itemsize))
        written = header_len
        while n := f.readinto(view):
            written += g.write(view[:n])
    return {"bytes_written": written}


def io_parquet(src, dst, rows):
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(src)
    with pq.ParquetWriter(dst, pf.schema_arrow, **_writer_options(pf.schema_arrow, "embedding")) as w:
        for rb in pf.iter_batches(batch_size=int(rows)):
            # the view procalign needs before it can compute; no copy, no math
            rb.column(rb.schema.names.index("embedding")).flatten().to_numpy()
            w.write_batch(rb, row_group_size=rb.num_rows)
    return {"bytes_written": os.path.getsize(dst)}


def io_h5(src, dst, rows):
    import h5py
    rows = int(rows)
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        ds = f["emb"]
        out = g.create_dataset("emb", shape=ds.shape, dtype=ds.dtype, chunks=(min(rows, ds.shape[0]), ds.shape[1]))
        buf = np.empty((rows, ds.shape[1]), ds.dtype)
        for a in range(0, ds.shape[0], rows):
            n = min(rows, ds.shape[0] - a)
            ds.read_direct(buf, np.s_[a:a + n], np.s_[0:n])
            out.write_direct(buf, np.s_[0:n], np.s_[a:a + n])
    return {"bytes_written": os.path.getsize(dst)}


def io_fit(x_path, y_path, rows):
    rows = int(rows)
    total = 0
    with open(x_path, "rb") as fx, open(y_path, "rb") as fy:
        files = [fx, fy]
        bufs = []
        for f in files:
            shape, _, dtype = _header(f)
            bufs.append(memoryview(bytearray(rows * shape[1] * dtype.itemsize)))
        while True:
            got = [f.readinto(b) for f, b in zip(files, bufs)]
            if not all(got):
                break
            total += sum(got)
    return {"bytes_read": total}


def _naive_map(x, q, bias):
    """One matmul and the bias, in float32 (float16 is widened and narrowed back, as
    procalign does)."""
    y = (x.astype(np.float32) if x.dtype == np.float16 else x) @ q
    y += bias
    return y.astype(x.dtype, copy=False)


def naive_apply(t_path, src, dst):
    q, bias = _affine(t_path)
    if src.endswith(".npy"):
        np.save(dst, _naive_map(np.load(src), q, bias))
    elif src.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pq.read_table(src)
        col = table.column("embedding").combine_chunks()
        y = _naive_map(col.flatten().to_numpy().reshape(len(table), -1), q, bias)
        offsets = pa.array(np.arange(0, y.size + 1, y.shape[1], dtype=np.int32))
        arr = pa.ListArray.from_arrays(offsets, pa.array(y.ravel()))
        table = table.set_column(table.schema.get_field_index("embedding"), "embedding", arr)
        pq.write_table(table, dst, **_writer_options(table.schema, "embedding"))
    else:
        import h5py
        with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
            g["emb"] = _naive_map(f["emb"][()], q, bias)
            for name in f:  # the other datasets (ids) pass through, as procalign copies them
                if name != "emb":
                    f.copy(f[name], g, name=name)
    return {}


def naive_fit(x_path, y_path, out):
    from scipy.linalg import orthogonal_procrustes
    x, y = np.load(x_path), np.load(y_path)
    # centred, as procalign fits by default
    q, _ = orthogonal_procrustes(x - x.mean(0), y - y.mean(0))
    np.save(out, q)
    return {}


def blas_info():
    import scipy.linalg  # noqa: F401  naive-fit's LAPACK may come from a second BLAS library
    from threadpoolctl import threadpool_info
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer",
            "prefix", "filepath")
    return {"libraries": [{k: lib[k] for k in keep if k in lib} for lib in threadpool_info()]}


KINDS = {"compute-apply": compute_apply, "compute-fit": compute_fit, "io-npy": io_npy, "io-parquet": io_parquet,
         "io-h5": io_h5, "io-fit": io_fit, "naive-apply": naive_apply, "naive-fit": naive_fit,
         "blas-info": blas_info}

if __name__ == "__main__":
    print(json.dumps(KINDS[sys.argv[1]](*sys.argv[2:])))
