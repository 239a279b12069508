"""Readers and writers of embedding files, chosen by extension.

Adding a format is one module with an `EmbeddingReader` and an `EmbeddingWriter` subclass and
one entry in `FORMATS`. Paths may name an HDF5 dataset as ``file.h5:/group/dataset``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UsageError
from .base import Batch, EmbeddingReader, EmbeddingWriter

# extension -> (module, reader class, writer class); modules import lazily so that a .npy job
# never pays for pyarrow or h5py.
FORMATS = {
    ".npy": ("npy", "NpyReader", "NpyWriter"),
    ".parquet": ("parquet", "ParquetReader", "ParquetWriter"),
    ".h5": ("hdf5", "H5Reader", "H5Writer"),
    ".hdf5": ("hdf5", "H5Reader", "H5Writer"),
}


@dataclass(frozen=True)
class Location:
    """A file path plus, for HDF5, an optional dataset inside it."""

    path: Path
    dataset: str | None = None

    @property
    def format(self) -> str:
        return self.path.suffix.lower()

    def __str__(self) -> str:
        return f"{self.path}:{self.dataset}" if self.dataset else str(self.path)


def parse_location(text: str, dataset: str | None = None) -> Location:
    """Split ``file.h5:/group/ds``; check the extension is one procalign knows."""
    path, _, inner = str(text).partition(":/")
    inner = "/" + inner if inner else None
    loc = Location(Path(path), dataset or inner)
    if loc.format not in FORMATS:
        raise UsageError(f"unknown extension {loc.format or '(none)'!r}; use one of "
                         f"{', '.join(sorted(FORMATS))}", path)
    return loc


def _module(fmt: str):
    return importlib.import_module(f".{FORMATS[fmt][0]}", __name__)


def open_reader(location: Location, column: str | None = None, id_column: str | None = None) -> EmbeddingReader:
    """Open an embedding file for reading; raises InputError/UsageError naming the file."""
    if not location.path.is_file():
        raise InputError("no such file; check the path", location.path)
    if location.path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes); re-create it", location.path)
    mod = _module(location.format)
    cls = getattr(mod, FORMATS[location.format][1])
    if location.format == ".npy":
        return cls(location.path)
    if location.format == ".parquet":
        return cls(location.path, column=column, id_column=id_column)
    return cls(location.path, dataset=location.dataset, id_dataset=id_column)


def writer_class(location: Location):
    return getattr(_module(location.format), FORMATS[location.format][2])


__all__ = ["Batch", "EmbeddingReader", "EmbeddingWriter", "Location", "open_reader",
           "parse_location", "writer_class", "FORMATS"]
