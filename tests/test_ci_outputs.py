"""CI-friendly outputs: JUnit XML, Markdown, and plain text off a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from compare import agreement, cli, report


def _comparison(quantity: str, actual, expected) -> agreement.Comparison:
    tolerance = agreement.TOLERANCES["float64"]
    facts = agreement.compare_series(np.asarray(actual), np.asarray(expected), tolerance)
    return agreement.Comparison(
        framework="torch",
        against="numpy",
        mode="independent",
        quantity=quantity,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        **facts,
    )


def test_junit_has_one_case_per_comparison_and_failures_carry_the_message():
    good = _comparison("loss", [[1.0, 2.0]], [[1.0, 2.0]])
    bad = _comparison("grad:W1", [[1.0, 2.5]], [[1.0, 2.0]])
    root = ET.fromstring(report.to_junit_xml("crosscheck run", [good, bad]))
    cases = root.findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("crosscheck.torch.independent", "loss"),
        ("crosscheck.torch.independent", "grad:W1"),
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure.get("message") == report.failure_message(bad)
    assert root.get("tests") == "2" and root.get("failures") == "1"


def test_run_writes_junit_and_markdown(tmp_path, capsys):
    pytest.importorskip("jax")
    junit, markdown = tmp_path / "run.xml", tmp_path / "run.md"
    argv = ["run", "--frameworks", "numpy,jax", "--steps", "30", "--in-process"]
    assert cli.main([*argv, "--junit-xml", str(junit), "--markdown", str(markdown)]) == 0
    cases = ET.parse(junit).getroot().findall(".//testcase")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    # jax x (9 independent quantities + the synced loss and two gradients)
    assert len(names) == len(set(names)) == 12, names
    assert ("crosscheck.jax.synced", "grad:W1") in names
    text = markdown.read_text()
    assert text.startswith("<!-- crosscheck.markdown/1 -->\n### crosscheck run: PASS")
    assert "| jax | `grad:W1` | numpy |" in text
    # A rerun may replace its own outputs without --force.
    assert cli.main([*argv, "--junit-xml", str(junit), "--markdown", str(markdown)]) == 0


def test_outputs_refuse_to_replace_other_files(tmp_path, capsys):
    other = tmp_path / "notes.md"
    other.write_text("my notes\n")
    argv = ["run", "--frameworks", "numpy", "--steps", "3", "--in-process"]
    assert cli.main([*argv, "--markdown", str(other)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert other.read_text() == "my notes\n"
    assert cli.main([*argv, "--markdown", str(other), "--force"]) == 0


@pytest.mark.parametrize("variable", ["NO_COLOR", "CI"])
def test_no_colour_when_no_color_or_ci_is_set(variable):
    env = {**os.environ, variable: "1", "TERM": "xterm-256color"}
    completed = subprocess.run(
        [sys.executable, "-m", "compare", "run", "--frameworks", "numpy", "--steps", "3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "\x1b[" not in completed.stdout + completed.stderr
