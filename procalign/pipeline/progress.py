"""What the pipeline tells its caller about progress; the CLI renders it, tests ignore it."""
from __future__ import annotations


class Progress:
    """No-op progress sink. The CLI passes a Rich-backed subclass."""

    def start(self, description: str, total: int, unit: str = "rows") -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def stop(self) -> None:
        pass
