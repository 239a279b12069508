"""The measurement protocol of run.py: how one contender is timed, and how rounds are ordered.

* Before every measurement: the contender's outputs (and every other contender's) are
  deleted, `os.sync()` writes back all dirty pages, the page cache is either dropped
  (`--drop-caches`, root only) or the case's inputs are read once more so that they are cached
  for everyone alike, and the process sleeps `settle` seconds. No contender then pays for
  another's writeback, and all start from the same cache state.
* Round k starts at contender k mod n and runs the others in their usual order after it, so no
  contender always follows the same one.
* Every contender runs in its own process under launch.py: wall time from outside, peak RSS
  of that process alone.
* Summaries are the median and the min-max of the runs; ratios are taken between medians.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass
class Contender:
    name: str
    cmd: list
    inner_time: bool = False  # time the program reports for its measured part, not the wall


@dataclass
class Protocol:
    settle: float = 1.5
    drop_caches: bool = False
    scratch: Callable[[], list[Path]] = lambda: []  # outputs to delete before every measurement
    inputs: list[Path] = field(default_factory=list)  # files to re-cache when not dropping

    def describe(self) -> str:
        cache = ("page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before every measurement"
                 if self.drop_caches else "page cache kept warm: the inputs are re-read before every measurement")
        return f"os.sync() + {self.settle:g} s settle before every measurement; {cache}"

    def prepare(self) -> None:
        """Bring the machine to the same state before each measurement."""
        for p in self.scratch():
            p.unlink(missing_ok=True)
        os.sync()
        if self.drop_caches:
            DROP_CACHES.write_text("3\n")
        else:
            for p in self.inputs:
                read_through(p)
        time.sleep(self.settle)


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def run_measured(cmd: list) -> dict:
    """Wall time and peak RSS of cmd (through launch.py), plus the last JSON line it printed."""
    p = subprocess.run([sys.executable, str(HERE / "launch.py")] + [str(c) for c in cmd],
                       capture_output=True, text=True)
    measured = json.loads(p.stderr.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise SystemExit(f"benchmark command failed ({measured['code']}): {' '.join(map(str, cmd))}\n"
                         f"{p.stdout}\n{p.stderr}")
    extra = {}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            extra = json.loads(line)
            break
    return {"wall": measured["wall"], "rss_mb": measured["rss_mb"], "extra": extra}


def rotation(n: int, k: int) -> list[int]:
    """Order of round k: start at contender k mod n, then the rest in their usual order."""
    return [(k + i) % n for i in range(n)]


def run_rounds(contenders: list[Contender], repeat: int, protocol: Protocol,
               after_first: Callable[[Contender, dict], None] | None = None) -> dict:
    """Measure every contender `repeat` times in rotated order; returns name -> summary.

    after_first(contender, run) is called right after each contender's first run, before the
    next preparation deletes its output: the harness checks the output there.
    """
    runs = {c.name: [] for c in contenders}
    for k in range(repeat):
        for position, i in enumerate(rotation(len(contenders), k)):
            c = contenders[i]
            protocol.prepare()
            load = os.getloadavg()[0]  # kept with the run: on a shared machine it explains outliers
            r = run_measured(c.cmd)
            r.update(round=k, position=position, loadavg_1min=load)
            r["seconds"] = r["extra"]["seconds"] if c.inner_time else r["wall"]
            if after_first and k == 0:
                after_first(c, r)
            runs[c.name].append(r)
    protocol.prepare()  # leave nothing behind for the next case
    return {name: summarize(rs) for name, rs in runs.items()}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict:
    """Median and min-max of the time and of the peak RSS, with every run kept."""
    return {**spread([r["seconds"] for r in runs]),
            "rss_mb": spread([r["rss_mb"] for r in runs]),
            "runs": runs}
