"""Baselines: ``record`` and ``check`` judge through ``compare.check``, store and compare EVERY
framework, and refuse every way a baseline file can be wrong in one line."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compare import baseline, cli

PLUGINS = Path(__file__).parent / "plugins"
STEPS = 40


@pytest.fixture
def plugin(tmp_path) -> str:
    """A copy of the honest plugin, which a test may later turn into the wrong one."""
    path = tmp_path / "mine.py"
    shutil.copy(PLUGINS / "numpy_again.py", path)
    return str(path)


@pytest.fixture
def recorded(tmp_path, capsys, plugin) -> Path:
    path = tmp_path / "b.json"
    argv = ["record", str(path), "--frameworks", f"numpy,{plugin}", "--steps", str(STEPS)]
    assert cli.main([*argv, "--in-process"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return path


def _check(path: Path, *extra: str) -> int:
    return cli.main(["check", str(path), "--in-process", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crosscheck: error: "), err
    return err


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_record_then_check_passes(recorded, capsys, plugin):
    assert _check(recorded) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("PASS: all ") and f"numpy, {plugin} in {recorded} reproduced" in last


def test_the_baseline_stores_every_framework_and_what_the_issue_lists(recorded, plugin):
    document = json.loads(recorded.read_text())
    assert document["schema"] == baseline.SCHEMA
    assert document["recipe"]["train"]["steps"] == STEPS
    assert document["frameworks"] == ["numpy", plugin] and document["reference"] == "numpy"
    assert {"python", "numpy", "torch", "jax", "platform"} <= set(document["environment"])
    for name in ("numpy", plugin):
        stored = document["results"][name]
        assert stored["loss"]["steps"] == baseline.checkpoints(STEPS)
        assert stored["grad:W1"]["steps"][-1] == STEPS - 1, "no update follows the last state"
        assert stored["weight:W2"]["steps"][-1] == STEPS
        assert stored["test_predictions"]["steps"] == [STEPS]
        assert {"train_accuracy", "test_outputs", "test_accuracy"} <= set(stored)


@pytest.mark.parametrize("framework", ["numpy", "plugin"])
def test_an_edited_number_of_any_framework_fails_the_check_and_is_named(
    recorded, capsys, plugin, framework
):
    name = plugin if framework == "plugin" else framework

    def nudge(document):
        document["results"][name]["weight:W2"]["values"][-1][1][2] += 1e-6

    _edit(recorded, nudge)
    assert _check(recorded) == 1
    out = capsys.readouterr().out
    assert (
        f"{name} weight:W2 (baseline) differs from baseline first at step {STEPS}, element (1, 2)"
        in out.strip().splitlines()[-1]
    )


def test_a_framework_that_changed_fails_the_check(recorded, capsys, plugin):
    shutil.copy(PLUGINS / "wrong_lr.py", plugin)  # the plugin now has a bug
    # In worker processes, which load the plugin's file afresh (this process has the old one).
    assert cli.main(["check", str(recorded)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL") and plugin in last


def test_the_tolerance_defaults_to_the_baseline_s_own_and_can_be_overridden(recorded, capsys):
    def nudge(document):
        document["results"]["numpy"]["loss"]["values"][3] *= 1 + 1e-9

    _edit(recorded, nudge)
    assert _check(recorded) == 0, "the baseline's own rtol (1.5e-8) allows a 1e-9 change"
    assert _check(recorded, "--rtol", "1e-12") == 1
    assert "numpy loss (baseline) differs from baseline first at step 12" in (
        capsys.readouterr().out
    )


def test_library_versions_that_differ_are_reported_not_failed(recorded, capsys):
    _edit(recorded, lambda document: document["environment"].update(numpy="0.0.1"))
    assert _check(recorded) == 0
    out = capsys.readouterr().out
    assert "The environment differs from the baseline's" in out and "0.0.1" in out


def test_check_writes_junit_and_markdown(recorded, tmp_path, capsys):
    junit, markdown = tmp_path / "check.xml", tmp_path / "check.md"
    assert _check(recorded, "--junit-xml", str(junit), "--markdown", str(markdown)) == 0
    cases = ET.parse(junit).getroot().findall(".//testcase")
    names = [(case.get("classname"), case.get("name")) for case in cases]
    assert len(names) == len(set(names))
    stored = sum(len(series) for series in json.loads(recorded.read_text())["results"].values())
    baseline_cases = [name for name in names if name[0].endswith(".baseline")]
    assert len(baseline_cases) == stored, "one JUnit case per stored framework and quantity"
    assert not any(case.find("failure") is not None for case in cases)
    assert markdown.read_text().startswith(
        "<!-- crosscheck.markdown/1 -->\n### crosscheck check: PASS"
    )


def test_record_refuses_to_overwrite_without_force(recorded, capsys, plugin):
    before = recorded.read_text()
    argv = ["record", str(recorded), "--frameworks", f"numpy,{plugin}", "--in-process"]
    assert cli.main([*argv, "--steps", "5"]) == 2
    assert "use --force" in _one_error_line(capsys)
    assert recorded.read_text() == before
    assert cli.main([*argv, "--steps", "5", "--force"]) == 0


def test_record_leaves_nothing_but_the_baseline(recorded, plugin):
    assert sorted(p.name for p in recorded.parent.iterdir()) == ["b.json", "mine.py"]


def test_record_writes_nothing_when_the_frameworks_disagree(tmp_path, capsys):
    path = tmp_path / "b.json"
    wrong = str(PLUGINS / "wrong_lr.py")
    argv = ["record", str(path), "--frameworks", f"numpy,{wrong}", "--steps", "5", "--in-process"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "baseline not written" in out and out.strip().splitlines()[-1].startswith("FAIL")
    assert not path.exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda text: text[: len(text) // 2], "invalid JSON"),
        (lambda text: "not json at all", "invalid JSON"),
        (lambda text: "[1, 2]", "not a crosscheck baseline"),
        (lambda text: text.replace(baseline.SCHEMA, "crosscheck.baseline/9"), "newer crosscheck"),
        (lambda text: text.replace(baseline.SCHEMA, "crosscheck.baseline/1"), "older crosscheck"),
        (lambda text: text.replace('"reference": "numpy"', '"reference": "mxnet"'), "damaged"),
        (lambda text: text.replace('"steps": 40,', '"steps": -4,', 1), "bad recipe"),
    ],
    ids=["truncated", "not-json", "not-a-baseline", "newer", "older", "no-reference", "recipe"],
)
def test_a_bad_baseline_is_one_line_and_exit_2(recorded, capsys, damage, expected):
    recorded.write_text(damage(recorded.read_text()))
    assert _check(recorded) == 2
    assert expected in _one_error_line(capsys)


def test_a_baseline_from_a_different_recipe_is_refused(recorded, capsys):
    assert _check(recorded, "--steps", "30") == 2
    assert "different recipe: steps is 40 there, 30 here" in _one_error_line(capsys)
    assert _check(recorded, "--steps", str(STEPS)) == 0, "a matching recipe option is fine"


def test_a_baseline_whose_shapes_do_not_fit_its_recipe_is_refused(recorded, capsys):
    _edit(recorded, lambda document: document["recipe"]["network"].update(hidden=[3]))
    assert _check(recorded) == 2
    assert "does not match its recipe" in _one_error_line(capsys)


def test_a_baseline_keeps_only_its_states_and_stores_what_the_whole_trajectory_gives(plugin):
    """Recording keeps the checkpoint states only (memory that does not grow with the steps),
    and stores exactly what it would store from the whole trajectory."""
    from compare import Recipe, check

    recipe = Recipe(steps=37, optimizer="adam", lr=0.01)
    frameworks = ("numpy", plugin)
    kept = baseline.kept_states(recipe.steps)
    assert kept == sorted(set(baseline.checkpoints(37)) | set(baseline.checkpoints(36)))
    few = check(recipe, frameworks, isolate=False, oracles=False, trajectories=kept)
    whole = check(recipe, frameworks, isolate=False, oracles=False, trajectories=True)
    assert list(few.trajectory_steps) == kept
    assert len(few.trajectories["numpy"]["weight:W1"]) == len(kept)
    assert len(few.trajectories["numpy"]["grad:W1"]) == len(kept) - 1  # no update after 37
    stored_few, stored_whole = baseline.stored_series(few), baseline.stored_series(whole)
    assert stored_few.keys() == stored_whole.keys()
    for framework, series in stored_whole.items():
        assert series.keys() == stored_few[framework].keys()
        for quantity, (steps, values) in series.items():
            assert stored_few[framework][quantity][0] == steps, (framework, quantity)
            assert (stored_few[framework][quantity][1] == values).all(), (framework, quantity)
    assert stored_whole["numpy"]["grad:W1"][0][-1] == 36
    assert stored_whole["numpy"]["weight:W1"][0][-1] == 37
