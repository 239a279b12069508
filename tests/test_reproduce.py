"""The `make reproduce` pipeline in small, on the committed fixtures (no model runs).

The fixtures pair 2,600 docstring paragraphs embedded by e5, MiniLM (384-d) and mpnet (768-d):
the first 2,000 serve as anchors, the last 600 as queries and documents of an identity
retrieval task.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reproduce import corpus, hub, report, retrieval, wordvectors
from reproduce.run import experiments

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = 2000
COUNTS = [100, 500, ANCHORS]
SMALL_WORDS = wordvectors.WordVectorSettings(vocabulary=400, min_count=3, window=4, dim=40, seed=0)


def space(fixtures: Path, name: str) -> retrieval.ModelSpace:
    vectors = np.load(fixtures / f"{name}.npy")
    return retrieval.ModelSpace(name, vectors[:ANCHORS], vectors[ANCHORS:], vectors[ANCHORS:])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    fixtures = ROOT / "fixtures"
    spaces = [space(fixtures, "e5"), space(fixtures, "minilm")]
    timings = {}
    out = experiments(spaces, tmp_path_factory.mktemp("fits"), timings,
                      lambda: corpus.word_documents(source=False), SMALL_WORDS, pairs=[spaces], counts=COUNTS)
    return out, timings, tmp_path_factory.mktemp("report")


def reference_ndcg(queries, documents):
    """nDCG@10 with one relevant document per query, by a full argsort."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    order = np.argsort(-(unit(queries) @ unit(documents).T), axis=1, kind="stable")
    rank = 1 + np.argmax(order == np.arange(len(queries))[:, None], axis=1)
    return float(np.mean(np.where(rank <= 10, 1 / np.log2(rank + 1), 0))), float(np.mean(rank <= 10))


def test_aligned_cross_model_retrieval_beats_unaligned_by_a_wide_margin(results):
    [p] = results[0]["retrieval"]
    assert (p.query_model, p.document_model) == ("e5", "minilm")
    assert p.scores["none"]["ndcg@10"] < 0.05
    for method in ("orthogonal", "whitened", "least_squares"):
        assert p.scores[method]["ndcg@10"] > 0.6, (method, p.scores[method])
    assert p.scores["orthogonal"]["ndcg@10"] > 20 * p.scores["none"]["ndcg@10"]
    # without centring the shared offset of each space stays in the way
    assert p.scores["none"]["ndcg@10"] < p.scores["orthogonal_raw"]["ndcg@10"] < p.scores["orthogonal"]["ndcg@10"]
    assert p.scores["native_document_model"]["ndcg@10"] == pytest.approx(1.0)


def test_scores_match_an_argsort_reference_and_the_fitted_transform(results, fixtures):
    [p] = results[0]["retrieval"]
    e5, minilm = np.load(fixtures / "e5.npy")[ANCHORS:], np.load(fixtures / "minilm.npy")[ANCHORS:]
    ndcg, recall = reference_ndcg(p.fits["orthogonal"].transform(e5), minilm)
    assert p.scores["orthogonal"] == pytest.approx({"ndcg@10": ndcg, "recall@10": recall})
    assert p.scores["none"] == pytest.approx(dict(zip(("ndcg@10", "recall@10"), reference_ndcg(e5, minilm))))
    q = p.fits["orthogonal"].transform.matrix  # the CLI's map is orthogonal, fitted on 2,000 anchors
    assert np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-6)
    assert p.fits["orthogonal"].report["anchors"] == ANCHORS


def test_anchor_curve_grows_and_saturates_within_the_counts(results):
    curves, saturation = results[0]["curve"], results[0]["saturation"]
    assert retrieval.anchor_counts(ANCHORS) == [100, 200, 500, 1000, ANCHORS]
    assert retrieval.anchor_counts(6706) == [100, 200, 500, 1000, 2000, 5000, 6706]
    ortho = [p["ndcg@10"] for p in curves["e5 -> minilm"]["orthogonal"]]
    assert [p["anchors"] for p in curves["e5 -> minilm"]["affine"]] == COUNTS
    assert ortho[-1] > ortho[0] + 0.2, ortho
    assert saturation["e5 -> minilm"] in COUNTS


def test_a_hub_of_two_models_retrieves_as_the_direct_fit(results):
    [row] = results[0]["hub"]
    assert row["pair"] == "e5 -> minilm" and row["models_in_hub"] == 2
    assert row["hub"]["ndcg@10"] == pytest.approx(row["direct"]["ndcg@10"], abs=0.01)


