"""Every user error is one line on standard error and exit status 2, before anything trains.

"Before anything trains" is checked, not assumed: the function each command trains through is
replaced by one that fails the test if it is ever called.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import implementations
from compare import cli, mutants
from compare.cli import check as check_command
from compare.cli import record as record_command
from compare.cli import run as run_command

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any command starts training."""

    def trained(*args, **kwargs):
        raise AssertionError("bad input reached training")

    for module in (run_command, record_command, check_command):
        monkeypatch.setattr(module, "check", trained)
    monkeypatch.setattr(mutants, "run_catalogue", trained)


def _one_line_exit_2(argv, capsys) -> str:
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, f"{argv}: exit {code}, {captured.err!r}"
    assert captured.err.startswith("crosscheck: error: "), captured.err
    assert captured.err.count("\n") == 1, f"more than one line: {captured.err!r}"
    assert "Traceback" not in captured.err + captured.out
    return captured.err


BASELINE = "b.json"

#: argv -> a piece of the one line that must say what is wrong.
BAD = {
    "rtol nan": (["run", "--rtol", "nan"], "--rtol: a tolerance must be a finite non-negative"),
    "atol inf": (["run", "--atol", "inf"], "--atol: a tolerance must be a finite non-negative"),
    "negative rtol": (["run", "--rtol", "-1"], "finite non-negative number, got '-1'"),
    "negative atol": (["run", "--atol=-1e-12"], "finite non-negative number"),
    "text rtol": (["run", "--rtol", "tight"], "--rtol: expected a number"),
    "record rtol nan": (["record", BASELINE, "--rtol", "nan"], "--rtol: a tolerance must"),
    "record atol inf": (["record", BASELINE, "--atol", "inf"], "--atol: a tolerance must"),
    "check rtol nan": (["check", BASELINE, "--rtol", "nan"], "--rtol: a tolerance must"),
    "check atol -inf": (["check", BASELINE, "--atol=-inf"], "--atol: a tolerance must"),
    "two outputs one path": (
        ["run", "--report", "out.x", "--junit-xml", "out.x"],
        "--report and --junit-xml both name out.x; give each output its own path",
    ),
    "two spellings of one path": (
        ["run", "--markdown", "out.md", "--report", "./out.md"],
        "--report and --markdown both name out.md",
    ),
    "record's outputs collide with the baseline": (
        ["record", "b.json", "--markdown", "b.json"],
        "both name b.json",
    ),
    "check's outputs collide": (
        ["check", "b.json", "--junit-xml", "c.xml", "--markdown", "c.xml"],
        "both name c.xml",
    ),
    "empty plots folder": (["run", "--plots", ""], "--plots: needs a path, got an empty one"),
    "empty markdown": (["run", "--markdown", ""], "--markdown: needs a path"),
    "empty trajectories": (["run", "--trajectories", " "], "--trajectories: needs a path"),
    "mutants empty markdown": (["mutants", "--markdown", ""], "--markdown: needs a path"),
    "the reference alone": (
        ["run", "--frameworks", "numpy"],
        "--frameworks numpy compares nothing: numpy is the reference; name a second framework",
    ),
    "the reference alone, another one": (
        ["run", "--frameworks", "jax", "--reference", "jax"],
        "name a second framework to compare with it",
    ),
    "record the reference alone": (
        ["record", BASELINE, "--frameworks", "numpy"],
        "compares nothing",
    ),
    "unknown framework": (["run", "--frameworks", "numpy,mxnet"], "unknown framework 'mxnet'"),
    "unknown reference": (["run", "--reference", "mxnet"], "unknown framework 'mxnet'"),
    "plugin file missing": (["run", "--frameworks", "numpy,no/such/impl.py"], "no such file"),
    "plugin fails to import": (
        ["run", "--frameworks", f"numpy,{PLUGINS / 'fails_to_import.py'}"],
        "fails_to_import.py' failed to import: ModuleNotFoundError",
    ),
    "plugin breaks the contract": (
        ["run", "--frameworks", f"numpy,{PLUGINS / 'no_step.py'}"],
        "no_step.py': does not define step",
    ),
    "unknown mode": (["run", "--mode", "sideways"], "--mode: invalid choice: 'sideways'"),
    "unknown dtype": (["run", "--dtype", "float8"], "invalid choice: 'float8'"),
    "unknown data set": (["run", "--dataset", "mnist"], "invalid choice: 'mnist'"),
    "unknown option": (["run", "--bogus"], "unrecognized arguments: --bogus"),
    "zero steps": (["run", "--steps", "0"], "steps"),
    "fractional steps": (["run", "--steps", "2.5"], "expected a whole number"),
    "nan learning rate": (["run", "--lr", "nan"], "expected a finite number"),
    "zero record-every": (["run", "--record-every", "0"], "--record-every: must be at least 1"),
    "report in a missing folder": (["run", "--report", "/nonexistent/r.json"], "does not exist"),
    "report is a folder": (["run", "--report", "/"], "it is a folder"),
    "baseline in a missing folder": (["record", "/nonexistent/b.json"], "does not exist"),
    "missing baseline": (["check", "/nonexistent/b.json"], "does not exist"),
    "unknown command": (["train"], "unknown command 'train'"),
    "mutants unknown name": (["mutants", "--only", "typo"], "unknown mutant 'typo'"),
    "mutants zero steps": (["mutants", "--steps", "0"], "--steps: must be at least 1"),
    "mutants unknown dtype": (["mutants", "--dtype", "float8"], "unknown dtype 'float8'"),
    "binary cross-entropy in float16": (
        ["run", "--loss", "binary-cross-entropy", "--activation", "sigmoid", "--dtype", "float16"],
        "binary-cross-entropy cannot be computed in float16",
    ),
}


@pytest.mark.parametrize(("argv", "message"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_and_exit_2_before_training(
    argv, message, capsys, no_training, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(argv, capsys)
    assert message in err, err


def test_a_framework_that_is_not_installed_names_the_install_line(capsys, no_training, monkeypatch):
    missing = implementations.Builtin(
        "torch", "implementations.torch_autograd", ("torch_is_not_here",), "crosscheck[torch]", "x"
    )
    monkeypatch.setitem(implementations.BUILTINS, "torch", missing)
    err = _one_line_exit_2(["run", "--frameworks", "numpy,torch"], capsys)
    assert "torch is not installed" in err
    assert "pip install -c constraints.txt 'crosscheck[torch]'" in err


def test_a_run_too_large_for_memory_is_refused_before_training(capsys, tmp_path):
    again = str(PLUGINS / "numpy_again.py")
    argv = ["run", "--steps", "1000000000", "--frameworks", f"numpy,{again}", "--in-process"]
    err = _one_line_exit_2([*argv, "--trajectories", str(tmp_path / "t.npz")], capsys)
    assert "memory" in err and "--record-every" in err
    assert list(tmp_path.iterdir()) == []


def _help(command: str, capsys) -> str:
    assert cli.main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_every_command_takes_markdown_in_the_same_form(capsys):
    commands = cli.command_names()
    assert {"run", "record", "check", "mutants"} <= set(commands)
    for command in commands:
        assert "--markdown PATH" in _help(command, capsys), f"{command}: no --markdown PATH"


def test_every_command_with_tolerances_refuses_a_non_finite_one(capsys, no_training, tmp_path):
    for command in cli.command_names():
        if "--rtol" not in _help(command, capsys):
            continue
        for option in ("--rtol", "--atol"):
            for value in ("nan", "inf", "-1"):
                err = _one_line_exit_2([command, option, value], capsys)
                assert f"{option}: a tolerance must be a finite non-negative number" in err
