"""Runs the implementations on one recipe and collects what each computed.

Every implementation trains from the same initial weights on the same data, in its own fast
idiomatic loop, and hands back a ``Trajectory``; the harness adds each trained model's test-set
outputs. Comparing is ``compare.agreement``'s job; printing is ``compare.report``'s.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

import implementations
from compare import data, oracle, weights, worker
from compare.recipe import Recipe
from implementations.contract import Network, Trajectory

#: Called as ``progress(framework, steps_done, steps_total)``.
RunProgress = Callable[[str, int, int], None]


@dataclass
class FrameworkRun:
    """One framework's trajectory, plus its trained model's outputs on the test rows."""

    trajectory: Trajectory
    test_outputs: np.ndarray


@dataclass
class RunResult:
    """Everything one run computed, keyed by framework name."""

    recipe: Recipe
    dataset: data.Dataset
    network: Network
    initial_weights: dict[str, np.ndarray]
    reference: str
    runs: dict[str, FrameworkRun]
    #: Framework -> ``worker.evaluate_synced``'s record, when the run was asked for it.
    synced: dict[str, dict] | None = None

    def train_accuracy(self, framework: str) -> np.ndarray:
        """``(steps + 1,)``: training accuracy at every weight state."""
        predictions = self.runs[framework].trajectory.train_predictions
        return np.mean(predictions == self.dataset.labels_train, axis=-1)

    def test_predictions(self, framework: str) -> np.ndarray:
        """Top-1 class of every test row under the trained model."""
        return np.argmax(self.runs[framework].test_outputs, axis=-1)

    def test_accuracy(self, framework: str) -> float:
        """Fraction of test rows whose top-1 class is right."""
        return float(np.mean(self.test_predictions(framework) == self.dataset.labels_test))


def run(
    recipe: Recipe,
    frameworks: Sequence[str] = implementations.NAMES,
    reference: str = "numpy",
    *,
    modules: Mapping[str, ModuleType] | None = None,
    progress: RunProgress | None = None,
    isolate: bool = True,
    synced: bool = False,
    oracle_points: int = 4,
) -> RunResult:
    """Train every framework on ``recipe`` from the shared initial weights.

    Args:
        recipe: What to train.
        frameworks: Registry names to run; the reference is always run too.
        reference: The implementation the others are compared against.
        modules: Implementations to use instead of the registry's, by name (objects meeting the
            contract: how tests and fault injection hand the harness a deliberately wrong one).
            They train in this process, one after another.
        progress: Told each framework's progress as it trains.
        isolate: Train each registered framework in a worker process of its own, all at once.
            The frameworks share nothing, so this costs no agreement: it keeps one framework's
            global switches (JAX's x64 flag, torch's thread count) out of the others and out of
            the caller's process, and it overlaps one framework's import and training with the
            others' on a multi-core machine. (Threads would not: the NumPy and PyTorch loops
            hold the GIL between their tiny kernels.) Without it they train here, in turn.
        synced: Then evaluate every framework at the reference's weights of every step and run
            the gradient oracles (see ``synced``), in the same worker processes, and keep the
            records in ``RunResult.synced``.
        oracle_points: As for ``synced``.

    Raises:
        KeyError: a framework name is not registered.
        implementations.FrameworkUnavailable: a framework is not installed.
        RecipeError: the data cannot be split as the recipe asks.
        WorkerError: an isolated framework's worker process failed.
    """
    names = [reference, *(name for name in frameworks if name != reference)]
    if modules is None:
        for name in names:
            implementations.check_available(name)
    workers = _Workers(names) if modules is None and isolate else None
    try:
        # The workers import their frameworks while this process loads the data.
        dataset = data.load(recipe)
        net = recipe.network(dataset.X_train.shape[1], dataset.Y_train.shape[1])
        initial = weights.initial_weights(net, recipe.init_seed, recipe.init_scale)
        args = (
            net,
            initial,
            dataset.X_train,
            dataset.Y_train,
            dataset.X_test,
            recipe.lr,
            recipe.steps,
            recipe.dtype,
        )
        if workers is not None:
            results = workers.submit("train", args, progress, recipe.steps)
        else:
            results = {
                name: worker.train_and_predict(
                    modules[name] if modules is not None else implementations.load(name),
                    *args,
                    progress=_reporter(progress, name, recipe.steps),
                )
                for name in names
            }
        runs = {}
        for name, (trajectory, outputs) in results.items():
            trajectory.framework = name
            runs[name] = FrameworkRun(trajectory=trajectory, test_outputs=outputs)
        result = RunResult(recipe, dataset, net, initial, reference, runs)
        if synced:
            result.synced = (
                workers.submit("synced", _synced_args(result, oracle_points))
                if workers is not None
                else _evaluate_in_process(result, modules, oracle_points)
            )
    finally:
        if workers is not None:
            workers.close()
    return result


def synced(
    result: RunResult,
    *,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = True,
    oracle_points: int = 4,
) -> dict[str, dict]:
    """Evaluate every framework at the reference's weights of every step, and run the oracles.

    Each framework computes the loss and gradients at all ``steps`` weight states of the
    reference's trajectory in one batched ``loss_and_grads`` call (``jax.vmap``,
    ``torch.func.vmap``, broadcast NumPy), so the synced comparison measures one step's
    rounding without any accumulated drift. The gradient oracles (``compare.oracle``) run at
    ``oracle_points`` finite states of the same trajectory, the initial weights first.

    Args:
        result: A finished run (``run``); its reference trajectory gives the points.
        modules: As for ``run``.
        isolate: As for ``run``: one worker process per framework.
        oracle_points: How many states the oracles check (0: none).

    Returns:
        Framework -> ``worker.evaluate_synced``'s record.
    """
    if modules is None and isolate:
        workers = _Workers(list(result.runs))
        try:
            return workers.submit("synced", _synced_args(result, oracle_points))
        finally:
            workers.close()
    return _evaluate_in_process(result, modules, oracle_points)


def _synced_args(result: RunResult, oracle_points: int) -> tuple:
    reference = result.runs[result.reference].trajectory
    points = {name: series[:-1] for name, series in reference.weights.items()}
    steps = oracle.sample_steps(reference.weights, oracle_points) if oracle_points else []
    checked = {step: {n: w[step] for n, w in reference.weights.items()} for step in steps}
    X, Y = result.dataset.X_train, result.dataset.Y_train
    return (result.network, points, X, Y, result.recipe.dtype, checked)


def _evaluate_in_process(
    result: RunResult, modules: Mapping[str, ModuleType] | None, oracle_points: int
) -> dict[str, dict]:
    args = _synced_args(result, oracle_points)
    return {
        name: worker.evaluate_synced(
            name, modules[name] if modules is not None else implementations.load(name), *args
        )
        for name in result.runs
    }


def _reporter(progress: RunProgress | None, name: str, total: int):
    if progress is None:
        return None
    return lambda done: progress(name, done, total)


class WorkerError(RuntimeError):
    """A framework's worker process failed; the message ends with its last error line."""


