"""Rich output: progress on stderr, tables for humans on stdout."""
from __future__ import annotations

import json
import os
import sys
import time

from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..jsonsafe import json_safe
from ..pipeline.progress import Progress

# Tables never stretch to the console width, so a wide console costs nothing; it only keeps
# Rich from cutting values ("sha256:ab…") in logs and pipes, where there is no terminal to fit.
PIPE_WIDTH = 1000


def reader_gone(stream) -> None:
    """The reader of a pipe left early (`procalign fit ... | head -1`): the work is done, only
    the rest of the output is dropped, and the exit code stays the command's. The descriptor
    now points at /dev/null so that the interpreter's final flush does not fail
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


class Output(Console):
    """A Console that survives a closed pipe and is wide when not writing to a terminal."""

    def on_broken_pipe(self) -> None:  # Rich's default raises SystemExit(1)
        self.quiet = True
        reader_gone(self.file)

    @property
    def size(self) -> ConsoleDimensions:
        # Rich asks every standard stream for a terminal size, so `| tee log` on a terminal
        # would still get the terminal's 80 columns; a file or pipe gets COLUMNS or PIPE_WIDTH.
        size = Console.size.fget(self)
        if self.is_terminal:
            return size
        columns = os.environ.get("COLUMNS", "")
        return ConsoleDimensions(int(columns) if columns.isdigit() else PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


# No markup or emoji codes: paths, space names and ids are data, and "[/x]" in an id must print
# as is rather than fail. soft_wrap: a message stays one line, however long.
stdout = Output(soft_wrap=True, markup=False, emoji=False)
stderr = Output(stderr=True, soft_wrap=True, markup=False, emoji=False)


class BarProgress(Progress):
    """A Rich progress bar on stderr."""

    def __init__(self):
        self._bar = None

    def start(self, description, total, unit="rows"):
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(unit), TimeRemainingColumn(), console=stderr, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, rows):
        self._bar.advance(self._task, rows)

    def stop(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class LineProgress(Progress):
    """For logs (stderr not a terminal): one plain line every ``every`` seconds, and a last one."""

    def __init__(self, every: float = 5.0):
        self.every = every

    def start(self, description, total, unit="rows"):
        self.description, self.total, self.done, self.unit = description, total, 0, unit
        self.began = self.last = time.monotonic()

    def advance(self, rows):
        self.done += rows
        if time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self):
        self.last = now = time.monotonic()
        rate = self.done / max(now - self.began, 1e-9)
        of = f" of {self.total:,} ({self.done / self.total:.0%})" if self.total else ""
        sys.stderr.write(f"{self.description}: {self.done:,} {self.unit}{of}, {rate:,.0f} {self.unit}/s\n")
        sys.stderr.flush()

    def stop(self):
        if time.monotonic() - self.began >= self.every:  # short runs stay silent
            self._line()


def progress_for(quiet: bool) -> Progress:
    """A bar on a terminal, a line every few seconds in a log, nothing with --quiet."""
    if quiet:
        return Progress()
    return BarProgress() if sys.stderr.isatty() else LineProgress()


def print_json(doc) -> None:
    """One strict JSON document on stdout (NaN becomes null, so `jq` always parses it)."""
    text = json.dumps(json_safe(doc), indent=2, sort_keys=True, allow_nan=False) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is handled here
    except BrokenPipeError:
        reader_gone(sys.stdout)


def fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def key_value_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a narrow terminal folds a checksum rather than cutting it
    for k, v in rows:
        table.add_row(k, fmt(v))
    return table
