"""Baselines: record, check, and every way a baseline file can be wrong."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import implementations
from compare import baseline, cli, harness, mutants

#: A numpy-only recipe: fast, and a baseline check needs no second framework.
RECORD = ["--frameworks", "numpy", "--steps", "40", "--in-process"]


@pytest.fixture
def recorded(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert cli.main(["record", str(path), *RECORD]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return path


def _check(path, *extra) -> int:
    return cli.main(["check", str(path), "--in-process", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crosscheck: error: "), err
    return err


def test_record_then_check_passes(recorded, capsys):
    assert _check(recorded) == 0
    assert "PASS: all 8 stored quantities" in capsys.readouterr().out


def test_the_baseline_is_plain_json_with_everything_the_issue_lists(recorded):
    document = json.loads(recorded.read_text())
    assert document["schema"] == baseline.SCHEMA
    assert document["recipe"]["steps"] == 40
    assert {"python", "numpy", "torch", "jax", "platform"} <= set(document["environment"])
    stored = document["frameworks"]["numpy"]
    assert stored["loss"]["steps"] == baseline.checkpoints(40)
    assert stored["grad_norm:W1"]["steps"][-1] == 39, "the last gradient is at step steps - 1"
    assert stored["weight:W2"]["steps"] == [40]
    assert {"test_predictions", "test_accuracy", "train_accuracy"} <= set(stored)


def test_an_edited_number_fails_the_check_and_is_named(recorded, capsys):
    document = json.loads(recorded.read_text())
    document["frameworks"]["numpy"]["weight:W2"]["values"][0][1][2] += 1e-6
    recorded.write_text(json.dumps(document))
    assert _check(recorded) == 1
    out = capsys.readouterr().out
    assert "numpy weight:W2 differs from baseline first at step 40 (1, 2)" in out


def test_tolerance_override_lets_a_small_change_pass(recorded, capsys):
    document = json.loads(recorded.read_text())
    document["frameworks"]["numpy"]["loss"]["values"][3] *= 1 + 1e-9
    recorded.write_text(json.dumps(document))
    assert _check(recorded, "--rtol", "1e-12") == 1
    assert _check(recorded) == 0, "the baseline's own rtol (1.5e-8) allows a 1e-9 change"


def test_library_versions_that_differ_are_reported(recorded, capsys):
    document = json.loads(recorded.read_text())
    document["environment"]["numpy"] = "0.0.1"
    recorded.write_text(json.dumps(document))
    assert _check(recorded) == 0, "a version change alone is reported, not a failure"
    out = capsys.readouterr().out
    assert "Environment differs" in out and "0.0.1" in out


def test_check_writes_junit_and_markdown(recorded, tmp_path):
    junit, markdown = tmp_path / "check.xml", tmp_path / "check.md"
    assert _check(recorded, "--junit-xml", str(junit), "--markdown", str(markdown)) == 0
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 8 and not any(case.find("failure") is not None for case in cases)
    assert "### crosscheck check: PASS" in markdown.read_text()


def test_record_refuses_to_overwrite_without_force(recorded, capsys):
    before = recorded.read_text()
    assert cli.main(["record", str(recorded), *RECORD]) == 2
    assert "use --force" in _one_error_line(capsys)
    assert recorded.read_text() == before
    assert cli.main(["record", str(recorded), *RECORD, "--force"]) == 0


def test_record_leaves_no_temporary_files(recorded):
    assert [p.name for p in recorded.parent.iterdir()] == ["b.json"]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda text: text[: len(text) // 2], "invalid JSON"),
        (lambda text: "not json at all", "invalid JSON"),
        (lambda text: "[1, 2]", "not a crosscheck baseline"),
        (lambda text: text.replace("crosscheck.baseline/1", "crosscheck.baseline/2"), "newer"),
        (lambda text: text.replace('"reference": "numpy"', '"reference": "mxnet"'), "damaged"),
        (lambda text: text.replace('"steps": 40', '"steps": -4'), "bad recipe"),
    ],
    ids=["truncated", "not-json", "not-a-baseline", "newer-schema", "no-reference", "bad-recipe"],
)
def test_a_bad_baseline_is_one_line_and_exit_2(recorded, capsys, damage, expected):
    recorded.write_text(damage(recorded.read_text()))
    assert _check(recorded) == 2
    assert expected in _one_error_line(capsys)


def test_a_missing_baseline_is_one_line_and_exit_2(tmp_path, capsys):
    assert _check(tmp_path / "nowhere.json") == 2
    assert "does not exist" in _one_error_line(capsys)


def test_a_baseline_from_a_different_recipe_is_refused(recorded, capsys):
    assert _check(recorded, "--steps", "30") == 2
    assert "different recipe: steps is 40 there, 30 here" in _one_error_line(capsys)
    assert _check(recorded, "--steps", "40") == 0, "a matching recipe option is fine"


def test_a_baseline_whose_shapes_do_not_fit_its_recipe_is_refused(recorded, capsys):
    document = json.loads(recorded.read_text())
    document["recipe"]["hidden"] = [3]
    recorded.write_text(json.dumps(document))
    assert _check(recorded) == 2
    assert "does not match its recipe" in _one_error_line(capsys)


def test_record_writes_nothing_when_the_frameworks_disagree(tmp_path, monkeypatch, capsys):
    # A hand-backprop bug trained under the name "jax": no JAX needed, and a certain mismatch.
    wrong = mutants.build(next(m for m in mutants.CATALOGUE if m.name == "rows-normaliser"))
    real_run = harness.run

    def run_with_a_wrong_implementation(recipe, frameworks, reference, **options):
        modules = {"numpy": implementations.load("numpy"), "jax": wrong}
        return real_run(recipe, frameworks, reference, modules=modules)

    monkeypatch.setattr(harness, "run", run_with_a_wrong_implementation)
    path = tmp_path / "b.json"
    assert cli.main(["record", str(path), "--frameworks", "numpy,jax", "--steps", "5"]) == 1
    assert "baseline not written" in capsys.readouterr().out
    assert not path.exists()
