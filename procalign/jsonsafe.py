"""Strict-JSON conversion shared by the transform file and the CLI (no numpy import needed)."""
from __future__ import annotations

import math


def json_safe(value):
    """Replace NaN/Inf by None and numpy scalars/arrays by Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
