"""procalign benchmarks: `make bench` (never part of `make test`).

Generates data with fixed seeds, then for every case measures procalign and, in the same run
on the same files, the baselines of baselines.py (compute floor, I/O floor, naive script).

Protocol (protocol.py), the same for every contender:

* each contender runs in its own process under launch.py: wall time from outside, peak RSS of
  that process alone (the compute floor's time is the product only, timed inside);
* before every measurement all outputs are deleted, `os.sync()` writes back dirty pages, the
  inputs are re-read so they are cached for everyone alike (or, with --drop-caches, the page
  cache is dropped for everyone), and the harness sleeps --settle seconds;
* round k starts at contender k mod 4, so no contender always runs after the same one;
* each contender runs --repeat times (at least 3); the table shows the median and [min-max],
  the ratios are procalign's median over the baselines' medians, and a ratio is marked "~"
  when some contender's runs spread over more than half its median (the 1-minute load
  average before each run is kept in the JSON to explain such rows);
* each baseline's output is checked against procalign's (within the output dtype's tolerance)
  after its first run, and a baseline that computes something else stops the benchmark: the
  naive script's whole output, the compute floor's sampled rows and column sums, the I/O
  floor's shape and dtype; for fit, the naive map and the floor's X.T @ Y (against float64);
* the BLAS libraries (threadpoolctl), OPENBLAS_* and thread variables, and the machine's load
  are recorded in the JSON and printed above the table.

Only ratios measured in one run mean anything: the machine is shared and absolute times drift,
so nothing here gates on an absolute time.

    python benchmarks/run.py [--sizes 100000,1000000] [--dims 384,768] [--repeat 3]
                             [--only apply-npy,...] [--settle 1.5] [--drop-caches]
                             [--workdir DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import checks
from baselines import check_rows
from protocol import DROP_CACHES, Contender, Protocol, can_drop_caches, run_measured, run_rounds, spread

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE = [sys.executable, str(HERE / "baselines.py")]
CLI = [sys.executable, "-m", "procalign"]
CHUNK = 16384  # rows per chunk for the I/O floors; procalign picks its own from --memory
RECORDED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # always recorded, even when unset
THREAD_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "GOTO_", "BLIS_")
CONTENDERS = ("procalign", "compute_floor", "io_floor", "naive")
NOISY_SPREAD = 0.5  # (max - min) / median above which a row's ratios are marked "~"


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
    return files


def make_transform(work: Path, files: dict, d: int) -> Path:
    """A transform fitted on the first 5,000 anchors (what apply benchmarks map with)."""
    x, y = np.load(files["x"], mmap_mode="r")[:5000], np.load(files["y"], mmap_mode="r")[:5000]
    np.save(work / "ax.npy", x), np.save(work / "ay.npy", y)
    t = work / f"t_{d}.npz"
    p = subprocess.run(CLI + ["fit", work / "ax.npy", work / "ay.npy", "-o", t, "--overwrite", "--no-report", "-q"],
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"procalign fit of the benchmark transform failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return t


def float64_reference(files: dict) -> dict:
    """Float64 streaming reference: X.T @ Y and the centred Procrustes map."""
    x, y = np.load(files["x"], mmap_mode="r"), np.load(files["y"], mmap_mode="r")
    n, d = x.shape
    sx, sy, sxy = np.zeros(d), np.zeros(d), np.zeros((d, d))
    for a in range(0, n, 65536):
        xa, ya = np.asarray(x[a:a + 65536], np.float64), np.asarray(y[a:a + 65536], np.float64)
        sx += xa.sum(0)
        sy += ya.sum(0)
        sxy += xa.T @ ya
    u, _, vt = np.linalg.svd(sxy - np.outer(sx, sy) / n)
    return {"xty": sxy, "q": u @ vt}


def outputs_in(work: Path):
    """Every contender writes out_* (procalign's temporary files are .out_*)."""
    return lambda: list(work.glob("out_*")) + list(work.glob(".out_*"))


# ---------------------------------------------------------------- cases
def bench_apply(case, files, t, work, n, d, args):
    name, src, ext, io_kind = case
    out = {c: work / f"out_{c}.{ext}" for c in ("procalign", "io_floor", "naive")}
    check, ref = work / "out_compute_check.npz", work / f"ref_procalign.{ext}"
    dense = src if src.suffix == ".npy" else files["x"]  # the compute floor's input in memory
    contenders = [
        Contender("procalign", CLI + ["apply", t, src, "-o", out["procalign"], "-q", "--overwrite"]),
        Contender("compute_floor", BASE + ["compute-apply", dense, t, check], inner_time=True),
        Contender("io_floor", BASE + [io_kind, src, out["io_floor"], CHUNK]),
        Contender("naive", BASE + ["naive-apply", t, src, out["naive"]]),
    ]
    verified = {}

    def after_first(c: Contender, run: dict) -> None:
        # procalign runs first in round 0; its output is the reference for the others
        label = f"{name} N={n} d={d} {c.name}"
        if c.name == "procalign":
            os.replace(out["procalign"], ref)
        elif c.name == "compute_floor":
            verified[c.name] = checks.compute_floor_matches(checks.reference_summary(ref, check_rows(n)), check, label)
        elif c.name == "io_floor":
            verified[c.name] = checks.same_shape(ref, out["io_floor"], label)
        else:
            verified[c.name] = checks.same_embeddings(ref, out["naive"], label)

    protocol = Protocol(args.settle, args.drop_caches, outputs_in(work), sorted({src, dense, t}))
    row = {"case": name, "n": n, "d": d, **run_rounds(contenders, args.repeat, protocol, after_first)}
    row["checks"] = verified
    ref.unlink()
    return row


def bench_fit(files, work, n, d, args, report: bool, reference: dict):
    x, y = files["x"], files["y"]
    fitted, cross, naive_q = work / "out_fit.npz", work / "out_cross.npy", work / "out_naive_q.npy"
    name = "fit" + ("" if report else " (map only, --no-report)")
    contenders = [
        Contender("procalign", CLI + ["fit", x, y, "-o", fitted, "-q", "--overwrite"] + ([] if report else ["--no-report"])),
        Contender("compute_floor", BASE + ["compute-fit", x, y, cross], inner_time=True),
        Contender("io_floor", BASE + ["io-fit", x, y, CHUNK]),
        Contender("naive", BASE + ["naive-fit", x, y, naive_q]),
    ]
    row = {"case": name, "n": n, "d": d}
    verified = {}

    def after_first(c: Contender, run: dict) -> None:
        label = f"{name} N={n} d={d} {c.name}"
        if c.name == "procalign":
            with np.load(fitted) as z:
                row["q"] = z["matrix"]
            row["max_abs_diff_vs_float64"] = float(np.abs(row["q"] - reference["q"]).max())
        elif c.name == "compute_floor":
            verified[c.name] = checks.cross_product_matches(reference["xty"], cross, label)
        elif c.name == "io_floor":
            verified[c.name] = checks.io_fit_read_all(run["extra"], [x, y], label)
        else:
            verified[c.name] = checks.fit_matches(row["q"], naive_q, label)

    protocol = Protocol(args.settle, args.drop_caches, outputs_in(work), [x, y])
    row.update(run_rounds(contenders, args.repeat, protocol, after_first))
    del row["q"]
    row["checks"] = verified
    return row


def finish(row: dict) -> dict:
    """Ratios of medians; the per-round ratio to the naive script shows how much they move."""
    p = row["procalign"]["median"]
    row["compute_floor_s"] = row["compute_floor"]["median"]
    row["io_floor_s"] = row["io_floor"]["median"]
    row["floor_s"] = max(row["compute_floor_s"], row["io_floor_s"])
    row["vs_floor"] = p / row["floor_s"]
    row["vs_naive"] = p / row["naive"]["median"]
    # the machine is shared: flag rows where some contender's runs spread wider than this
    row["noisy"] = any((row[c]["max"] - row[c]["min"]) > NOISY_SPREAD * row[c]["median"] for c in CONTENDERS)
    row["vs_naive_by_round"] = [a["seconds"] / b["seconds"] for a, b in
                                zip(sorted(row["procalign"]["runs"], key=lambda r: r["round"]),
                                    sorted(row["naive"]["runs"], key=lambda r: r["round"]))]
    return row


# ---------------------------------------------------------------- reporting
def cell(summary: dict) -> str:
    return f"{summary['median']:.2f} [{summary['min']:.2f}-{summary['max']:.2f}]"


def table(rows) -> str:
    head = ("case", "N", "d", "procalign s", "RSS MB", "compute s", "I/O s", "naive s", "naive RSS MB",
            "x floor", "x naive")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["case"], f"{r['n']:,}", str(r["d"]), cell(r["procalign"]), f"{r['procalign']['rss_mb']['median']:.0f}",
            cell(r["compute_floor"]), cell(r["io_floor"]), cell(r["naive"]),
            f"{r['naive']['rss_mb']['median']:.0f}", mark(r, r["vs_floor"]), mark(r, r["vs_naive"])]) + " |")
    if any(r["noisy"] for r in rows):
        lines.append(f"~ : some contender's runs spread over more than {NOISY_SPREAD:.0%} of its median; "
                     "rerun (or raise --repeat) before reading that ratio")
    return "\n".join(lines)


