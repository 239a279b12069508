"""`.npy` files: a 2-D float16/32/64 array, C order, read and written in row chunks.

Reading parses the header itself (never unpickles, whatever the file says) and then hands out
bounded memory-mapped windows of rows (`mapped.map_rows`): no copy through Python buffers.
Files in another byte order are read with ``readinto`` into reused buffers and swapped.
Writing streams raw rows after a header written up front, with direct writes when the row
count is known (`direct.DirectWriter`); when it is not (a stream), the header reserves room and
is rewritten with the count at the end.
A stamp lives in a sidecar ``NAME.npy.procalign.json`` (written after the rename).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from ..errors import InputError
from .direct import ALIGN, DirectWriter
from .mapped import map_rows
from .base import FLOAT_DTYPES, Batch, parse_stamp, BufferRing, ReadOptions, Sink, SinkSpec, Source

STAMP_SUFFIX = ".procalign.json"


def read_header(path: Path, f) -> tuple[tuple, bool, np.dtype, int]:
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f, max_header_size=100000)
        else:
            shape, fortran, dtype = npformat.read_array_header_2_0(f, max_header_size=100000)
    except (ValueError, OSError, SyntaxError) as e:
        raise InputError(f"not a valid .npy file ({e}); write it with numpy.save", path) from None
    return shape, fortran, dtype, f.tell()


class NpySource(Source):
    mapped = True  # batches are memory-mapped windows (see chunking)

    def __init__(self, location, options: ReadOptions = ReadOptions()):
        path = location.path
        self.path = str(path)
        p = Path(path)
        self._file = open(p, "rb")
        shape, fortran, dtype, self._offset = read_header(p, self._file)
        if dtype.hasobject:
            self.close()
            raise InputError(f"dtype {dtype} holds Python objects (pickle), which procalign never loads; "
                             "save a float32 array", p)
        if any(n < 0 for n in shape):
            self.close()
            raise InputError(f"header declares a negative shape {shape}; the file is damaged, re-create it", p)
        if len(shape) != 2:
            self.close()
            raise InputError(f"array is {len(shape)}-D with shape {shape}, expected 2-D (rows, dim); "
                             "reshape to (n, d) before saving", p)
        if dtype.newbyteorder("=") not in FLOAT_DTYPES:
            self.close()
            raise InputError(f"dtype {dtype} is not float16/32/64; convert with .astype(np.float32)", p)
        if fortran and shape[0] > 1 and shape[1] > 1:
            self.close()
            raise InputError("array is in Fortran (column-major) order and cannot be streamed by rows; "
                             "save np.ascontiguousarray(a)", p)
        self.rows, self.dim = int(shape[0]), int(shape[1])
        self._file_dtype = dtype
        self.mapped = dtype == dtype.newbyteorder("=")
        self.dtype = dtype.newbyteorder("=")
        expected = self._offset + self.rows * self.dim * dtype.itemsize
        actual = os.fstat(self._file.fileno()).st_size
        if actual < expected:
            self.close()
            raise InputError(f"file is truncated: {actual} bytes, header promises {expected}; "
                             "re-create it", p)

    def _read_rows(self, start: int, out: np.ndarray) -> np.ndarray:
        self._file.seek(self._offset + start * self.dim * self.dtype.itemsize)
        raw = out.view(np.uint8).reshape(-1)
        got = self._file.readinto(raw)
        if got != raw.nbytes:
            raise InputError(f"file ended early at row {start + got // (self.dim * self.dtype.itemsize)}; "
                             "it is truncated or being written", self.path)
        if self._file_dtype != self.dtype:  # non-native byte order
            out.byteswap(inplace=True)
        return out

    def batches(self, batch_rows, start=0, with_ids=False):
        if self._file_dtype != self.dtype:  # another byte order: copy and swap
            ring = BufferRing((min(batch_rows, max(self.rows, 1)), self.dim), self.dtype, self.ring_size)
            for a in range(start, self.rows, batch_rows):
                yield Batch(a, self._read_rows(a, ring.next(min(batch_rows, self.rows - a))))
            return
        for a in range(start, self.rows, batch_rows):
            n = min(batch_rows, self.rows - a)
            try:
                window = map_rows(self._file.fileno(), self._offset, self.dtype, self.dim, a, n)
            except ValueError:  # the mapping runs past the end: the file shrank after it was opened
                raise InputError(f"file ended before row {a + n}; it was truncated while being read", self.path) \
                    from None
            yield Batch(a, window)

    def take(self, indices):
        mm = np.memmap(self.path, dtype=self._file_dtype, mode="r", offset=self._offset,
                       shape=(self.rows, self.dim))
        return np.asarray(mm[np.asarray(indices)], dtype=self.dtype)

    def stamp(self):
        # beside the name given, else beside the file a symlink points to (where apply wrote it)
        for side in dict.fromkeys((stamp_path(Path(self.path)), stamp_path(Path(os.path.realpath(self.path))))):
            if side.is_file():
                return parse_stamp(side.read_bytes(), self.path, f"sidecar {side.name}")
        return None

    def close(self):
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None


def _header(dtype: np.dtype, rows: int, dim: int) -> dict:
    return {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, dim)}


STREAM_HEADER_BYTES = 128  # room for any row count; a multiple of 64 keeps the data aligned


def stream_header(dtype: np.dtype, rows: int, dim: int, size: int = STREAM_HEADER_BYTES) -> bytes:
    """A version 1.0 header of exactly ``size`` bytes (a multiple of 64). A stream's header,
    written before the row count is known, is rewritten in place with the real count; a file
    of known size gets an `ALIGN`-byte header so that its rows start on a block boundary
    (for direct writes)."""
    text = repr(_header(dtype, rows, dim))
    pad = size - 10 - len(text) - 1
    if pad < 0:
        raise ValueError(f"npy header for shape ({rows}, {dim}) does not fit {size} bytes")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + (text + " " * pad + "\n").encode("latin1")


class NpySink(Sink):
    """Writes the header for (rows, dim) first, then rows as they come.

    When the row count is known the file is allocated whole up front (``posix_fallocate``: a
    full disk fails now, not mid-way), its header fills one block and the rows go to the disk
    with direct writes (`DirectWriter`: the page cache costs more CPU than the product); a
    stream is appended with plain writes and its header rewritten at the end.
    """

    aligned_writes = True  # chunks of whole blocks go straight to the disk (see chunking)

    def __init__(self, path, spec: SinkSpec, resume_rows=0):
        super().__init__(path, spec, resume_rows)
        self.dim, self.dtype = spec.dim, np.dtype(spec.dtype)
        self._row_bytes = max(self.dim * self.dtype.itemsize, 1)
        self._writer: DirectWriter | None = None
        if resume_rows:
            self._file = open(path, "r+b")
            npformat.read_magic(self._file)
            self._file.seek(0)
            self._offset = read_header(Path(path), self._file)[3]
            end = self._offset + resume_rows * self.dim * self.dtype.itemsize
            held = os.fstat(self._file.fileno()).st_size
            if held < end:
                self._file.close()
                raise ValueError(f"the partial file holds {(held - self._offset) // self._row_bytes} rows, "
                                 f"not {resume_rows}")
            self._file.seek(end)
            if spec.rows is None:
                self._file.truncate()
        else:
            self._file = open(path, "w+b")
            if spec.rows is None:
                self._file.write(stream_header(self.dtype, 0, self.dim))
            else:
                self._file.write(stream_header(self.dtype, spec.rows, self.dim, ALIGN))
            self._offset = self._file.tell()
            self._file.flush()
            if spec.rows:
                os.posix_fallocate(self._file.fileno(), 0, self._offset + spec.rows * self._row_bytes)
        if spec.rows is not None:
            self._writer = DirectWriter(path, self._file.fileno())

    def row_at(self, index):
        row = np.empty(self.dim, self.dtype)
        got = os.pread(self._file.fileno(), self._row_bytes, self._offset + index * self._row_bytes)
        row.view(np.uint8)[:] = np.frombuffer(got, np.uint8) if len(got) == self._row_bytes else 0
        return row

    def write(self, embeddings, extra=None, ids=None):
        a = np.ascontiguousarray(embeddings, dtype=self.dtype)
        if self._writer is not None:
            self._writer.write_at(self._offset + self.written * self._row_bytes, a)
        else:
            self._file.seek(self._offset + self.written * self._row_bytes)
            self._file.write(memoryview(a).cast("B"))
        self.written += len(a)

    def flush(self):
        """Hand written rows to the OS: they then survive the death of this process."""
        self._file.flush()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self):
        self._check_rows()
        self._close_writer()
        if self.spec.rows is None:
            self._file.seek(0)
            self._file.write(stream_header(self.dtype, self.written, self.dim))
        self._file.close()
        self._file = None

    def abort(self):
        if getattr(self, "_writer", None):
            self._close_writer()
        if getattr(self, "_file", None):
            self._file.close()
            self._file = None

    def after_commit(self, final: Path) -> None:
        """The stamp goes beside the file (the real one, when ``final`` is a symlink), once the
        file is in place; without a stamp a stale one from an earlier file is removed."""
        side = stamp_path(Path(os.path.realpath(final)))
        if self.spec.stamp is None:
            side.unlink(missing_ok=True)
        else:
            write_stamp(Path(os.path.realpath(final)), self.spec.stamp)


def stamp_path(path: Path) -> Path:
    return Path(str(path) + STAMP_SUFFIX)


def write_stamp(path: Path, stamp: dict) -> None:
    side = stamp_path(path)
    tmp = side.with_name(f".{side.name}.tmp")
    tmp.write_text(json.dumps(stamp, sort_keys=True))
    tmp.replace(side)


SOURCE, SINK = NpySource, NpySink
