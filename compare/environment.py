"""What a run ran on: Python, library versions and platform, for reports and baselines.

Library layer: returns data, prints nothing.

Versions are read from the installed distributions' metadata, so nothing here imports a
framework (the frameworks may live only in the worker processes).
"""

from __future__ import annotations

import platform
from importlib import metadata

#: Distributions whose versions can change the numbers.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "jax", "jaxlib", "optax", "flax")


def describe() -> dict[str, str | None]:
    """``{"python": ..., "numpy": ..., ..., "platform": ...}``; ``None`` for a missing library."""
    info: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    info["platform"] = platform.platform()
    info["machine"] = platform.machine()
    return info
