"""JSON lines (``.jsonl``, ``.ndjson``, or ``-`` for standard input/output): one object per line.

Each line is an object with the embedding under ``embedding`` (``--column`` names another key)
as a list of numbers; every other key passes through unchanged and in its order (a batch
carries its records as ``extra``), and ``id``, when present, pairs anchors in `fit`. Rows are
streamed: the count is unknown until the end (``rows`` is None), memory is one chunk. Blank
lines are skipped; a line that is not such an object is an error naming its line number.

The data carries no stamp (a record has no place for one that would not change the records).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from .base import Batch, ReadOptions, Sink, SinkSpec, Source

KEY = "embedding"
ID_KEY = "id"


def _lines(location):
    """Numbered lines of a file, or of standard input for ``-``."""
    stream = sys.stdin.buffer if location.is_stdio else open(location.path, "rb")
    try:
        yield from enumerate(stream, start=1)
    finally:
        if not location.is_stdio:
            stream.close()


class JsonlSource(Source):
    def __init__(self, location, options: ReadOptions = ReadOptions()):
        self.location = location
        self.path = "<stdin>" if location.is_stdio else str(location.path)
        self.key = options.column or KEY
        self.id_key = options.id_column or ID_KEY
        self.rows, self.dtype = None, np.dtype(np.float32)
        self._lines = _lines(location)
        self._first = self._next_record()  # the first record fixes the dimension
        self.dim = 0 if self._first is None else len(self._first[1][self.key])
        self.id_kind = None
        if self._first is not None and self.id_key in self._first[1]:
            self.id_kind = "int" if isinstance(self._first[1][self.id_key], int) else "str"

    def _next_record(self) -> tuple[int, dict] | None:
        for number, raw in self._lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as e:
                raise InputError(f"line {number} is not JSON ({e.msg}); fix or drop it", self.path) from None
            vector = record.get(self.key) if isinstance(record, dict) else None
            if not isinstance(vector, list) or not vector:
                what = "is not a JSON object" if not isinstance(record, dict) else f"has no list {self.key!r}"
                raise InputError(f"line {number} {what}; every line needs {{\"{self.key}\": [numbers], ...}} "
                                 "(--column names another key)", self.path)
            return number, record
        return None

    def batches(self, rows, start=0, with_ids=False):
        if start:
            raise UsageError("a JSON lines input is a stream and cannot resume; rerun without --resume", self.path)
        index, pending = 0, []
        item = self._first
        while item is not None:
            pending.append(item)
            if len(pending) == rows:
                yield self._batch(index, pending, with_ids)
                index, pending = index + len(pending), []
            item = self._next_record()
        if pending:
            yield self._batch(index, pending, with_ids)

    def _batch(self, index: int, items: list, with_ids: bool) -> Batch:
        try:
            matrix = np.array([record[self.key] for _, record in items], dtype=np.float32)
        except (ValueError, TypeError):
            matrix = None
        if matrix is None or matrix.ndim != 2 or matrix.shape[1] != self.dim:
            for number, record in items:
                vector = record[self.key]
                if len(vector) != self.dim or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in vector):
                    raise InputError(f"line {number}: {self.key!r} must be {self.dim} numbers like the first "
                                     f"line's, got {len(vector)} values", self.path)
        records = [record for _, record in items]
        ids = np.array([r.get(self.id_key) for r in records], dtype=object) if with_ids else None
        return Batch(index, matrix, records, ids)

    def ids(self) -> np.ndarray | None:
        return None  # a stream is paired by reading it whole; see pipeline.anchors

    def close(self):
        self._lines.close()


class JsonlSink(Sink):
    """Writes one object per row: the source's records with the mapped embedding in place of
    the old one, or ``{"embedding": [...]}`` (plus ``id`` when ids are carried)."""

    carries_ids = True

    def __init__(self, path, spec: SinkSpec, resume_rows=0):
        super().__init__(path, spec, resume_rows)
        if resume_rows:
            raise ValueError("JSON lines outputs are written in one go")
        self.key = spec.name or KEY
        self.stdout = str(path) == "-"
        self._file = sys.stdout.buffer if self.stdout else open(path, "wb")
        self._text = io.TextIOWrapper(self._file, encoding="utf-8", newline="\n", write_through=True)

    def write(self, embeddings, extra=None, ids=None):
        values = np.asarray(embeddings).tolist()
        lines = []
        for k, vector in enumerate(values):
            if extra is not None:
                record = dict(extra[k])
                record[self.key if self.key in record else KEY] = vector
            else:
                record = {ID_KEY: _plain(ids[k]), self.key: vector} if ids is not None else {self.key: vector}
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
        self._text.write("\n".join(lines) + "\n" if lines else "")
        self.written += len(values)

    def flush(self):
        self._text.flush()
        if not self.stdout:
            self._file.flush()

    def finish(self):
        self._check_rows()
        self.flush()
        self.abort()

    def abort(self):
        if getattr(self, "_text", None) is not None:
            self._text.detach()  # never close standard output from here
            self._text = None
        if not self.stdout and getattr(self, "_file", None):
            self._file.close()
            self._file = None


def _plain(value):
    return value.item() if hasattr(value, "item") else value


SOURCE, SINK = JsonlSource, JsonlSink
