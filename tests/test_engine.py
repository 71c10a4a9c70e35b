"""The runner (``compare.harness`` + ``compare.worker``): streaming, bounded memory, workers,
failures and Ctrl-C.

Process workers load implementations by spec, so these tests hand them a *plugin file*: a copy
of the NumPy implementation under another name (``copy_plugin``). No torch or JAX needed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import implementations
from compare import agreement, harness
from compare.check import check
from compare.recipe import Recipe
from implementations import numpy_manual

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def _plugin(folder: Path, name: str, body: str = "") -> str:
    path = folder / f"{name}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from implementations.numpy_manual import *  # noqa: F403
            from implementations.numpy_manual import train as honest_train  # noqa: F401

            NAME = {name!r}
            """
        )
        + textwrap.dedent(body)
    )
    return str(path)


@pytest.fixture
def copy_plugin(tmp_path) -> str:
    """A plugin file that is the NumPy implementation under the name ``copy``."""
    return _plugin(tmp_path, "copy")


def _facts(result):
    """Everything a check found, without timings or process ids."""
    oracles = {
        name: [dataclasses.replace(r, framework="") for r in records]
        for name, records in result.precision.oracles.items()
    }
    return result.comparisons, oracles, result.verdict


def _numpy_copy_scaled(delta):
    """A NumPy copy (an in-process module) whose W1 gradient is off by a factor 1 + delta."""
    name = f"crosscheck_engine_copy_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    honest = module.evaluate

    def evaluate(problem, params, X, Y):
        found = honest(problem, params, X, Y)
        found.grads["W1"] = found.grads["W1"] * (1 + delta)
        return found

    module.evaluate = evaluate
    return module


def test_memory_is_bounded_whatever_the_number_of_steps():
    held = {}
    for steps in (100, 2000):
        result = check(
            Recipe(steps=steps),
            frameworks=("numpy", "copy"),
            modules={"copy": numpy_manual},
            isolate=False,
            oracles=False,
            chunk=5,
        )
        stats = result.stats
        held[steps] = (stats.reference_states, stats.pending_states)
        bound = stats.window + 2 * stats.chunk
        assert stats.reference_states <= bound, f"{steps} steps: {stats}"
        assert stats.pending_states <= bound, f"{steps} steps: {stats}"
    assert held[2000][0] <= held[100][0] + 5, f"retained states grew with steps: {held}"


def test_the_harness_process_holds_the_same_memory_at_twenty_times_the_steps(
    copy_plugin, monkeypatch
):
    """Workers train in their own processes, so what this process traces is the harness and
    the comparisons: at 20x the steps it must not grow (plot bins capped alike)."""
    # Imported before tracing: scikit-learn's import is not the harness's memory.
    import sklearn.datasets
    import sklearn.model_selection

    assert sklearn.datasets and sklearn.model_selection

    monkeypatch.setattr(agreement, "PLOT_POINTS", 50)
    peaks = {}
    for steps in (250, 5000):
        tracemalloc.start()
        check(Recipe(steps=steps), frameworks=("numpy", copy_plugin), oracles=False, chunk=50)
        peaks[steps] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[5000] <= 1.5 * peaks[250], f"peak traced memory: {peaks}"


def test_the_chunk_size_changes_no_fact():
    found = []
    for chunk in (3, 40):
        result = check(
            Recipe(steps=30, dtype="float32"),
            frameworks=("numpy", "scaled"),
            modules={"scaled": _numpy_copy_scaled(1e-3)},
            isolate=False,
            chunk=chunk,
        )
        found.append(_facts(result))
    comparisons, _, verdict = found[0]
    assert any(c.max_abs > 0 for c in comparisons), "the facts compared must not all be zero"
    assert verdict == "fail"
    # The framework's own steps cover every state, chunk boundaries included.
    own = {(c.framework, c.quantity): c for c in comparisons if c.against == c.framework}
    assert own[("scaled", "loss")].total == 30, "a step from each state that has a next one"
    assert found[0] == found[1]


def test_isolated_and_in_process_workers_give_the_same_facts(copy_plugin):
    recipe = Recipe(steps=12, dtype="float32", optimizer="adam", lr=0.01)
    isolated = check(recipe, frameworks=("numpy", copy_plugin))
    in_process = check(recipe, frameworks=("numpy", copy_plugin), isolate=False)
    assert _facts(isolated) == _facts(in_process)
    assert set(isolated.workers.values()).isdisjoint({os.getpid()})
    assert set(in_process.workers.values()) == {os.getpid()}


