"""procalign benchmarks: `make bench` (never part of `make test`).

Generates data with fixed seeds, then for every case measures procalign and, in the same run
on the same files, the baselines of baselines.py, each in its own process (wall time from
outside, peak RSS from wait4). Prints a table of ratios and writes it as JSON. Only ratios
measured in one run mean anything: the machine is shared and absolute times drift.

    python benchmarks/run.py [--sizes 100000,1000000] [--dims 384,768] [--repeat 1]
                             [--only apply-npy,...] [--workdir DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BASE = [sys.executable, str(HERE / "baselines.py")]
CLI = [sys.executable, "-m", "procalign"]
CHUNK = 16384  # rows per chunk for the I/O floors; procalign picks its own from --memory


def run_measured(cmd: list[str]) -> dict:
    """Wall time and peak RSS of cmd (through launch.py), plus the last JSON line it printed."""
    p = subprocess.run([sys.executable, str(HERE / "launch.py")] + [str(c) for c in cmd],
                       capture_output=True, text=True)
    measured = json.loads(p.stderr.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise SystemExit(f"benchmark command failed ({measured['code']}): {' '.join(map(str, cmd))}\n{p.stderr}")
    extra = {}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            extra = json.loads(line)
            break
    return {"wall": measured["wall"], "rss_mb": measured["rss_mb"], "extra": extra}


def best_of(cmd, repeat, cleanup=None):
    runs = []
    for _ in range(repeat):
        if cleanup:
            cleanup()
        runs.append(run_measured(cmd))
    return min(runs, key=lambda r: r["wall"])


# ---------------------------------------------------------------- data
def make_data(work: Path, n: int, d: int) -> dict:
    """X (source dump / anchors), Y (target anchors) and the formats, chunk by chunk."""
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(d * 1000003 + n)
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    offset_x, offset_y = rng.normal(size=d) * 2, rng.normal(size=d)
    files = {k: work / f"{k}_{n}_{d}.{ext}" for k, ext in
             (("x", "npy"), ("y", "npy"), ("x16", "npy"), ("xp", "parquet"), ("xh", "h5"))}
    x = np.lib.format.open_memmap(files["x"], "w+", np.float32, (n, d))
    y = np.lib.format.open_memmap(files["y"], "w+", np.float32, (n, d))
    x16 = np.lib.format.open_memmap(files["x16"], "w+", np.float16, (n, d))
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32()))])
    with pq.ParquetWriter(files["xp"], schema) as pw, h5py.File(files["xh"], "w") as h:
        ds = h.create_dataset("emb", (n, d), np.float32, chunks=(min(n, CHUNK), d))
        h["ids"] = np.arange(n)
        for a in range(0, n, 65536):
            z = rng.standard_normal((min(65536, n - a), d), dtype=np.float32)
            xa = z + offset_x.astype(np.float32)
            x[a:a + len(z)] = xa
            x16[a:a + len(z)] = xa
            y[a:a + len(z)] = z @ rot.astype(np.float32) + 0.1 * rng.standard_normal(z.shape, dtype=np.float32) + offset_y.astype(np.float32)
            ds[a:a + len(z)] = xa
            offsets = pa.array(np.arange(0, xa.size + 1, d, dtype=np.int32))
            pw.write_batch(pa.record_batch([pa.array(np.arange(a, a + len(z))),
                                            pa.ListArray.from_arrays(offsets, pa.array(xa.ravel()))], schema=schema))
    x.flush(), y.flush(), x16.flush()
    del x, y, x16
    settle(files.values())
    return files


def settle(paths) -> None:
    """Write back the freshly generated data and read it once, so that the first measurement
    does not compete with the kernel flushing gigabytes of dirty pages."""
    os.sync()
    for p in paths:
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass


def make_transform(work: Path, files: dict, d: int) -> Path:
    """A transform fitted on the first 5,000 anchors (what apply benchmarks map with)."""
    x, y = np.load(files["x"], mmap_mode="r")[:5000], np.load(files["y"], mmap_mode="r")[:5000]
    np.save(work / "ax.npy", x), np.save(work / "ay.npy", y)
    t = work / f"t_{d}.npz"
    subprocess.run(CLI + ["fit", work / "ax.npy", work / "ay.npy", "-o", t, "--overwrite", "--no-report", "-q"], check=True)
    return t


def reference_q(files: dict) -> np.ndarray:
    """Float64 streaming reference of the centred Procrustes map."""
    x, y = np.load(files["x"], mmap_mode="r"), np.load(files["y"], mmap_mode="r")
    n, d = x.shape
    sx, sy, sxy = np.zeros(d), np.zeros(d), np.zeros((d, d))
    for a in range(0, n, 65536):
        xa, ya = np.asarray(x[a:a + 65536], np.float64), np.asarray(y[a:a + 65536], np.float64)
        sx += xa.sum(0)
        sy += ya.sum(0)
        sxy += xa.T @ ya
    c = sxy - np.outer(sx, sy) / n
    u, _, vt = np.linalg.svd(c)
    return u @ vt


# ---------------------------------------------------------------- cases
def bench_apply(name, src, out_ext, t, work, n, d, repeat, io_kind):
    out = work / f"apply_out.{out_ext}"

    def clean():
        for p in work.glob("apply_out.*"):
            p.unlink()
        for p in work.glob(".apply_out.*"):
            p.unlink()
    row = {"case": name, "n": n, "d": d}
    row["procalign"] = best_of(CLI + ["apply", t, src, "-o", out, "-q", "--overwrite"], repeat, clean)
    row["compute_floor"] = best_of(BASE + ["compute-apply", src if src.suffix == ".npy" else work / f"x_{n}_{d}.npy", t], repeat)
    row["io_floor"] = best_of(BASE + [io_kind, src, work / f"io.{out_ext}", CHUNK], repeat)
    row["naive"] = best_of(BASE + ["naive-apply", t, src, work / f"naive.{out_ext}"], repeat)
    clean()
    for p in work.glob("io.*"):
        p.unlink()
    for p in work.glob("naive.*"):
        p.unlink()
    return row


def bench_fit(files, work, n, d, repeat, report: bool):
    t = work / "fit.npz"
    args = CLI + ["fit", files["x"], files["y"], "-o", t, "-q", "--overwrite"] + ([] if report else ["--no-report"])
    row = {"case": "fit" + ("" if report else " (map only, --no-report)"), "n": n, "d": d}
    row["procalign"] = best_of(args, repeat)
    with np.load(t) as z:
        q = z["matrix"]
    row["max_abs_diff_vs_float64"] = float(np.abs(q - reference_q(files)).max())
    row["compute_floor"] = best_of(BASE + ["compute-fit", files["x"], files["y"]], repeat)
    row["io_floor"] = best_of(BASE + ["io-fit", files["x"], files["y"], CHUNK], repeat)
    row["naive"] = best_of(BASE + ["naive-fit", files["x"], files["y"], work / "naive_q.npy"], repeat)
    return row


def finish(row):
    p = row["procalign"]["wall"]
    compute = row["compute_floor"]["extra"].get("seconds", row["compute_floor"]["wall"])
    row["compute_floor_s"] = compute
    row["io_floor_s"] = row["io_floor"]["wall"]
    row["floor_s"] = max(compute, row["io_floor_s"])
    row["vs_floor"] = p / row["floor_s"]
    row["vs_naive"] = p / row["naive"]["wall"]
    return row


def table(rows) -> str:
    head = ("case", "N", "d", "procalign s", "RSS MB", "compute s", "I/O s", "naive s", "naive RSS",
            "x floor", "x naive")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["case"], f"{r['n']:,}", str(r["d"]), f"{r['procalign']['wall']:.2f}", f"{r['procalign']['rss_mb']:.0f}",
            f"{r['compute_floor_s']:.2f}", f"{r['io_floor_s']:.2f}", f"{r['naive']['wall']:.2f}",
            f"{r['naive']['rss_mb']:.0f}", f"{r['vs_floor']:.2f}", f"{r['vs_naive']:.2f}"]) + " |")
    return "\n".join(lines)


def startup(work: Path) -> dict:
    np.save(work / "tiny.npy", np.random.default_rng(0).normal(size=(1000, 384)).astype(np.float32))
    t = next(work.glob("t_384.npz"), None)
    help_s = min(run_measured(CLI + ["--help"])["wall"] for _ in range(5))
    res = {"help_s": help_s}
    if t:
        res["apply_1000_rows_s"] = min(run_measured(CLI + ["apply", t, work / "tiny.npy", "-o", work / "tiny_out.npy",
                                                           "--overwrite", "-q"])["wall"] for _ in range(3))
    return res


def rss_scaling(work: Path, t: Path) -> dict:
    """Peak RSS of apply at 500k and 2M rows (d=384): must not grow with N."""
    res = {}
    for n in (500_000, 2_000_000):
        src = work / f"scale_{n}.npy"
        x = np.lib.format.open_memmap(src, "w+", np.float32, (n, 384))
        rng = np.random.default_rng(n)
        for a in range(0, n, 262144):
            x[a:a + 262144] = rng.standard_normal((min(262144, n - a), 384), dtype=np.float32)
        x.flush()
        del x
        r = run_measured(CLI + ["apply", t, src, "-o", work / "scale_out.npy", "--overwrite", "-q"])
        res[n] = {"wall": r["wall"], "rss_mb": r["rss_mb"]}
        src.unlink()
        (work / "scale_out.npy").unlink()
    res["ratio"] = res[2_000_000]["rss_mb"] / res[500_000]["rss_mb"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dims", default="384,768")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default="", help="comma list of case prefixes, e.g. apply-npy,fit")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="procalign-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    only = [s for s in args.only.split(",") if s]
    want = lambda name: not only or any(name.startswith(o) for o in only)  # noqa: E731
    rows = []
    try:
        for d in map(int, args.dims.split(",")):
            for n in map(int, args.sizes.split(",")):
                print(f"generating N={n:,} d={d} ...", file=sys.stderr, flush=True)
                files = make_data(work, n, d)
                t = make_transform(work, files, d)
                cases = [("apply-npy f32", files["x"], "npy", "io-npy"), ("apply-npy f16", files["x16"], "npy", "io-npy"),
                         ("apply-parquet", files["xp"], "parquet", "io-parquet"), ("apply-h5", files["xh"], "h5", "io-h5")]
                for name, src, ext, io_kind in cases:
                    if want(name):
                        rows.append(finish(bench_apply(name, src, ext, t, work, n, d, args.repeat, io_kind)))
                        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
                for report in (False, True):
                    if want("fit"):
                        rows.append(finish(bench_fit(files, work, n, d, args.repeat, report)))
                        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
                for p in files.values():
                    p.unlink()
        extra = {"startup": startup(work)}
        if want("rss"):
            extra["rss_scaling"] = rss_scaling(work, work / "t_384.npz")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print(json.dumps(extra, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, **extra}, indent=2, default=str))


if __name__ == "__main__":
    main()
