"""Pair the rows of anchor files: by id when all carry ids, else by position (two files, or N for a hub)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..formats import Source
from ..math.fold import NonFinitePair


@dataclass
class Pairing:
    mode: str                      # "id" or "position"
    pairs: int
    only_source: int = 0
    only_target: int = 0
    source_index: np.ndarray | None = field(default=None, repr=False)  # increasing
    target_index: np.ndarray | None = field(default=None, repr=False)
    ids: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {"mode": self.mode, "pairs": self.pairs, "ids_only_in_source": self.only_source,
                "ids_only_in_target": self.only_target}

    def file_row(self, side: str, pair: int) -> int:
        """The row of the source or target file that holds pair ``pair``."""
        if self.mode == "position":
            return int(pair)
        return int((self.source_index if side == "source" else self.target_index)[pair])

    def ids_of(self, first: int, n: int) -> np.ndarray | None:
        return None if self.ids is None else self.ids[first:first + n]

    def error(self, e: NonFinitePair, source: Source, target: Source) -> InputError:
        """The file-level error for a pair the fold refused."""
        path = source.path if e.side == "source" else target.path
        row = self.file_row(e.side, e.index)
        if "normalised" in e.what:
            return InputError(f"zero vector at row {row} cannot be L2-normalised; drop it or fit without "
                              "--normalize", path)
        return InputError(f"NaN or Inf at row {row}; drop or repair that row", path)


def _check_unique(ids: np.ndarray, path: str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        dup = uniq[counts > 1]
        raise InputError(f"{len(ids) - len(uniq)} duplicate ids (first: {dup[0]!r}); anchor ids must be "
                         "unique, deduplicate the file", path)


def comparable_ids(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids as values that compare exactly: numpy compares uint64 with int64 through float64,
    which pairs distinct large ids; mixed kinds become Python ints (or strs) instead."""
    kinds = {a.dtype.kind, b.dtype.kind}
    if kinds <= {"i"} or kinds <= {"u"}:
        return a, b
    if kinds <= {"i", "u"}:
        return a.astype(object), b.astype(object)
    as_text = lambda ids: np.array([str(v) if not isinstance(v, str) else v for v in ids.tolist()], dtype=object)
    if kinds & {"i", "u"}:  # numbers on one side, text on the other: compare as text (5 and "5" agree)
        return as_text(a), as_text(b)
    return a.astype(object) if a.dtype.kind == "U" else a, b.astype(object) if b.dtype.kind == "U" else b


def pair_anchors(source: Source, target: Source, by_position: bool = False) -> Pairing:
    for r in (source, target):
        if r.rows == 0:
            raise InputError("file has zero rows; anchors need at least one pair", r.path)
    sid = None if by_position else source.ids()
    tid = None if by_position else target.ids()
    if sid is None or tid is None:
        if source.rows != target.rows:
            raise InputError(f"{source.rows} rows here but {target.rows} in {target.path}; without ids on "
                             "both sides, row i of each file must be the same item", source.path)
        return Pairing("position", source.rows)
    sid, tid = comparable_ids(sid, tid)
    _check_unique(sid, source.path)
    _check_unique(tid, target.path)
    try:
        common, si, ti = np.intersect1d(sid, tid, assume_unique=True, return_indices=True)
    except TypeError:
        common = []
    if len(common) == 0:
        raise InputError(f"no id is shared with {target.path} (ids like {sid[0]!r} vs {tid[0]!r}); check "
                         "--id-column or pass --by-position", source.path)
    order = np.argsort(si, kind="stable")
    return Pairing("id", len(common), len(sid) - len(common), len(tid) - len(common),
                   si[order].astype(np.int64), ti[order].astype(np.int64), common[order])


