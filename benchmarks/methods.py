"""Quality of every method on the committed fixtures (not speed; never part of `make test`).

Prints the README's method table (e5 -> MiniLM, --holdout 0.2 --seed 7) and the sweep behind
the default of --reweight: held-out MRR of the whitened map for p in 0 .. 1, averaged over
several hold-out seeds, in both directions and at several anchor counts.

    python benchmarks/methods.py [--seeds 10]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from procalign import AlignmentStats, FitOptions
from procalign.formats import parse_location
from procalign.math.fold import HoldoutSplit
from procalign.math.methods import WHITENED, fit_map
from procalign.math.metrics import retrieval
from procalign.pipeline.fit import FitJob
from procalign.pipeline.fit_and_save import fit_and_save

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REWEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def method_table() -> None:
    job = FitJob(parse_location(str(FIXTURES / "e5.npy")), parse_location(str(FIXTURES / "minilm.npy")),
                 holdout=0.2, seed=7, method="auto")
    t = fit_and_save(job, None)[1]
    held = t.provenance["report"]["heldout"]
    print(f"e5 -> MiniLM, {held['pairs']} held-out pairs, {t.provenance['anchors']} anchors; auto chose {t.method}")
    print("| method | held-out top-1 | MRR | mean cosine | isometry? | kNN@10 kept (source) |")
    print("|---|---|---|---|---|---|")
    for name, row in held["methods"].items():
        print(f"| {name} | {row['top1']:.3f} | {row['mrr']:.3f} | {row['cosine']['mean']:.3f} | "
              f"{'yes' if row['isometry'] else 'no'} | {row['source_knn10_overlap']:.3f} |")
    print(f"| ridge alpha 1e-3 (report baseline) | {held['ridge_affine']['top1']:.3f} | "
          f"{held['ridge_affine']['mrr']:.3f} | {held['ridge_affine']['cosine']['mean']:.3f} | no | - |")


def reweight_sweep(seeds: int) -> None:
    e5, minilm = np.load(FIXTURES / "e5.npy"), np.load(FIXTURES / "minilm.npy")
    print(f"\nwhitened map, held-out MRR by --reweight p (mean over {seeds} hold-out seeds)")
    print("| direction | anchors | " + " | ".join(f"p={p}" for p in REWEIGHTS) + " |")
    print("|---|---|" + "---|" * len(REWEIGHTS))
    for name, x, y in (("e5 -> MiniLM", e5, minilm), ("MiniLM -> e5", minilm, e5)):
        for held_share in (0.8, 0.5, 0.2):
            mrr = {p: [] for p in REWEIGHTS}
            for seed in range(seeds):
                held = HoldoutSplit(held_share, seed).held(0, len(x))
                stats = AlignmentStats.from_batch(x[~held], y[~held], with_gram=True)
                for p in REWEIGHTS:
                    affine, _ = fit_map(stats, FitOptions(), WHITENED, p)
                    mrr[p].append(retrieval(affine(x[held]), y[held])["mrr"])
            print(f"| {name} | {stats.n} | " + " | ".join(f"{np.mean(mrr[p]):.4f}" for p in REWEIGHTS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="hold-out seeds per cell (10: about 8 CPU-minutes)")
    args = parser.parse_args()
    method_table()
    reweight_sweep(args.seeds)


if __name__ == "__main__":
    main()
