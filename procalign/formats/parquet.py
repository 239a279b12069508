"""`.parquet` files: one embedding column (list, large_list or fixed_size_list of floats).

The column is ``column=`` or the only list-of-float column. Record batches are read with all
other columns; the embedding values go from the Arrow buffer to numpy without Python objects
(`to_matrix`). A sink from a parquet source keeps every other column (they travel with each
batch as its ``extra`` record batch) and the schema metadata (declared by the source's
`ParquetLayout`); the embedding column keeps its list kind with the output float type, and is
written plain and uncompressed (see `writer_options`).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, UsageError
from . import parquet_footer as footer
from .base import Batch, parse_stamp, ReadOptions, Sink, SinkSpec, Source, take_by_segment

STAMP_KEY = b"procalign.stamp"
READ_BUFFER = 8 << 20
ID_COLUMN = "id"


def _is_float_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) \
        and pa.types.is_floating(t.value_type)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def to_matrix(arr: pa.Array, dim: int, path: str, first_row: int) -> np.ndarray:
    """(rows, dim) numpy view of a list-of-float Arrow array, checking nulls and lengths."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        bad = first_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"embedding is null at row {bad}; drop or fill the null rows", path)
    if not pa.types.is_fixed_size_list(arr.type):
        offsets = arr.offsets.to_numpy()
        lengths = np.diff(offsets)
        if len(lengths) and (lengths != dim).any():
            i = int(np.flatnonzero(lengths != dim)[0])
            raise InputError(f"ragged embeddings: row {first_row + i} has {lengths[i]} values, "
                             f"expected {dim}; all rows need the same length", path)
    values = arr.flatten()
    if values.null_count:
        raise InputError(f"null value inside an embedding near row {first_row}; fill or drop it", path)
    return values.to_numpy(zero_copy_only=True).reshape(-1, dim)


@dataclass(frozen=True)
class ParquetLayout:
    """What a parquet sink carries over from a parquet source: its schema (with metadata) and
    which column holds the embeddings."""

    schema: pa.Schema
    column: str
    codecs: tuple = ()  # (column, codec) of the source's other columns, kept in the output


