"""Baseline programs the benchmark runs in their own processes, next to procalign.

    python baselines.py KIND ARGS...

Each prints one JSON line; "seconds" there is the time of the measured part only where that
matters (the compute floor excludes loading). Kinds:

* compute-apply X.npy T.npz: faster of X @ Q and X @ Qt.T, arrays already in memory;
* compute-fit X.npy Y.npy: X.T @ Y, arrays already in memory;
* io-npy IN OUT ROWS: read IN and write OUT chunk by chunk with readinto/write, nothing else;
* io-parquet IN OUT ROWS: pyarrow iter_batches of all columns and ParquetWriter of the same;
* io-h5 IN OUT ROWS: h5py read_direct of the dataset and write into a chunked dataset;
* io-fit X.npy Y.npy ROWS: read both files chunk by chunk;
* naive-apply T.npz IN OUT: load everything, one matmul, save (npy, parquet or h5);
* naive-fit X.npy Y.npy OUT: load both, scipy.linalg.orthogonal_procrustes, save Q.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np


def _header(f):
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _q(t_path):
    with np.load(t_path) as z:
        return z["matrix"].astype(np.float32)


def compute_apply(x_path, t_path):
    x = np.load(x_path)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    q = _q(t_path)
    qt = np.ascontiguousarray(q.T)
    best = {}
    for name, f in (("X @ Q", lambda: x @ q), ("X @ Qt.T", lambda: x @ qt.T)):
        t0 = time.perf_counter()
        f()
        best[name] = time.perf_counter() - t0
    return {"seconds": min(best.values()), "variants": best}


def compute_fit(x_path, y_path):
    x, y = np.load(x_path), np.load(y_path)
    t0 = time.perf_counter()
    x.T @ y
    return {"seconds": time.perf_counter() - t0}


def io_npy(src, dst, rows):
    rows = int(rows)
    with open(src, "rb") as f, open(dst, "wb") as g:
        shape, _, dtype = _header(f)
        g.write(open(src, "rb").read(f.tell()))
        buf = bytearray(rows * shape[1] * dtype.itemsize)
        view = memoryview(buf)
        while True:
            n = f.readinto(view)
            if not n:
                break
            g.write(view[:n])
    return {}


def io_parquet(src, dst, rows):
    import pyarrow.parquet as pq
    from procalign.io.parquet import writer_options
    pf = pq.ParquetFile(src)
    # the same encoding procalign writes, so that only the work differs
    with pq.ParquetWriter(dst, pf.schema_arrow, **writer_options(pf.schema_arrow, "embedding")) as w:
        for rb in pf.iter_batches(batch_size=int(rows)):
            rb.column(rb.schema.names.index("embedding")).flatten().to_numpy()
            w.write_batch(rb, row_group_size=rb.num_rows)
    return {}


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
    return {}


def io_fit(x_path, y_path, rows):
    rows = int(rows)
    files = [open(p, "rb") for p in (x_path, y_path)]
    for f in files:
        shape, _, dtype = _header(f)
    bufs = [memoryview(bytearray(rows * shape[1] * dtype.itemsize)) for _ in files]
    while all(f.readinto(b) for f, b in zip(files, bufs)):
        pass
    return {}


def naive_apply(t_path, src, dst):
    q = _q(t_path)
    if src.endswith(".npy"):
        x = np.load(src)
        # float16 has no BLAS product: a sensible script widens to float32 and narrows back
        np.save(dst, (x.astype(np.float32) @ q).astype(x.dtype) if x.dtype == np.float16 else x @ q)
    elif src.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pq.read_table(src)
        col = table.column("embedding").combine_chunks()
        x = col.flatten().to_numpy().reshape(len(table), -1)
        y = x @ q
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, y.size + 1, y.shape[1], dtype=np.int32)), pa.array(y.ravel()))
        pq.write_table(table.set_column(table.schema.get_field_index("embedding"), "embedding", arr), dst)
    else:
        import h5py
        with h5py.File(src, "r") as f:
            y = f["emb"][()] @ q
        with h5py.File(dst, "w") as g:
            g["emb"] = y
    return {}


def naive_fit(x_path, y_path, out):
    from scipy.linalg import orthogonal_procrustes
    x, y = np.load(x_path), np.load(y_path)
    q, _ = orthogonal_procrustes(x - x.mean(0), y - y.mean(0))
    np.save(out, q)
    return {}


KINDS = {"compute-apply": compute_apply, "compute-fit": compute_fit, "io-npy": io_npy, "io-parquet": io_parquet,
         "io-h5": io_h5, "io-fit": io_fit, "naive-apply": naive_apply, "naive-fit": naive_fit}

if __name__ == "__main__":
    print(json.dumps(KINDS[sys.argv[1]](*sys.argv[2:])))
