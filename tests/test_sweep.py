"""Sweeps in this process: grid and seed input, the per-cell report, exit statuses, resuming.

Every check here is a few steps of the tutorial's network, run in this process (frameworks in
threads), so each seed costs a fraction of a second. A deliberately wrong implementation,
loaded as a path plugin, makes some seeds fail: NumPy's own code, except that the W1 it records
is off by 1e-3 for every seed whose drawn W1[0, 0] is positive, so which seeds must fail is
known from the initial weights alone. (Sweeps on a Dask cluster: ``test_sweep_dask.py``.)
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from compare import sweep as sweeps
from compare import weights
from compare.cli import main
from compare.cli.sweep import grid_option
from compare.recipe import Recipe, RecipeError

#: A few steps of the tutorial: enough for every quantity and comparison to exist.
TINY = {"steps": 5}

#: NumPy's implementation, lying about W1 for seeds whose drawn W1[0, 0] is positive.
SHIFTED_W1 = '''
"""NumPy's implementation, except that the recorded W1 of every seed whose drawn W1[0, 0] is
positive is off by OFFSET."""

import numpy as np

from implementations import numpy_manual
from implementations.numpy_manual import DTYPES, SUPPORTS, loss_and_grads, predict, step

NAME = "shifted_w1"
OFFSET = 1e-3


def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
    wrong = np.asarray(initial["weight:W1"])[:, 0, 0] > 0

    def shifted(start, records):
        records = dict(records)
        records["weight:W1"] = records["weight:W1"] + OFFSET * wrong[None, :, None, None]
        sink(start, records)

    numpy_manual.train(problem, initial, X, Y, steps, chunk=chunk, sink=shifted, progress=progress)
'''

#: An implementation whose training crashes.
CRASHING = """
from implementations.numpy_manual import DTYPES, SUPPORTS, loss_and_grads, predict, step

NAME = "crashing"


def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
    raise RuntimeError("deliberate crash in train")
