"""Trains one framework, in the harness's process or in a worker process of its own.

``python -m compare.worker NAME OUT`` imports implementation ``NAME`` at once (so the
framework's import overlaps the harness's own start-up), then runs the jobs the harness sends on
standard input, one pickled ``(job, args)`` at a time, until standard input closes: ``"train"``
(train, printing ``progress N`` lines as it goes; the result is ``(trajectory, test_outputs)``)
and ``"synced"`` (``evaluate_synced``: the loss and gradients at given parameter points, and the
gradient oracles there). Job ``k``'s result is pickled to ``OUT.k``, a file in the harness's
private temporary folder, and announced with a ``done k`` line. This module imports nothing
heavy at the top (no scikit-learn, no framework), so a worker imports only the one framework it
runs.
"""

from __future__ import annotations

import itertools
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


def _main(name: str, out_path: str) -> None:
    module = implementations.load(name)
    # Jobs arrive one pickled ``(job, args)`` at a time until the harness closes standard input,
    # so a second job (the synced evaluation) reuses this process and its imported framework.
    for number in itertools.count():
        try:
            job, args = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        if job == "synced":
            result = evaluate_synced(name, module, *args)
        else:

            def report(done: int) -> None:
                print(f"progress {done}", flush=True)

            result = train_and_predict(module, *args, progress=report)
        with open(f"{out_path}.{number}", "wb") as stream:
            pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)
        print(f"done {number}", flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
