"""Chains and hubs against a direct fit on the committed fixtures (quality; never part of `make test`).

The pairs that `fit --holdout 0.2 --seed 7` holds out are set aside as the test set; every map
below is fitted on the other pairs only, through the command line, and measured on the test set
with `procalign evaluate` (retrieval among all test items):

* direct: `fit e5 minilm`;
* hub of two: `fit-hub e5 minilm`, then e5 -> hub -> minilm as a chain;
* composed: that chain written as one file by `compose`, evaluated as a single transform;
* hub of three: a third model joins the hub, e5 reduced to its 256 leading principal
  components (a stand-in for a smaller model of the same family; PCA fitted on the training rows);
* chain through 256-d: `fit e5 e5-256`, `fit e5-256 minilm`, composed: a version chain through a
  narrower model, which is a projection.

    python benchmarks/chains.py
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from procalign.cli import app
from procalign.math.fold import HoldoutSplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def run(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    if r.exit_code != 0:
        raise SystemExit(f"procalign {' '.join(map(str, args))} failed: {r.stderr}")
    return r.stdout


def evaluate(*transforms, source, target) -> dict:
    report = json.loads(run("evaluate", *transforms, source, target, "--json", "-q"))["report"]
    return {**report["aligned"], "pairs": report["pairs"]}


def split_files(d: Path) -> dict:
    e5, minilm = np.load(FIXTURES / "e5.npy"), np.load(FIXTURES / "minilm.npy")
    held = HoldoutSplit(0.2, 7).held(0, len(e5))
    mean = e5[~held].mean(0)
    _, _, vt = np.linalg.svd(e5[~held] - mean, full_matrices=False)
    small = ((e5 - mean) @ vt[:256].T).astype(np.float32)
    files = {}
    for name, x in (("e5", e5), ("minilm", minilm), ("e5-256", small)):
        for part, rows in (("train", ~held), ("test", held)):
            files[name, part] = d / f"{name}_{part}.npy"
            np.save(files[name, part], x[rows])
    return files


def measure(d: Path) -> dict:
    f = split_files(d)
    fit = lambda a, b, out: run("fit", f[a, "train"], f[b, "train"], "-o", d / out, "--source-name", a,
                                "--target-name", b, "--no-report", "-q")
    test = {"source": f["e5", "test"], "target": f["minilm", "test"]}
    fit("e5", "minilm", "direct.npz")
    run("fit-hub", f["e5", "train"], f["minilm", "train"], "--names", "e5,minilm", "-o", d / "hub2", "-q")
    run("compose", d / "hub2" / "e5.npz", d / "hub2" / "minilm.npz", "-o", d / "composed.npz")
    run("fit-hub", f["e5", "train"], f["minilm", "train"], f["e5-256", "train"], "--names", "e5,minilm,e5-256",
        "-o", d / "hub3", "-q")
    fit("e5", "e5-256", "down.npz")
    fit("e5-256", "minilm", "up.npz")
    run("invert", d / "direct.npz", "-o", d / "back.npz")
    back = {"source": f["minilm", "test"], "target": f["e5", "test"]}
    return {
        "direct fit e5 -> minilm": evaluate(d / "direct.npz", **test),
        "composed (hub of two, one file)": evaluate(d / "composed.npz", **test),
        "hub of two: e5 -> hub -> minilm": evaluate(d / "hub2" / "e5.npz", d / "hub2" / "minilm.npz", **test),
        "hub of three (+ e5-256)": evaluate(d / "hub3" / "e5.npz", d / "hub3" / "minilm.npz", **test),
        "chain e5 -> e5-256 -> minilm": evaluate(d / "down.npz", d / "up.npz", **test),
        "direct fit, inverted: minilm -> e5": evaluate(d / "back.npz", **back),
        "hub of two: minilm -> hub -> e5": evaluate(d / "hub2" / "minilm.npz", d / "hub2" / "e5.npz", **back),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp))
    pairs = {r["pairs"] for r in rows.values()}
    print(f"{pairs.pop()} held-out pairs (retrieval among all of them); every map fitted on the other pairs")
    print("| map | top-1 | top-10 | MRR | mean cosine |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['top1']:.3f} | {r['top10']:.3f} | {r['mrr']:.3f} | {r['cosine']['mean']:.3f} |")


if __name__ == "__main__":
    main()
