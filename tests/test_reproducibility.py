"""Reproducibility: byte-identical reports run to run, and no dependence on the thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from compare import agreement

pytest.importorskip("torch")
pytest.importorskip("jax")

STEPS = "200"


def _threads(count: int) -> dict[str, str]:
    """Environment variables that set every library's thread pool to ``count`` threads."""
    variables = {
        name: str(count) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    # XLA's CPU backend ignores OMP_NUM_THREADS; this pins its Eigen pool to one thread.
    if count == 1:
        variables["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return variables


def _reports(tmp_path, thread_counts: list[int]) -> list[str]:
    """Run ``crosscheck run --report`` once per thread count, all at once; return the texts."""
    processes, paths = [], []
    for number, count in enumerate(thread_counts):
        path = tmp_path / f"report-{number}.json"
        env = {**os.environ, **_threads(count), "NO_COLOR": "1"}
        command = [sys.executable, "-m", "compare", "run", "--steps", STEPS, "--report", str(path)]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        paths.append(path)
    for process in processes:
        assert process.wait(timeout=600) == 0
    return [path.read_text() for path in paths]


def _without_timings(text: str) -> str:
    document = json.loads(text)
    for row in document["frameworks"].values():
        del row["seconds"]
    return json.dumps(document, indent=2)


@pytest.mark.slow
def test_reports_are_identical_apart_from_timings_and_thread_count_does_not_matter(tmp_path):
    first, second, two_threads = _reports(tmp_path, [1, 1, 2])
    assert _without_timings(first) == _without_timings(second), "two identical runs differ"
    one, two = json.loads(first), json.loads(two_threads)
    assert one["verdict"] == two["verdict"] == "pass"
    tolerance = agreement.TOLERANCES["float64"]
    for name, row in one["frameworks"].items():
        other = two["frameworks"][name]
        allowed = tolerance.atol + tolerance.rtol * abs(row["final_loss"])
        assert abs(other["final_loss"] - row["final_loss"]) <= allowed, name
        assert other["train_accuracy"] == row["train_accuracy"], name
        assert other["test_accuracy"] == row["test_accuracy"], name
