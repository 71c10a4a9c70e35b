"""Fault injection: every catalogued bug is caught, and the checker can also let one through."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import implementations
from compare import cli, mutants

pytest.importorskip("torch")
pytest.importorskip("jax")

#: Reorders a product: the same IEEE result, so the cross-check must let it through.
HARMLESS = mutants.Mutant(
    name="harmless",
    description="A (1 - A) written as (1 - A) A",
    framework="numpy",
    find="return A * (1 - A)",
    replace="return (1 - A) * A",
)


@pytest.mark.parametrize("mutant", mutants.CATALOGUE, ids=lambda m: m.name)
def test_every_mutant_is_caught(mutant):
    result = mutants.run_mutant(mutant)
    assert result.error is None, f"{mutant.name} did not train: {result.error}"
    assert result.caught, f"{mutant.name} escaped: every comparison with its reference passed"


def test_the_catalogue_covers_the_issue_list():
    assert len(mutants.CATALOGUE) >= 9
    assert len({m.name for m in mutants.CATALOGUE}) == len(mutants.CATALOGUE), "duplicate names"
    assert {m.framework for m in mutants.CATALOGUE} == set(implementations.NAMES)


def test_a_harmless_edit_escapes():
    result = mutants.run_mutant(HARMLESS)
    assert result.error is None
    assert not result.caught, "an edit that changes no number was reported as a bug"
    assert mutants.exit_code([result]) == 1


def test_a_stale_mutant_is_an_error_not_a_pass():
    stale = dataclasses.replace(HARMLESS, name="stale", find="this text is not in the source")
    result = mutants.run_mutant(stale)
    assert not result.caught
    assert "no longer applies" in result.error
    assert mutants.exit_code([result]) == 1


def test_building_a_mutant_leaves_the_shipped_module_alone():
    original = implementations.load("numpy")
    mutant = mutants.build(mutants.CATALOGUE[0])  # the loss typo
    A, Y = np.full((2, 3), 0.25), np.zeros((2, 3))
    assert original.loss(A, Y) == pytest.approx(0.25**2 / 2)
    assert mutant.loss(A, Y) == pytest.approx(0.25 * 2 / 2), "the mutant did not take the edit"
    assert implementations.load("numpy") is original


def test_mutants_command_exits_1_when_one_escapes(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(mutants, "CATALOGUE", (HARMLESS,))
    markdown = tmp_path / "mutants.md"
    assert cli.main(["mutants", "--markdown", str(markdown)]) == 1
    out = capsys.readouterr().out
    assert "ESCAPED" in out and "0 of 1 mutants caught" in out
    assert "| harmless | numpy |" in markdown.read_text()


def test_mutants_command_exits_0_when_all_are_caught(capsys):
    assert cli.main(["mutants", "--only", "update-sign,loss-typo", "--steps", "20"]) == 0
    assert "2 of 2 mutants caught." in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--only", "no-such-bug"], ["--steps", "0"]])
def test_mutants_command_bad_input_is_one_line(argv, capsys):
    assert cli.main(["mutants", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crosscheck: error:"), err