class ParquetSource(Source):
    extra_buffers = 4  # decoded record batches in flight and page buffers (measured)
    cheap_take = False  # take() decodes whole row groups: joins by id spool instead

    def __init__(self, location, options: ReadOptions = ReadOptions()):
        path, column, id_column = location.path, options.column, options.id_column
        self.path = str(path)
        try:
            # Stream pages through a small buffer, one row group at a time: by default pyarrow
            # reads whole column chunks and pre-buffers ahead, which measured 1.7 GB of RSS for
            # a 1.5 GB file; this way memory no longer depends on the row-group size.
            self._pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"not a readable parquet file ({e}); check it was written completely",
                             path) from None
        schema = self._pf.schema_arrow
        if column is None:
            found = [f.name for f in schema if _is_float_list(f.type)]
            if len(found) != 1:
                what = "no list-of-float column" if not found else f"several list-of-float columns ({', '.join(found)})"
                raise UsageError(f"{what}; name the embedding column with --column", path)
            column = found[0]
        if column not in schema.names:
            raise UsageError(f"no column {column!r} (columns: {', '.join(schema.names)}); fix --column", path)
        ftype = schema.field(column).type
        if not _is_float_list(ftype):
            kind = "list of " + str(ftype.value_type) if _is_list(ftype) else str(ftype)
            raise InputError(f"column {column!r} is {kind}, expected a list of floats; cast it to "
                             "list<float32> or name another column with --column", path)
        self.column, self.field_type = column, ftype
        self.id_column = id_column if id_column is not None else (ID_COLUMN if ID_COLUMN in schema.names else None)
        if self.id_column is not None and self.id_column in schema.names:
            id_type = schema.field(self.id_column).type
            if self.id_column == column:
                raise UsageError(f"--id-column {self.id_column!r} is the embedding column; name the id column", path)
            if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
                raise InputError(f"id column {self.id_column!r} is {id_type}; ids must be integers or strings "
                                 "(or pass --by-position)", path)
        if self.id_column is not None and self.id_column not in schema.names:
            raise UsageError(f"no id column {self.id_column!r} (columns: {', '.join(schema.names)}); "
                             "fix --id-column", path)
        self.rows = self._pf.metadata.num_rows
        self.dtype = np.dtype(ftype.value_type.to_pandas_dtype())
        if pa.types.is_fixed_size_list(ftype):
            self.dim = ftype.list_size
        elif self.rows == 0:
            self.dim = 0
        else:
            first = next(self._pf.iter_batches(batch_size=1, columns=[column])).column(0)
            if first.null_count:
                raise InputError("embedding is null at row 0; drop or fill the null rows", path)
            self.dim = len(first[0])
        self.metadata = schema.metadata or {}
        self.layout = ParquetLayout(schema, column, _codecs(self._pf))
        if self.id_column is not None:
            id_type = schema.field(self.id_column).type
            self.id_kind = self._id_kind(np.dtype(id_type.to_pandas_dtype()) if pa.types.is_integer(id_type) else object)
        groups = [self._pf.metadata.row_group(i).num_rows for i in range(self._pf.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(groups)]).astype(np.int64)

    def batches(self, batch_rows, start=0, with_ids=False):
        # Row groups before `start` are skipped whole; the remainder is sliced off.
        first = int(np.searchsorted(self._group_starts, start, side="right") - 1) if start else 0
        for group in range(max(first, 0), self._pf.num_row_groups):
            pos = int(self._group_starts[group])
            for rb in self._pf.iter_batches(batch_size=batch_rows, row_groups=[group]):
                if pos + rb.num_rows <= start:
                    pos += rb.num_rows
                    continue
                if pos < start:
                    rb, pos = rb.slice(start - pos), start
                ids = self._batch_ids(rb, pos) if with_ids and self.id_column else None
                yield Batch(pos, to_matrix(rb.column(self.column), self.dim, self.path, pos), rb, ids)
                pos += rb.num_rows

    def _batch_ids(self, rb: pa.RecordBatch, first: int) -> np.ndarray:
        col = rb.column(self.id_column)
        if col.null_count:
            raise InputError(f"id column {self.id_column!r} is null near row {first}; every row needs an id to carry",
                             self.path)
        return col.to_numpy(zero_copy_only=False)

    def take(self, indices):
        def read(g, local):
            col = self._pf.read_row_group(g, columns=[self.column]).column(0)
            return to_matrix(col, self.dim, self.path, int(self._group_starts[g]))[local]
        return take_by_segment(indices, self._group_starts, self.dim, self.dtype, read)

    def ids(self):
        if self.id_column is None:
            return None
        col = self._pf.read(columns=[self.id_column]).column(0)
        if col.null_count:
            raise InputError(f"id column {self.id_column!r} has {col.null_count} nulls; every anchor needs an id",
                             self.path)
        return col.to_numpy(zero_copy_only=False)

    def stamp(self):
        return parse_stamp(self.metadata.get(STAMP_KEY), self.path, "schema metadata procalign.stamp")

    def close(self):
        self._pf = None


def list_array(matrix: np.ndarray, like: pa.DataType | None) -> pa.Array:
    """Arrow list array of the rows of ``matrix``, of the same list kind as ``like``."""
    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix).reshape(-1))
    if like is None or pa.types.is_fixed_size_list(like):
        return pa.FixedSizeListArray.from_arrays(values, d)
    cls, itype = (pa.LargeListArray, np.int64) if pa.types.is_large_list(like) else (pa.ListArray, np.int32)
    return cls.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=itype)), values)


def _codecs(pf: pq.ParquetFile) -> tuple:
    """(top-level column, codec) as the source file's first row group stores them."""
    if pf.metadata.num_row_groups == 0:
        return ()
    group, found = pf.metadata.row_group(0), {}
    for i in range(group.num_columns):
        chunk = group.column(i)
        found.setdefault(chunk.path_in_schema.split(".")[0], chunk.compression.lower())
    return tuple(found.items())


def writer_options(schema: pa.Schema, column: str, codecs: tuple = ()) -> dict:
    """Encoding for the output: float embeddings neither dictionary-encode nor compress (they
    gain nothing from either and both cost time: measured 2x slower writes, 3x slower reads);
    the other columns keep the source's codec, else pyarrow's default (snappy)."""
    others = [name for name in schema.names if name != column]
    kept = dict(codecs)
    return {"use_dictionary": others,
            "compression": {**{n: kept.get(n, "snappy") for n in others}, column: "none"}}


