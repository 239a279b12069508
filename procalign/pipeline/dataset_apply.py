"""Apply a transform to a partitioned dataset: one output part per input part, same names.

Each part is a single-file apply (`apply.apply_file`: temporary file, rename, stamp), run by
an engine (`engines`) on threads here or on Dask workers. Each part has a record beside
it, ``.NAME.procalign-done``: what it is made from (the stamp it is written with, the options,
the input part's identity: size, modification time and content sample locally, size and ETag
on object storage), whether it is "writing" or "done", and the finished part's size. A rerun
skips every part whose record is done and matches (and whose size, and locally its own stamp,
are the recorded ones), so an interrupted job resumes part by part;
a part found with a "writing" record of the same job is this job's own and is redone; any other
existing part is replaced only with ``--overwrite``. On object storage a part is fetched, mapped locally and published
through a temporary key (`formats.storage`). One lock covers the output directory.

Before anything is written every part is opened once, so parts that disagree (dimension, float
type) or cannot be read fail the run with nothing written. A run that fails later, on an error
or on SIGINT/SIGTERM, keeps the parts it completed and their "done" records (a rerun resumes
from them), removes the "writing" records of parts that never reached their names, and removes
the output directory if it created it and left nothing in it. After a SIGKILL a "writing"
record may stay; a rerun redoes its part.

Notes
-----
Apply is embarrassingly parallel over parts: no data moves between tasks, and the time is
the slowest worker's share of the parts. Memory per task is ``memory_mb`` (the local engine
splits ``--memory`` between the parts it runs at once).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError, ProcalignError, UsageError
from ..formats import Location, ReadOptions, open_source
from ..formats.parts import check_parts, part_location
from ..formats.storage import Storage, basename, is_url, join
from .apply import ApplyJob, apply_file
from .delivery import release_lock, take_lock
from .journal import input_identity
from .progress import Progress
from .stamps import stamp_for

RECORD_SUFFIX = ".procalign-done"
# What a failed or interrupted run left (the CLI reports it on a signal).
LEFT: list[str] = []


@dataclass(frozen=True)
class PartTask:
    job: ApplyJob       # the dataset's job: source the dataset, destination the output directory
    source: str         # input part (path or URL)
    destination: str    # output part
    memory_mb: int


@dataclass
class PartOutcome:
    source: str
    destination: str
    rows: int
    written: bool       # False: already complete, skipped
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class DatasetResult:
    parts: list[PartOutcome]
    seconds: float
    destination: str
    direction: str

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def written(self) -> int:
        return sum(p.written for p in self.parts)

    @property
    def rows_per_second(self) -> float:
        rows = sum(p.rows for p in self.parts if p.written)
        return rows / self.seconds if self.seconds > 0 else float("inf")


def record_path(part: str) -> str:
    name = basename(part)
    return part[: len(part) - len(name)] + f".{name}{RECORD_SUFFIX}"


def _storage(job: ApplyJob) -> Storage:
    return Storage(json.loads(job.source.storage or "{}"))


def made_from(task: PartTask, storage: Storage) -> dict:
    """What a finished part is made from: the record a rerun must find to skip it."""
    job = task.job
    applied = job.transform.inverse() if job.inverse else job.transform
    source = storage.remote_identity(task.source) if is_url(task.source) else input_identity(Path(task.source))
    return {"stamp": stamp_for(job.transform, applied, job.inverse), "input": source,
            "column": job.column, "dtype": job.dtype, "inner": job.source.inner}


def apply_part(task: PartTask) -> PartOutcome:
    """Map one part, unless its completion record shows it is already done (runs on a worker)."""
    storage, job = _storage(task.job), task.job
    expected, record = made_from(task, storage), record_path(task.destination)
    found = storage.read_json(record) or {}
    ours = found.get("made_from") == expected
    if ours and found.get("state") == "done" and storage.size(task.destination) == found.get("size") \
            and _stamped(task, expected["stamp"]):
        return PartOutcome(task.source, task.destination, int(found.get("rows", 0)), False)
    if storage.exists(task.destination) and not (ours or job.overwrite):
        raise OutputError("part exists but was not made from this input with this transform and options; "
                          "pass --overwrite to replace it", task.destination)
    # "writing": a kill from here on leaves a record that vouches for nothing, yet says that a
    # part found here later is this job's own (put in place just before the kill), not a stranger's
    storage.write_json(record, {"made_from": expected, "state": "writing"})
    with tempfile.TemporaryDirectory(prefix="procalign-part-") as staging:
        local_in = storage.fetch(task.source, Path(staging))
        remote = is_url(task.destination)
        local_out = Path(staging) / "out" / basename(task.destination) if remote else Path(task.destination)
        local_out.parent.mkdir(exist_ok=True)
        part_job = dataclasses.replace(
            job, source=part_location(job.source, task.source, local_in),
            destination=Location(local_out, job.source.format, job.source.inner), memory_mb=task.memory_mb,
            overwrite=True, resume=False)
        result = apply_file(part_job)
        if remote:
            storage.publish(local_out, task.destination)
    storage.write_json(record, {"made_from": expected, "state": "done", "rows": result.rows,
                                "size": storage.size(task.destination)})
    return PartOutcome(task.source, task.destination, result.rows, True, result.seconds, result.notes)


def _stamped(task: PartTask, stamp: dict) -> bool:
    """Whether a local output part carries ``stamp`` (a footer or sidecar read); on object
    storage the record, written after the part, stands for it."""
    if is_url(task.destination):
        return True
    try:
        with open_source(Location(Path(task.destination), task.job.source.format, task.job.source.inner)) as out:
            return out.stamp() == stamp
    except (ProcalignError, OSError, ValueError):
        return False


def part_tasks(job: ApplyJob, output: str, memory_mb: int) -> list[PartTask]:
    names = [basename(ref) for ref in job.source.parts]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"two parts are named {dup!r}; outputs take the parts' names, so they must differ: "
                         "narrow the glob", str(job.source))
    tasks = [PartTask(job, ref, join(output, name), memory_mb) for ref, name in zip(job.source.parts, names)]
    for task in tasks:
        if _same_ref(task.source, task.destination):
            raise OutputError("the output directory holds the input parts; choose another -o", output)
    return tasks


def _same_ref(a: str, b: str) -> bool:
    if is_url(a) or is_url(b):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _lock_file(output: str) -> Path:
    if is_url(output):  # object stores have no locks: runs on this machine exclude each other
        digest = hashlib.sha256(output.rstrip("/").encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"procalign-lock-{digest}"
    return Path(output) / ".procalign-lock"


def apply_dataset(job: ApplyJob, output: str, engine, progress: Progress | None = None) -> DatasetResult:
    """Map every part of ``job.source`` into ``output`` (a directory or a URL prefix)."""
    progress = progress or Progress()
    if job.resume:
        raise UsageError("--resume applies to single files; a partitioned apply resumes by itself, part by part")
    workers = engine.workers if not engine.distributed else 1
    tasks = part_tasks(job, output, job.memory_mb if engine.distributed else max(8, job.memory_mb // workers))
    storage = _storage(job)
    check_parts(job.source, ReadOptions(job.column))  # parts that disagree fail here, before any is written
    created = not is_url(output) and not Path(output).exists()
    storage.make_directory(output)
    applied = job.transform.inverse() if job.inverse else job.transform
    began = time.perf_counter()
    lock = _lock_file(output)
    try:
        fd = take_lock(lock, job.wait, output)
    except BaseException:
        _remove_if_empty(output, created)
        raise
    try:
        outcomes = _run(engine, tasks, progress)
    except BaseException:  # an error or a signal this process handles: no record of an unwritten part stays
        complete = _forget_unwritten(tasks, storage)
        LEFT.append(f"{complete} of {len(tasks)} parts are complete in {output}; rerun the same command to "
                    "resume (complete parts are skipped)")
        release_lock(lock, fd)
        _remove_if_empty(output, created)
        raise
    release_lock(lock, fd)
    order = {t.source: i for i, t in enumerate(tasks)}
    outcomes.sort(key=lambda o: order[o.source])
    return DatasetResult(outcomes, time.perf_counter() - began, output,
                         f"{applied.source.name} -> {applied.target.name}")


def _run(engine, tasks: list[PartTask], progress: Progress) -> list[PartOutcome]:
    outcomes = []
    progress.start("applying", len(tasks), unit="parts")
    try:
        for outcome in engine.run(apply_part, tasks):
            outcomes.append(outcome)
            progress.advance(1)
    finally:
        progress.stop()
    return outcomes


def _forget_unwritten(tasks: list[PartTask], storage: Storage) -> int:
    """After a failure: remove the "writing" records of parts that never reached their names, and
    count the complete parts. Complete parts and their "done" records stay, so that a rerun
    resumes; a "writing" record beside a part that is in place stays too (it vouches that the
    part is this job's own)."""
    complete = 0
    for task in tasks:
        record = record_path(task.destination)
        try:
            state = (storage.read_json(record) or {}).get("state")
            complete += state == "done"
            if state == "writing" and not storage.exists(task.destination):
                storage.remove(record)
        except Exception:  # the store fails too (unreachable...): the error being reported says why
            break
    return complete


def _remove_if_empty(output: str, created: bool) -> None:
    """Remove the output directory this run created, when nothing was written into it."""
    if created:
        with contextlib.suppress(OSError):
            Path(output).rmdir()
