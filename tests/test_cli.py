"""The `crosscheck` command: exit codes, one-line errors, the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import implementations
from compare import cli
from compare.report import SCHEMA

SHORT = ["--steps", "30"]


def _run(capsys, *argv):
    code = cli.main(["run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_agreeing_run_exits_0_and_writes_the_report(capsys, tmp_path):
    path = tmp_path / "report.json"
    code, out, err = _run(capsys, *SHORT, "--report", str(path))
    assert code == 0, err
    assert "PASS" in out and "test accuracy" in out
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA and document["verdict"] == "pass"
    assert document["reference"] == "numpy" and document["dtype"] == "float64"
    assert document["recipe"]["steps"] == 30 and document["recipe"]["hidden"] == [2]
    assert set(document["frameworks"]) == {"numpy", "torch", "jax"}
    assert {"python", "numpy", "torch", "jax", "platform"} <= set(document["environment"])
    row = document["comparisons"][0]
    for key in (
        "framework",
        "against",
        "mode",
        "quantity",
        "max_abs",
        "max_rel",
        "worst_step",
        "first_failing_step",
        "rtol",
        "atol",
    ):
        assert key in row
    # Default mode "both": 9 independent quantities and the synced loss and 2 gradients.
    modes = [row["mode"] for row in document["comparisons"]]
    assert modes.count("independent") == 2 * 9 and modes.count("synced") == 2 * 3


def test_a_disagreement_exits_1_and_names_step_and_quantity(capsys):
    # With zero tolerance even float64 rounding differences between frameworks count.
    code, out, _ = _run(
        capsys, *SHORT, "--rtol", "0", "--atol", "0", "--frameworks", "numpy,torch", "--in-process"
    )
    assert code == 1
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("FAIL") and "torch" in verdict and "first at step" in verdict


def test_subset_of_frameworks_and_another_network(capsys):
    code, out, err = _run(
        capsys,
        *SHORT,
        "--frameworks",
        "numpy,jax",
        "--hidden",
        "5,5",
        "--activation",
        "sigmoid,identity,sigmoid",
    )
    assert code == 0, err
    assert "4-5-5-3 (sigmoid, identity, sigmoid)" in out and "torch" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "steps must be a positive integer"),
        (["--steps", "ten"], "invalid int value"),
        (["--lr", "-0.1"], "learning rate must be a positive"),
        (["--lr", "nan"], "learning rate must be a positive finite number"),
        (["--hidden", "0"], "hidden widths must be positive integers"),
        (["--hidden", "2,x"], "hidden widths must be a comma list"),
        (["--frameworks", "numpy,tensorflow"], "unknown framework 'tensorflow'"),
        (["--dtype", "float8"], "invalid choice: 'float8'"),
        (["--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--activation", "relu"], "unknown activation 'relu'"),
        (["--activation", "sigmoid,identity,sigmoid"], "activations must be one name, or one"),
        (["--test-size", "1000"], "cannot split iris (150 rows)"),
        (["--test-size", "1.5"], "test size must be a row count or a fraction"),
        (["--init-scale", "0"], "init scale must be a positive"),
        (["--rtol", "-1"], "tolerances must be non-negative"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--report", "/nonexistent-folder/r.json"], "folder /nonexistent-folder does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("crosscheck: error: "), err
    assert message in err
    assert "Traceback" not in err + out


def test_no_subcommand_is_exit_2(capsys):
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("crosscheck: error: ")


def test_report_never_overwrites_a_users_file(capsys, tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    code, _, err = _run(capsys, *SHORT, "--report", str(notes))
    assert code == 2 and "refusing to overwrite" in err
    assert notes.read_text() == '{"mine": true}\n'
    code, _, _ = _run(capsys, *SHORT, "--report", str(notes), "--force")
    assert code == 0 and json.loads(notes.read_text())["schema"] == SCHEMA


def test_report_replaces_its_own_earlier_report(capsys, tmp_path):
    path = tmp_path / "report.json"
    assert _run(capsys, *SHORT, "--report", str(path))[0] == 0
    assert _run(capsys, "--steps", "31", "--report", str(path))[0] == 0
    assert json.loads(path.read_text())["recipe"]["steps"] == 31


def test_a_missing_framework_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(
        implementations.IMPLEMENTATIONS,
        "torch",
        ("implementations.torch_autograd", "torch_is_not_here", "crosscheck[torch]"),
    )
    code, _, err = _run(capsys, *SHORT)
    assert code == 2
    assert "torch is not installed" in err and "pip install" in err and "crosscheck[torch]" in err
    assert err.count("\n") == 1


def test_python_dash_m_compare_is_the_same_command():
    completed = subprocess.run(
        [sys.executable, "-m", "compare", "run", *SHORT, "--frameworks", "numpy,jax"],
        capture_output=True,
        text=True,
        check=False,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "PASS" in completed.stdout
    assert "\x1b[" not in completed.stdout, "no colour codes when NO_COLOR is set"


def test_a_crashing_worker_is_reported_in_one_line():
    from compare import harness

    workers = harness._Workers(["no_such_framework"])
    try:
        with pytest.raises(
            harness.WorkerError,
            match=r"the no_such_framework worker failed: "
            r"KeyError: .*unknown framework",
        ):
            workers.submit("train", ())
    finally:
        workers.close()


def test_the_reference_alone_says_there_was_nothing_to_compare(capsys):
    code, out, _ = _run(capsys, *SHORT, "--frameworks", "numpy", "--in-process")
    assert code == 0
    assert out.strip().splitlines()[-1] == (
        "PASS: only numpy ran, so there was nothing to compare it with."
    )
