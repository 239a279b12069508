"""`.h5`/`.hdf5` files: a 2-D float dataset, named ``file.h5:/group/dataset`` or detected when
the file holds exactly one 2-D float dataset.

Ids come from a 1-D dataset of the same length (``ids`` beside the embeddings unless named).
A writer creates a chunked dataset at the same path and, from an h5 source, copies every other
object (ids, payload datasets, attributes) unchanged.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from ..errors import InputError, UsageError
from .base import FLOAT_DTYPES, Batch, BufferRing, EmbeddingReader, EmbeddingWriter

STAMP_ATTR = "procalign.stamp"
ID_NAMES = ("ids", "id")


def _float_datasets(f: h5py.File) -> list[str]:
    found = []
    f.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset)
                 and obj.ndim == 2 and obj.dtype in FLOAT_DTYPES else None)
    return found


class H5Reader(EmbeddingReader):
    def __init__(self, path, dataset: str | None = None, id_dataset: str | None = None):
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

    def _find_ids(self) -> str | None:
        parent = self._ds.parent
        for name in ID_NAMES:
            obj = parent.get(name)
            if isinstance(obj, h5py.Dataset) and obj.shape == (self.rows,):
                return obj.name
        return None

    def iter_batches(self, batch_rows, start=0):
        ring = BufferRing((min(batch_rows, max(self.rows, 1)), self.dim), self.dtype, self.ring_size)
        for a in range(start, self.rows, batch_rows):
            n = min(batch_rows, self.rows - a)
            buf = ring.next(n)
            if n:
                self._ds.read_direct(buf, np.s_[a:a + n], np.s_[0:n])
            yield Batch(a, buf)

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return self._ds[indices] if len(indices) else np.empty((0, self.dim), self.dtype)

    def ids(self):
        if self.id_dataset is None:
            return None
        obj = self._file.get(self.id_dataset)
        if not isinstance(obj, h5py.Dataset) or obj.shape != (self.rows,):
            raise UsageError(f"id dataset {self.id_dataset!r} missing or not 1-D of {self.rows} rows", self.path)
        ids = obj[()]
        return np.array([v.decode() if isinstance(v, bytes) else v for v in ids]) if ids.dtype.kind in "OS" else ids

    def stamp(self):
        raw = self._ds.attrs.get(STAMP_ATTR)
        return json.loads(raw) if raw is not None else None

    def close(self):
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None


class H5Writer(EmbeddingWriter):
    def __init__(self, path, rows, dim, dtype, source=None, stamp=None, dataset=None,
                 chunk_rows=65536, resume_rows=0):
        self.path = str(path)
        self.dataset_name = dataset or (source.dataset_name if isinstance(source, H5Reader) else "/embeddings")
        if resume_rows:
            self._file = h5py.File(path, "r+")
            self._ds = self._file[self.dataset_name]
        else:
            self._file = h5py.File(path, "w")
            if isinstance(source, H5Reader):
                self._copy_others(source)
            chunks = (max(1, min(rows, chunk_rows)), dim) if rows else None
            # All chunks are allocated now, so writing rows later never changes the file's
            # metadata: a run killed mid-way leaves a consistent file that --resume can reopen.
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            self._ds = self._file.create_dataset(self.dataset_name, shape=(rows, dim), dtype=dtype,
                                                 chunks=chunks, dcpl=dcpl if rows else None)
            if isinstance(source, H5Reader):
                for k, v in source._ds.attrs.items():
                    self._ds.attrs[k] = v
            if stamp is not None:
                self._ds.attrs[STAMP_ATTR] = json.dumps(stamp, sort_keys=True)
            self._file.flush()
        self.written = resume_rows

    def _copy_others(self, source: H5Reader) -> None:
        src = source._file
        for k, v in src.attrs.items():
            self._file.attrs[k] = v

        def copy(name, obj):
            full = "/" + name
            if full == source.dataset_name or isinstance(obj, h5py.Group):
                return
            parent = full.rsplit("/", 1)[0] or "/"
            src.copy(obj, self._file.require_group(parent), name=full.rsplit("/", 1)[1])
        src.visititems(copy)

    def write(self, embeddings, extra=None):
        n = len(embeddings)
        if n:
            self._ds.write_direct(np.ascontiguousarray(embeddings, dtype=self._ds.dtype),
                                  np.s_[0:n], np.s_[self.written:self.written + n])
        self.written += n

    def flush(self):
        self._file.flush()

    def close(self):
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None
