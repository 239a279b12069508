"""Embedding collections as the `llm` tool keeps them in SQLite: ``FILE.db:COLLECTION``.

`llm` stores a collection as a row of ``collections`` (``id``, ``name``, ``model``) and its
items as rows of ``embeddings`` (``collection_id``, ``id``, ``embedding``, ``content``,
``content_blob``, ``content_hash``, ``metadata``, ``updated``), the embedding a little-endian
float32 blob. A source reads one collection in rowid order; ``id`` pairs anchors. A sink
writes a new collection, in the same database or another, with the same ids, content, hash,
metadata and time, and the transform's target space as its ``model``. It writes in one
transaction (`self_atomic`): a killed or failed run leaves no collection behind. An existing
collection of that name is replaced only with ``--overwrite``. Only the standard library's
sqlite3 is used; a new database gets the tables and migration records `llm` expects, so
``llm``'s own `Collection` opens it.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import numpy as np

from ..errors import InputError, OutputError, UsageError
from .base import Batch, ReadOptions, Sink, SinkSpec, Source

BLOB = np.dtype("<f4")
COLUMNS = ("id", "embedding", "content", "content_blob", "content_hash", "metadata", "updated")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS [collections] ([id] INTEGER PRIMARY KEY, [name] TEXT, [model] TEXT)",
    "CREATE UNIQUE INDEX IF NOT EXISTS [idx_collections_name] ON [collections] ([name])",
    "CREATE TABLE IF NOT EXISTS [embeddings] ([collection_id] INTEGER REFERENCES [collections]([id]), "
    "[id] TEXT, [embedding] BLOB, [content] TEXT, [content_blob] BLOB, [content_hash] BLOB, [metadata] TEXT, "
    "[updated] INTEGER, PRIMARY KEY ([collection_id], [id]))",
    "CREATE INDEX IF NOT EXISTS [idx_embeddings_content_hash] ON [embeddings] ([content_hash])",
    "CREATE TABLE IF NOT EXISTS [_sqlite_migrations] ([id] INTEGER PRIMARY KEY, [migration_set] TEXT, "
    "[name] TEXT, [applied_at] TEXT)",
    "CREATE UNIQUE INDEX IF NOT EXISTS [idx__sqlite_migrations_migration_set_name] "
    "ON [_sqlite_migrations] ([migration_set], [name])",
)
# the migrations of llm's embeddings database that the schema above already embodies
MIGRATIONS = ("m001_create_tables", "m002_foreign_key", "m003_add_updated", "m004_store_content_hash",
              "m005_add_content_blob")


def _connect(path) -> sqlite3.Connection:
    # autocommit mode: transactions are begun and ended explicitly; wait for other writers
    # one thread at a time uses a connection, but not always the one that opened it (stream.py)
    return sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)


class LlmSource(Source):
    def __init__(self, location, options: ReadOptions = ReadOptions()):
        self.path, self.name = str(location.path), location.inner
        try:
            self._db = _connect(location.path)
            found = self._db.execute("SELECT id FROM collections WHERE name = ?", [self.name]).fetchone()
        except sqlite3.DatabaseError as e:
            raise InputError(f"not an llm embeddings database ({e}); check the file", self.path) from None
        if found is None:
            names = [r[0] for r in self._db.execute("SELECT name FROM collections")]
            raise UsageError(f"no collection {self.name!r} (collections: {', '.join(names) or 'none'})", self.path)
        self._cid = found[0]
        self._rowids = np.array([r[0] for r in self._db.execute(
            "SELECT rowid FROM embeddings WHERE collection_id = ? ORDER BY rowid", [self._cid])], dtype=np.int64)
        self.rows, self.dtype, self.id_kind = len(self._rowids), np.dtype(np.float32), "str"
        first = self._db.execute("SELECT embedding FROM embeddings WHERE rowid = ?",
                                 [int(self._rowids[0])]).fetchone() if self.rows else None
        self.dim = len(first[0]) // BLOB.itemsize if first else 0

    def _fetch(self, rowids: np.ndarray) -> list[tuple]:
        marks = ",".join("?" * len(rowids))
        rows = self._db.execute(f"SELECT rowid, {', '.join(COLUMNS)} FROM embeddings WHERE rowid IN ({marks})",
                                [int(r) for r in rowids]).fetchall()
        order = {rowid: k for k, rowid in enumerate(rowids.tolist())}
        return [r[1:] for r in sorted(rows, key=lambda r: order[r[0]])]

    def _matrix(self, records: list[tuple], first: int) -> np.ndarray:
        out = np.empty((len(records), self.dim), np.float32)
        for k, record in enumerate(records):
            blob = record[1]
            if not isinstance(blob, bytes) or len(blob) != self.dim * BLOB.itemsize:
                raise InputError(f"item {record[0]!r} (row {first + k}) has an embedding of "
                                 f"{len(blob) if isinstance(blob, bytes) else 0} bytes, expected {self.dim * 4}",
                                 self.path)
            out[k] = np.frombuffer(blob, BLOB)
        return out

    def batches(self, rows, start=0, with_ids=False):
        for a in range(start, self.rows, rows):
            records = self._fetch(self._rowids[a:a + rows])
            ids = np.array([r[0] for r in records], dtype=object) if with_ids else None
            yield Batch(a, self._matrix(records, a), records, ids)

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.dim), np.float32)
        for a in range(0, len(indices), 900):  # SQLite caps the number of bound parameters
            out[a:a + 900] = self._matrix(self._fetch(self._rowids[indices[a:a + 900]]), a)
        return out

    def ids(self):
        return np.array([r[0] for r in self._db.execute(
            "SELECT id FROM embeddings WHERE collection_id = ? ORDER BY rowid", [self._cid])], dtype=object)

    def stamp(self):
        return None  # the collection's `model` says which space it is in; see LlmSink

    def close(self):
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None


class LlmSink(Sink):
    """A new collection, written in one transaction (committed by `finish`)."""

    carries_ids = True
    self_atomic = True

    def __init__(self, path, spec: SinkSpec, resume_rows=0, overwrite=False):
        super().__init__(path, spec, resume_rows)
        self.name = spec.name  # llm stores float32 blobs whatever --dtype says
        self._db = _connect(path)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                self._db.execute(statement)
            self._record_migrations()
            self._cid = self._create_collection(overwrite)
        except BaseException:
            self.abort()
            raise

    def _record_migrations(self) -> None:
        now = str(datetime.now(timezone.utc))
        self._db.executemany("INSERT OR IGNORE INTO _sqlite_migrations (migration_set, name, applied_at) "
                             "VALUES ('llm.embeddings', ?, ?)", [(m, now) for m in MIGRATIONS])

    def _create_collection(self, overwrite: bool) -> int:
        found = self._db.execute("SELECT id FROM collections WHERE name = ?", [self.name]).fetchone()
        if found is not None and not overwrite:
            raise OutputError(f"collection {self.name!r} exists; pass --overwrite to replace it", self.path)
        model = (self.spec.stamp or {}).get("space", "procalign")
        if found is not None:
            self._db.execute("DELETE FROM embeddings WHERE collection_id = ?", [found[0]])
            self._db.execute("UPDATE collections SET model = ? WHERE id = ?", [model, found[0]])
            return found[0]
        return self._db.execute("INSERT INTO collections (name, model) VALUES (?, ?)", [self.name, model]).lastrowid

    def write(self, embeddings, extra=None, ids=None):
        blobs = [np.ascontiguousarray(row, BLOB).tobytes() for row in embeddings]
        if extra is not None:  # records of a collection: keep everything but the vector
            rows = [(self._cid, r[0], blob, *r[2:]) for r, blob in zip(extra, blobs)]
        else:
            keys = ids if ids is not None else range(self.written, self.written + len(blobs))
            now = int(datetime.now(timezone.utc).timestamp())
            rows = [(self._cid, str(_plain(k)), blob, None, None, None, None, now) for k, blob in zip(keys, blobs)]
        try:
            self._db.executemany("INSERT INTO embeddings (collection_id, id, embedding, content, content_blob, "
                                 "content_hash, metadata, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as e:
            raise InputError(f"ids must be unique within a collection ({e})", self.path) from None
        self.written += len(blobs)

    def finish(self):
        self._check_rows()
        self._db.execute("COMMIT")
        self._db.close()
        self._db = None

    def abort(self):
        if getattr(self, "_db", None) is not None:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._db.close()
            self._db = None


def _plain(value):
    return value.item() if hasattr(value, "item") else value


SOURCE, SINK = LlmSource, LlmSink
