"""Trains one framework, in the harness's process or in a worker process of its own.

``python -m compare.worker NAME OUT`` imports implementation ``NAME`` at once (so the
framework's import overlaps the harness's own start-up), then reads the pickled training
arguments from standard input, trains, prints ``progress N`` lines as it goes, and pickles
``(trajectory, test_outputs)`` to ``OUT``, a file in the harness's private temporary folder.
This module imports nothing heavy at the top (no scikit-learn, no framework), so a worker
imports only the one framework it trains.
"""

from __future__ import annotations

import pickle
import sys
from types import ModuleType

import numpy as np

import implementations
from implementations.contract import Network, Progress, Trajectory


def train_and_predict(
    module: ModuleType,
    net: Network,
    initial: dict[str, np.ndarray],
    X_train: np.ndarray,
    Y_train: np.ndarray,
    X_test: np.ndarray,
    lr: float,
    steps: int,
    dtype: str,
    progress: Progress | None = None,
) -> tuple[Trajectory, np.ndarray]:
    """Train ``module`` from ``initial``; return its trajectory and its model's test outputs."""
    trajectory = module.train(net, initial, X_train, Y_train, lr, steps, dtype, progress=progress)
    outputs = module.predict(net, trajectory.final_weights(), X_test, dtype)
    return trajectory, outputs


def _main(name: str, out_path: str) -> None:
    module = implementations.load(name)
    args = pickle.load(sys.stdin.buffer)

    def report(done: int) -> None:
        print(f"progress {done}", flush=True)

    result = train_and_predict(module, *args, progress=report)
    with open(out_path, "wb") as stream:
        pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
