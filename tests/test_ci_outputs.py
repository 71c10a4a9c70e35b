"""What a CI job reads: JUnit XML and Markdown from ``run``, files replaced only when they are
crosscheck's own, and colour exactly when a real terminal wants it (run in a pseudo-terminal,
so that the colour test can fail)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compare import cli
from compare.present import json_report, junit, markdown

PLUGINS = Path(__file__).parent / "plugins"
AGAIN = str(PLUGINS / "numpy_again.py")
WRONG = str(PLUGINS / "wrong_lr.py")
ROOT = Path(__file__).resolve().parent.parent


def _outputs(tmp_path, *frameworks: str) -> tuple[int, dict, ET.Element, str]:
    report, xml, summary = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.md"
    argv = ["run", "--steps", "8", "--in-process", "--frameworks", ",".join(frameworks)]
    argv += ["--report", str(report), "--junit-xml", str(xml), "--markdown", str(summary)]
    code = cli.main(argv)
    return code, json.loads(report.read_text()), ET.parse(xml).getroot(), summary.read_text()


def test_junit_has_a_case_per_comparison_and_fails_exactly_when_the_run_does(tmp_path, capsys):
    code, document, root, summary = _outputs(tmp_path, "numpy", WRONG)
    assert code == 1
    cases = root.findall(".//testcase")
    assert len(cases) == len(document["comparisons"]) == int(root.get("tests"))
    failing = [row for row in document["comparisons"] if row["status"] == "FAIL"]
    assert int(root.get("failures")) == len(failing) > 0
    names = [(case.get("classname"), case.get("name")) for case in cases]
    assert len(names) == len(set(names)), "two JUnit cases share a name"
    assert (f"crosscheck.{WRONG}.synced", "weight:W1") in names
    failure = next(
        case.find("failure")
        for case in cases
        if (case.get("classname"), case.get("name")) == (f"crosscheck.{WRONG}.synced", "weight:W1")
    )
    assert failure is not None and "first at step 0, element (0, 0)" in failure.get("message")
    assert summary.startswith(f"<!-- {markdown.SCHEMA} -->\n### crosscheck run: FAIL\n")
    assert document["verdict_line"] in summary


def test_a_passing_run_writes_passing_outputs_and_may_replace_them(tmp_path, capsys):
    code, document, root, summary = _outputs(tmp_path, "numpy", AGAIN)
    assert code == 0 and document["verdict"] == "pass"
    assert root.get("failures") == "0" and "### crosscheck run: PASS" in summary
    assert _outputs(tmp_path, "numpy", AGAIN)[0] == 0, "a rerun replaces its own outputs"


@pytest.mark.parametrize(
    ("option", "schema"),
    [("--markdown", markdown.SCHEMA), ("--junit-xml", junit.SCHEMA), ("--report", None)],
)
def test_outputs_refuse_to_replace_other_files(tmp_path, capsys, option, schema):
    other = tmp_path / "notes"
    other.write_text("my notes\n")
    argv = ["run", "--frameworks", f"numpy,{AGAIN}", "--steps", "3", "--in-process"]
    assert cli.main([*argv, option, str(other)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert other.read_text() == "my notes\n"
    assert cli.main([*argv, option, str(other), "--force"]) == 0
    written = other.read_text()
    if schema is None:
        assert json.loads(written)["schema"] == json_report.SCHEMA
    else:
        assert f"<!-- {schema} -->" in written[:200]


def _in_a_terminal(env: dict[str, str]) -> str:
    """``crosscheck run``'s output in a real pseudo-terminal, 100 columns wide."""
    leader, follower = pty.openpty()
    argv = ["run", "--steps", "3", "--in-process", "--frameworks", f"numpy,{AGAIN}"]
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "COLUMNS")}
    process = subprocess.Popen(
        [sys.executable, "-m", "compare", *argv],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**environ, "TERM": "xterm-256color", "COLUMNS": "100", **env},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_colour_and_ci_turns_it_off():
    # NO_COLOR's every form is tested on a console in tests/test_present_terminal.py.
    assert "\x1b[" in _in_a_terminal({}), "a terminal should get colour (else this test is void)"
    assert "\x1b[" not in _in_a_terminal({"CI": "true"})


def test_piped_output_honours_columns(capsys, monkeypatch):
    argv = ["run", "--steps", "3", "--in-process", "--frameworks", f"numpy,{AGAIN}"]
    widest = {}
    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        assert cli.main(argv) == 0
        # The verdict line is one line whatever its length, so that a CI log ends with it whole.
        *report, verdict = capsys.readouterr().out.strip().splitlines()
        assert verdict.startswith("PASS")
        widest[columns] = max(len(line) for line in report)
        assert widest[columns] <= int(columns), f"a line is wider than COLUMNS={columns}"
    assert widest["200"] > 80, "a wide COLUMNS should give wide tables"
