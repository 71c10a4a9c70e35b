"""``crosscheck run`` end to end: exit codes, the verdict line, the JSON report's values checked
against the trajectories themselves, the options that shape the recipe, plugins by path,
crashes and Ctrl-C.

Most runs compare the NumPy reference with plugins loaded by path (``tests/plugins``): an
honest copy of the reference and one with a wrong learning rate. They import no framework, so
the command itself is what these tests spend their time on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compare import cli, data, weights
from compare.present import json_report
from compare.recipe import Recipe
from implementations import numpy_manual

PLUGINS = Path(__file__).parent / "plugins"
AGAIN = str(PLUGINS / "numpy_again.py")
WRONG = str(PLUGINS / "wrong_lr.py")
CRASHES = str(PLUGINS / "crashes.py")
QUICK = ["--steps", "12", "--in-process"]
ROOT = Path(__file__).resolve().parent.parent


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_an_agreeing_run_exits_0_and_its_report_says_pass(capsys, tmp_path):
    report = tmp_path / "report.json"
    code, out, err = _run(capsys, *QUICK, "--frameworks", f"numpy,{AGAIN}", "--report", str(report))
    assert code == 0, err
    assert _last_line(out).startswith(f"PASS: {AGAIN} agrees with numpy on all ")
    document = json.loads(report.read_text())
    assert document["schema"] == json_report.SCHEMA and document["verdict"] == "pass"
    assert document["recipe"] == Recipe(steps=12).to_dict()
    assert Recipe.from_dict(document["recipe"]) == Recipe(steps=12), "not a valid recipe file"
    assert set(document["frameworks"]) == {"numpy", AGAIN}
    assert {row["mode"] for row in document["comparisons"]} == {"independent", "synced"}
    assert all(row["max_abs"] == 0 and row["passed"] for row in document["comparisons"])


def _facts(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> dict:
    """The comparison facts of two whole series, computed here, independently of the tool."""
    error = np.abs(actual - expected)
    failing = error > atol + rtol * np.abs(expected)
    steps = np.flatnonzero(failing.reshape(len(failing), -1).any(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(error == 0, 0.0, error / np.abs(expected))
    return {
        "max_abs": float(error.max()),
        "max_rel": float(relative.max()),
        "first_failing_step": int(steps[0]) if steps.size else None,
        "mismatched": int(failing.sum()),
    }


def test_a_wrong_update_exits_1_and_the_report_holds_what_the_trajectories_show(capsys, tmp_path):
    report, saved = tmp_path / "report.json", tmp_path / "trajectories.npz"
    code, out, err = _run(
        capsys,
        *QUICK,
        "--frameworks",
        f"numpy,{WRONG}",
        "--report",
        str(report),
        "--trajectories",
        str(saved),
    )
    assert code == 1, err
    verdict = _last_line(out)
    assert verdict.startswith("FAIL ("), verdict
    assert f"{WRONG} weight:W1 (synced) differs from numpy" in verdict, verdict
    assert "first at step 0, element (0, 0)" in verdict, verdict
    document = json.loads(report.read_text())
    assert document["verdict"] == "fail"
    rows = {
        (row["mode"], row["quantity"]): row
        for row in document["comparisons"]
        if (row["framework"], row["against"]) == (WRONG, "numpy")
    }
    synced = rows[("synced", "weight:W1")]
    assert synced["first_failing_step"] == 0 and synced["first_failing_index"] == [0, 0]
    assert rows[("synced", "grad:W1")]["first_failing_step"] is None, "gradients are right"
    keys = [
        (r["framework"], r["against"], r["mode"], r["quantity"]) for r in document["comparisons"]
    ]
    assert len(keys) == len(set(keys)), "a comparison is listed twice"
    with np.load(saved, allow_pickle=False) as archive:
        mine, reference = archive[f"{WRONG}/weight:W1"], archive["numpy/weight:W1"]
        assert mine.shape == reference.shape == (13, 4, 2)
    independent = rows[("independent", "weight:W1")]
    expected = _facts(mine, reference, independent["rtol"], independent["atol"])
    assert independent["max_abs"] == pytest.approx(expected["max_abs"], rel=1e-12)
    assert independent["max_rel"] == pytest.approx(expected["max_rel"], rel=1e-12)
    assert expected["max_abs"] != pytest.approx(expected["max_rel"]), (
        "the test must tell them apart"
    )
    assert independent["first_failing_step"] == expected["first_failing_step"] == 1
    assert independent["mismatched"] == expected["mismatched"]
    assert document["first_failure"]["quantity"] == "weight:W1"
    assert document["first_failure"]["mode"] == "synced"


def test_the_trajectories_file_holds_every_record_of_every_framework(capsys, tmp_path):
    saved = tmp_path / "run.npz"
    argv = [*QUICK, "--frameworks", f"numpy,{AGAIN}", "--biases", "--optimizer", "adam"]
    code, _, err = _run(capsys, *argv, "--trajectories", str(saved))
    assert code == 0, err
    with np.load(saved, allow_pickle=False) as archive:
        keys = set(archive.files)
        assert archive["numpy/loss"].shape == (13,)
        assert archive["numpy/weight:W1"].shape == (13, 4, 2)
        assert archive["numpy/bias:b1"].shape == (13, 2)
        assert archive["numpy/grad:W1"].shape == (12, 4, 2)
        assert archive["numpy/state:m:W1"].shape == (13, 4, 2)
        np.testing.assert_array_equal(archive[f"{AGAIN}/loss"], archive["numpy/loss"])
    assert {"numpy/state:v:b2", f"{AGAIN}/state:step", "schema"} <= keys


def _initial_loss(recipe: Recipe) -> float:
    """The reference's loss at step 0 of ``recipe``, computed here from its data and weights."""
    split = data.load(recipe)
    problem = recipe.problem(split)
    params = weights.initial_params(recipe, problem.network)
    losses, _ = numpy_manual.loss_and_grads(
        problem, {name: value[None] for name, value in params.items()}, split.X_train, split.Y_train
    )
    return float(losses[0])


