"""Local engine vs Dask engine on a generated partitioned dataset (apply), and their fits.

Generates ROWS x DIM float32 rows in PARTS .npy parts (random rows; the time of a map does not
depend on the values) under a temporary directory, fits a transform on 20,000 generated anchor
pairs, then times `procalign apply` on the dataset:

- local engine, one part at a time (--workers 1),
- local engine, --workers W (threads),
- Dask engine, a LocalCluster of W worker processes started by the command (--workers W).

Each run writes a fresh output directory, which is deleted before the next one (after a sync, so
no run pays for the previous one's write-back); the order of the engines rotates each round, and
the table keeps each engine's best round; the dataset is deleted at the end. Columns: the
command's wall time (for Dask including the start of the cluster), the apply's own time, rows
per second. Ratios measured in one run on one machine;
nothing here is a test.

    python benchmarks/partitioned.py --rows 2000000 --dim 384 --parts 16 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 50_000


def generate(root: Path, rows: int, dim: int, parts: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = root / "dump"
    data.mkdir()
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    for k in range(parts):
        n = int(bounds[k + 1] - bounds[k])
        out = np.lib.format.open_memmap(data / f"part-{k:03d}.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        for a in range(0, n, CHUNK):
            out[a:a + CHUNK] = rng.standard_normal((min(CHUNK, n - a), dim), dtype=np.float32)
        out.flush()
        del out
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = rng.standard_normal((20_000, dim)).astype(np.float32)
    np.save(root / "anchors_x.npy", x)
    np.save(root / "anchors_y.npy", (x @ q + 0.05 * rng.standard_normal(x.shape)).astype(np.float32))
    return data


def procalign(*args) -> tuple[float, dict]:
    began = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "procalign", *map(str, args), "--json", "-q"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - began
    if r.returncode != 0:
        raise SystemExit(f"procalign {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return wall, json.loads(r.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--parts", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="rounds, the order of the engines rotated each round")
    p.add_argument("--dir", default=None, help="where to generate the dataset (default: a temporary directory)")
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="procalign-bench-", dir=a.dir))
    try:
        began = time.perf_counter()
        data = generate(root, a.rows, a.dim, a.parts)
        size = sum(f.stat().st_size for f in data.iterdir()) / 2**30
        print(f"generated {a.rows:,} x {a.dim} float32 in {a.parts} parts ({size:.2f} GiB) in "
              f"{time.perf_counter() - began:.0f} s; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        t = root / "t.npz"
        procalign("fit", root / "anchors_x.npy", root / "anchors_y.npy", "-o", t, "--no-report")
        runs = [("local, 1 part at a time", ["--workers", "1"]),
                (f"local, {a.workers} threads", ["--workers", a.workers]),
                (f"dask LocalCluster, {a.workers} processes", ["--engine", "dask", "--workers", a.workers])]
        times = {name: [] for name, _ in runs}
        for r in range(a.repeat):
            for name, extra in runs[r % len(runs):] + runs[:r % len(runs)]:  # rotate the order each round
                os.sync()  # no write-back of the previous run's output during this one
                out = root / "out"
                wall, doc = procalign("apply", t, data, "-o", out, *extra)
                assert doc["parts_written"] == a.parts and doc["rows"] == a.rows, doc
                times[name].append((wall, doc["seconds"]))
                print(f"  round {r + 1}: {name}: {wall:.1f} s wall, {doc['seconds']:.1f} s apply", flush=True)
                shutil.rmtree(out)
        print(f"best of {a.repeat}:\n| engine | wall s (command) | apply s | rows/s |\n|---|---:|---:|---:|")
        for name, _ in runs:
            wall, apply_s = min(times[name], key=lambda w: w[1])
            print(f"| {name} | {wall:.1f} | {apply_s:.1f} | {a.rows / apply_s:,.0f} |")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
