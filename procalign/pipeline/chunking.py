"""The one chunk-size policy: how many rows per chunk fit the memory budget (--memory).

Every streaming job holds a few chunk-sized buffers per side: the source's ring, the output
ring, and whatever a format keeps besides (decoded Arrow batches, encoded row groups). The
chunk is the largest that keeps all of them within the budget, between `MIN_ROWS` and
`MAX_ROWS` (past that, bigger chunks measured no faster). A map into a sink that writes whole
blocks to the disk (`.npy`, `.h5`) streams in chunks of at most `STREAM_ROWS`, and a small file in
at least `MIN_CHUNKS` chunks (see `apply_chunk_rows`).
"""
from __future__ import annotations

from ..formats.direct import aligned_rows

RING = 4            # chunk buffers per side: one read ahead, one computing, one writing, one spare
WINDOWS = 2         # mapped windows resident per side: the one computing and the one being recorded
MIN_ROWS = 256
MAX_ROWS = 1 << 16
STREAM_ROWS = 1 << 14
MIN_CHUNKS = 16


def rows_for_budget(budget_mb: int, bytes_per_row: int) -> int:
    return int(max(MIN_ROWS, min(MAX_ROWS, budget_mb * 2**20 // max(bytes_per_row, 1))))


def apply_chunk_rows(budget_mb: int, source, sink_class, d_out: int, out_itemsize: int) -> int:
    """Rows per chunk for source -> map -> sink.

    A source of memory-mapped windows (`Source.mapped`) holds no ring: about two windows are
    resident at a time. The output always goes through the mapper's ring.

    For a sink that writes whole blocks to the disk directly (``aligned_writes``: chunks do not
    shape its file, unlike parquet's row groups), chunks are also kept small: the first read and
    the last write of a stream overlap nothing, and every ring buffer is touched for the first
    time (page faults, about 0.7 s/GB here). Measured on 2 cores, d = 384 float32 (where the
    default --memory 128 gives 14,560 rows, so the cap binds only with a larger budget or
    narrower rows): 1M rows in 16,384-row chunks against 65,536 took 2.3-2.5 s against 2.4-2.7
    (.npy) and 2.3-2.5 against 3.0 (.h5); a 100k-row .npy took 0.53-0.54 s in 4,096-row chunks,
    0.55-0.56 in 8,192-row ones and 0.56-0.58 in the default 14,560-row ones (now 6,248, its 16th).
    """
    ins = WINDOWS if getattr(source, "mapped", False) else RING + source.extra_buffers
    outs = RING + sink_class.extra_buffers
    per_row = ins * source.dim * source.dtype.itemsize + outs * d_out * out_itemsize
    rows = rows_for_budget(budget_mb, per_row)
    if not getattr(sink_class, "aligned_writes", False):
        return rows
    rows = min(rows, STREAM_ROWS)
    if source.rows:
        rows = min(rows, max(MIN_ROWS, -(-source.rows // MIN_CHUNKS)))
    return aligned_rows(rows, d_out * out_itemsize)  # whole blocks per chunk


def pair_chunk_rows(budget_mb: int, source, target) -> int:
    """Rows per chunk when reading anchor pairs from two sources."""
    def held(reader) -> int:  # buffers per side, as in `apply_chunk_rows`
        return WINDOWS if getattr(reader, "mapped", False) else RING + reader.extra_buffers

    per_row = held(source) * source.dim * source.dtype.itemsize + held(target) * target.dim * target.dtype.itemsize \
        + 4 * (source.dim + target.dim)  # plus the shifted float32 copies of a block
    return rows_for_budget(budget_mb, per_row)
