"""Pair the rows of two anchor files: by id when both carry ids, else by position."""
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
    """The rows of the given pair indices, ``(x, y)`` in that order (random access: each file is
    read in increasing row order, then the rows are put back in pair order)."""
    def rows(reader: Source, index: np.ndarray) -> np.ndarray:
        order = np.argsort(index, kind="stable")
        out = np.empty((len(index), reader.dim), reader.dtype)
        out[order] = reader.take(index[order])
        return out

    if pairing.mode == "position":
        return rows(source, pairs), rows(target, pairs)
    return rows(source, pairing.source_index[pairs]), rows(target, pairing.target_index[pairs])


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