def iter_pairs(source: Source, target: Source, pairing: Pairing,
               batch_rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(first_pair_index, x, y)`` with x[i] and y[i] the same item."""
    if pairing.mode == "position":
        yield from _zip_exact(source, target, batch_rows)
        return
    for a in range(0, pairing.pairs, batch_rows):
        yield a, *take_pairs(source, target, pairing, np.arange(a, min(a + batch_rows, pairing.pairs)))


def take_pairs(source: Source, target: Source, pairing: Pairing, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the given pair indices, ``(x, y)`` in that order."""
    if pairing.mode == "position":
        return take_rows(source, pairs), take_rows(target, pairs)
    return take_rows(source, pairing.source_index[pairs]), take_rows(target, pairing.target_index[pairs])


def take_rows(reader: Source, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``reader`` in that order (random access: the file is read in increasing
    row order, then the rows are put back in the order asked)."""
    order = np.argsort(index, kind="stable")
    out = np.empty((len(index), reader.dim), reader.dtype)
    out[order] = reader.take(index[order])
    return out


def _exact(reader: Source, rows: int) -> Iterator[np.ndarray]:
    """Chunks of exactly ``rows`` rows (the last may be short), whatever the reader yields."""
    pending: list[np.ndarray] = []
    have = 0
    for batch in reader.batches(rows):
        e = batch.embeddings
        if not pending and len(e) == rows:
            yield e
            continue
        pending.append(np.array(e))
        have += len(e)
        while have >= rows:
            block = np.concatenate(pending)
            yield block[:rows]
            pending, have = [block[rows:]], have - rows
    if have:
        yield np.concatenate(pending)


def _zip_exact(source, target, rows):
    start = 0
    for x, y in zip(_exact(source, rows), _exact(target, rows)):
        yield start, x, y
        start += len(x)


@dataclass
class Joined:
    """The items N anchor files share: ``indices[k][p]`` is the row of file k that holds item p."""

    mode: str                      # "id" or "position"
    pairs: int
    unmatched: list[int]           # per file, rows whose id the other files lack
    indices: list[np.ndarray] | None = field(default=None, repr=False)
    ids: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {"mode": self.mode, "items": self.pairs, "ids_not_shared": self.unmatched}


def join_anchors(sources: list[Source], by_position: bool = False) -> Joined:
    """Join N files as `pair_anchors` pairs two: by id when every file carries ids (the items all
    share, in the first file's order), else by position (all files must have as many rows)."""
    for r in sources:
        if r.rows == 0:
            raise InputError("file has zero rows; anchors need at least one item", r.path)
    ids = None if by_position else [r.ids() for r in sources]
    if ids is None or any(i is None for i in ids):
        rows = {r.rows for r in sources}
        if len(rows) > 1:
            raise InputError(f"files have {', '.join(str(r.rows) for r in sources)} rows; without ids in every file, "
                             "row i of each must be the same item", sources[0].path)
        return Joined("position", sources[0].rows, [0] * len(sources))
    common = ids[0]
    for k in range(1, len(sources)):  # pairwise with the first: ids compared exactly (`comparable_ids`)
        common, other = comparable_ids(common, ids[k])
        _check_unique(other, sources[k].path)
        common = np.intersect1d(common, other, assume_unique=True) if len(common) else common
    _check_unique(comparable_ids(ids[0], ids[0])[0], sources[0].path)
    if len(common) == 0:
        raise InputError(f"no id is shared by all {len(sources)} files; check --id-column or pass --by-position",
                         sources[0].path)
    indices = []
    for k, r in enumerate(sources):
        own, shared = comparable_ids(ids[k], common)
        _, index, _ = np.intersect1d(own, shared, assume_unique=True, return_indices=True)
        indices.append(index)
    order = np.argsort(indices[0], kind="stable")  # the first file's row order
    indices = [index[order].astype(np.int64) for index in indices]
    return Joined("id", len(common), [len(i) - len(common) for i in ids], indices, ids[0][indices[0]])


def iter_joined(sources: list[Source], joined: Joined, batch_rows: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield ``(first item index, [rows of file 1, rows of file 2, ...])``, row i the same item in each."""
    if joined.mode == "position":
        start = 0
        for blocks in zip(*(_exact(r, batch_rows) for r in sources)):
            yield start, list(blocks)
            start += len(blocks[0])
        return
    for a in range(0, joined.pairs, batch_rows):
        items = np.arange(a, min(a + batch_rows, joined.pairs))
        yield a, [take_rows(r, index[items]) for r, index in zip(sources, joined.indices)]
