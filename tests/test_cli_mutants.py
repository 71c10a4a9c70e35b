"""``crosscheck mutants``: the command and its report, on mutant results whose checks are real
(a wrong learning rate caught, an honest copy that escapes, one that crashed). Whether the
catalogue's own mutants are caught is tested with the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from compare import cli, mutants
from compare.check import check
from compare.present import markdown
from compare.recipe import Recipe

PLUGINS = Path(__file__).parent / "plugins"


def _mutant(name: str, framework: str = "numpy", why: str = "") -> mutants.Mutant:
    return mutants.Mutant(
        name, f"the {name} bug", framework, "find", "replace", why=why, expected=(0, "weight:W1")
    )


CAUGHT = _mutant("wrong-lr", why="a learning rate 2% too large changes only the update")
ESCAPED = _mutant("no-bug")
CRASHED = _mutant("crashes", "torch")


@pytest.fixture(scope="module")
def checks():
    """Real checks: one of a wrong update, one of an honest copy."""
    recipe = Recipe(steps=5, dtype="float32")
    wrong = check(recipe, ("numpy", str(PLUGINS / "wrong_lr.py")), isolate=False)
    honest = check(recipe, ("numpy", str(PLUGINS / "numpy_again.py")), isolate=False)
    assert (wrong.verdict, honest.verdict) == ("fail", "pass")
    return wrong, honest


@pytest.fixture
def catalogue(monkeypatch, checks):
    """A catalogue of three whose runner returns the real checks above."""
    wrong, honest = checks

    def run_catalogue(chosen, steps, dtypes, *, oracles=True):
        results = {
            "wrong-lr": lambda dtype: mutants.MutantResult(CAUGHT, dtype, wrong),
            "no-bug": lambda dtype: mutants.MutantResult(ESCAPED, dtype, honest),
            "crashes": lambda dtype: mutants.MutantResult(CRASHED, dtype, error="boom"),
        }
        return [results[mutant.name](dtype) for dtype in dtypes for mutant in chosen]

    monkeypatch.setattr(mutants, "CATALOGUE", (CAUGHT, ESCAPED, CRASHED))
    monkeypatch.setattr(mutants, "run_catalogue", run_catalogue)


def test_every_mutant_caught_is_exit_0_with_the_counts_per_dtype(catalogue, capsys, tmp_path):
    summary = tmp_path / "mutants.md"
    argv = ["mutants", "--only", "wrong-lr", "--dtype", "float64,float32"]
    assert cli.main([*argv, "--markdown", str(summary)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "Mutants caught: 1 of 1 in float64; 1 of 1 in float32."
    assert "wrong-lr: a learning rate 2% too large changes only the update." in out
    assert "weight:W1" in out and "synced" in out, "the first failing quantity and mode"
    text = summary.read_text()
    assert text.startswith(f"<!-- {markdown.SCHEMA} -->\n### crosscheck mutants: PASS")
    assert "| wrong-lr | numpy | float32 |" in text


def test_a_mutant_that_escapes_or_crashes_is_exit_1_and_named(catalogue, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # the table, not its stacked form (an xdist worker's)
    assert cli.main(["mutants", "--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    last = " ".join(" ".join(out.strip().splitlines()[-2:]).split())
    assert "Mutants caught: 1 of 3 in float32." in last
    assert "Not caught: no-bug (float32), crashes (float32)." in last
    assert "ESCAPED" in out and "ERROR" in out and "boom" in out


def test_list_names_the_catalogue_and_runs_nothing(catalogue, capsys, monkeypatch):
    monkeypatch.setattr(mutants, "run_catalogue", None)
    assert cli.main(["mutants", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("wrong-lr", "no-bug", "crashes"))
    assert "step 0, weight:W1" in out