@pytest.mark.parametrize(
    ("option", "value", "field", "typed"),
    [
        ("--split-seed", "7", "split_seed", 7),
        ("--init-scale", "0.1", "init_scale", 0.1),
        ("--init-seed", "3", "init_seed", 3),
        ("--dataset", "wine", "dataset", "wine"),
        ("--test-size", "30", "test_size", 30),
        ("--loss", "mse", "loss", "mse"),
    ],
)
def test_recipe_options_reach_the_run(capsys, tmp_path, option, value, field, typed):
    saved = tmp_path / "run.npz"
    argv = [*QUICK, "--frameworks", f"numpy,{AGAIN}", "--trajectories", str(saved)]
    code, _, err = _run(capsys, *argv, option, value)
    assert code == 0, err
    recipe = Recipe(steps=12).replace(**{field: typed})
    expected = _initial_loss(recipe)
    assert expected != pytest.approx(_initial_loss(Recipe(steps=12))), "the option changes nothing"
    with np.load(saved, allow_pickle=False) as archive:
        assert archive["numpy/loss"][0] == pytest.approx(expected, rel=1e-12)
    if field == "init_scale":
        with np.load(saved, allow_pickle=False) as archive:
            network = recipe.problem(data.load(recipe)).network
            np.testing.assert_array_equal(
                archive["numpy/weight:W1"][0], weights.initial_params(recipe, network)["W1"]
            )


def test_the_reference_option_changes_what_everything_is_compared_with(capsys, tmp_path):
    report = tmp_path / "report.json"
    argv = [*QUICK, "--frameworks", f"numpy,{WRONG}", "--reference", AGAIN]
    code, out, _ = _run(capsys, *argv, "--report", str(report))
    assert code == 1
    document = json.loads(report.read_text())
    assert document["reference"] == AGAIN
    against_reference = [
        row
        for row in document["comparisons"]
        if row["against"] == AGAIN and row["framework"] != AGAIN
    ]
    assert {row["framework"] for row in against_reference} == {"numpy", WRONG}
    assert all(row["against"] in (AGAIN, row["framework"]) for row in document["comparisons"])
    assert f"differs from {AGAIN}" in _last_line(out)


def test_independent_mode_alone_and_synced_mode_alone(capsys, tmp_path):
    for mode in ("independent", "synced"):
        report = tmp_path / f"{mode}.json"
        argv = [*QUICK, "--frameworks", f"numpy,{WRONG}", "--mode", mode, "--report", str(report)]
        code, _, _ = _run(capsys, *argv)
        assert code == 1, f"{mode} mode missed a wrong learning rate in float64"
        document = json.loads(report.read_text())
        assert {row["mode"] for row in document["comparisons"]} == {mode}
        assert document["mode"] == mode


def test_frameworks_run_in_worker_processes_unless_told_otherwise(capsys, tmp_path):
    report = tmp_path / "report.json"
    argv = ["--steps", "5", "--frameworks", f"numpy,{AGAIN}", "--report", str(report)]
    assert _run(capsys, *argv)[0] == 0
    workers = json.loads(report.read_text())["workers"]
    assert set(workers) == {"numpy", AGAIN}
    assert os.getpid() not in workers.values() and len(set(workers.values())) == 2
    assert _run(capsys, *argv, "--in-process")[0] == 0
    workers = json.loads(report.read_text())["workers"]
    assert set(workers.values()) == {os.getpid()}


def test_version_prints_the_installed_version(capsys):
    from importlib import metadata

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"crosscheck {metadata.version('crosscheck')}"


