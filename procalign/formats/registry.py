"""The format registry: maps a location to its format module's `Source` and `Sink`.

A location is what a user types: ``dump.npy``, ``dump.parquet``, ``emb.h5:/group/ds``. The
registry (`FORMATS`) names, per format, the suffixes it owns, its module with a `Source` and a
`Sink` class, and what an inner ``:NAME`` suffix selects. Adding a format is one module plus
one `Format` line here; help texts list formats from the registry (`format_help`). Modules are
imported on first use, so a .npy job never pays for pyarrow or h5py (and this module imports
no numpy, so help texts can list the formats at no cost).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UsageError


@dataclass(frozen=True)
class ReadOptions:
    """How to find the embeddings and ids inside a file (None: the format's default)."""

    column: str | None = None     # parquet column, JSON key
    id_column: str | None = None  # parquet column, HDF5 dataset, JSON key


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    module: str
    inner: str | None = None   # what "FILE:NAME" names inside the file, if anything
    inner_prefix: str = ""     # how an inner name starts ("/" for HDF5 paths)
    inner_required: bool = False
    stdio: bool = False        # "-" means standard input / output in this format

    @property
    def usage(self) -> str:
        base = "/".join(self.suffixes)
        if self.inner:
            base = f"{base}:{self.inner.upper()}" if self.inner_required else f"{base}[:{self.inner_prefix}{self.inner}]"
        return f"{base} (or - for stdin/stdout)" if self.stdio else base


FORMATS: tuple[Format, ...] = (
    Format("npy", (".npy",), "npy"),
    Format("parquet", (".parquet",), "parquet"),
    Format("hdf5", (".h5", ".hdf5"), "hdf5", inner="dataset", inner_prefix="/"),
    Format("jsonl", (".jsonl", ".ndjson"), "jsonl", stdio=True),
    Format("llm", (".db", ".sqlite", ".sqlite3"), "llm_collection", inner="collection", inner_required=True),
)
STDIO = "-"


def format_help() -> str:
    """The formats for help texts: ``.npy, .parquet, .h5/.hdf5[:/dataset]``."""
    return ", ".join(f.usage for f in FORMATS)


def _by_suffix(name: str) -> Format | None:
    low = name.lower()
    return next((f for f in FORMATS if any(low.endswith(s) for s in f.suffixes)), None)


@dataclass(frozen=True)
class Location:
    """A file path, its format, and what an inner name selects inside it (e.g. an HDF5 dataset)."""

    path: Path
    format: Format
    inner: str | None = None
    # A partitioned dataset (see `parts`): its part files (paths or URLs) and, once known, their
    # row counts; the storage options (JSON) for URLs; what the user typed.
    parts: tuple[str, ...] = ()
    part_rows: tuple[int, ...] = ()
    storage: str = ""
    label: str = ""

    @property
    def dataset(self) -> str | None:
        return self.inner

    @property
    def is_stdio(self) -> bool:
        return str(self.path) == STDIO

    def __str__(self) -> str:
        text = self.label or str(self.path)
        return f"{text}:{self.inner}" if self.inner else text


def parse_location(text: str, inner: str | None = None) -> Location:
    """Parse ``FILE`` or ``FILE:NAME`` (only for formats with inner names; a ':' elsewhere in a
    path is part of the path). ``inner`` is the --dataset option; it must agree with ``:NAME``."""
    text = str(text)
    if text == STDIO:
        return Location(Path(STDIO), next(f for f in FORMATS if f.stdio))
    path, named = text, None
    head, sep, tail = text.rpartition(":")
    fmt = _by_suffix(head) if sep else None
    if fmt is not None and fmt.inner and tail.startswith(fmt.inner_prefix) and len(tail) > len(fmt.inner_prefix):
        path, named = head, tail
    fmt = _by_suffix(path)
    if fmt is None:
        suffix = Path(path).suffix
        raise UsageError(f"unknown extension {suffix or '(none)'!r}; use one of {format_help()}", path)
    if inner is not None and not fmt.inner:
        raise UsageError(f"--{fmt.inner or 'dataset'} does not apply to {fmt.name} files; drop it", path)
    if inner is not None and named is not None and inner != named:
        raise UsageError(f"the path names {fmt.inner} {named!r} but --{fmt.inner} says {inner!r}; give one", path)
    if inner is not None and fmt.inner_prefix and not inner.startswith(fmt.inner_prefix):
        inner = fmt.inner_prefix + inner
    if fmt.inner_required and not (named or inner):
        raise UsageError(f"name the {fmt.inner} inside the file: {Path(path).name}:{fmt.inner.upper()}", path)
    return Location(Path(path), fmt, named or inner)


def _module(fmt: Format):
    return importlib.import_module(f"{__package__}.{fmt.module}")


def open_source(location: Location, options: ReadOptions = ReadOptions()) -> Source:
    """Open a location for reading; raises InputError/UsageError naming the file."""
    if location.is_stdio:
        return _module(location.format).SOURCE(location, options)
    if location.parts:
        from .parts import PartsSource
        return PartsSource(location, options)
    if not location.path.is_file():
        raise InputError("no such file; check the path", location.path)
    if location.path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes); re-create it", location.path)
    source = _module(location.format).SOURCE(location, options)
    if source.dim < 1 and source.rows != 0:
        source.close()
        raise InputError(f"rows have {source.dim} values; embeddings need at least one dimension", location.path)
    return source


def sink_class(location: Location) -> type[Sink]:
    return _module(location.format).SINK


def open_reader(location: Location, column: str | None = None, id_column: str | None = None) -> Source:
    """`open_source` with the read options as arguments."""
    return open_source(location, ReadOptions(column, id_column))
