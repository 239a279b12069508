"""On real embeddings (e5 -> MiniLM, committed fixtures): the map must actually work."""
import pytest

from procalign.formats import parse_location
from procalign.pipeline.fit import FitJob
from procalign.pipeline.fit_and_save import fit_and_save
from procalign.math.procrustes import FitOptions


@pytest.mark.parametrize("pair", [("e5.npy", "minilm.npy"), ("e5.parquet", "minilm.parquet")])
def test_heldout_identity_retrieval_far_above_unaligned(fixtures, pair):
    job = FitJob(parse_location(str(fixtures / pair[0])), parse_location(str(fixtures / pair[1])),
                 holdout=0.2, seed=7)
    meta = fit_and_save(job, None)[1].metadata
    held = meta["report"]["heldout"]
    assert held["pairs"] > 400
    assert held["aligned"]["top1"] > 0.85
    assert held["unaligned"]["top1"] < 0.05
    assert held["shuffled_control"]["top1"] < 0.05
    assert held["aligned"]["cosine"]["mean"] > held["unaligned"]["cosine"]["mean"] + 0.4


def test_centering_is_the_better_default_on_real_models(fixtures):
    def top1(centre):
        job = FitJob(parse_location(str(fixtures / "e5.npy")), parse_location(str(fixtures / "minilm.npy")),
                     FitOptions(centre=centre), holdout=0.2, seed=7)
        return fit_and_save(job, None)[1].provenance["report"]["heldout"]["aligned"]["top1"]
    assert top1(True) > top1(False) + 0.3


def test_whitened_and_affine_beat_orthogonal_on_real_models_and_auto_takes_one(fixtures):
    job = FitJob(parse_location(str(fixtures / "e5.npy")), parse_location(str(fixtures / "minilm.npy")),
                 holdout=0.2, seed=7, method="auto")
    t = fit_and_save(job, None)[1]
    rows = t.provenance["report"]["heldout"]["methods"]
    assert rows["whitened"]["top1"] > rows["orthogonal"]["top1"] + 0.02
    assert rows["affine"]["top1"] > rows["orthogonal"]["top1"]
    assert rows["orthogonal"]["isometry"] and not rows["whitened"]["isometry"]
    assert t.method in ("whitened", "affine") and t.provenance["warnings"] == []
