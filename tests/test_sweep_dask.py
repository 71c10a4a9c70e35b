"""Sweeps on real Dask clusters: a scheduler and two workers started as processes on 127.0.0.1,
and a local cluster; each must give the per-cell results of a sweep run in this process, and a
worker killed while it checks a cell must lose nothing.

Every process a test starts is stopped by a fixture's finalizer, and every wait is bounded.
The frameworks are NumPy and path plugins built on it, so no worker imports torch or JAX: the
slow plugin sleeps before it trains, which keeps a task running long enough to kill its worker
in the middle of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from compare import sweep as sweeps
from compare.cli import main
from compare.recipe import Recipe

distributed = pytest.importorskip("distributed")

#: Upper bound of any one wait in these tests (seconds).
LIMIT = 180

#: NumPy's implementation under another name: an honest second framework that imports nothing.
NUMPY_AGAIN = """
from implementations.numpy_manual import DTYPES, SUPPORTS, loss_and_grads, predict, step, train

NAME = "numpy_again"
"""

#: NumPy's implementation, sleeping before it trains: a task that is surely still running.
SLOW_NUMPY = """
import time

from implementations import numpy_manual
from implementations.numpy_manual import DTYPES, SUPPORTS, loss_and_grads, predict, step

NAME = "slow_numpy"
SECONDS = 3.0


def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
    time.sleep(SECONDS)
    numpy_manual.train(problem, initial, X, Y, steps, chunk=chunk, sink=sink, progress=progress)
"""


def dask_command(*arguments: str) -> list[str]:
    """``dask ...`` with this interpreter's installation."""
    return [str(Path(sys.executable).with_name("dask")), *arguments]


class LoopbackCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.logs = folder / "logs"
        self.logs.mkdir()
        self._start(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        deadline = time.monotonic() + LIMIT
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError(f"the scheduler did not start: {self.log('scheduler')}")
            time.sleep(0.2)
        for index in range(workers):
            self._start(
                f"worker-{index}",
                "worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--death-timeout",
                "60",
                "--name",
                f"worker-{index}",
            )

    def _start(self, label: str, *arguments: str) -> None:
        with (self.logs / f"{label}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    dask_command(*arguments),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.environment,
                    cwd=self.folder,
                )
            )

    def log(self, label: str) -> str:
        return (self.logs / f"{label}.log").read_text(errors="replace")[-2000:]

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


@pytest.fixture
def loopback_cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path, workers=2)
    try:
        client = distributed.Client(cluster.address, timeout=LIMIT)
        client.wait_for_workers(2, timeout=LIMIT)
    except BaseException:
        cluster.stop()
        raise
    yield cluster, client
    client.close()
    cluster.stop()


def plugin(folder: Path, name: str, source: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(source)
    return str(path)


def small_sweep(second: str, seeds: int = 2) -> sweeps.Sweep:
    """Two cells of a few steps, in float32 and float64 (the float32 cell drifts a little)."""
    return sweeps.Sweep(
        Recipe(steps=10),
        grid={"dtype": ["float32", "float64"]},
        seeds=seeds,
        settings=sweeps.Settings(frameworks=("numpy", second)),
    )


def run_bounded(function, *arguments, **keywords):
    """``function(...)`` in a thread; fails the test if it does not return within ``LIMIT``."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function(*arguments, **keywords)
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"{function.__name__} did not finish within {LIMIT} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_loopback_cluster_gives_the_results_of_a_local_run(loopback_cluster, tmp_path):
    cluster, client = loopback_cluster
    sweep = small_sweep(plugin(tmp_path, "numpy_again", NUMPY_AGAIN))
    here = run_bounded(sweeps.run, sweep, isolate=False).document()
    there = run_bounded(sweeps.run, sweep, client=client, seeds_per_task=1).document()
    assert there["verdict"] == "pass", there["cells"]
    assert sweeps.comparable(there) == sweeps.comparable(here), "the cluster's cells differ"

    report = tmp_path / "sweep.json"
    status = run_bounded(
        main,
        [
            "sweep",
            "--scheduler",
            cluster.address,
            "--seeds",
            "2",
            "--grid",
            "dtype=float32,float64",
            "--steps",
            "10",
            "--frameworks",
            f"numpy,{sweep.settings.frameworks[1]}",
            "--report",
            str(report),
        ],
    )
    assert status == 0
    written = json.loads(report.read_text())
    written["environment"] = {}
    assert sweeps.comparable(written) == sweeps.comparable(here), "crosscheck sweep --scheduler"


def test_a_local_cluster_gives_the_results_of_a_local_run(tmp_path):
    sweep = small_sweep(plugin(tmp_path, "numpy_again", NUMPY_AGAIN))
    here = run_bounded(sweeps.run, sweep, isolate=False).document()

    def on_local_cluster():
        with sweeps.dask_client(workers=2) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            return sweeps.run(sweep, client=client).document()

    assert sweeps.comparable(run_bounded(on_local_cluster)) == sweeps.comparable(here)


def test_a_worker_killed_mid_sweep_loses_no_cell(loopback_cluster, tmp_path):
    _, client = loopback_cluster
    sweep = small_sweep(plugin(tmp_path, "slow_numpy", SLOW_NUMPY), seeds=2)
    finished: list[int] = []
    outcome: dict = {}

    def sweep_on_cluster() -> None:
        try:
            outcome["result"] = sweeps.run(
                sweep,
                client=client,
                seeds_per_task=1,
                progress=lambda done, total: finished.append(done),
            )
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=sweep_on_cluster, daemon=True)
    thread.start()
    pids = client.run(os.getpid)
    deadline = time.monotonic() + LIMIT
    victim = None
    while victim is None and time.monotonic() < deadline:
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            victim = busy[0]
        else:
            time.sleep(0.1)
    assert victim is not None, "no task started"
    time.sleep(1.0)  # the task's check is asleep in the slow plugin (3 s), not finished
    assert client.processing()[victim], "the worker to kill has no task"
    assert finished[-1] == 0, "a task finished before the kill: the test would prove nothing"
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(LIMIT)
    assert not thread.is_alive(), f"the sweep did not finish within {LIMIT} s of the kill"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert len(client.scheduler_info()["workers"]) == 1, "the killed worker is gone"
    document = result.document()
    assert [cell["seeds"]["done"] for cell in document["cells"]] == [2, 2], document["cells"]
    assert all(not cell["crashes"] for cell in document["cells"])
    assert document["verdict"] == "pass"
    here = sweeps.run(sweep, isolate=False).document()
    assert sweeps.comparable(document) == sweeps.comparable(here)
