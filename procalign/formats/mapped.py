"""Zero-copy windows of rows: a bounded piece of a file mapped into memory.

A window is an ndarray over ``mmap`` pages of the file itself, so reading one copies nothing
(the pages come from the page cache, read ahead by the kernel) and a product can write its
result straight into the output file. Each window maps only its own rows and is unmapped when
the array is dropped, so resident memory stays bounded by the windows in flight, whatever the
file size. Pages written through a shared mapping belong to the kernel: they reach the file
even if this process is killed right after, which is what a resumable writer needs.
"""
from __future__ import annotations

import mmap

import numpy as np


# madvise(2) advice of Linux 5.14+ (not yet named by every Python's mmap module)
POPULATE_READ, POPULATE_WRITE = 22, 23


def _populate(m: mmap.mmap, writable: bool) -> None:
    """Fault the window's pages in now, in one call: measured 20-30% cheaper than a page fault
    per page on first touch, and done by the thread that maps the window (the reader maps the
    next input window while the current one computes). Older kernels: advice only."""
    try:
        m.madvise(POPULATE_WRITE if writable else POPULATE_READ)
    except OSError:
        if not writable:
            m.madvise(mmap.MADV_WILLNEED)  # at least start reading ahead


def map_rows(fileno: int, data_offset: int, dtype: np.dtype, dim: int, start: int, rows: int,
             writable: bool = False) -> np.ndarray:
    """Rows ``start .. start+rows-1`` of a C-order (n, dim) array stored at ``data_offset``."""
    dtype = np.dtype(dtype)
    if rows == 0 or dim == 0:
        return np.empty((rows, dim), dtype)
    first = data_offset + start * dim * dtype.itemsize
    aligned = first - first % mmap.ALLOCATIONGRANULARITY
    length = first - aligned + rows * dim * dtype.itemsize
    access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
    m = mmap.mmap(fileno, length, access=access, offset=aligned)
    _populate(m, writable)
    # the array keeps the mapping alive; dropping the array unmaps it
    return np.frombuffer(m, dtype, rows * dim, first - aligned).reshape(rows, dim)
