"""Partitioned datasets: a directory, a glob or a URL of part files read as one source.

`dataset_location` turns what a user typed (``dump/``, ``'dump/part-*.parquet'``,
``s3://bucket/dump/``) into a `Location` listing its parts; a plain local file stays a plain
location. `PartsSource` reads the parts in order as one `Source` (rows numbered across parts,
ids concatenated, `take` split by part), so a fit joins anchors by id across partitioned inputs
exactly as in single files. Each part is opened by its own format's source; remote parts are
fetched into a temporary directory first (`storage`).

Notes
-----
Without the row counts (``Location.part_rows``) every part is opened once to count its rows;
with them, a part is opened only when its rows are read (a task that folds one part's pairs
opens that part and the target parts holding its partners). Parts must agree on dimension
and float type.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from .base import Batch, Source, take_by_segment
from .registry import Location, ReadOptions, _by_suffix, open_source, parse_location
from .storage import STAMP_SIDECAR, Storage, has_glob, is_url, local_path, remove_tree


def dataset_location(text: str, inner: str | None = None, storage_options: dict | None = None) -> Location:
    """A file's location, or a partitioned dataset's (directory, glob or URL) with its parts.
    The .npy stamp sidecars beside parts are not parts; in a directory, neither are files of
    unknown formats."""
    text = local_path(str(text))
    if text == "-" or not (is_url(text) or has_glob(text) or os.path.isdir(text)):
        named = text.rpartition(":")[0] or text  # file.h5:/dataset names a file
        if text != "-" and not os.path.exists(text) and (text.endswith(("/", os.sep)) or
                                                         _by_suffix(text) is _by_suffix(named) is None):
            raise InputError("no such file or directory; check the path", text)
        return parse_location(text, inner)
    found = [ref for ref in Storage(storage_options).expand(text) if not ref.endswith(STAMP_SIDECAR)]
    # a directory: its files of known formats (a glob says what it wants)
    refs = found if has_glob(text) else [ref for ref in found if _by_suffix(ref) is not None]
    if not refs and any(ref.lower().endswith(".npz") for ref in found):
        raise InputError("holds transform files (.npz), not embedding files; inspect a transform with "
                         "`procalign inspect FILE.npz`", text)
    if not refs:
        raise InputError("no part files found (hidden files are skipped); check the path or the glob", text)
    formats = {parse_location(ref, inner).format for ref in refs}
    if len(formats) > 1:
        raise UsageError(f"parts of several formats ({', '.join(sorted(f.name for f in formats))}); a dataset's "
                         "parts share one format: narrow the glob", text)
    first = parse_location(refs[0], inner)
    display = text.rstrip("/") if not has_glob(text) else text
    return Location(Path(display), first.format, first.inner, parts=tuple(refs),
                    storage=json.dumps(storage_options or {}, sort_keys=True), label=text)


def require_dataset(*locations: Location) -> None:
    """--engine dask works on the parts of a dataset: refuse inputs of which none has parts."""
    if not any(location.parts for location in locations):
        raise UsageError("--engine dask maps the parts of a dataset (a directory, a glob or a URL); for one "
                         "local file use the local engine", " and ".join(str(loc.path) for loc in locations))


def output_location(text: str, dataset: Location) -> Location:
    """The output directory (or URL prefix) of a partitioned apply: parts keep their format."""
    require_dataset(dataset)
    text = local_path(text)
    return Location(Path(text), dataset.format, dataset.inner, storage=dataset.storage, label=text)


def part_location(dataset: Location, ref: str, local: Path | None = None) -> Location:
    """The location of one part (``local``: where a fetched copy lies)."""
    return Location(Path(local or ref), dataset.format, dataset.inner, label=ref)


def check_parts(location: Location, options: ReadOptions = ReadOptions()) -> None:
    """Open every part once (to count its rows), so that parts of another dimension or float
    type, or unreadable ones, are refused before anything is written."""
    with PartsSource(dataclasses.replace(location, part_rows=None), options):
        pass


def with_row_counts(location: Location, source: "PartsSource") -> Location:
    """The same dataset with its part row counts, so that a reader elsewhere opens parts lazily."""
    return dataclasses.replace(location, part_rows=tuple(source.part_rows))


class PartsSource(Source):
    """The parts of a dataset, in order, as one source."""

    def __init__(self, location: Location, options: ReadOptions = ReadOptions()):
        self.location, self.options = location, options
        self.path = location.label or str(location.path)
        self.storage = Storage(json.loads(location.storage or "{}"))
        self._staging: str | None = None
        self._open: dict[int, Source] = {}
        try:
            first = self._part(0)
            self.dim, self.dtype, self.id_kind = first.dim, first.dtype, first.id_kind
            self.cheap_take = getattr(first, "cheap_take", True)
            counts = location.part_rows or [self._part(i).rows for i in range(len(location.parts))]
        except BaseException:
            self.close()
            raise
        if any(n is None for n in counts):
            raise InputError("a part has no row count (a stream); partitioned datasets need files", self.path)
        self.part_rows = [int(n) for n in counts]
        self.offsets = np.concatenate([[0], np.cumsum(self.part_rows)]).astype(np.int64)
        self.rows = int(self.offsets[-1])

    def _part(self, i: int) -> Source:
        if i not in self._open:
            ref = self.location.parts[i]
            local = None
            if is_url(ref):
                self._staging = self._staging or tempfile.mkdtemp(prefix="procalign-parts-")
                local = self.storage.fetch(ref, Path(self._staging))
            part = open_source(part_location(self.location, ref, local), self.options)
            self._open[i] = part
            if i and (part.dim, part.dtype) != (self.dim, self.dtype):
                raise InputError(f"part has {part.dim}-d {part.dtype} rows but the first part has {self.dim}-d "
                                 f"{self.dtype}; every part of a dataset must match", ref)
        return self._open[i]

    def batches(self, rows, start=0, with_ids=False):
        for i in range(int(np.searchsorted(self.offsets, start, side="right")) - 1, len(self.part_rows)):
            base = int(self.offsets[i])
            for batch in self._part(i).batches(rows, max(0, start - base), with_ids):
                yield Batch(base + batch.start, batch.embeddings, None, batch.ids)

    def take(self, indices):
        return take_by_segment(indices, self.offsets, self.dim, self.dtype, lambda i, local: self._part(i).take(local))

    def ids(self):
        ids = [self._part(i).ids() for i in range(len(self.part_rows))]
        if any(part is None for part in ids):
            return None
        return np.concatenate(ids)

    def stamp(self):
        return self._part(0).stamp()

    def close(self):
        for part in self._open.values():
            part.close()
        self._open = {}
        if self._staging:
            remove_tree(Path(self._staging))
            self._staging = None
