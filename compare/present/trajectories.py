"""Whole trajectories as the bytes of an ``.npz`` archive (``crosscheck run --trajectories``).

The arrays and their keys are the library's (``compare.trajectories.arrays``: one key
``"{framework}/{record}"`` per array, split at the last ``/`` since a plugin named by its path
holds ``/`` itself, plus ``steps``, the state of each row). This module adds one key,
``schema``, that marks the archive as a crosscheck output, so a rerun may replace its own
archive and never a user's file, and returns the bytes for ``compare.files.write_atomic``.
Read it back with ``numpy.load(path, allow_pickle=False)``: nothing in it is pickled.
"""

from __future__ import annotations

import io

import numpy as np

from compare import trajectories

#: Stored under the key ``schema``.
SCHEMA = "crosscheck.trajectories/1"


def to_npz(result) -> bytes:
    """The archive of a ``CheckResult`` that kept its trajectories.

    Raises:
        ValueError: the result kept no trajectories.
    """
    arrays = {**trajectories.arrays(result), "schema": np.array(SCHEMA)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
