"""Typed errors. The library raises these; the CLI turns them into exit codes once.

Every message is one line that names the file, says what was observed and how to fix it.
The exit codes are part of the public contract and are listed in the README.
"""
from __future__ import annotations


class ProcalignError(Exception):
    """Base class of every expected failure. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, path: str | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(ProcalignError):
    """Options that contradict each other or cannot apply to the given files."""

    exit_code = 2


class QualityGateError(ProcalignError):
    """The alignment was computed but misses a --min-*/--max-* gate; nothing is written."""

    exit_code = 3


class InputError(ProcalignError):
    """An input embedding file is unreadable, malformed or holds unusable values."""

    exit_code = 4


class TransformFileError(ProcalignError):
    """A transform file is corrupt, tampered with, too new, or does not fit the data."""

    exit_code = 5


class OutputError(ProcalignError):
    """The destination cannot be written: exists, same as the input, missing directory..."""

    exit_code = 6


class LockedError(ProcalignError):
    """Another procalign run is writing the same destination."""

    exit_code = 7


class SpaceMismatchError(ProcalignError):
    """Data stamped as being in a space the transform does not map from."""

    exit_code = 8