class ParquetSink(Sink):
    """One row group per written chunk. From a parquet source, other columns pass through.

    Each chunk is encoded by pyarrow as a complete in-memory Parquet file; its body goes to the
    output and its footer to a sidecar (``PATH.footers``), flushed per chunk. `finish` merges the
    footers (`parquet_footer.merge`) and deletes the sidecar. After a kill, ``resume_rows``
    reopens the file and keeps the chunks the sidecar lists, so the result is byte-identical to
    an uninterrupted run with the same chunks.
    """

    carries_ids = True

    extra_buffers = 6  # the encoded chunk grows by doubling, plus pages (measured)

    def __init__(self, path, spec: SinkSpec, resume_rows=0):
        super().__init__(path, spec, resume_rows)
        src = spec.like if isinstance(spec.like, ParquetLayout) else None
        like = src.schema.field(src.column).type if src else None
        self.column = src.column if src else (spec.name or "embedding")
        probe = list_array(np.zeros((1, spec.dim), spec.dtype), like)
        if src:
            schema = src.schema
            i = schema.get_field_index(self.column)
            schema = schema.set(i, pa.field(self.column, probe.type, nullable=schema.field(i).nullable))
        else:
            fields = [pa.field(self.column, probe.type)]
            if spec.ids:  # ids from a source of another format become an `id` column
                id_type = {"int": pa.int64(), "uint": pa.uint64()}.get(spec.ids, pa.string())
                fields.insert(0, pa.field(ID_COLUMN, id_type))
            schema = pa.schema(fields)
        meta = dict(schema.metadata or {})
        if spec.stamp is not None:
            meta[STAMP_KEY] = json.dumps(spec.stamp, sort_keys=True).encode()
        self.schema = schema.with_metadata(meta)
        self._like = like if like is not None else probe.type
        self._options = writer_options(self.schema, self.column, src.codecs if src else ())
        self.dtype = np.dtype(spec.dtype)
        self._sidecar_path = self.sidecars_for(self.path)[0]
        self._footers: list[tuple[bytes, int]] = []
        if resume_rows:
            self._reopen(resume_rows)
        else:
            self._file = open(self.path, "wb")
            self._file.write(footer.MAGIC)
            self._sidecar = open(self._sidecar_path, "wb")

    def _reopen(self, rows: int) -> None:
        records, done, end, pos = [], 0, 4, 0
        with open(self._sidecar_path, "rb") as f:
            data = f.read()
        while done < rows and pos + 20 <= len(data):
            delta, chunk_end, n = struct.unpack("<QQI", data[pos:pos + 20])
            foot = data[pos + 20:pos + 20 + n]
            if len(foot) != n:
                break
            records.append((foot, delta))
            done += footer.footer_rows(foot)
            end, pos = chunk_end, pos + 20 + n
        if done != rows:
            raise ValueError(f"the footer sidecar covers {done} rows, the journal {rows}")
        self._footers = records
        self._sidecar = open(self._sidecar_path, "r+b")
        self._sidecar.truncate(pos)
        self._sidecar.seek(pos)
        self._file = open(self.path, "r+b")
        self._file.truncate(end)
        self._file.seek(end)

    def _encode(self, rb: pa.RecordBatch | None) -> tuple[memoryview, bytes]:
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, self.schema, **self._options) as w:
            if rb is not None:
                w.write_batch(rb, row_group_size=max(rb.num_rows, 1))
        return footer.split_file(sink.getvalue())

    def write(self, embeddings, extra=None, ids=None):
        column = list_array(embeddings.astype(self.dtype, copy=False), self._like)
        if extra is not None:
            i = extra.schema.get_field_index(self.column)
            rb = extra.set_column(i, self.schema.field(self.column), column)
            rb = rb.replace_schema_metadata(self.schema.metadata)
        elif len(self.schema) == 2:
            id_type = self.schema.field(ID_COLUMN).type
            rb = pa.RecordBatch.from_arrays([pa.array(ids, type=id_type), column], schema=self.schema)
        else:
            rb = pa.RecordBatch.from_arrays([column], schema=self.schema)
        self._append(*self._encode(rb))
        self.written += len(embeddings)

    def _append(self, body, foot: bytes) -> None:
        delta = self._file.tell() - 4  # the body sat at offset 4 of its own file
        self._file.write(body)
        self._footers.append((foot, delta))
        self._sidecar.write(struct.pack("<QQI", delta, self._file.tell(), len(foot)) + foot)

    def flush(self):
        """Hand the finished chunks and their footers to the OS (they survive a kill)."""
        self._file.flush()
        self._sidecar.flush()

    @classmethod
    def sidecars_for(cls, path: Path) -> list[Path]:
        return [Path(str(path) + ".footers")]

    def finish(self):
        self._check_rows()
        if not self._footers:  # no rows: a valid file with the schema and no row group
            self._append(*self._encode(None))
        self._file.write(footer.tail(footer.merge(self._footers)))
        self._file.close()
        self._sidecar.close()
        self._file = None
        os.remove(self._sidecar_path)

    def abort(self):
        for f in (getattr(self, "_file", None), getattr(self, "_sidecar", None)):
            if f is not None:
                f.close()
        self._file = None


SOURCE, SINK = ParquetSource, ParquetSink
