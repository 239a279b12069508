"""Real text that ships with every CPython: the standard library's docstrings.

* The retrieval task: for a documented function, class or method, the query is the one-line
  summary (the docstring's first paragraph) and its one relevant document is the rest of the
  docstring. Queries and documents are deduplicated, so each query has exactly one answer.
* The anchors: the 2,600 docstring first paragraphs of the committed fixtures (already embedded
  by e5 and MiniLM), the evaluation pairs being drawn from objects outside them; an anchor that
  equals a paragraph of an evaluation docstring, or occurs in a document, is dropped; then
  more paragraphs, of other docstrings and of the interactive help topics (`pydoc_data`), under
  the same rule.
* The word corpus (for the retraining experiment): every docstring and comment of the standard
  library's source files, plus the help topics, as token lists.

Everything is sorted and sampled with explicit seeds, so the texts depend only on the Python
version (the report names it).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "tests",
        "lib2to3", "ensurepip", "venv", "pydoc_data", "__main__", "xxsubtype", "site-packages"}
MIN_QUERY, MAX_QUERY = 20, 200        # characters of a summary line
MIN_ANCHOR, MAX_ANCHOR = 40, 600      # characters of an extra anchor paragraph
MIN_DOC, MAX_DOC = 80, 500            # characters of a document (the rest of the docstring)
WORD = re.compile(r"[a-z][a-z]+")


@dataclass(frozen=True)
class RetrievalTexts:
    queries: list[str]       # queries[i] is answered by documents[i] alone
    documents: list[str]
    names: list[str]         # the object each pair comes from
    anchors: list[str]       # disjoint from every query and document paragraph
    anchor_rows: np.ndarray  # their rows in the anchor pool given to `retrieval_texts`
    extra_anchors: list[str]  # more anchor paragraphs, from other docstrings and the help topics


def _paragraphs(doc: str) -> list[str]:
    return [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n") if p.strip()]


def module_names(skip: set[str] = SKIP) -> list[str]:
    """Public standard-library modules and their submodules, but those named in ``skip``."""
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in skip)
    for top in list(names):  # the submodules of stdlib packages (email.*, xml.*, ...)
        try:
            package = importlib.import_module(top)
        except Exception:  # platform-specific modules
            continue
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), top + "."):
            if not any(part.startswith("_") or part in skip for part in info.name.split(".")):
                names.append(info.name)
    return sorted(set(names))


def members(name: str, module) -> list[tuple[str, object]]:
    """The module and its public classes, functions and methods, with qualified names."""
    members = [(name, module)]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", name) != name:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            members.append((f"{name}.{attr}", obj))
            if inspect.isclass(obj):
                members += [(f"{name}.{attr}.{m}", meth) for m, meth in sorted(vars(obj).items())
                            if not m.startswith("_") and (inspect.isfunction(meth) or inspect.ismethoddescriptor(meth))]
    return members


def stdlib_docstrings() -> dict[str, list[str]]:
    """Qualified name -> docstring paragraphs (whitespace collapsed), for every public object."""
    docs: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in module_names():
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            for qual, obj in members(name, module):
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and doc.strip():
                    docs[qual] = _paragraphs(doc)
    return docs


def _summary_and_body(qual: str, paragraphs: list[str]) -> tuple[str, str] | None:
    short = qual.rsplit(".", 1)[-1]
    if paragraphs and paragraphs[0].startswith(short + "("):  # a builtin's signature line
        paragraphs = paragraphs[1:]
    if len(paragraphs) < 2:
        return None
    summary, body = paragraphs[0], " ".join(paragraphs[1:])[:MAX_DOC]
    if MIN_QUERY <= len(summary) <= MAX_QUERY and len(body) >= MIN_DOC:
        return summary, body
    return None


def help_topic_paragraphs() -> list[str]:
    from pydoc_data.topics import topics
    return [p for key in sorted(topics) for p in _paragraphs(topics[key])]


def retrieval_texts(pool_ids: list[str], pool_texts: list[str], max_pairs: int = 800, seed: int = 0,
                    docs: dict | None = None, extra: int = 0) -> RetrievalTexts:
    """Up to ``max_pairs`` (summary, body) pairs from objects outside the anchor pool
    (``pool_ids``, ``pool_texts``: the committed fixtures), the pool's texts that share no
    paragraph with them as anchors (in pool order), and ``extra`` more anchor paragraphs."""
    docs = stdlib_docstrings() if docs is None else docs
    excluded = set(pool_ids)
    pairs, seen_q, seen_d = [], set(), set()
    for qual in sorted(docs):
        found = None if qual in excluded else _summary_and_body(qual, docs[qual])
        if found and found[0] not in seen_q and found[1] not in seen_d:
            seen_q.add(found[0]), seen_d.add(found[1])
            pairs.append((qual, *found))
    pick = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:max_pairs])
    chosen = [pairs[i] for i in pick]
    used = {p for qual, _, _ in chosen for p in docs[qual]} | {t for _, q, d in chosen for t in (q, d)}
    rows = np.array([i for i, text in enumerate(pool_texts)
                     if text not in used and not any(text in d for _, _, d in chosen)], dtype=np.int64)
    extra_texts = _extra_anchors(docs, used | set(pool_texts), [d for _, _, d in chosen], extra, seed)
    return RetrievalTexts([q for _, q, _ in chosen], [d for _, _, d in chosen], [n for n, _, _ in chosen],
                          [pool_texts[i] for i in rows], rows, extra_texts)


def _extra_anchors(docs: dict, excluded: set, documents: list[str], count: int, seed: int) -> list[str]:
    """``count`` paragraphs (seeded sample) of docstrings and help topics, none in ``excluded``
    nor inside an evaluation document."""
    if count <= 0:
        return []
    candidates = sorted({p for qual in docs for p in docs[qual]} | set(help_topic_paragraphs()))
    candidates = [p for p in candidates if MIN_ANCHOR <= len(p) <= MAX_ANCHOR and p not in excluded]
    picked = []
    for i in np.random.default_rng(seed + 1).permutation(len(candidates)):
        if not any(candidates[i] in d for d in documents):
            picked.append(candidates[i])
            if len(picked) == count:
                break
    return picked


def _source_texts(path: Path) -> list[str]:
    """The docstrings and comments of one source file."""
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    texts = [ast.get_docstring(n) or "" for n in ast.walk(tree)
             if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    texts.append(" ".join(line.strip()[1:] for line in source.splitlines() if line.strip().startswith("#")))
    return [t for t in texts if t]


def word_documents(source: bool = True) -> list[list[str]]:
    """Lower-case word lists: one per help topic paragraph and, with ``source``, one per
    docstring or comment block of the stdlib's source files; in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not SKIP & set(p.relative_to(root).parts)) if source else []
    texts = [t for path in files for t in _source_texts(path)] + help_topic_paragraphs()
    return [words for words in (WORD.findall(t.lower()) for t in texts) if len(words) >= 5]
