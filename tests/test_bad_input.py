"""Every user error is one line on standard error and exit status 2, before anything trains."""

from __future__ import annotations

import pytest

from compare import cli

BAD_RUNS = {
    "unknown framework": ["run", "--frameworks", "numpy,mxnet"],
    "unknown reference": ["run", "--reference", "mxnet"],
    "unknown dtype": ["run", "--dtype", "float8"],
    "unknown data set": ["run", "--dataset", "mnist"],
    "unknown option": ["run", "--bogus"],
    "unknown command": ["train"],
    "zero steps": ["run", "--steps", "0"],
    "negative steps": ["run", "--steps", "-5"],
    "fractional steps": ["run", "--steps", "2.5"],
    "zero learning rate": ["run", "--lr", "0"],
    "negative learning rate": ["run", "--lr", "-0.1"],
    "nan learning rate": ["run", "--lr", "nan"],
    "zero hidden width": ["run", "--hidden", "0"],
    "fractional hidden width": ["run", "--hidden", "2.5"],
    "text hidden width": ["run", "--hidden", "two"],
    "negative hidden width": ["run", "--hidden", "4,-1"],
    "unknown activation": ["run", "--activation", "relu"],
    "negative tolerance": ["run", "--rtol", "-1"],
    "report in a missing folder": ["run", "--report", "/nonexistent/folder/report.json"],
    "report path is a folder": ["run", "--report", "/"],
    "junit in a missing folder": ["run", "--junit-xml", "/nonexistent/folder/run.xml"],
    "markdown in a missing folder": ["run", "--markdown", "/nonexistent/folder/run.md"],
    "baseline in a missing folder": ["record", "/nonexistent/folder/b.json"],
    "record with zero steps": ["record", "b.json", "--steps", "0"],
    "mutants with an unknown name": ["mutants", "--only", "typo"],
}


@pytest.mark.parametrize("argv", BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("crosscheck: error: "), captured.err
    assert captured.err.count("\n") == 1, f"more than one line: {captured.err!r}"
    assert "Traceback" not in captured.err + captured.out