def test_a_hub_of_three_models_stays_close_to_the_direct_fits(tmp_path):
    spaces = [space(ROOT / "fixtures", name) for name in ("e5", "minilm", "mpnet")]
    direct = retrieval.evaluate_pair(spaces[2], spaces[0], tmp_path)  # 768-d queries, 384-d documents
    [row] = hub.hub_experiment(spaces, [direct], tmp_path)
    assert row["pair"] == "mpnet -> e5" and row["models_in_hub"] == 3
    assert direct.scores["none"]["ndcg@10"] < 0.05 < 0.6 < direct.scores["orthogonal"]["ndcg@10"]
    # one space for three models costs each pair a little against its own direct fit
    assert row["hub"]["ndcg@10"] > 0.6
    assert abs(row["hub"]["ndcg@10"] - row["direct"]["ndcg@10"]) < 0.05
    maps = hub.fit_hub(spaces, tmp_path / "again")
    assert {name: t.matrix.shape for name, t in maps.items()} == \
        {"e5": (384, 768), "minilm": (384, 768), "mpnet": (768, 768)}
    for t in maps.values():  # isometries into the hub
        assert np.allclose(t.matrix @ t.matrix.T, np.eye(t.matrix.shape[0]), atol=1e-6)
    assert "maps to keep instead of 6" in report.hub_summary([row])


def test_bound_rows_come_from_the_fit_report_and_hold(results):
    rows = results[0]["bound"]
    assert len(rows) == 4  # the retrieval pair and the word vectors, centred and raw
    for row in rows:
        assert row["achieved"] <= row["bound"] + 1e-9
        assert row["per_sample_achieved"] <= row["per_sample_bound"] + 1e-9


def test_alignment_restores_neighbours_of_retrained_word_vectors(results):
    recall = results[0]["retraining"]["recall"]
    assert recall["none"] < 0.1
    assert recall["orthogonal"] > recall["none"] + 0.1
    assert recall["orthogonal"] > 0.5 * recall["version2_own_index"]


def test_ppmi_and_truncated_svd_against_direct_formulas():
    counts = np.array([[0, 4, 1], [4, 0, 2], [1, 2, 6]], float)
    c = counts.sum(0) ** 0.75
    with np.errstate(divide="ignore"):
        expected = np.log(counts * c.sum() / (counts.sum(1)[:, None] * c[None, :]))
    assert np.allclose(wordvectors.ppmi(counts), np.where(counts > 0, np.maximum(expected, 0), 0))
    u, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(60, 60)))
    spectrum = np.r_[[50.0, 20, 10, 5, 2], np.full(55, 0.01)]
    v = wordvectors.truncated_svd_vectors((u * spectrum) @ u.T, 5, seed=1)
    assert np.allclose(v @ v.T, (u[:, :5] * spectrum[:5]) @ u[:, :5].T, atol=1e-6)  # the best rank-5 part


def test_report_has_tables_and_figures(results):
    out, timings, directory = results
    figures = report.figures(directory, out)
    env = {"python": "3", "platform": "p", "cpu": "c", "cores": 2, "packages": {"numpy": np.__version__}}
    text = report.render(out, figures, env, timings, {"models": ["e5", "minilm"], "pairs": 600,
                                                      "anchors": ANCHORS, "fixture_anchors": ANCHORS,
                                                      "fixture_agreement": {"e5": 0.99991},
                                                      "window": 4})
    for path in figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({path.name})" in text
    assert "| e5 | minilm |" in text and "## 4. The bound" in text and "| e5 -> minilm | 2 |" in text
    report.write_json(directory / "results.json", out)
    assert json.loads((directory / "results.json").read_text())["retrieval"][0]["scores"]["none"]


def test_retrieval_texts_are_disjoint_from_the_fixture_anchors():
    # in a child process: the corpus imports the whole standard library
    code = ("import json; from reproduce import corpus, models; ids, texts = models.fixture_pool(); "
            "t = corpus.retrieval_texts(ids, texts, 300, 0, extra=200); print(json.dumps("
            "[t.queries, t.documents, t.names, t.anchors, t.anchor_rows.tolist(), ids, texts, t.extra_anchors]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    queries, documents, names, anchors, rows, ids, texts, extra = json.loads(done.stdout)
    assert len(queries) == len(documents) == 300 and len(set(queries)) == len(set(documents)) == 300
    assert not set(names) & set(ids)
    assert len(ids) == 2600 and len(anchors) > 2500
    assert anchors == [texts[i] for i in rows]
    assert len(extra) == len(set(extra)) == 200 and not set(extra) & set(texts)
    assert not set(anchors + extra) & (set(queries) | set(documents))
    assert not any(a in d for a in anchors + extra for d in documents)
    assert not set(anchors) & (set(queries) | set(documents))
    assert not any(a in d for a in anchors[:500] for d in documents)
