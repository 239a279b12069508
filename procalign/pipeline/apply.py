"""Apply a transform to a file: a source, the stream core, and a delivery around it.

`apply_file` only decides: which map (forward or inverse), whether the input's stamp allows
it, the output dtype and chunk size, and what identifies the output for a resume. Moving rows
is the stream core's job (`stream.map_stream`); temporary file, lock, journal and rename are
the delivery's (`delivery.Delivery`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, TransformFileError
from ..formats import Location, ReadOptions, SinkSpec, open_source, sink_class
from ..math.affine import NonFiniteRows
from ..transform import Transform
from .chunking import apply_chunk_rows
from .delivery import DeliveryPolicy, delivery_for, resolve_destination
from .journal import Journal, input_identity
from .progress import Progress
from .stamps import check_stamp, stamp_for
from .stream import BatchMapper, map_stream, read_guard


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
    chain: tuple[str, ...] = ()   # the files of a chain composed into ``transform``, if it is one

    @property
    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(self.overwrite, self.wait, self.resume, self.fsync)


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


def _resumed_rows(job: ApplyJob) -> int | None:
    """With --resume and no --batch-rows, the chunk size the partial output was made with: the
    default one depends on the version and on --memory, and a resume must not trip on it."""
    if not job.resume or job.destination.is_stdio:
        return None
    found = Journal.read(resolve_destination(job.destination.path))
    rows = found.identity.get("batch_rows") if found is not None else None
    return rows if isinstance(rows, int) and rows > 0 else None


def apply_file(job: ApplyJob, progress: Progress | None = None) -> ApplyResult:
    progress = progress or Progress()
    applied = job.transform.inverse() if job.inverse else job.transform
    with open_source(job.source, ReadOptions(job.column)) as source:
        if source.rows == 0:
            raise InputError("file has zero rows; there is nothing to map", source.path)
        # the stamp first: data already mapped says so (exit 8), whatever its dimension
        check_stamp(source.stamp(), applied, source.path, job.force)
        if source.dim != applied.d_source:
            raise TransformFileError(
                f"transform maps {applied.d_source}-d {'target' if job.inverse else 'source'} vectors but "
                f"{source.path} has {source.dim}-d rows; check the file or the direction (--inverse)",
                job.transform_path)
        out_dtype = np.dtype(job.dtype) if job.dtype else source.dtype
        sink = sink_class(job.destination)
        rows = job.batch_rows or _resumed_rows(job) or \
            apply_chunk_rows(job.memory_mb, source, sink, applied.d_target, out_dtype.itemsize)
        rows = rows if source.rows is None else max(1, min(rows, source.rows))  # buffers never exceed the file
        stamp = stamp_for(job.transform, applied, job.inverse)
        same_format = job.source.format == job.destination.format
        carry_ids = source.id_kind if not same_format and sink.carries_ids else None
        spec = SinkSpec(applied.d_target, out_dtype, source.rows, stamp,
                        like=source.layout if same_format else None, name=job.destination.inner, ids=carry_ids)
        identity = {**input_identity(job.source.path), "location": str(job.source), "column": job.column,
                    "transform": stamp["transform"], "inverse": job.inverse,
                    "dtype": str(out_dtype), "batch_rows": rows, "rows": source.rows,
                    "format": job.destination.format.name}
        began = time.perf_counter()
        inputs = ([] if job.source.is_stdio else [job.source.path]) + (list(job.chain) or [job.transform_path])
        with delivery_for(job.destination, inputs, sink, spec, identity, job.policy) as delivery:
            if job.source.format.name == "parquet" and not same_format:
                delivery.notes.append("other parquet columns are not carried into a non-parquet output")
            if job.source.format.name == "jsonl" and not same_format:
                delivery.notes.append("other JSON keys are not carried into a non-jsonl output")
            if source.id_kind and not same_format and not sink.carries_ids:
                delivery.notes.append(f"ids are not carried into a {job.destination.format.name} output")
            progress.start("applying", None if source.rows is None else source.rows - delivery.start)

            mapper = BatchMapper(applied.map, source.dtype, out_dtype, rows)

            def write(out, batch):  # other columns and keys pass through within one format only
                delivery.write(out, batch.extra if same_format else None, batch.ids)
                progress.advance(len(out))

            try:
                batches = read_guard(source.batches(rows, delivery.start, with_ids=carry_ids is not None), source.path)
                done = delivery.start + map_stream(batches, mapper, write)
            except NonFiniteRows as e:
                raise InputError(f"{e.what} at row {int(e.rows[0])}; {e.fix}", source.path) from None
            finally:
                progress.stop()
            if done == 0:  # a stream that turned out empty
                raise InputError("input has zero rows; there is nothing to map", source.path)
            delivery.commit()
        seconds = time.perf_counter() - began
    return ApplyResult(done, seconds, str(job.destination), str(out_dtype), f"{applied.source.name} -> {applied.target.name}", delivery.notes)
