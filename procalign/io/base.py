"""The reader/writer interface every format module implements.

A reader knows ``rows``, ``dim`` and ``dtype`` before any data is read, and streams row chunks
with `iter_batches`; `take` gathers arbitrary rows (for anchors joined by id). A writer is told
the shape up front, receives chunks in order with `write` and is finished with `close`.

Readers and writers never import the math; they only move float arrays and, where a format
has them, the other columns of each row ("extra", carried through untouched).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Batch:
    start: int                 # index of the first row in the file
    embeddings: np.ndarray     # (rows, dim); may be a reused buffer, see EmbeddingReader
    extra: Any = None          # pass-through payload for a writer of the same format


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


class EmbeddingReader:
    """Base class: subclasses set path, rows, dim, dtype and implement the methods."""

    path: str
    rows: int
    dim: int
    dtype: np.dtype
    ring_size = 4
    extra_buffers = 0  # chunk-sized buffers the format holds besides the ring (for sizing chunks)

    def iter_batches(self, batch_rows: int, start: int = 0) -> Iterator[Batch]:
        """Chunks of at most ``batch_rows`` rows from row ``start`` on. Arrays come from a
        `BufferRing`: keep at most ``ring_size - 1`` batches alive at once."""
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows at the given increasing indices, as a new array."""
        raise NotImplementedError

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

    def describe(self) -> str:
        return f"{self.rows} x {self.dim} {self.dtype}"


class EmbeddingWriter:
    """Base class for writers: ``write`` chunks in order, then ``close`` to finish the file."""

    extra_buffers = 0  # chunk-sized buffers held while writing (for sizing chunks)

    def write(self, embeddings: np.ndarray, extra: Any = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release handles without finishing; the caller deletes the temporary file."""
        try:
            self.close()
        except Exception:
            pass
