"""Plain JSON-ready data from the library's facts, shared by the sweep's records (library) and
the reports (presentation): JSON has no NaN, no infinity and no NumPy types.

This module only converts values; it knows no report and writes no file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def json_number(value: float) -> float | str:
    """``value``, or its name when JSON cannot hold it: ``"nan"``, ``"inf"``, ``"-inf"``
    (``float()`` reads them back)."""
    return value if math.isfinite(value) else str(value)


def json_ready(value: Any) -> Any:
    """``value`` with mappings as dicts with string keys, tuples as lists, NumPy scalars (and
    0-d arrays) as Python numbers and every non-finite float as a string."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # a NumPy scalar
    if isinstance(value, float):
        return json_number(value)
    return value