class _Workers:
    """One ``python -m compare.worker`` process per framework, started before the data loads.

    A fresh interpreter per framework rather than multiprocessing: forking a process that runs
    JAX's or torch's threads is unsafe, and "spawn" re-imports the caller's main script.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="crosscheck-")
        self._processes = {}
        self._jobs = 0
        self._busy = False  # a job was sent and has not finished everywhere
        # One OpenMP thread per worker unless the user chose otherwise: this network's arrays
        # are far below the size at which intra-op threads pay (so the numbers do not change),
        # and with the frameworks training side by side, spinning OpenMP threads starve the
        # other workers (measured: torch's 5000 steps took 69 s instead of 5 s on a busy
        # two-core machine).
        environment = {**os.environ}
        environment.setdefault("OMP_NUM_THREADS", "1")
        for name in names:
            with (Path(self._folder.name) / f"{name}.err").open("wb") as errors:
                self._processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "compare.worker", name, str(self._out(name))],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=environment,
                )

    def _out(self, name: str) -> Path:
        return Path(self._folder.name) / f"{name}.out"

    def submit(
        self, job: str, args: tuple, progress: RunProgress | None = None, total: int = 0
    ) -> dict:
        """Run ``job`` with ``args`` in every worker at once; return ``{name: result}``.

        Progress lines are relayed to ``progress`` as they come. The workers stay alive for the
        next job until ``close``.
        """
        self._jobs += 1
        number = self._jobs - 1
        self._busy = True
        payload = pickle.dumps((job, args), protocol=pickle.HIGHEST_PROTOCOL)

        def drive(name: str) -> None:
            process = self._processes[name]
            try:
                process.stdin.write(payload)
                process.stdin.flush()
            except BrokenPipeError:
                pass  # the worker died; its exit status and error say why
            for line in process.stdout:
                if line.startswith(b"progress ") and progress is not None:
                    progress(name, int(line.split()[1]), total)
                elif line.strip() == f"done {number}".encode():
                    return
            process.wait()
            errors = (Path(self._folder.name) / f"{name}.err").read_text(errors="replace")
            lines = [line for line in errors.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {process.returncode}"
            raise WorkerError(f"the {name} worker failed: {last}")

        with ThreadPoolExecutor(max_workers=len(self._processes)) as pool:
            for future in [pool.submit(drive, name) for name in self._processes]:
                future.result()
        self._busy = False
        return {
            name: pickle.loads(Path(f"{self._out(name)}.{number}").read_bytes())
            for name in self._processes
        }

    def close(self) -> None:
        """End the workers and remove the temporary folder.

        Idle workers end when their input closes; a job still running (an error or Ctrl-C
        interrupted it) is killed rather than waited for.
        """
        for process in self._processes.values():
            if self._busy:
                process.kill()
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        self._folder.cleanup()
