"""Streams made random-access: anchors from a stream (JSON lines, stdin) are spooled to disk.

Pairing by id and the report's second pass need to read anchors more than once and in any
order, which a stream cannot do. `random_access` copies a stream once into a temporary .npy
(chunk by chunk, bounded memory) and keeps its ids, and hands back a source over that copy;
sources that already have random access are returned as they are. Sources whose random access
decodes far more than it returns (``cheap_take = False``: parquet decodes a whole row group to
take one row) are spooled too when pairs will be joined by id.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..formats import Location, SinkSpec, open_source, parse_location, sink_class
from ..formats.base import Source

SPOOL_ROWS = 8192


class SpooledSource(Source):
    """A source over a spooled copy, answering for the stream it came from (path, ids)."""

    def __init__(self, copy: Source, origin: Source, ids: np.ndarray | None, location: Location):
        self.copy, self.location = copy, location
        self.path, self.rows, self.dim, self.dtype = origin.path, copy.rows, copy.dim, copy.dtype
        self._ids = ids
        self.id_kind = origin.id_kind

    def batches(self, rows, start=0, with_ids=False):
        return self.copy.batches(rows, start)

    def take(self, indices):
        return self.copy.take(indices)

    def ids(self):
        return self._ids

    def close(self):
        self.copy.close()


def random_access(source: Source, workdir: str | Path, by_id: bool = True) -> Source:
    """``source`` itself if it has a known length and cheap random access (or pairs will be
    read in order, ``by_id=False``), else a spooled copy in ``workdir``."""
    if source.rows is not None and (getattr(source, "cheap_take", True) or not by_id or source.ids() is None):
        return source
    fd, name = tempfile.mkstemp(prefix="spool-", suffix=".npy", dir=workdir)  # a name no other spool has
    os.close(fd)
    location = parse_location(name)
    sink = sink_class(location)(location.path, SinkSpec(source.dim, source.dtype, rows=source.rows))
    ids = []
    try:
        for batch in source.batches(SPOOL_ROWS, with_ids=source.id_kind is not None):
            sink.write(batch.embeddings)
            if batch.ids is not None:
                ids.append(batch.ids)
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    source.close()
    return SpooledSource(open_source(location), source, np.concatenate(ids) if ids else None, location)


def spool_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="procalign-spool-")
