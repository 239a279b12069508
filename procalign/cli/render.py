"""Rich output: progress on stderr, tables for humans on stdout."""
from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..jsonsafe import json_safe
from ..pipeline.progress import Progress

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


class BarProgress(Progress):
    """A Rich progress bar on stderr."""

    def __init__(self):
        self._bar = None

    def start(self, description, total):
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("rows"), TimeRemainingColumn(), console=stderr, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, rows):
        self._bar.advance(self._task, rows)

    def stop(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_for(quiet: bool) -> Progress:
    return BarProgress() if not quiet and sys.stderr.isatty() else Progress()


def print_json(doc) -> None:
    """One strict JSON document on stdout (NaN becomes null, so `jq` always parses it)."""
    sys.stdout.write(json.dumps(json_safe(doc), indent=2, sort_keys=True, allow_nan=False) + "\n")


def fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def key_value_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, fmt(v))
    return table
