"""The source and sink interface every format module implements.

A `Source` yields `Batch`es of rows in order (`batches`). It knows ``dim`` and ``dtype`` before
any data is read; ``rows`` may be None when the count is unknown until the end (a stream).
Sources with random access also implement `take` (anchors joined by id). What a sink of the
same format needs to carry the rest of the file over (other columns, datasets, schema) is
declared by the source's ``layout`` and travels as data, never by reaching into the source.

A `Sink` is constructed from a path and a `SinkSpec`, receives chunks in order with `write`,
hands them to the OS with `flush`, and ends with exactly one of `finish` (the file is complete)
or `abort` (handles released, the caller deletes the files). Files a sink keeps beside its path
while writing are listed by `sidecars_for`, by exact name.

Formats never import the math or the jobs; they only move float arrays and the other columns
of each row ("extra", carried through untouched).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from .registry import ReadOptions  # noqa: F401  (part of the interface)

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
STAMP_FIELDS = ("space", "from_space", "transform", "direction")


def parse_stamp(raw, path: str, where: str) -> dict | None:
    """A stamp as stored (JSON text or bytes), checked: a JSON object whose fields are strings."""
    if raw is None:
        return None
    try:
        stamp = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        stamp = raw
    if not isinstance(stamp, dict) or not isinstance(stamp.get("space"), str) or \
            not all(isinstance(stamp.get(k, ""), (str, type(None))) for k in STAMP_FIELDS):
        shown = str(raw)[:60] + ("..." if len(str(raw)) > 60 else "")
        raise InputError(f"the procalign stamp in {where} is malformed ({shown!r}); delete it, or re-create "
                         "the data with procalign apply", path)
    return stamp


def take_by_segment(indices, starts, dim: int, dtype, read) -> np.ndarray:
    """Rows ``indices`` of a file stored as consecutive segments (row groups, part files)
    starting at rows ``starts``: ``read(k, local_indices)`` returns rows of segment k, and each
    segment is visited once, whatever the order of ``indices``."""
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), dim), dtype)
    segment = np.searchsorted(starts, indices, side="right") - 1
    for k in np.unique(segment):
        chosen = segment == k
        out[chosen] = read(int(k), indices[chosen] - int(starts[k]))
    return out


@dataclass
class Batch:
    start: int                   # index of the first row in the source
    embeddings: np.ndarray       # (rows, dim); may be a reused buffer, see Source.batches
    extra: Any = None            # pass-through payload for a sink of the same format
    ids: np.ndarray | None = None


@dataclass(frozen=True)
class SinkSpec:
    """What a sink writes: the shape and dtype of the rows, the stamp, and what to carry over.

    ``rows`` is None when unknown until `Sink.finish` (a stream). ``like`` is the source's
    ``layout`` when source and sink share a format (then other columns and datasets pass
    through), else None. ``name`` is the dataset/column to write (None: the format's default).
    ``ids`` ("int", "uint" or "str") asks a sink of another format than the source to write the ids
    each batch carries (a parquet ``id`` column, an HDF5 ``ids`` dataset).
    """

    dim: int
    dtype: np.dtype
    rows: int | None
    stamp: dict | None = None
    like: Any = None
    name: str | None = None
    ids: str | None = None


class BufferRing:
    """A few reusable buffers handed out in turn, so streaming allocates nothing per chunk.

    A buffer handed out is overwritten ``size`` hand-outs later: a consumer may keep at most
    ``size - 1`` batches alive at a time.
    """

    def __init__(self, shape: tuple[int, int], dtype, size: int = 4):
        self.buffers = [np.empty(shape, dtype) for _ in range(size)]
        self.turn = 0

    def next(self, rows: int) -> np.ndarray:
        buf = self.buffers[self.turn % len(self.buffers)]
        self.turn += 1
        return buf[:rows]


class Source:
    """Base class: subclasses set path, rows, dim, dtype (and layout) and implement `batches`."""

    path: str
    rows: int | None
    dim: int
    dtype: np.dtype
    layout: Any = None
    id_kind: str | None = None  # "int" or "str" when the rows carry ids
    ring_size = 4
    extra_buffers = 0  # chunk-sized buffers the format holds besides the ring (for sizing chunks)

    def batches(self, rows: int, start: int = 0, with_ids: bool = False) -> Iterator[Batch]:
        """Chunks of at most ``rows`` rows from row ``start`` on (with their ids when asked and
        the file has them). Arrays may come from a `BufferRing`: keep at most
        ``ring_size - 1`` batches alive at once."""
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows at the given increasing indices, as a new array (random-access sources only)."""
        raise NotImplementedError(f"{type(self).__name__} has no random access")

    def ids(self) -> np.ndarray | None:
        """Row ids if the file carries them, else None."""
        return None

    def stamp(self) -> dict | None:
        """The procalign stamp (the space the data is in) if the file carries one."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _id_kind(self, dtype) -> str | None:
        if dtype is None:
            return None
        return {"i": "int", "u": "uint"}.get(np.dtype(dtype).kind, "str")

    def describe(self) -> str:
        return f"{'?' if self.rows is None else self.rows} x {self.dim} {self.dtype}"


class Sink:
    """Base class for sinks: `write` chunks in order, then `finish` (or `abort`)."""

    extra_buffers = 0  # chunk-sized buffers held while writing (for sizing chunks)
    carries_ids = False  # whether SinkSpec.ids can be honoured

    def __init__(self, path: str | Path, spec: SinkSpec, resume_rows: int = 0):
        self.path, self.spec, self.written = Path(path), spec, resume_rows

    def write(self, embeddings: np.ndarray, extra: Any = None, ids: np.ndarray | None = None) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Hand the rows written so far to the OS, so they survive the death of this process."""

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release handles without finishing; the caller deletes the files."""

    def row_at(self, index: int) -> np.ndarray | None:
        """Row ``index`` as written so far (to check a resumed file), or None if the format
        cannot read it back cheaply."""
        return None

    @classmethod
    def sidecars_for(cls, path: Path) -> list[Path]:
        """Files a sink of this class keeps beside ``path`` while writing (deleted with it)."""
        return []

    def after_commit(self, final: Path) -> None:
        """Called once the finished file has been renamed to ``final``."""

    def _check_rows(self) -> None:
        if self.spec.rows is not None and self.written != self.spec.rows:
            raise ValueError(f"wrote {self.written} rows, expected {self.spec.rows}")
