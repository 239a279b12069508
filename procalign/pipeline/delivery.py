"""Delivery: write a file so that the destination holds either nothing new or the complete result.

`Destination` checks the path before any work, takes an exclusive lock beside it (flock, so a
killed run never leaves a stale lock), hands out a temporary path in the same directory, and
`commit` renames the finished file into place (after an fsync when asked: the rename alone
already guarantees that a killed process leaves no partial destination; the fsync adds
durability across power loss and costs the time to write the whole file to disk). Leaving the ``with`` block without `commit`
deletes the temporary file and its journal (errors, SIGINT, SIGTERM), except after SIGKILL,
where nothing runs: then both stay for ``apply --resume``. With ``keep_partial`` (set by a
resumable apply) a stale temporary file from a killed run is kept for the caller to resume;
otherwise it is removed before writing starts. Files a sink keeps beside the temporary file
are deleted by their exact names (``sidecars``), never by pattern.

`Delivery` wraps a `Sink` in a destination and a journal: the stream core hands it chunks
(`Delivery.write`), and `commit` finishes the sink, renames the file into place and lets the
sink add what belongs beside it (the .npy stamp). Resuming a killed run happens here.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import fcntl
import os
import signal
import stat
import threading
import time
from pathlib import Path

from dataclasses import dataclass

from ..errors import LockedError, OutputError, UsageError
from ..formats import Sink, SinkSpec
from .journal import Journal, journal_path


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-partial")


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-lock")


def resolve_destination(final: Path) -> Path:
    """Where the bytes go: a symlink is written through (the link stays, its target is replaced)."""
    final = Path(final)
    return Path(os.path.realpath(final)) if final.is_symlink() else final


def _kind(path: Path) -> str | None:
    """None for a regular file or nothing; else what the path is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def check_destination(final: Path, inputs: list[Path], overwrite: bool) -> None:
    """Raise OutputError for a destination that cannot or must not be written."""
    named, final = Path(final), resolve_destination(final)
    for p in inputs:
        same_name = os.path.realpath(p) == os.path.realpath(final)
        same_file = final.exists() and Path(p).exists() and os.path.samefile(p, final)  # hard links
        if same_name or same_file:
            raise OutputError("output path is the same as the input; choose another -o", final)
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"directory {parent} does not exist; create it first", final)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"directory {parent} is not writable; pick another -o or fix permissions", final)
    kind = _kind(final)
    if kind == "a directory":
        raise OutputError("destination is a directory; give a file name", named)
    if kind is not None:
        raise OutputError(f"destination is {kind}, not a regular file; procalign only replaces regular "
                          "files, give a file path", named)
    if final.exists() and not overwrite:
        raise OutputError("destination exists; pass --overwrite to replace it", named)


