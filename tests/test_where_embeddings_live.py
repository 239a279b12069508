"""JSON lines through files and pipes, llm collections in SQLite, the FAISS/JSON export, the
threshold translation, completion and log-friendly progress: each checked on real files and
real processes, against values computed here."""
import json
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from procalign import load_transform
from procalign.cli import app
from conftest import FIXTURES

runner = CliRunner(env={"COLUMNS": "200"})
CLI = [sys.executable, "-m", "procalign"]


def reference(t, x):
    return t.scale * (np.asarray(x, np.float64) - t.source_mean) @ t.matrix + t.target_mean


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    fixtures = FIXTURES
    d = tmp_path_factory.mktemp("live")
    t = d / "t.npz"
    r = runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "-o", str(t), "--no-report"])
    assert r.exit_code == 0, r.output
    return d, t, load_transform(t), np.load(fixtures / "e5.npy"), np.load(fixtures / "minilm.npy")


def write_jsonl(path, x, extra=True):
    with open(path, "w") as f:
        for i, row in enumerate(x):
            record = {"id": f"doc{i}", "text": f"item {i}", "embedding": row.tolist(), "n": i} if extra \
                else {"embedding": row.tolist()}
            f.write(json.dumps(record) + "\n")
    return path


def test_jsonl_round_trip_keeps_keys_order_and_values(fitted):
    d, t_path, t, x, _ = fitted
    src = write_jsonl(d / "in.jsonl", x[:300])
    r = runner.invoke(app, ["apply", str(t_path), str(src), "-o", str(d / "out.jsonl")])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in open(d / "out.jsonl")]
    assert [list(rec) for rec in records[:2]] == [["id", "text", "embedding", "n"]] * 2
    assert [rec["id"] for rec in records] == [f"doc{i}" for i in range(300)]
    assert [rec["n"] for rec in records] == list(range(300))
    got = np.array([rec["embedding"] for rec in records])
    np.testing.assert_allclose(got, reference(t, x[:300]), atol=2e-6)


