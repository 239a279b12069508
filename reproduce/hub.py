"""Experiment 5: one hub space for every model (`procalign fit-hub`) against direct pairwise fits.

`procalign fit-hub` aligns all models at once (generalised Procrustes) and writes one isometry
per model into the hub; queries of model A reach model B's space through the hub, A's map
then B's map inverted (`Transform.inverse`). The direct fit is `procalign fit A B` (orthogonal,
centred), as in the retrieval table. For two models the hub is the direct fit; with three or
more (``--models e5,minilm,mpnet``) each pair gives up some accuracy for one shared space.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procalign import load_transform

from .fitting import save_anchors
from .retrieval import scores


def fit_hub(spaces: list, workdir: Path) -> dict:
    """Run `procalign fit-hub` on every model's anchors; model name -> its map into the hub."""
    files = [str(save_anchors(workdir, f"anchors-{s.name}", s.anchors)) for s in spaces]
    output = workdir / "hub"
    command = [sys.executable, "-m", "procalign", "fit-hub", *files, "--names", ",".join(s.name for s in spaces),
               "-o", str(output), "--quiet", "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[1:])}` exited {done.returncode}: {done.stderr.strip()}")
    return {s.name: load_transform(output / f"{s.name}.npz") for s in spaces}


def hub_experiment(spaces: list, pairs: list, workdir: Path) -> list[dict]:
    """nDCG@10 and recall@10 through the hub next to the direct fit, per retrieval pair."""
    hub = fit_hub(spaces, workdir)
    by_name = {s.name: s for s in spaces}
    rows = []
    for pair in pairs:
        q, d = by_name[pair.query_model], by_name[pair.document_model]
        through = hub[d.name].inverse()(hub[q.name](q.queries))
        rows.append({"pair": f"{q.name} -> {d.name}", "models_in_hub": len(spaces),
                     "direct": pair.scores["orthogonal"], "hub": scores(through, d.documents)})
    return rows