def mark(row: dict, ratio: float) -> str:
    return f"{'~' if row['noisy'] else ''}{ratio:.2f}"


def environment() -> dict:
    """What the numbers depend on besides procalign: BLAS, its environment, the machine."""
    blas = run_measured(BASE + ["blas-info"])["extra"]["libraries"]
    env = {k: os.environ.get(k) for k in RECORDED_ENV}
    env.update({k: v for k, v in os.environ.items() if k.startswith(THREAD_ENV_PREFIXES)})
    return {"blas": blas, "env": env, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "git": git_state(), "loadavg_start": os.getloadavg()}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def git_state() -> dict:
    """HEAD and whether procalign/ differs from it (read-only: no index refresh is written)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "procalign"],
                               capture_output=True, text=True, env=env).stdout.strip()
    except OSError:
        return {}
    return {"head": head, "procalign_modified": bool(dirty)}


def header(env: dict, protocol: dict) -> str:
    lines = []
    for lib in env["blas"]:
        lines.append(f"{lib.get('user_api')}: {lib.get('internal_api')} {lib.get('version')}, "
                     f"{lib.get('num_threads')} threads, architecture {lib.get('architecture')} "
                     f"({'/'.join(Path(lib.get('filepath', '')).parts[-2:])})")
    lines.append("environment: " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env["env"].items()))
    load = f"load average at start {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}"
    if "loadavg_end" in env:
        load += f", at end {', '.join(f'{x:.2f}' for x in env['loadavg_end'])}"
    lines.append(f"machine: {env['cpu_count']} CPUs ({env['cpu_model']}), {load}")
    lines.append(f"protocol: {protocol['preparation']}; order rotated each round; "
                 f"median [min-max] of {protocol['repeat']} runs per contender; ratios of medians")
    return "\n".join(lines)


# ---------------------------------------------------------------- procalign-only figures
def startup(work: Path, args) -> dict:
    """Start-up cost: `--help`, and apply on a 1,000-row file (medians)."""
    tiny, out = work / "tiny.npy", work / "out_tiny.npy"
    np.save(tiny, np.random.default_rng(0).normal(size=(1000, 384)).astype(np.float32))
    t = next(work.glob("t_384.npz"), None)
    protocol = Protocol(args.settle, args.drop_caches, outputs_in(work), [tiny] + ([t] if t else []))

    def median_wall(cmd):
        walls = []
        for _ in range(args.repeat):
            protocol.prepare()
            walls.append(run_measured(cmd)["wall"])
        return spread(walls)
    res = {"help_s": median_wall(CLI + ["--help"])}
    if t:
        res["apply_1000_rows_s"] = median_wall(CLI + ["apply", t, tiny, "-o", out, "--overwrite", "-q"])
    protocol.prepare()
    return res


def rss_scaling(work: Path, t: Path, args, sizes=(500_000, 2_000_000)) -> dict:
    """Peak RSS of apply at 500k and 2M rows (d=384): must not grow with N."""
    res = {}
    for n in sizes:
        src = work / f"scale_{n}.npy"
        x = np.lib.format.open_memmap(src, "w+", np.float32, (n, 384))
        rng = np.random.default_rng(n)
        for a in range(0, n, 262144):
            x[a:a + 262144] = rng.standard_normal((min(262144, n - a), 384), dtype=np.float32)
        x.flush()
        del x
        protocol = Protocol(args.settle, args.drop_caches, outputs_in(work), [src, t])
        protocol.prepare()
        r = run_measured(CLI + ["apply", t, src, "-o", work / "out_scale.npy", "--overwrite", "-q"])
        res[n] = {"wall": r["wall"], "rss_mb": r["rss_mb"]}
        protocol.prepare()
        src.unlink()
    res["ratio"] = res[sizes[-1]]["rss_mb"] / res[sizes[0]]["rss_mb"]
    return res


# ---------------------------------------------------------------- main
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dims", default="384", help="comma list of dimensions (the README table: 384)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender (at least 3; the median is reported)")
    ap.add_argument("--only", default="", help="comma list of case prefixes, e.g. apply-npy,fit,rss")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds to sleep after os.sync() before each run")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the page cache before every run (root); default: re-read the inputs instead")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3: the table reports a median and a spread")
    if args.drop_caches and not can_drop_caches():
        ap.error(f"--drop-caches: {DROP_CACHES} is not writable (needs root)")
    return args


def run_cases(work: Path, args, want) -> list[dict]:
    rows = []
    for d in map(int, args.dims.split(",")):
        for n in map(int, args.sizes.split(",")):
            print(f"generating N={n:,} d={d} ...", file=sys.stderr, flush=True)
            files = make_data(work, n, d)
            t = make_transform(work, files, d)
            cases = [("apply-npy f32", files["x"], "npy", "io-npy"), ("apply-npy f16", files["x16"], "npy", "io-npy"),
                     ("apply-parquet", files["xp"], "parquet", "io-parquet"), ("apply-h5", files["xh"], "h5", "io-h5")]
            for case in cases:
                if want(case[0]):
                    rows.append(finish(bench_apply(case, files, t, work, n, d, args)))
                    print(table(rows[-1:]).splitlines()[2], file=sys.stderr, flush=True)
            if want("fit"):
                reference = float64_reference(files)
                for report in (False, True):
                    rows.append(finish(bench_fit(files, work, n, d, args, report, reference)))
                    print(table(rows[-1:]).splitlines()[2], file=sys.stderr, flush=True)
            for p in files.values():
                p.unlink()
    return rows


def bytecode_ready() -> None:
    """Compile procalign's modules once, as installing a package does. An editable install under
    PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module from source in every
    process the benchmark starts (25 ms of a 0.3 s start-up here)."""
    compileall.compile_dir(ROOT / "procalign", quiet=1)


def main():
    args = parse_args()
    bytecode_ready()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="procalign-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    only = [s for s in args.only.split(",") if s]
    want = lambda name: not only or any(name.startswith(o) for o in only)  # noqa: E731
    env = environment()
    protocol = {"preparation": Protocol(args.settle, args.drop_caches).describe(), "settle_s": args.settle,
                "drop_caches": args.drop_caches, "repeat": args.repeat,
                "order": "round k starts at contender k mod n (procalign, compute_floor, io_floor, naive)",
                "summary": "median, min and max of the runs; ratios of medians",
                "compute_floor": "np.matmul into a preallocated, touched output; inner time of the product only",
                "checks": "each baseline's output against procalign's after its first run"}
    print(header(env, protocol), file=sys.stderr, flush=True)
    try:
        rows = run_cases(work, args, want)
        extra = {"startup": startup(work, args)}
        if want("rss") and (work / "t_384.npz").exists():
            extra["rss_scaling"] = rss_scaling(work, work / "t_384.npz", args)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    print(header(env, protocol))
    print(table(rows))
    print(json.dumps(extra, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"protocol": protocol, "environment": env, "rows": rows, **extra},
                                          indent=2, default=str))


if __name__ == "__main__":
    main()