@pytest.mark.parametrize(("typed", "suggested"), [("rnu", "run"), ("chek", "check")])
def test_an_unknown_command_suggests_the_nearest(capsys, typed, suggested):
    assert cli.main([typed, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"crosscheck: error: unknown command {typed!r}")
    assert f"did you mean {suggested}" in err


def test_no_command_is_exit_2(capsys):
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("crosscheck: error: ")


def test_every_command_has_help(capsys):
    for name in cli.command_names():
        assert cli.main([name, "--help"]) == 0, name
        assert "usage: crosscheck " + name in capsys.readouterr().out


def test_the_report_never_overwrites_a_users_file(capsys, tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    argv = [*QUICK, "--frameworks", f"numpy,{AGAIN}", "--report", str(notes)]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "refusing to overwrite" in err
    assert notes.read_text() == '{"mine": true}\n'
    assert _run(capsys, *argv, "--force")[0] == 0
    assert json.loads(notes.read_text())["schema"] == json_report.SCHEMA


def test_the_report_replaces_its_own_earlier_report(capsys, tmp_path):
    path = tmp_path / "report.json"
    argv = ["--in-process", "--frameworks", f"numpy,{AGAIN}", "--report", str(path)]
    assert _run(capsys, "--steps", "5", *argv)[0] == 0
    assert _run(capsys, "--steps", "6", *argv)[0] == 0
    assert json.loads(path.read_text())["recipe"]["train"]["steps"] == 6


def _crosscheck(*argv: str, env: dict | None = None, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "compare", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        **options,
    )


def test_python_dash_m_compare_is_the_same_command_and_honours_no_color():
    process = _crosscheck("run", *QUICK, "--frameworks", f"numpy,{AGAIN}", env={"NO_COLOR": "1"})
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert _last_line(out).startswith("PASS") and "\x1b[" not in out + err


@pytest.mark.parametrize("isolated", [True, False], ids=["worker-process", "in-process"])
def test_a_crashing_framework_is_exit_3_with_its_error_in_one_line(capsys, isolated):
    argv = ["--steps", "5", "--frameworks", f"numpy,{CRASHES}"]
    code, out, err = _run(capsys, *argv, *([] if isolated else ["--in-process"]))
    assert code == 3, err
    assert err.count("\n") == 1 and "out of cheese" in err and "Traceback" not in err + out


def test_ctrl_c_is_exit_130_and_leaves_no_output(monkeypatch, capsys, tmp_path):
    from compare.cli import run as run_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_command, "check", interrupted)
    outputs = {"--report": "r.json", "--junit-xml": "r.xml", "--markdown": "r.md"}
    argv = [arg for option, name in outputs.items() for arg in (option, str(tmp_path / name))]
    code, _, err = _run(capsys, *QUICK, "--frameworks", f"numpy,{AGAIN}", *argv)
    assert code == 130 and err == "crosscheck: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def _default_ctrl_c() -> None:
    # A process started in the background by a non-interactive shell ignores SIGINT, and its
    # children inherit that; give the command the disposition an interactive user's has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_long_run_within_seconds_and_writes_nothing(tmp_path):
    report = tmp_path / "report.json"
    process = _crosscheck(
        "run",
        "--steps",
        "2000000",
        "--frameworks",
        f"numpy,{AGAIN}",
        "--report",
        str(report),
        "--plots",
        str(tmp_path / "plots"),
        preexec_fn=_default_ctrl_c,
        start_new_session=True,  # so that a hung run can be killed with its workers
    )
    time.sleep(6)  # past the imports, into training
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    waited = time.monotonic() - sent
    assert process.returncode == 130, err
    assert waited < 5, f"Ctrl-C took {waited:.1f} s to stop the run"
    assert err.strip().splitlines()[-1] == "crosscheck: interrupted", err
    assert list(tmp_path.iterdir()) == [], "an interrupted run must leave no output"


def test_an_internal_error_is_exit_3_with_one_line_and_the_traceback_only_on_request(
    capsys, tmp_path, monkeypatch
):
    from compare.present import plots

    def broken(result, folder):
        raise RuntimeError("the plot library broke")

    monkeypatch.setattr(plots, "write", broken)
    monkeypatch.delenv("CROSSCHECK_TRACEBACK", raising=False)
    argv = (*QUICK, "--frameworks", f"numpy,{AGAIN}", "--plots", str(tmp_path / "plots"))
    code, _, err = _run(capsys, *argv)
    assert code == 3
    assert err.strip().splitlines() == [
        "crosscheck: internal error: RuntimeError: the plot library broke (a bug: "
        "CROSSCHECK_TRACEBACK=1 shows the traceback for a report)"
    ]
    monkeypatch.setenv("CROSSCHECK_TRACEBACK", "1")
    code, _, err = _run(capsys, *argv)
    assert code == 3
    assert err.startswith("Traceback (most recent call last):") and "broken" in err
