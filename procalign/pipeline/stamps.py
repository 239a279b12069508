"""Stamps: outputs record the space they are in, and inputs stamped with another space are refused.

A stamp is a small JSON object stored by each format beside or inside the data
(``{"space", "from_space", "transform", "direction"}``). Unstamped data is accepted.
"""
from __future__ import annotations

from ..errors import SpaceMismatchError
from ..transform import Transform


def stamp_for(forward: Transform, applied: Transform, inverse: bool) -> dict:
    """The stamp of data that ``applied`` (``forward`` or its inverse) has produced."""
    return {"space": applied.target.name, "from_space": applied.source.name,
            "transform": forward.checksum, "direction": "inverse" if inverse else "forward"}


def check_stamp(stamp: dict | None, applied: Transform, path: str, force: bool) -> None:
    """Refuse data stamped as being in another space than ``applied`` maps from."""
    if force or stamp is None or stamp == {}:
        return
    space, expected, produced = stamp.get("space"), applied.source.name, applied.target.name
    if space == produced and space != expected:
        raise SpaceMismatchError(f"data is already in space {space!r} (stamped by a previous apply); the "
                                 f"transform expects {expected!r}: use --inverse to map back, or --force", path)
    if space != expected:
        raise SpaceMismatchError(f"data is stamped as space {space!r} but the transform maps from {expected!r}; "
                                 "use the matching transform or --force", path)