def test_isolated_workers_do_every_framework_computation_out_of_this_process(tmp_path):
    plugin = _plugin(tmp_path, "copy")
    code = textwrap.dedent(
        f"""
        import os, sys
        from compare import Recipe, check
        result = check(Recipe(steps=6), frameworks=("numpy", {plugin!r}))
        framework_code = ({plugin!r}, {numpy_manual.__file__!r})
        loaded = [name for name, module in list(sys.modules.items())
                  if getattr(module, "__file__", None) in framework_code]
        print(result.verdict, loaded, os.getpid() in result.workers.values())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pass", "[]", "False"], (
        "the synced steps, training and oracles must run in the workers: " + out.stdout
    )


def test_a_crash_in_an_in_process_worker_is_a_worker_error():
    broken = _numpy_copy_scaled(0.0)

    def train(*args, **kwargs):
        raise ValueError("the framework broke")

    broken.train = train
    with pytest.raises(harness.WorkerError, match="broken worker failed: ValueError: the fra"):
        check(Recipe(steps=3), frameworks=("numpy", "broken"), modules={"broken": broken})


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (
            "def step(*args, **kwargs):\n    raise RuntimeError('no step today')\n",
            "RuntimeError: no step today",
        ),
        ("import os\ndef train(*args, **kwargs):\n    os._exit(3)\n", "exit status 3"),
    ],
)
def test_a_crashed_worker_process_is_a_worker_error_with_its_last_line(tmp_path, body, line):
    plugin = _plugin(tmp_path, "crashing", body)
    started = time.monotonic()
    with pytest.raises(harness.WorkerError) as failed:
        check(Recipe(steps=3), frameworks=("numpy", plugin), oracles=False)
    assert str(failed.value).endswith(line), str(failed.value)
    assert "crashing" in str(failed.value)
    assert time.monotonic() - started < 120


def test_a_framework_that_cannot_be_imported_in_its_worker_says_how_to_install_it(
    tmp_path, monkeypatch
):
    # The parent finds the framework; the worker's import of it fails.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.setattr(implementations, "check_available", lambda spec: None)
    with pytest.raises(implementations.FrameworkUnavailable, match="pip install"):
        check(Recipe(steps=3), frameworks=("numpy", "torch"), oracles=False)


def test_a_plugin_that_breaks_the_contract_is_a_plugin_error(tmp_path):
    plugin = tmp_path / "nostep.py"
    plugin.write_text("NAME = 'nostep'\nDTYPES = ('float64',)\n")
    with pytest.raises(implementations.PluginError):
        check(Recipe(steps=3), frameworks=("numpy", str(plugin)), oracles=False)


def test_ctrl_c_stops_a_long_check_within_two_seconds(tmp_path):
    plugin = _plugin(tmp_path, "copy")
    script = textwrap.dedent(
        f"""
        import sys
        from compare import Recipe, check

        def progress(framework, done, total):
            if done > 200:
                print("started", flush=True)

        check(Recipe(steps=10**8), frameworks=("numpy", {plugin!r}), progress=progress)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "started", process.stderr.read()
        children = _children(process.pid)
        assert len(children) == 2, "two worker processes should be running"
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        process.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        process.kill()
    assert elapsed < 2.0, f"Ctrl-C took {elapsed:.1f} s"
    assert process.returncode != 0
    time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in children)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_every_kept_state_is_compared_once_across_misaligned_chunks():
    """The reference and the other framework hand over chunks of different sizes."""
    small = _numpy_copy_scaled(0.0)
    honest = small.train

    def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
        honest(problem, initial, X, Y, steps, chunk=max(1, chunk // 3), sink=sink)

    small.train = train
    result = check(
        Recipe(steps=50),
        frameworks=("numpy", "small"),
        modules={"small": small},
        isolate=False,
        chunk=7,
        oracles=False,
    )
    assert result.verdict == "pass"
    loss = next(c for c in result.comparisons if c.mode == "independent" and c.quantity == "loss")
    assert loss.total == 51
    assert np.isclose(loss.max_abs, 0)


def test_a_recipe_outside_what_an_implementation_covers_is_refused_naming_it(tmp_path):
    plugin = _plugin(
        tmp_path,
        "sigmoid_only",
        "from implementations.contract import Support\n"
        "SUPPORTS = Support(activations=('sigmoid',), optimizers=('sgd',))\n",
    )
    with pytest.raises(harness.Unsupported) as refused:
        check(Recipe(steps=3, optimizer="adam"), frameworks=("numpy", plugin), oracles=False)
    assert str(refused.value).endswith("sigmoid_only.py does not support optimizer adam")


def test_a_worker_steps_in_groups_of_step_group_states_and_puts_every_result_in_its_place(
    monkeypatch,
):
    """Many states (minibatches: ragged, an epoch's last batch is partial) are stepped at most
    ``MAX_STEP_GROUP`` at a time, and each result lands at its own state's position."""
    from compare import data, weights
    from compare import worker as worker_module
    from implementations.contract import initial_state

    recipe = Recipe(steps=30, batch_size=50)
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    params = weights.initial_params(recipe, problem.network)
    X = np.asarray(dataset.X_train, dtype=np.float64)
    Y = np.asarray(dataset.Y_train, dtype=np.float64)
    kept = []
    numpy_manual.train(
        problem,
        initial_state(problem, {name: value[None] for name, value in params.items()}),
        X,
        Y,
        recipe.steps,
        chunk=100,
        sink=lambda start, records: kept.append(records),
    )
    steps = np.arange(recipe.steps + 1)
    states = {q: kept[0][q] for q in problem.state_names()}  # (steps + 1, 1 point, ...)
    sizes = []

    class Counting:
        def step(self, problem, states, X, Y, rows):
            sizes.append(len(next(iter(states.values()))))
            return numpy_manual.step(problem, states, X, Y, rows)

    monkeypatch.setattr(worker_module, "MAX_STEP_GROUP", 4)
    worker = worker_module.Worker("numpy", Counting(), lambda message: None, lambda block: None)
    worker.problem, worker.X, worker.Y = problem, X, Y
    records, next_states = worker._step(steps, states)
    assert max(sizes) == 4 and sum(sizes) == len(steps), f"calls of {sizes} states"
    for k in steps:
        alone, after = numpy_manual.step(
            problem,
            {q: v[k] for q, v in states.items()},
            X,
            Y,
            [problem.batches.indices(k)],
        )
        for found, expected in ((records, alone), (next_states, after)):
            for quantity, value in expected.items():
                np.testing.assert_allclose(
                    found[quantity][k, 0],
                    value[0],
                    rtol=1e-12,
                    atol=1e-15,
                    err_msg=f"{quantity} of state {k}",
                )


def test_full_batch_points_share_the_inputs_so_a_step_takes_a_whole_group_of_them():
    """The budget of one ``step`` call counts each point's activations, and its inputs only
    where each point has rows of its own: digits 64-2-10 full-batch steps 32 states a call."""
    from compare import data
    from compare import worker as worker_module

    recipe = Recipe(dataset="digits")
    problem = recipe.problem(data.load(recipe))
    rows = problem.batches.rows
    assert worker_module.step_group(problem) == 32
    assert worker_module.step_points(problem, rows) >= 32
    minibatches = dataclasses.replace(
        problem, batches=dataclasses.replace(problem.batches, size=rows // 2)
    )
    per_point = 8 * rows * (sum(problem.network.widths[1:]) * worker_module.STEP_COPIES + 64 + 10)
    assert worker_module.step_points(minibatches, rows) == worker_module.STEP_BYTES // per_point


def test_one_seed_of_a_wide_network_is_chunked_by_its_own_budget_and_many_seeds_by_theirs():
    from compare import data

    recipe = Recipe(dataset="digits", hidden=(64,))
    problem = recipe.problem(data.load(recipe))
    one = harness.chunk_size(problem)
    assert one * harness.state_bytes(problem) <= harness.CHUNK_SEED_BYTES
    assert (one + 1) * harness.state_bytes(problem) > harness.CHUNK_SEED_BYTES
    tutorial = Recipe()
    small = tutorial.problem(data.load(tutorial))
    many = harness.chunk_size(small, 1000)
    assert many == harness.CHUNK_BYTES // harness.state_bytes(small, 1000), "seeds: CHUNK_BYTES"
    assert harness.chunk_size(small) == harness.MAX_CHUNK