@pytest.mark.parametrize("ids", [lambda i: i * 3, lambda i: f"doc{i}"])
def test_jsonl_ids_become_an_h5_ids_dataset(fitted, ids):
    d, t_path, t, x, _ = fitted
    src = d / "ids.jsonl"
    with open(src, "w") as f:
        for i, row in enumerate(x[:50]):
            f.write(json.dumps({"id": ids(i), "embedding": row.tolist()}) + "\n")
    out = d / "ids.h5"
    r = runner.invoke(app, ["apply", str(t_path), str(src), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    import h5py
    with h5py.File(out) as h:
        got = [v.decode() if isinstance(v, bytes) else int(v) for v in h["ids"][()]]
        assert got == [ids(i) for i in range(50)]
        np.testing.assert_allclose(h["embeddings"][()], reference(t, x[:50]), atol=2e-6)


@pytest.mark.parametrize("ext", ["parquet", "npy", "h5"])
def test_jsonl_with_other_keys_into_another_format(fitted, ext):
    # the other keys stay behind (a note says so); ids go where the format carries them
    d, t_path, t, x, _ = fitted
    src = write_jsonl(d / "keys.jsonl", x[:70])
    out = d / f"keys.{ext}"
    r = runner.invoke(app, ["apply", str(t_path), str(src), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "other JSON keys are not carried" in r.output
    if ext == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(out)
        assert table.column_names == ["id", "embedding"]
        assert table.column("id").to_pylist() == [f"doc{i}" for i in range(70)]
        got = np.array(table.column("embedding").to_pylist())
    elif ext == "h5":
        import h5py
        with h5py.File(out) as h:
            assert [v.decode() for v in h["ids"][()]] == [f"doc{i}" for i in range(70)]
            got = h["embeddings"][()]
    else:
        got = np.load(out)
    np.testing.assert_allclose(got, reference(t, x[:70]), atol=2e-6)


def test_a_real_pipe_carries_records_only(fitted):
    d, t_path, t, x, _ = fitted
    src = write_jsonl(d / "pipe.jsonl", x[:100])
    shell = f"cat {src} | {sys.executable} -m procalign apply {t_path} - -o - | {sys.executable} -c " \
            "\"import sys, json; rows = [json.loads(l) for l in sys.stdin]; print(len(rows), rows[7]['id'])\""
    p = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["100", "doc7"]
    assert "-> stdout" in p.stderr  # the summary goes to stderr, never into the records


def test_a_malformed_line_names_its_number(fitted):
    d, t_path, _, x, _ = fitted
    src = write_jsonl(d / "bad.jsonl", x[:20])
    lines = open(src).read().splitlines()
    lines[12] = '{"id": "x", "embedding": [1, 2'
    src.write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["apply", str(t_path), str(src), "-o", str(d / "bad_out.jsonl")])
    assert r.exit_code == 4 and "line 13 is not JSON" in r.stderr, r.output
    assert not (d / "bad_out.jsonl").exists()
    p = subprocess.run(CLI + ["apply", str(t_path), "-", "-o", "-"], input='{"embedding": "no"}\n',
                       capture_output=True, text=True)
    assert p.returncode == 4 and "line 1 has no list 'embedding'" in p.stderr and p.stdout == ""


def test_fit_and_evaluate_read_jsonl_like_the_other_formats(fitted, fixtures):
    d, *_ = fitted
    x, y = np.load(fixtures / "e5.npy"), np.load(fixtures / "minilm.npy")
    a = write_jsonl(d / "a.jsonl", x)
    order = np.random.default_rng(0).permutation(len(y))  # shuffled: pairs must join by id
    with open(d / "b.jsonl", "w") as f:
        for i in order:
            f.write(json.dumps({"id": f"doc{i}", "embedding": y[i].tolist()}) + "\n")
    got = runner.invoke(app, ["fit", str(a), str(d / "b.jsonl"), "--holdout", "0.2", "--seed", "7", "--json"])
    want = runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "--holdout", "0.2",
                               "--seed", "7", "--json"])
    assert got.exit_code == 0 and want.exit_code == 0, got.output
    g, w = json.loads(got.stdout), json.loads(want.stdout)
    assert g["pairing"]["mode"] == "id" and g["anchors"] == w["anchors"]
    assert g["report"]["heldout"]["aligned"]["top1"] == pytest.approx(w["report"]["heldout"]["aligned"]["top1"])
    p = subprocess.run(CLI + ["evaluate", str(d / "t.npz"), "-", str(d / "b.jsonl"), "--json", "-q"],
                       stdin=open(a), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["report"]["pairs"] == len(x)


def _llm_collection(path, name, x, model="e5-model"):
    """A collection written the way llm writes one, through llm's own library."""
    import llm
    import sqlite_utils
    from llm.embeddings_migrations import embeddings_migrations
    db = sqlite_utils.Database(path)
    embeddings_migrations.apply(db)
    cid = db["collections"].insert({"name": name, "model": model}).last_pk
    db["embeddings"].insert_all(({"collection_id": cid, "id": f"doc{i}", "embedding": llm.encode(row.tolist()),
                                  "content": f"text {i}", "content_hash": bytes([i % 256]) * 16,
                                  "metadata": json.dumps({"n": i}), "updated": 1700000000 + i}
                                 for i, row in enumerate(x)))
    return path


def _read_collection(path, name):
    import llm
    import sqlite_utils
    db = sqlite_utils.Database(path)
    c = llm.Collection(name, db, create=False)
    rows = list(db.query("select * from embeddings where collection_id = ? order by rowid", [c.id]))
    return c, rows


@pytest.mark.parametrize("same_db", [True, False])
def test_llm_collection_round_trip_read_back_with_llm(fitted, same_db):
    d, t_path, t, x, _ = fitted
    src = _llm_collection(d / f"emb{same_db}.db", "docs", x[:250])
    out = src if same_db else d / f"new{same_db}.db"
    r = runner.invoke(app, ["apply", str(t_path), f"{src}:docs", "-o", f"{out}:docs_minilm"])
    assert r.exit_code == 0, r.output
    import llm
    c, rows = _read_collection(out, "docs_minilm")
    assert c.model_id == t.target.name and c.count() == 250
    assert [r["id"] for r in rows] == [f"doc{i}" for i in range(250)]
    assert [r["content"] for r in rows[:3]] == ["text 0", "text 1", "text 2"]
    assert [json.loads(r["metadata"])["n"] for r in rows] == list(range(250))
    assert rows[5]["content_hash"] == bytes([5]) * 16 and rows[5]["updated"] == 1700000005
    got = np.array([llm.decode(r["embedding"]) for r in rows])
    np.testing.assert_allclose(got, reference(t, x[:250]), atol=2e-6)
    again = runner.invoke(app, ["apply", str(t_path), f"{src}:docs", "-o", f"{out}:docs_minilm"])
    assert again.exit_code == 6 and "--overwrite" in again.stderr
    assert _read_collection(out, "docs_minilm")[0].count() == 250


def test_a_killed_write_leaves_no_collection(fitted, tmp_path):
    _, t_path, _, _, _ = fitted
    big = np.random.default_rng(3).normal(size=(150_000, 384)).astype(np.float32)
    src = _llm_collection(tmp_path / "big.db", "docs", big)
    p = subprocess.Popen(CLI + ["apply", str(t_path), f"{src}:docs", "-o", f"{src}:mapped", "--batch-rows", "2000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert p.poll() is None, "the apply finished before the kill: make the collection larger"
    p.send_signal(signal.SIGKILL)
    p.wait()
    with sqlite3.connect(src) as db:
        assert db.execute("select count(*) from collections where name = 'mapped'").fetchone()[0] == 0
        assert db.execute("select count(*) from embeddings where collection_id not in "
                          "(select id from collections)").fetchone()[0] == 0


@pytest.mark.parametrize("options", [[], ["--no-centre"], ["--scale"], ["--inverse"]])
def test_faiss_export_applies_like_procalign(fixtures, tmp_path, options):
    import faiss
    inverse = options == ["--inverse"]
    t_path = tmp_path / "t.npz"
    r = runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "-o", str(t_path),
                            "--no-report"] + ([] if inverse else options))
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", str(t_path), "-o", str(tmp_path / "t.faiss")] + (options if inverse else []))
    assert r.exit_code == 0, r.output
    t = load_transform(t_path)
    t = t.inverse() if inverse else t
    x = np.load(fixtures / ("minilm.npy" if inverse else "e5.npy"))[:500]
    vt = faiss.read_VectorTransform(str(tmp_path / "t.faiss"))
    np.testing.assert_allclose(vt.apply(x), reference(t, x), atol=2e-6)
    r = runner.invoke(app, ["export", str(t_path), "-o", str(tmp_path / "t.json"), "--format", "json"]
                      + (options if inverse else []))
    doc = json.loads((tmp_path / "t.json").read_text())
    a, b = np.array(doc["A"]), np.array(doc["b"])
    np.testing.assert_allclose(x @ a.T + b, reference(t, x), atol=1e-9)
    assert (doc["source"]["name"], doc["target"]["name"]) == (t.source.name, t.target.name)


def test_faiss_export_refuses_a_normalising_transform(fixtures, tmp_path):
    t_path = tmp_path / "tn.npz"
    assert runner.invoke(app, ["fit", str(fixtures / "e5.npy"), str(fixtures / "minilm.npy"), "-o", str(t_path),
                               "--no-report", "--normalize"]).exit_code == 0
    r = runner.invoke(app, ["export", str(t_path), "-o", str(tmp_path / "tn.faiss")])
    assert r.exit_code == 2 and "--format json" in r.stderr and not (tmp_path / "tn.faiss").exists()


def test_threshold_keeps_the_share_of_pairs_on_held_out_items(fixtures, tmp_path):
    """Estimated on one half of the anchors, checked on the other half, over three splits.

    e5's cosines crowd between 0.8 and 0.9 (0.8 keeps 90% of pairs, 0.85 keeps 22%), so which
    items land in a half moves the share by a few hundredths at the steepest cut: the mean error
    over splits is what the estimate promises (within 0.02), a single split within 0.04.
    """
    from procalign.math.thresholds import pair_cosines, share_above
    x, y = np.load(fixtures / "e5.npy"), np.load(fixtures / "minilm.npy")
    errors = {cut: [] for cut in (0.75, 0.8, 0.85, 0.9)}
    for seed in range(3):
        half = np.random.default_rng(seed).permutation(len(x))
        fit_idx, check_idx = half[: len(x) // 2], half[len(x) // 2:]
        np.save(tmp_path / "xa.npy", x[fit_idx]), np.save(tmp_path / "ya.npy", y[fit_idx])
        t_path = tmp_path / "t.npz"
        assert runner.invoke(app, ["fit", str(tmp_path / "xa.npy"), str(tmp_path / "ya.npy"), "-o", str(t_path),
                                   "--no-report", "--overwrite"]).exit_code == 0
        held_x, held_y = pair_cosines(x[check_idx]), pair_cosines(y[check_idx])
        for cut in errors:
            r = runner.invoke(app, ["threshold", str(t_path), str(cut), "--anchors", str(tmp_path / "xa.npy"),
                                    str(tmp_path / "ya.npy"), "--json"])
            assert r.exit_code == 0, r.output
            doc = json.loads(r.stdout)
            assert set(doc) >= {"source_threshold", "target_threshold", "pairs", "agreement", "share_above"}
            errors[cut].append(abs(share_above(held_x, cut) - share_above(held_y, doc["target_threshold"])))
    for cut, errs in errors.items():
        assert np.mean(errs) <= 0.02 and max(errs) <= 0.04, (cut, errs)


def test_completion_script_is_offered():
    p = subprocess.run(CLI + ["--show-completion", "bash"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/bash"})
    assert p.returncode == 0 and "complete" in p.stdout and "procalign" in p.stdout, p.stderr


def test_logs_get_a_progress_line_every_few_seconds(capsys):
    from procalign.cli.render import LineProgress
    progress = LineProgress(every=0.0)
    progress.start("applying", 1000)
    progress.advance(250)
    progress.advance(750)
    progress.stop()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("applying: 250 rows of 1,000 (25%)") and "1,000 rows of 1,000 (100%)" in lines[-1]
