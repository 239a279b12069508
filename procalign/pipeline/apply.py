"""Stream a file through a transform into a new file, never leaving a partial destination."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, SpaceMismatchError, TransformFileError, UsageError
from ..io import Location, open_reader, writer_class
from ..transform import ChunkMapper, NonFiniteRows, Transform
from .destination import Destination
from .journal import Journal, input_identity
from .progress import Progress
from .stream import run_stages

RING = 4  # buffers per side; see stream.py for why four suffice


@dataclass
class ApplyJob:
    transform: Transform
    transform_path: str
    source: Location
    destination: Location
    inverse: bool = False
    dtype: str | None = None
    column: str | None = None
    memory_mb: int = 128
    batch_rows: int | None = None
    overwrite: bool = False
    wait: bool = False
    force: bool = False
    resume: bool = False
    fsync: bool = False


@dataclass
class ApplyResult:
    rows: int
    seconds: float
    destination: str
    dtype: str
    direction: str
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def spaces(t: Transform, inverse: bool) -> tuple[str, str]:
    """(space the input must be in, space the output will be in)."""
    s = t.metadata.get("source", {}).get("name", "source")
    d = t.metadata.get("target", {}).get("name", "target")
    return (d, s) if inverse else (s, d)


def check_stamp(stamp: dict | None, expected: str, produced: str, path: str, force: bool) -> None:
    if force or not stamp:
        return
    space = stamp.get("space")
    if space == produced and space != expected:
        raise SpaceMismatchError(f"data is already in space {space!r} (stamped by a previous apply); the "
                                 f"transform expects {expected!r}: use --inverse to map back, or --force", path)
    if space != expected:
        raise SpaceMismatchError(f"data is stamped as space {space!r} but the transform maps from {expected!r}; "
                                 "use the matching transform or --force", path)


def batch_rows_for(budget_mb: int, d_in: int, d_out: int, in_bytes: int, out_bytes: int,
                   reader_extra: int = 0, writer_extra: int = 0) -> int:
    """Rows per chunk so that all chunk-sized buffers in flight fit in the memory budget."""
    per_row = (RING + reader_extra) * d_in * in_bytes + (RING + writer_extra) * d_out * out_bytes
    return int(max(256, min(1 << 17, budget_mb * 2**20 // per_row)))


def apply_file(job: ApplyJob, progress: Progress | None = None) -> ApplyResult:
    progress = progress or Progress()
    t = job.transform.inverse() if job.inverse else job.transform
    expected, produced = spaces(job.transform, job.inverse)
    with open_reader(job.source, job.column) as reader:
        if reader.dim != t.d_source:
            raise TransformFileError(
                f"transform maps {t.d_source}-d {'target' if job.inverse else 'source'} vectors but "
                f"{reader.path} has {reader.dim}-d rows; check the file or the direction (--inverse)",
                job.transform_path)
        check_stamp(reader.stamp(), expected, produced, reader.path, job.force)
        out_dtype = np.dtype(job.dtype) if job.dtype else reader.dtype
        work = np.float64 if reader.dtype == np.float64 or out_dtype == np.float64 else np.float32
        mapper = ChunkMapper(t, work)
        rows = job.batch_rows or batch_rows_for(job.memory_mb, reader.dim, t.d_target, reader.dtype.itemsize,
                                                out_dtype.itemsize, reader.extra_buffers,
                                                writer_class(job.destination).extra_buffers)
        stamp = {"space": produced, "from_space": expected,
                 "transform": job.transform.metadata.get("checksum"),
                 "direction": "inverse" if job.inverse else "forward"}
        out_ring = [np.empty((min(rows, max(reader.rows, 1)), t.d_target), out_dtype) for _ in range(RING)]
        notes = []
        if job.source.format == ".parquet" and job.destination.format != ".parquet":
            notes.append("other parquet columns are not carried into a non-parquet output")
        identity = {**input_identity(job.source.path), "transform": stamp["transform"], "inverse": job.inverse,
                    "dtype": str(out_dtype), "batch_rows": rows, "rows": reader.rows, "format": job.destination.format}
        began = time.perf_counter()
        with Destination(job.destination.path, [job.source.path], job.overwrite, job.wait,
                         keep_partial=job.resume, fsync=job.fsync) as dest:
            start = _resume_point(job, dest, identity, notes)
            journal = Journal(Journal.path_for(job.destination.path), identity, start)
            make_writer = writer_class(job.destination)
            try:
                writer = make_writer(dest.temp, reader.rows, t.d_target, out_dtype, source=reader, stamp=stamp,
                                     resume_rows=start)
            except (ValueError, OSError) as e:
                if not start:
                    raise
                dest.discard()
                notes[-1] = f"could not resume ({e}); started from the beginning"
                start = journal.rows_done = 0
                writer = make_writer(dest.temp, reader.rows, t.d_target, out_dtype, source=reader, stamp=stamp)
            turn = [0]

            def compute(batch):
                out = out_ring[turn[0] % RING][: len(batch.embeddings)]
                turn[0] += 1
                try:
                    mapper.map(batch.embeddings, out, batch.start)
                except NonFiniteRows as e:
                    raise InputError(f"{e.what} at row {int(e.rows[0])}; drop or repair those rows"
                                     + (" or apply without normalisation" if "normal" in e.what else ""),
                                     reader.path) from None
                return out, batch.extra

            def consume(item):
                out, extra = item
                writer.write(out, extra)
                writer.flush()
                journal.save(journal.rows_done + len(out))
                progress.advance(len(out))

            progress.start("applying", reader.rows - start)
            try:
                run_stages(reader.iter_batches(rows, start), compute, consume)
                writer.close()
            except BaseException:
                writer.abort()
                raise
            finally:
                progress.stop()
            dest.commit()
            if job.destination.format == ".npy":
                _write_sidecar(job.destination.path, stamp)
        seconds = time.perf_counter() - began
    return ApplyResult(reader.rows, seconds, str(job.destination), str(out_dtype),
                       f"{expected} -> {produced}", notes)


def _resume_point(job: ApplyJob, dest: Destination, identity: dict, notes: list[str]) -> int:
    """Rows already complete in the temporary file (0 unless resuming a matching run)."""
    if not job.resume:
        return 0
    found = Journal.read(job.destination.path)
    if found is None or not dest.temp.exists():
        dest.discard()
        notes.append("nothing to resume; started from the beginning")
        return 0
    if found.identity != identity:
        changed = sorted(k for k in identity if identity[k] != found.identity.get(k))
        raise UsageError(f"the partial output was made with a different {', '.join(changed)}; rerun "
                         "with the same input, transform and options, or without --resume", job.destination.path)
    notes.append(f"resumed after row {found.rows_done}")
    return found.rows_done


def _write_sidecar(path: Path, stamp: dict) -> None:
    from ..io.npy import STAMP_SUFFIX
    side = Path(str(path) + STAMP_SUFFIX)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(stamp, sort_keys=True))
    tmp.replace(side)