class Destination:
    def __init__(self, final, inputs=(), overwrite=False, wait=False, keep_partial=False, fsync=True,
                 sidecars=()):
        self.named = Path(final)
        self.final = resolve_destination(final)
        self.sidecars = [Path(p) for p in sidecars]
        self.fsync = fsync
        self.keep_partial = keep_partial
        self.inputs = [Path(p) for p in inputs]
        self.overwrite = overwrite
        self.wait = wait
        self.temp = partial_path(self.final)
        self._lock_fd = None
        self.committed = False
        self.keep_partial_on_exit = False  # set when a refused resume must not destroy the partial file

    def __enter__(self) -> "Destination":
        check_destination(self.named, self.inputs, self.overwrite)
        self._lock()
        try:  # again: with --wait, the run we waited for may have written it meanwhile
            check_destination(self.named, self.inputs, self.overwrite)
            if not self.keep_partial:
                self.discard()
        except BaseException:
            self._unlock()
            raise
        return self

    def _lock(self) -> None:
        self._lock_fd = take_lock(lock_path(self.final), self.wait, self.final)

    def commit(self) -> None:
        """Move the finished temporary file into place (atomic on one filesystem)."""
        if self.final.exists() and not self.overwrite:
            raise OutputError("destination appeared while writing; pass --overwrite to replace it", self.final)
        if self.fsync:  # survive power loss too, not only a killed process
            with open(self.temp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(self.temp, self.final)
        self.committed = True
        COMMITTED.append(self.named)
        self.discard()  # the journal

    def discard(self) -> None:
        """Delete the temporary file, the sidecars kept beside it and the journal."""
        self.temp.unlink(missing_ok=True)
        for side in self.sidecars:
            side.unlink(missing_ok=True)
        Journal(journal_path(self.final), {}).remove()

    def __exit__(self, exc_type, exc, tb):
        if not self.committed and not self.keep_partial_on_exit:
            self.discard()
        self._unlock()
        return False

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            release_lock(lock_path(self.final), self._lock_fd)
            self._lock_fd = None


def take_lock(path: Path, wait: bool, named) -> int:
    """An exclusive flock on ``path`` (created): the holder's file descriptor. Raises
    LockedError naming ``named`` when another process holds it (unless ``wait``)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockedError("another procalign run is writing this destination; wait for it "
                                  "or pass --wait", named) from None
            raise
        # The holder before us may have unlinked the lock file; lock the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
        time.sleep(0.01)


def release_lock(path: Path, fd: int) -> None:
    Path(path).unlink(missing_ok=True)
    os.close(fd)


# Destinations this process has completed: an interruption after a rename must not claim that
# the destination was left untouched (the CLI reads this when it reports a signal).
COMMITTED: list[Path] = []


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, so a rename and what belongs beside the file
    happen together (main thread only; elsewhere signals are not delivered anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How to treat the destination: replace it, wait for its lock, resume, fsync."""

    overwrite: bool = False
    wait: bool = False
    resume: bool = False
    fsync: bool = False


class Delivery:
    """A sink inside a destination: temporary file, lock, journal, resume, rename.

    ``identity`` describes what the output is made from (input, transform, options, chunk
    size); a resume is accepted only with an equal identity. After ``with`` is entered,
    ``start`` is the first row still to write and ``notes`` says what happened.
    """

    def __init__(self, final: Path, inputs, sink_class: type[Sink], spec: SinkSpec, identity: dict,
                 policy: DeliveryPolicy = DeliveryPolicy()):
        self.named, self.final = Path(final), resolve_destination(final)
        self.sink_class, self.spec, self.identity, self.policy = sink_class, spec, identity, policy
        temp = partial_path(self.final)
        self.destination = Destination(self.named, inputs, policy.overwrite, policy.wait,
                                       keep_partial=policy.resume, fsync=policy.fsync,
                                       sidecars=sink_class.sidecars_for(temp))
        self.notes: list[str] = []
        self.start = 0
        self.sink: Sink | None = None

    def __enter__(self) -> "Delivery":
        dest = self.destination.__enter__()
        try:
            self.start = self._resume_point()
            self.journal = Journal(journal_path(self.final), self.identity, self.start)
            self.sink = self._open_sink()
        except BaseException:
            self.destination.__exit__(None, None, None)
            raise
        return self

    def _resume_point(self) -> int:
        if not self.policy.resume:
            return 0
        found = Journal.read(self.final)
        if found is None or not self.destination.temp.exists():
            self.destination.discard()
            self.notes.append("nothing to resume; started from the beginning")
            return 0
        if found.identity != self.identity:
            changed = sorted(k for k in self.identity if self.identity[k] != found.identity.get(k))
            self.destination.keep_partial_on_exit = True  # refusing is no reason to destroy it
            raise UsageError(f"the partial output was made with a different {', '.join(changed)}; rerun "
                             "with the same input, transform and options, or without --resume", self.named)
        self._found = found
        self.notes.append(f"resumed after row {found.rows_done}")
        return found.rows_done

    def _open_sink(self) -> Sink:
        temp = self.destination.temp
        try:
            sink = self.sink_class(temp, self.spec, resume_rows=self.start)
            if self.start:
                self._check_tail(sink)
            return sink
        except (ValueError, OSError) as e:
            if not self.start:
                raise
            reason = str(e)
        self.destination.discard()
        self.notes[-1] = f"could not resume ({reason}); started from the beginning"
        self.start = self.journal.rows_done = 0
        return self.sink_class(temp, self.spec)

    def _check_tail(self, sink: Sink) -> None:
        """The journal must agree with the partial file: its last row is there, byte for byte."""
        tail = sink.row_at(self.start - 1)
        if tail is not None and row_digest(tail, self.start - 1) != self._found.tail:
            sink.abort()
            raise ValueError(f"the partial file's row {self.start - 1} is not the one the journal recorded")

    def write(self, rows, extra=None, ids=None) -> None:
        """Append one chunk and record it: after this returns, a kill loses nothing of it."""
        try:
            self.sink.write(rows, extra, ids)
            self.sink.flush()
        except OSError as e:
            raise _named(e, self.named) from None
        done = self.journal.rows_done + len(rows)
        self.journal.save(done, row_digest(rows[-1], done - 1) if len(rows) else None)

    def commit(self) -> None:
        with signals_deferred():
            try:
                self.sink.finish()
            except OSError as e:
                raise _named(e, self.named) from None
            self.destination.commit()
            self.sink.after_commit(self.named)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and self.sink is not None:
                _quietly(self.sink.abort)
        finally:
            return self.destination.__exit__(exc_type, exc, tb)


def row_digest(row, index: int) -> str:
    """A fingerprint of written row ``index``, kept in the journal to check the partial file
    (the index is in it, so a row of zeros from an unwritten region cannot match by chance)."""
    return hashlib.sha256(f"{index}|".encode() + row.tobytes()).hexdigest()[:32]


def _quietly(release) -> None:
    """Release a sink after a failure; a second failure there must not hide the first."""
    try:
        release()
    except Exception:
        pass


def _named(e: OSError, path: Path) -> OutputError:
    """An OS error while writing, as one line that names the destination."""
    return OutputError(f"writing failed ({e.strerror or e}); free some space or check the disk", path)


class DirectDelivery:
    """For destinations that are not a file procalign can rename into place: standard output
    (a pipe cannot be un-written: a failure part-way leaves what was already sent) and sinks
    that are atomic by themselves (``Sink.self_atomic``: a database written in one
    transaction). Same face as `Delivery`; no temporary file, lock or journal."""

    def __init__(self, final: Path, sink_class: type[Sink], spec: SinkSpec, policy: DeliveryPolicy):
        if policy.resume:
            raise UsageError("--resume needs a file destination; this one is written in one go", final)
        self.named, self.sink_class, self.spec, self.policy = Path(final), sink_class, spec, policy
        self.notes: list[str] = []
        self.start = 0
        self.sink: Sink | None = None

    def __enter__(self) -> "DirectDelivery":
        self.sink = self.sink_class(self.named, self.spec, overwrite=self.policy.overwrite) \
            if getattr(self.sink_class, "self_atomic", False) else self.sink_class(self.named, self.spec)
        return self

    def write(self, rows, extra=None, ids=None) -> None:
        try:
            self.sink.write(rows, extra, ids)
            self.sink.flush()
        except OSError as e:
            raise _named(e, self.named) from None

    def commit(self) -> None:
        with signals_deferred():
            self.sink.finish()
        COMMITTED.append(self.named)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.sink is not None:
            _quietly(self.sink.abort)
        return False


def delivery_for(location, inputs, sink_class: type[Sink], spec: SinkSpec, identity: dict,
                 policy: DeliveryPolicy = DeliveryPolicy()):
    """The delivery a destination needs: a file renamed into place, or a direct one."""
    if location.is_stdio or getattr(sink_class, "self_atomic", False):
        return DirectDelivery(location.path, sink_class, spec, policy)
    return Delivery(location.path, inputs, sink_class, spec, identity, policy)
