"""The one chunk-size policy: how many rows per chunk fit the memory budget (--memory).

Every streaming job holds a few chunk-sized buffers per side: the source's ring, the output
ring, and whatever a format keeps besides (decoded Arrow batches, encoded row groups). The
chunk is the largest that keeps all of them within the budget, between `MIN_ROWS` and
`MAX_ROWS` (past that, bigger chunks measured no faster).
"""
from __future__ import annotations

from ..formats.direct import aligned_rows

RING = 4            # chunk buffers per side: one read ahead, one computing, one writing, one spare
WINDOWS = 2         # mapped windows resident per side: the one computing and the one being recorded
MIN_ROWS = 256
MAX_ROWS = 1 << 16


def rows_for_budget(budget_mb: int, bytes_per_row: int) -> int:
    return int(max(MIN_ROWS, min(MAX_ROWS, budget_mb * 2**20 // max(bytes_per_row, 1))))


def apply_chunk_rows(budget_mb: int, source, sink_class, d_out: int, out_itemsize: int) -> int:
    """Rows per chunk for source -> map -> sink.

    A source of memory-mapped windows (`Source.mapped`) holds no ring: about two windows are
    resident at a time. The output always goes through the mapper's ring.
    """
    ins = WINDOWS if getattr(source, "mapped", False) else RING + source.extra_buffers
    outs = RING + sink_class.extra_buffers
    per_row = ins * source.dim * source.dtype.itemsize + outs * d_out * out_itemsize
    rows = rows_for_budget(budget_mb, per_row)
    # whole blocks per chunk, for a sink that writes them to the disk directly
    return aligned_rows(rows, d_out * out_itemsize) if getattr(sink_class, "aligned_writes", False) else rows


def pair_chunk_rows(budget_mb: int, source, target) -> int:
    """Rows per chunk when reading anchor pairs from two sources."""
    def held(reader) -> int:  # buffers per side, as in `apply_chunk_rows`
        return WINDOWS if getattr(reader, "mapped", False) else RING + reader.extra_buffers

    per_row = held(source) * source.dim * source.dtype.itemsize + held(target) * target.dim * target.dtype.itemsize \
        + 4 * (source.dim + target.dim)  # plus the shifted float32 copies of a block
    return rows_for_budget(budget_mb, per_row)
