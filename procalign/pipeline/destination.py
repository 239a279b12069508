"""Write a file so that the destination holds either nothing new or the complete result.

`Destination` checks the path before any work, takes an exclusive lock beside it (flock, so a
killed run never leaves a stale lock), hands out a temporary path in the same directory, and
`commit` renames the finished file into place (after an fsync when asked: the rename alone
already guarantees that a killed process leaves no partial destination; the fsync adds
durability across power loss and costs the time to write the whole file to disk). Leaving the ``with`` block without `commit`
deletes the temporary file and its journal (errors, SIGINT, SIGTERM), except after SIGKILL,
where nothing runs: then both stay for ``apply --resume``. With ``keep_partial`` (set by a
resumable apply) a stale temporary file from a killed run is kept for the caller to resume;
otherwise it is removed before writing starts.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from ..errors import LockedError, OutputError
from .journal import Journal, journal_path


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-partial")


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.procalign-lock")


def check_destination(final: Path, inputs: list[Path], overwrite: bool) -> None:
    """Raise OutputError for a destination that cannot or must not be written."""
    final = Path(final)
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
    if final.is_dir():
        raise OutputError("destination is a directory; give a file name", final)
    if final.exists() and not overwrite:
        raise OutputError("destination exists; pass --overwrite to replace it", final)


class Destination:
    def __init__(self, final, inputs=(), overwrite=False, wait=False, keep_partial=False, fsync=True):
        self.final = Path(final)
        self.fsync = fsync
        self.keep_partial = keep_partial
        self.inputs = [Path(p) for p in inputs]
        self.overwrite = overwrite
        self.wait = wait
        self.temp = partial_path(self.final)
        self._lock_fd = None
        self.committed = False

    def __enter__(self) -> "Destination":
        check_destination(self.final, self.inputs, self.overwrite)
        self._lock()
        if not self.keep_partial:
            self.discard()
        return self

    def _lock(self) -> None:
        path = lock_path(self.final)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise LockedError("another procalign run is writing this destination; wait for it "
                                      "or pass --wait", self.final) from None
                raise
            # The holder before us may have unlinked the lock file; lock the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)
            time.sleep(0.01)

    def commit(self) -> None:
        """Move the finished temporary file into place (atomic on one filesystem)."""
        if self.final.exists() and not self.overwrite:
            raise OutputError("destination appeared while writing; pass --overwrite to replace it", self.final)
        if self.fsync:  # survive power loss too, not only a killed process
            with open(self.temp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(self.temp, self.final)
        self.committed = True
        self.discard()  # the journal

    def discard(self) -> None:
        """Delete the temporary file, what writers keep beside it (TEMP.*) and the journal."""
        self.temp.unlink(missing_ok=True)
        for side in self.temp.parent.glob(self.temp.name + ".*"):
            side.unlink(missing_ok=True)
        Journal(journal_path(self.final), {}).remove()

    def __exit__(self, exc_type, exc, tb):
        if not self.committed:
            self.discard()
        if self._lock_fd is not None:
            lock_path(self.final).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
        return False
