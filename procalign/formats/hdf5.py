"""`.h5`/`.hdf5` files: a 2-D float dataset, named ``file.h5:/group/dataset`` or detected when
the file holds exactly one 2-D float dataset.

Ids come from a 1-D dataset of the same length (``ids`` beside the embeddings unless named).
A sink creates a dataset (at the name asked for, else the source's, else
``/embeddings``; contiguous when the row count is known, its rows then written straight to
their place in the file with direct writes, chunked for a stream) and, from an h5 source,
copies every other object (ids, payload datasets, attributes) unchanged: the source declares
them in its `H5Layout` (file and dataset), and the sink opens that file read-only to copy them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import InputError, UsageError
from .direct import ALIGN, DirectWriter
from .mapped import map_rows
from .base import FLOAT_DTYPES, Batch, parse_stamp, BufferRing, ReadOptions, Sink, SinkSpec, Source

STAMP_ATTR = "procalign.stamp"
ID_NAMES = ("ids", "id")


def _float_datasets(f: h5py.File) -> list[str]:
    found = []
    f.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset)
                 and obj.ndim == 2 and obj.dtype in FLOAT_DTYPES else None)
    return found


@dataclass(frozen=True)
class H5Layout:
    """What an HDF5 sink copies from an HDF5 source: every object of ``path`` but ``dataset``,
    and the attributes of ``dataset`` itself."""

    path: str
    dataset: str
    attrs: dict = field(default_factory=dict)


class H5Source(Source):
    def __init__(self, location, options: ReadOptions = ReadOptions()):
        path, dataset, id_dataset = location.path, location.inner, options.id_column
        self.path = str(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as e:
            raise InputError(f"not a readable HDF5 file ({e}); check it was written completely", path) from None
        if dataset is None:
            found = _float_datasets(self._file)
            if len(found) != 1:
                what = "no 2-D float dataset" if not found else f"several 2-D float datasets ({', '.join(found)})"
                self.close()
                raise UsageError(f"{what}; name one as file.h5:/path or with --dataset", path)
            dataset = found[0]
        obj = self._file.get(dataset)
        problem = None
        if obj is None:
            problem = UsageError(f"no dataset {dataset!r}; list them with h5ls and fix the name", path)
        elif not isinstance(obj, h5py.Dataset):
            problem = UsageError(f"{dataset!r} is a group, not a dataset; name the dataset inside it", path)
        elif obj.ndim != 2:
            problem = InputError(f"dataset {dataset!r} is {obj.ndim}-D with shape {obj.shape}, expected 2-D "
                                 "(rows, dim); reshape it before writing", path)
        elif obj.dtype not in FLOAT_DTYPES:
            problem = InputError(f"dataset {dataset!r} has dtype {obj.dtype}, expected float16/32/64; "
                                 "convert it to float32", path)
        if problem is not None:
            self.close()
            raise problem
        self.dataset_name = obj.name
        self._ds = obj
        self.rows, self.dim = obj.shape
        self.dtype = obj.dtype
        self.id_dataset = id_dataset or self._find_ids()
        found = self._file.get(self.id_dataset) if self.id_dataset else None
        self.id_kind = self._id_kind(found.dtype if isinstance(found, h5py.Dataset) and found.dtype.kind in "iuSO"
                                     else None)
        self.layout = H5Layout(self.path, self.dataset_name, dict(obj.attrs))
        self._raw = _contiguous_offset(obj)
        self.mapped = self._raw is not None

    def _find_ids(self) -> str | None:
        parent = self._ds.parent
        for name in ID_NAMES:
            obj = parent.get(name)
            if isinstance(obj, h5py.Dataset):
                return obj.name  # checked when read: a malformed id dataset is an error, not "no ids"
        return None

    def batches(self, batch_rows, start=0, with_ids=False):
        ids = self._id_dataset() if with_ids and self.id_kind else None
        if self.mapped:  # contiguous, uncompressed: map the rows in the file itself, no copy
            with open(self.path, "rb") as raw:
                for a in range(start, self.rows, batch_rows):
                    n = min(batch_rows, self.rows - a)
                    window = map_rows(raw.fileno(), self._raw, self.dtype, self.dim, a, n)
                    yield Batch(a, window, ids=None if ids is None else _plain_ids(ids[a:a + n]))
            return
        ring = BufferRing((min(batch_rows, max(self.rows, 1)), self.dim), self.dtype, self.ring_size)
        for a in range(start, self.rows, batch_rows):
            n = min(batch_rows, self.rows - a)
            buf = ring.next(n)
            if n:
                self._ds.read_direct(buf, np.s_[a:a + n], np.s_[0:n])
            yield Batch(a, buf, ids=None if ids is None else _plain_ids(ids[a:a + n]))

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return self._ds[indices] if len(indices) else np.empty((0, self.dim), self.dtype)

    def ids(self):
        if self.id_dataset is None:
            return None
        return _plain_ids(self._id_dataset()[()])

    def _id_dataset(self):
        obj = self._file.get(self.id_dataset)
        if not isinstance(obj, h5py.Dataset):
            raise UsageError(f"no id dataset {self.id_dataset!r}; fix --id-column or pass --by-position", self.path)
        if obj.shape != (self.rows,):
            raise InputError(f"id dataset {self.id_dataset!r} has shape {obj.shape} for {self.rows} rows; it needs "
                             "one id per row (or pass --by-position)", self.path)
        if obj.dtype.kind not in "iuSOU":
            raise InputError(f"id dataset {self.id_dataset!r} has dtype {obj.dtype}; ids must be integers or "
                             "strings", self.path)
        return obj

    def stamp(self):
        return parse_stamp(self._ds.attrs.get(STAMP_ATTR), self.path, f"attribute {STAMP_ATTR}")

    def close(self):
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None


def _contiguous_offset(ds) -> int | None:
    """Byte offset of a dataset's rows in its file when they can be mapped directly: stored
    contiguously, unfiltered, allocated, native byte order, in a plain file; else None."""
    try:
        if ds.chunks is not None or ds.compression or ds.dtype != ds.dtype.newbyteorder("=") or not ds.size:
            return None
        if ds.file.driver not in ("sec2", "stdio"):
            return None
        return ds.id.get_offset()
    except (AttributeError, OSError, RuntimeError):
        return None


def _plain_ids(ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind in "OS":  # variable-length: one Python str per id, never a fixed-width array
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ids], dtype=object)
    return ids


class H5Sink(Sink):
    carries_ids = True
    aligned_writes = True  # rows of a dataset of known size go to the disk directly (see chunking)

    def __init__(self, path, spec: SinkSpec, resume_rows=0, chunk_rows=65536):
        super().__init__(path, spec, resume_rows)
        like = spec.like if isinstance(spec.like, H5Layout) else None
        self.dataset_name = spec.name or (like.dataset if like else "/embeddings")
        if resume_rows:
            self._file = h5py.File(path, "r+")
            self._ds = self._file.get(self.dataset_name)
            if not isinstance(self._ds, h5py.Dataset) or self._ds.shape != (spec.rows, spec.dim):
                self.abort()
                raise ValueError(f"the partial file has no {spec.rows} x {spec.dim} dataset {self.dataset_name}")
            ids = self._file.get((self.dataset_name.rsplit("/", 1)[0] or "") + "/ids")
            self._ids = ids if spec.ids and spec.like is None else None
            self._direct = self._open_raw()
            return
        # objects of a megabyte and more start on a block boundary: the rows can be written directly
        self._file = h5py.File(path, "w", alignment_threshold=1 << 20, alignment_interval=ALIGN)
        if like is not None:
            self._copy_others(like)
        try:
            self._ds = self._create(spec, chunk_rows)
        except (TypeError, ValueError) as e:  # a path through a dataset, a name already taken...
            self.abort()
            raise UsageError(f"cannot create dataset {self.dataset_name!r} ({e}); name another with "
                             "-o FILE.h5:/group/name", path) from None
        for k, v in (like.attrs.items() if like else ()):
            self._ds.attrs[k] = v
        if spec.stamp is not None:
            self._ds.attrs[STAMP_ATTR] = json.dumps(spec.stamp, sort_keys=True)
        self._ids = self._create_ids(spec) if spec.ids and like is None else None
        self._file.flush()
        self._direct = self._open_raw()

    def _create_ids(self, spec: SinkSpec):
        name = (self.dataset_name.rsplit("/", 1)[0] or "") + "/ids"
        dtype = {"int": np.int64, "uint": np.uint64}.get(spec.ids, h5py.string_dtype())
        rows = spec.rows or 0
        return self._file.create_dataset(name, shape=(rows,), maxshape=(None,) if spec.rows is None else (rows,),
                                         dtype=dtype, chunks=(4096,) if spec.rows is None else None)

    def _create(self, spec: SinkSpec, chunk_rows: int):
        if spec.rows is None:  # a stream: grows as rows come
            return self._file.create_dataset(self.dataset_name, shape=(0, spec.dim), maxshape=(None, spec.dim),
                                             dtype=spec.dtype, chunks=(min(chunk_rows, 4096), spec.dim))
        if not spec.rows:
            return self._file.create_dataset(self.dataset_name, shape=(0, spec.dim), dtype=spec.dtype)
        # Stored contiguously and allocated now: writing rows later never changes the file's
        # metadata (a run killed mid-way leaves a consistent file that --resume can reopen),
        # and the rows have one place in the file, where `_write` sends them directly.
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        return self._file.create_dataset(self.dataset_name, shape=(spec.rows, spec.dim), dtype=spec.dtype,
                                         dcpl=dcpl)

    def _copy_others(self, like: H5Layout) -> None:
        with h5py.File(like.path, "r") as src:
            for k, v in src.attrs.items():
                self._file.attrs[k] = v

            def copy(name, obj):
                full = "/" + name
                if full in (like.dataset, self.dataset_name) or isinstance(obj, h5py.Group):
                    return
                parent = full.rsplit("/", 1)[0] or "/"
                src.copy(obj, self._file.require_group(parent), name=full.rsplit("/", 1)[1])
            src.visititems(copy)

    def write(self, embeddings, extra=None, ids=None):
        try:
            self._write(embeddings, ids)
        except RuntimeError as e:  # HDF5 reports a full disk as a RuntimeError
            raise OSError(f"HDF5 could not write ({e})") from None

    def _write(self, embeddings, ids):
        n = len(embeddings)
        if n and self.spec.rows is None:
            self._ds.resize(self.written + n, axis=0)
            if self._ids is not None:
                self._ids.resize(self.written + n, axis=0)
        if n and self._ids is not None and ids is not None:
            if self._ids.dtype.kind in "iu":  # ids parsed from text come as Python ints (object dtype)
                ids = np.asarray(ids, dtype=self._ids.dtype)
            self._ids[self.written:self.written + n] = ids
        if n:
            rows = np.ascontiguousarray(embeddings, dtype=self._ds.dtype)
            if self._direct is not None:
                self._direct.write_at(self._offset + self.written * self._row_bytes, rows)
            else:
                self._ds.write_direct(rows, np.s_[0:n], np.s_[self.written:self.written + n])
        self.written += n

    def _open_raw(self) -> DirectWriter | None:
        """A writer at the dataset's rows in the file itself, for a contiguous dataset of known
        size without ids (rows written there bypass HDF5 and the page cache); else None."""
        self._raw = None
        offset = _contiguous_offset(self._ds) if self.spec.rows and self._ids is None else None
        if offset is None:
            return None
        self._file.flush()  # HDF5's own metadata first; the rows' bytes are not its concern
        self._raw = open(self.path, "r+b")
        end = offset + self._ds.size * self._ds.dtype.itemsize
        if os.fstat(self._raw.fileno()).st_size < end:  # HDF5 may extend the file only at close
            os.posix_fallocate(self._raw.fileno(), offset, end - offset)
        self._offset, self._row_bytes = offset, self.spec.dim * self._ds.dtype.itemsize
        return DirectWriter(self.path, self._raw.fileno())

    def row_at(self, index):
        return self._ds[index]

    def flush(self):
        try:
            self._file.flush()
        except RuntimeError as e:
            raise OSError(f"HDF5 could not write ({e})") from None

    def finish(self):
        self._check_rows()
        self.flush()
        self.abort()

    def abort(self):
        if getattr(self, "_direct", None) is not None:
            self._direct.close()
            self._direct = None
        if getattr(self, "_raw", None) is not None:
            self._raw.close()
            self._raw = None
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None


SOURCE, SINK = H5Source, H5Sink
