"""Embedding formats: one module per format (`npy`, `parquet`, `hdf5`), one registry
(`registry.FORMATS`) mapping a location to its source and sink, and the interface they share
(`base`). See `registry` for how to add a format."""
from .registry import (FORMATS, Format, Location, ReadOptions, format_help, open_reader, open_source,
                       parse_location, sink_class)

_BASE = ("Batch", "Sink", "SinkSpec", "Source")


def __getattr__(name):  # the interface needs numpy: import it only when used
    if name not in _BASE:
        raise AttributeError(f"module 'procalign.formats' has no attribute {name!r}")
    from . import base
    return getattr(base, name)


__all__ = ["FORMATS", "Format", "Location", "ReadOptions", "format_help", "open_reader", "open_source",
           "parse_location", "sink_class", *_BASE]
