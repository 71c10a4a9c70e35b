"""The pytest matrix (``compare.matrix``) judges through ``compare.check``, and ``run``,
``record`` and the matrix reach the same verdict on the same float32 recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compare import cli, matrix
from compare.recipe import Recipe

PLUGINS = Path(__file__).parent / "plugins"
WRONG = str(PLUGINS / "wrong_lr.py")

#: A float32 recipe with biases and momentum: below float64 the verdict rests on the synced
#: step, so this is where the three front ends could drift apart.
FLOAT32 = Recipe(dtype="float32", steps=40, biases=True, optimizer="momentum", lr=0.05)


def _verdicts(tmp_path: Path, framework: str, capsys) -> tuple[str, str, str]:
    """The verdict of ``run``, ``record`` and the matrix on ``FLOAT32`` with ``framework``."""
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(FLOAT32.to_toml())
    common = ["--recipe", str(recipe_file), "--frameworks", f"numpy,{framework}", "--in-process"]
    report = tmp_path / "run.json"
    code = cli.main(["run", *common, "--report", str(report)])
    run = json.loads(report.read_text())["verdict"]
    assert code == (0 if run == "pass" else 1)
    stored = tmp_path / "b.json"
    code = cli.main(["record", str(stored), *common])
    record = "pass" if code == 0 else "fail"
    assert stored.exists() == (record == "pass"), "record writes a baseline only on a pass"
    assert Recipe.from_dict(json.loads(report.read_text())["recipe"]) == FLOAT32
    capsys.readouterr()
    try:
        matrix.check_agreement(FLOAT32, framework)
    except AssertionError:
        in_matrix = "fail"
    else:
        in_matrix = "pass"
    return run, record, in_matrix


def test_run_record_and_the_matrix_agree_on_a_float32_pass(tmp_path, capsys):
    pytest.importorskip("torch")
    assert _verdicts(tmp_path, "torch", capsys) == ("pass", "pass", "pass")


def test_run_record_and_the_matrix_agree_on_a_float32_failure(tmp_path, capsys):
    assert _verdicts(tmp_path, WRONG, capsys) == ("fail", "fail", "fail")


def test_a_matrix_failure_names_the_first_failing_comparison():
    with pytest.raises(AssertionError) as failed:
        matrix.check_agreement(FLOAT32, WRONG)
    message = str(failed.value)
    assert message.startswith("FAIL (") and "first at step 0" in message
    assert f"{WRONG} weight:W1 (synced) differs from numpy" in message


def test_the_matrix_cases_are_named_and_marked():
    cases = list(matrix.cases())
    ids = {case.id for case in cases}
    for framework in matrix.FRAMEWORKS:
        for dtype in matrix.DTYPES:
            assert f"{framework}-{dtype}-tutorial" in ids
            assert f"{framework}-{dtype}-tutorial-full" in ids
    slow = {case.id for case in cases if any(mark.name == "slow" for mark in case.marks)}
    assert slow == {case_id for case_id in ids if case_id.endswith("-full")}
    assert all(any(mark.name == "crosscheck" for mark in case.marks) for case in cases)
