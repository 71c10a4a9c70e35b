"""Trains one framework, in the harness's process or in a worker process of its own.

``python -m compare.worker NAME OUT`` imports implementation ``NAME`` at once (so the
framework's import overlaps the harness's own start-up), then reads the pickled training
arguments from standard input, trains, prints ``progress N`` lines as it goes, and pickles
``(trajectory, test_outputs)`` to ``OUT``, a file in the harness's private temporary folder.
``python -m compare.worker NAME OUT synced`` instead evaluates the loss and gradients at given
parameter points (the reference's weights at every step) and runs the gradient oracles there
(``evaluate_synced``). This module imports nothing heavy at the top (no scikit-learn, no
framework), so a worker imports only the one framework it trains.
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
    """Train ``module`` from ``initial``; return its trajectory and its model's test outputs.

    The framework's precision switches are read before and after training and kept on the
    trajectory (``trajectory.precision``), so the report can show them and prove they did not
    change during the run.
    """
    before = precision_environment(module)
    trajectory = module.train(net, initial, X_train, Y_train, lr, steps, dtype, progress=progress)
    outputs = module.predict(net, trajectory.final_weights(), X_test, dtype)
    trajectory.precision = {"before": before, "after": precision_environment(module)}
    return trajectory, outputs


def precision_environment(module: ModuleType) -> dict[str, object]:
    """The implementation's precision switches, or ``{}`` when it does not report them."""
    describe = getattr(module, "precision_environment", None)
    return {} if describe is None else describe()


def evaluate_synced(
    name: str,
    module: ModuleType,
    net: Network,
    points: dict[str, np.ndarray],
    X_train: np.ndarray,
    Y_train: np.ndarray,
    dtype: str,
    oracle_points: dict[int, dict[str, np.ndarray]],
) -> dict[str, object]:
    """Loss and gradients at every point of ``points`` at once, plus the gradient oracles.

    Args:
        name: The framework's registry name (it picks the oracle's library checker).
        module: The implementation.
        net: The network.
        points: Weight name -> ``(B, in, out)``: the reference's weights at every step.
        X_train: Training inputs.
        Y_train: Training targets.
        dtype: The compute dtype of the comparison (the oracles always use float64).
        oracle_points: Step -> weights where the oracles run.

    Returns:
        ``{"losses": (B,), "grads": {name: (B, in, out)}, "oracles": [...],
        "precision": {"before": ..., "after": ...}}``.
    """
    from compare import oracle  # imports the framework's checker only when it runs

    before = precision_environment(module)
    losses, grads = module.loss_and_grads(net, points, X_train, Y_train, dtype)
    oracles = oracle.check_points(name, module, net, oracle_points, X_train, Y_train)
    return {
        "losses": losses,
        "grads": grads,
        "oracles": oracles,
        "precision": {"before": before, "after": precision_environment(module)},
    }


def _main(name: str, out_path: str, job: str = "train") -> None:
    module = implementations.load(name)
    args = pickle.load(sys.stdin.buffer)
    if job == "synced":
        result = evaluate_synced(name, module, *args)
        with open(out_path, "wb") as stream:
            pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)
        return

    def report(done: int) -> None:
        print(f"progress {done}", flush=True)

    result = train_and_predict(module, *args, progress=report)
    with open(out_path, "wb") as stream:
        pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    _main(*sys.argv[1:4])
