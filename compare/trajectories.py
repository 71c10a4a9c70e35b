"""Whole trajectories to a file: every framework's per-state records, when the user asks.

``write(path, result)`` saves ``CheckResult.trajectories`` (``check(..., trajectories=True)``)
as one ``.npz`` with a key ``"{framework}/{record}"`` per array: ``numpy/loss`` shaped
``(states,)``, ``numpy/weight:W1`` ``(states, in, out)``, ``numpy/grad:W1`` ``(updates, in,
out)`` (no update follows the last state, so its gradient is left out), ``numpy/state:m:W1``,
``numpy/train_correct``, and so on, plus ``steps``: the state of each row (``0 .. steps`` unless
``record_every`` kept fewer). A run of ``check`` keeps one point per framework, so the point
axis is dropped. This module writes data; it decides nothing and prints nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def arrays(result) -> dict[str, np.ndarray]:
    """The file's arrays by key, from a ``CheckResult`` that kept its trajectories.

    Raises:
        ValueError: the result kept no trajectories.
    """
    if result.trajectories is None:
        raise ValueError("this check kept no trajectories: run it with trajectories=True")
    found = {"steps": np.asarray(result.trajectory_steps)}
    for framework, records in result.trajectories.items():
        for record, values in records.items():
            found[f"{framework}/{record}"] = np.asarray(values)
    return found


def write(path: str | os.PathLike, result) -> Path:
    """Save ``arrays(result)`` to ``path`` (an ``.npz``, written whole or not at all)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as stream:
        np.savez(stream, **arrays(result))
    os.replace(partial, path)
    return path


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a trajectories file back (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as loaded:
        return {key: loaded[key] for key in loaded.files}