"""


@pytest.fixture
def shifted(tmp_path) -> str:
    path = tmp_path / "shifted_w1.py"
    path.write_text(SHIFTED_W1)
    return str(path)


def shifted_seeds(seeds) -> list[int]:
    """The seeds ``SHIFTED_W1`` gets wrong: those whose drawn W1[0, 0] is positive."""
    recipe = Recipe()
    network = recipe.network(4, 3)  # iris: 4 inputs, 3 classes
    return [
        seed
        for seed in seeds
        if weights.initial_params(recipe.replace(init_seed=seed), network)["W1"][0, 0] > 0
    ]


def read(path) -> dict:
    return json.loads(path.read_text())


# -- input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hidden=2,5-5", ("hidden", ((2,), (5, 5)))),
        ("activation=relu,tanh-identity", ("activations", (("relu",), ("tanh", "identity")))),
        ("batch-size=0,16", ("batch_size", (0, 16))),
        ("biases=true,off", ("biases", (True, False))),
        ("lr=0.1,1e-2", ("lr", (0.1, 0.01))),
        ("dtype=float32,float64", ("dtype", ("float32", "float64"))),
    ],
)
def test_grid_values_are_typed_as_the_recipe_options_type_them(text, expected):
    assert grid_option(text) == expected, f"--grid {text} parsed wrong"


def test_every_grid_field_is_a_recipe_field_the_cli_can_type():
    from compare.cli.sweep import GRID_TYPES

    assert set(GRID_TYPES) == set(sweeps.GRID_FIELDS), (
        "the CLI and the library disagree on grid fields"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--grid", "colour=red"],
        ["--grid", "lr"],
        ["--grid", "hidden=2,x"],
        ["--grid", "lr=0.1,fast"],
        ["--grid", "dtype=float33"],
        ["--grid", "lr=-1"],
        ["--grid", "init_seed=1,2"],
        ["--grid", "lr=0.1", "--grid", "lr=0.2"],
        ["--seeds", "0"],
        ["--seed-list", "1,a"],
        ["--seeds", "2", "--init-seed", "3"],
        ["--weights", "w.npz", "--seeds", "2"],
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_before_anything_runs(arguments, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a sweep with bad input started running")

    monkeypatch.setattr(sweeps, "run", never)
    status = main(["sweep", "--in-process", *arguments])
    error = capsys.readouterr().err
    assert status == 2, f"{arguments} exited {status}, not 2: {error}"
    assert error.startswith("crosscheck: error: ") and error.count("\n") == 1, error


def test_a_grid_is_every_combination_of_its_values():
    sweep = sweeps.Sweep(
        Recipe(**TINY), grid={"dtype": ["float32", "float64"], "hidden": [2, [5, 5]]}, seeds=2
    )
    cells = sweep.cells()
    assert [cell.label for cell in cells] == [
        "dtype=float32 hidden=2",
        "dtype=float32 hidden=5-5",
        "dtype=float64 hidden=2",
        "dtype=float64 hidden=5-5",
    ]
    assert cells[1].recipe == Recipe(steps=5, dtype="float32", hidden=(5, 5))
    assert sweep.seeds == (0, 1) and sweep.size == 8
    assert len({cell.identity for cell in cells}) == 4


def test_a_cell_is_identified_by_its_recipe_without_the_seed():
    assert sweeps.recipe_identity(Recipe(init_seed=1)) == sweeps.recipe_identity(Recipe())
    assert sweeps.recipe_identity(Recipe(lr=0.2)) != sweeps.recipe_identity(Recipe())


def test_library_refuses_what_cannot_be_swept():
    with pytest.raises(sweeps.SweepError, match="init_seed is the seed axis"):
        sweeps.Sweep(Recipe(), grid={"init_seed": [1, 2]})
    with pytest.raises(sweeps.SweepError, match="same recipe"):
        sweeps.Sweep(Recipe(), grid={"hidden": [2, [2]]})
    with pytest.raises(sweeps.SweepError, match="seed"):
        sweeps.Sweep(Recipe(), seeds=[2**32])
    with pytest.raises(RecipeError, match="grid cell loss=cross-entropy: cross-entropy takes"):
        sweeps.Sweep(Recipe(), grid={"loss": ["half-mse", "cross-entropy"]})


def test_sweep_file_gives_the_base_recipe_grid_seeds_and_settings(tmp_path, monkeypatch):
    import argparse

    from compare.cli import options
    from compare.cli import sweep as command

    (tmp_path / "data.csv").write_text("a,b,label\n0,1,0\n1,0,1\n1,1,1\n0,0,0\n")
    path = tmp_path / "sweep.toml"
    path.write_text(
        textwrap.dedent(
            """
            [data]
            path = "data.csv"
            test_size = 0
            [train]
            steps = 7
            [sweep]
            seeds = [3, 1]
            frameworks = ["numpy", "torch"]
            mode = "synced"
            [sweep.grid]
            hidden = [2, [3, 3]]
            """
        )
    )
    loaded = sweeps.load_sweep_file(path)
    assert loaded["base"].data_path == str(tmp_path / "data.csv"), "paths are relative to the file"
    assert loaded["base"].steps == 7 and loaded["seeds"] == [3, 1]

    parser = options.Parser(prog="crosscheck")
    command.register(parser.add_subparsers())
    monkeypatch.setattr(options.implementations, "check_available", lambda spec: None)
    args = parser.parse_args(["sweep", "--sweep", str(path), "--steps", "9", "--grid", "lr=0.5"])
    sweep = command.sweep_from_args(args)
    assert isinstance(args, argparse.Namespace)
    assert sweep.base.steps == 9, "an option given overrides the sweep file"
    assert sweep.seeds == (3, 1)
    assert sweep.grid == (("hidden", (2, (3, 3))), ("lr", (0.5,)))
    assert sweep.settings.frameworks == ("numpy", "torch") and sweep.settings.mode == "synced"

    (tmp_path / "bad.toml").write_text("[sweep]\nseed = 3\n")
    with pytest.raises(sweeps.SweepError, match="unknown key 'seed'"):
        sweeps.load_sweep_file(tmp_path / "bad.toml")


# -- facts -------------------------------------------------------------------------------------


def test_distribution_counts_every_seed_once():
    facts = sweeps.distribution(np.array([0.0, 3e-9, 2e-9, 5e-8, np.inf]))
    histogram = facts["histogram"]
    assert histogram["zeros"] == 1 and histogram["nonfinite"] == 1
    assert sum(histogram["counts"]) == 3, "every positive finite value in exactly one bin"
    assert histogram["edges"][0] <= 2e-9 and histogram["edges"][-1] >= 5e-8
    assert facts["min"] == 0.0 and facts["max"] == np.inf
    assert facts["median"] == 3e-9, "the median is an observed value"


def test_worst_seeds_put_failures_first_then_the_outliers():
    def record(seed, verdict, loss):
        return {
            "seed": seed,
            "verdict": verdict,
            "first_failure": None,
            "errors": {"torch": {"independent": {"loss": loss}}},
            "failures": [],
            "prediction_differences": {},
        }

    records = [record(0, "pass", 1e-16), record(1, "pass", 8e-16), record(2, "fail", 0.0)]
    ranked = sweeps.worst_seeds(records, {("torch", "independent", "loss"): 1e-16})
    assert [entry["seed"] for entry in ranked] == [2, 1, 0]
    assert ranked[1]["times_median"] == pytest.approx(8.0)


# -- whole sweeps ------------------------------------------------------------------------------


def test_honest_sweep_exits_0_and_reports_every_cell(tmp_path, capsys):
    pytest.importorskip("torch")
    report = tmp_path / "sweep.json"
    status = main(
        [
            "sweep",
            "--in-process",
            "--seeds",
            "2",
            "--grid",
            "dtype=float32,float64",
            "--steps",
            "5",
            "--frameworks",
            "numpy,torch",
            "--report",
            str(report),
            "--markdown",
            str(tmp_path / "sweep.md"),
        ]
    )
    output = capsys.readouterr().out
    assert status == 0, output
    document = read(report)
    assert document["schema"] == sweeps.SCHEMA and document["verdict"] == "pass"
    assert [cell["verdict"] for cell in document["cells"]] == ["pass", "pass"]
    assert [cell["recipe"]["train"]["dtype"] for cell in document["cells"]] == [
        "float32",
        "float64",
    ]
    for cell in document["cells"]:
        assert [record["seed"] for record in cell["per_seed"]] == [0, 1]
        assert cell["errors"]["torch"]["independent"]["loss"]["max"] >= 0
    assert "PASS" in output and "PASS" in (tmp_path / "sweep.md").read_text()


def test_a_failing_cell_exits_1_and_the_report_names_its_seeds(tmp_path, shifted, capsys):
    report = tmp_path / "sweep.json"
    seeds = range(6)
    status = main(
        [
            "sweep",
            "--in-process",
            "--seeds",
            "6",
            "--steps",
            "5",
            "--frameworks",
            f"numpy,{shifted}",
            "--report",
            str(report),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    output = capsys.readouterr().out
    expected = shifted_seeds(seeds)
    assert 0 < len(expected) < 6, "the test needs passing and failing seeds"
    assert status == 1, output
    cell = read(report)["cells"][0]
    assert cell["verdict"] == "fail"
    assert cell["failing_seeds"] == expected, "the failing seeds are those whose W1 was shifted"
    weight = cell["errors"][shifted]["independent"]["weight:W1"]
    per_seed = {
        r["seed"]: float(r["errors"][shifted]["independent"]["weight:W1"]) for r in cell["per_seed"]
    }
    assert weight["max"] == max(per_seed.values()) == pytest.approx(1e-3)
    assert per_seed[weight["worst_seed"]] == weight["max"], "the worst seed holds the maximum"
    assert weight["failed_seeds"] == expected
    assert all(per_seed[seed] == 0 for seed in seeds if seed not in expected)
    assert weight["histogram"]["zeros"] == 6 - len(expected)
    assert sorted(entry["seed"] for entry in cell["worst_seeds"][: len(expected)]) == expected
    assert all(entry["verdict"] == "fail" for entry in cell["worst_seeds"][: len(expected)])
    assert "FAIL" in output and f"seed {expected[0]}" in output
    histograms = tmp_path / "plots" / "sweep_cell_0.png"
    assert histograms.read_bytes().startswith(b"\x89PNG"), "no histogram of the differences"


def test_a_crashing_framework_is_an_error_the_resumed_sweep_runs_again(tmp_path, capsys):
    plugin = tmp_path / "crashing.py"
    plugin.write_text(CRASHING)
    report = tmp_path / "sweep.json"
    arguments = ["sweep", "--in-process", "--seeds", "2", "--steps", "3"]
    arguments += ["--frameworks", f"numpy,{plugin}", "--report", str(report)]
    assert main(arguments) == 3, capsys.readouterr()
    cell = read(report)["cells"][0]
    assert cell["verdict"] == "error" and cell["per_seed"] == []
    assert [crash["seed"] for crash in cell["crashes"]] == [0, 1]
    assert "deliberate crash" in cell["crashes"][0]["message"]
    sweep = sweeps.Sweep(
        Recipe(steps=3), seeds=2, settings=sweeps.Settings(frameworks=("numpy", str(plugin)))
    )
    assert sweeps.resume(sweep, read(report)).done == 0, "crashed seeds are run again"


def count_checks(monkeypatch, interrupt_at: int | None = None) -> list:
    """Record the seeds of every ``compare.check.check_seeds`` call; raise KeyboardInterrupt at
    the call that brings them to ``interrupt_at`` seeds."""
    import sys

    checking = sys.modules["compare.check"]
    calls = []
    real = checking.check_seeds

    def counting(recipe, seeds, *args, **kwargs):
        calls.extend(seeds)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(recipe, seeds, *args, **kwargs)

    monkeypatch.setattr(checking, "check_seeds", counting)
    return calls


def test_a_resumed_sweep_skips_finished_seeds_and_ends_with_the_same_report(shifted, monkeypatch):
    sweep = sweeps.Sweep(
        Recipe(**TINY),
        grid={"lr": [0.1, 0.3]},
        seeds=3,
        settings=sweeps.Settings(frameworks=("numpy", shifted)),
    )
    environment = {"python": "test"}
    calls = count_checks(monkeypatch)
    whole = sweeps.run(sweep, seeds_per_task=1, isolate=False).document(environment)
    assert len(calls) == 6

    written = []

    def checkpoint(result):
        # What --report writes: JSON text, read back as a later sweep reads it.
        written.append(json.loads(json.dumps(result.document(environment))))

    calls = count_checks(monkeypatch, interrupt_at=5)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run(sweep, seeds_per_task=1, isolate=False, checkpoint=checkpoint)
    partial = written[-1]
    assert [cell["seeds"]["done"] for cell in partial["cells"]] == [3, 1]

    calls = count_checks(monkeypatch)
    resumed = sweeps.run(sweep, previous=partial, seeds_per_task=1, isolate=False)
    assert sorted(calls) == [1, 2], "only the two seeds not in the report are checked"
    assert resumed.reused == 4
    assert sweeps.comparable(resumed.document(environment)) == sweeps.comparable(whole)
    assert whole["verdict"] == "fail", "the shifted implementation fails some seeds"


def test_resuming_from_a_report_of_other_settings_is_refused(tmp_path, shifted, capsys):
    report = tmp_path / "sweep.json"
    arguments = ["sweep", "--in-process", "--seeds", "1", "--steps", "3", "--report", str(report)]
    main([*arguments, "--frameworks", f"numpy,{shifted}"])
    capsys.readouterr()
    status = main([*arguments, "--frameworks", f"numpy,{shifted}", "--mode", "synced"])
    error = capsys.readouterr().err
    assert status == 2 and "other settings" in error and "--restart" in error, error
    status = main([*arguments, "--frameworks", f"numpy,{shifted}", "--mode", "synced", "--restart"])
    assert status in (0, 1) and read(report)["settings"]["mode"] == "synced"


def test_report_refuses_to_overwrite_a_file_crosscheck_did_not_write(tmp_path, capsys):
    report = tmp_path / "notes.json"
    report.write_text('{"mine": true}\n')
    status = main(["sweep", "--in-process", "--steps", "3", "--report", str(report)])
    assert status == 2 and "--force" in capsys.readouterr().err
    assert read(report) == {"mine": True}


def test_a_seeds_errors_keep_own_training_steps_apart_from_the_reference_comparison():
    from pathlib import Path

    from compare.check import check

    honest = str(Path(__file__).parent / "plugins" / "numpy_again.py")
    result = check(Recipe(steps=5), frameworks=("numpy", honest), oracles=False, isolate=False)
    record = sweeps.seed_record(0, result, 0.0)
    name = next(c.framework for c in result.comparisons if c.framework != "numpy")
    against_reference = {
        c.quantity: c.max_abs
        for c in result.comparisons
        if c.framework == name and c.mode == "synced" and c.against == "numpy"
    }
    assert against_reference, "the honest copy has synced comparisons with numpy"
    for quantity, value in against_reference.items():
        assert record["errors"][name]["synced"][quantity] == value, quantity
    assert "synced (own training)" in record["errors"][name]


def test_a_cells_seeds_are_checked_in_one_batched_run_per_worker(shifted, monkeypatch):
    sweep = sweeps.Sweep(
        Recipe(**TINY),
        grid={"lr": [0.1, 0.3]},
        seeds=10,
        settings=sweeps.Settings(frameworks=("numpy", shifted)),
    )
    result = sweeps.resume(sweep, None)
    assert [len(t.seeds) for t in sweeps.tasks(result, workers=1)] == [10, 10]
    assert [len(t.seeds) for t in sweeps.tasks(result, workers=3)] == [4, 4, 2] * 2
    import sys

    checking = sys.modules["compare.check"]
    batches, real = [], checking.check_seeds

    def batch(recipe, seeds, *args, **kwargs):
        batches.append(list(seeds))
        return real(recipe, seeds, *args, **kwargs)

    monkeypatch.setattr(checking, "check_seeds", batch)
    document = sweeps.run(sweep, isolate=False).document()
    assert batches == [list(range(10))] * 2, "one check_seeds run per cell, every seed in it"
    for cell in document["cells"]:
        assert cell["failing_seeds"] == shifted_seeds(range(10)), cell["label"]
        assert cell["oracle_seeds"] == [0], "the oracles check each cell's first seed"


def test_an_in_process_sweep_runs_its_frameworks_with_one_openmp_thread(monkeypatch, tmp_path):
    """Frameworks in threads of one process get one OpenMP thread each, as the worker
    processes do: torch's default intra-op threads made a batched sweep 30-60x slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # recorded, so the test's setting is undone
    monkeypatch.delenv("OMP_NUM_THREADS")
    seen = []

    def run(sweep, **kwargs):
        seen.append(__import__("os").environ.get("OMP_NUM_THREADS"))
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps, "run", run)
    main(["sweep", "--in-process", "--seeds", "1", "--steps", "2"])
    assert seen == ["1"]


@pytest.mark.parametrize("isolate", [False, True])
def test_cells_in_process_release_what_the_frameworks_compiled(monkeypatch, isolate):
    """A cell checked in threads of this process ends by releasing the frameworks' compiled
    code (``implementations.release``): each check's JAX executables hold memory mappings, and
    about 150 recipes in one process reached the kernel's limit. Worker processes end with
    their check, so an isolated cell has nothing to release."""
    import implementations

    released = []
    monkeypatch.setattr(implementations, "release", lambda: released.append(True))
    records = sweeps.evaluate_cell(
        Recipe(steps=2),
        [0, 1],
        ("numpy", "torch"),
        "numpy",
        "both",
        None,
        None,
        oracles=False,
        isolate=isolate,
    )
    assert [r["verdict"] for r in records] == ["pass", "pass"]
    assert released == ([] if isolate else [True])
