"""The stream core: batches -> map -> write, with file I/O overlapping the matrix product.

Knows nothing of files: it takes any iterable of `Batch` (a file source, a pipe, arrays in
memory in a Dask task) and a write callback (a sink behind a delivery, or a list). BLAS, file
reads and writes, Arrow and HDF5 all release the GIL, so reading the next chunk, mapping this
one and writing the previous one run at the same time, each stage on its own thread.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import InputError
from ..formats.base import Batch
from ..formats.direct import aligned_empty
from ..math.affine import AffineMap, ChunkMapper
from .chunking import RING
from .cores import CorePool

_END = object()


def run_stages(produce: Iterable, compute: Callable, consume: Callable) -> None:
    """Feed every item of ``produce`` through ``compute`` (calling thread) into ``consume``.

    One reader and one writer thread; at most one item is read ahead and one is being written
    while the next is computed, so three items per side are alive at once (a ring of four
    buffers suffices). The first exception in any stage is raised here once the other stages
    have stopped; every item computed before it has been consumed.
    """
    items = iter(produce)
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reads, \
            ThreadPoolExecutor(1, thread_name_prefix="write") as writes:
        reading, writing = reads.submit(next, items, _END), None
        try:
            while (item := reading.result()) is not _END:
                reading = reads.submit(next, items, _END)
                result = compute(item)
                if writing is not None:
                    writing.result()
                writing = writes.submit(consume, result)
            if writing is not None:
                writing.result()
        except BaseException:
            reading.cancel()
            if writing is not None:
                writing.exception()  # let the write in flight end; the error raised here came first
            raise


class BatchMapper:
    """Map batches with a `ChunkMapper` into a ring of page-aligned output buffers (no
    allocation per chunk; a sink can write them to the disk directly, see `formats.direct`).

    Computes in float64 when the input or output is float64, else float32, on every core
    (`CorePool`: pieces of a batch on one thread each, one kernel and its buffers per thread);
    use it as a context manager around the stream. Raises `NonFiniteRows` naming the row of
    the source (``batch.start`` + index).
    """

    def __init__(self, affine: AffineMap, in_dtype, out_dtype, rows: int, threads: int | None = None):
        in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
        self.affine = affine
        self.work = np.float64 if np.float64 in (in_dtype, out_dtype) else np.float32
        self.out_dtype, self.rows, self.d_target = out_dtype, rows, affine.d_target
        self.cores = CorePool(threads)
        self.kernels = threading.local()
        self.ring: list[np.ndarray] = []
        self.turn = 0

    def __enter__(self) -> "BatchMapper":
        self.cores.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.cores.__exit__(*exc)

    def _kernel(self) -> ChunkMapper:
        kernel = getattr(self.kernels, "mapper", None)
        if kernel is None:
            kernel = self.kernels.mapper = ChunkMapper(self.affine, self.work)
        return kernel

    def _buffer(self, rows: int) -> np.ndarray:
        if not self.ring:  # allocated on first use
            self.ring = [aligned_empty((self.rows, self.d_target), self.out_dtype) for _ in range(RING)]
        buf = self.ring[self.turn % RING]
        self.turn += 1
        return buf[:rows] if rows <= len(buf) else np.empty((rows, self.d_target), self.out_dtype)

    def __call__(self, batch: Batch) -> tuple[np.ndarray, Batch]:
        n, x = len(batch.embeddings), batch.embeddings
        out = self._buffer(n)
        self.cores.run(lambda a, b: self._kernel().map(x[a:b], out[a:b], batch.start + a), n)
        return out, batch


def map_stream(batches: Iterable[Batch], mapper: BatchMapper, write: Callable[[np.ndarray, Batch], None]) -> int:
    """Map every batch and hand it to ``write(rows, batch)`` in order; returns the row count.
    The rows handed to ``write`` live in a reused buffer: copy them to keep them.
    """
    done = [0]

    def consume(item):
        out, batch = item
        write(out, batch)
        done[0] += len(out)

    with mapper:
        run_stages(batches, mapper, consume)
    return done[0]


def read_guard(items: Iterable, path: str) -> Iterator:
    """Errors from reading a source become `InputError`s that name it: a damaged chunk found
    mid-way is bad input (exit 4), not a problem of the destination."""
    try:
        yield from items
    except OSError as e:
        raise InputError(f"could not read it ({e.strerror or e}); the file may be damaged or changing", path) from None
    except Exception as e:
        if type(e).__module__.startswith("pyarrow"):
            raise InputError(f"could not read it ({e}); the file may be damaged or changing", path) from None
        raise


def batches_of(arrays: Iterable[np.ndarray], start: int = 0) -> Iterator[Batch]:
    """Wrap in-memory arrays as consecutive batches (for pipes, tests and Dask tasks)."""
    for a in arrays:
        yield Batch(start, a)
        start += len(a)


def map_arrays(affine: AffineMap, arrays: Iterable[np.ndarray], out_dtype=np.float32) -> list[np.ndarray]:
    """The stream core on arrays in memory: each array mapped, as a new array."""
    arrays = list(arrays)
    rows = max((len(a) for a in arrays), default=1)
    in_dtype = arrays[0].dtype if arrays else np.float32
    mapped: list[np.ndarray] = []
    map_stream(batches_of(arrays), BatchMapper(affine, in_dtype, out_dtype, max(rows, 1)),
               lambda out, _batch: mapped.append(out.copy()))
    return mapped
