"""The README stays true: CI runs its commands, and its sample output is what the tool prints."""

from __future__ import annotations

import re
from pathlib import Path

from compare import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_quickstart_has_two_commands_and_ci_runs_the_test_one():
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    run, test = commands
    assert run.endswith("crosscheck run") and "-c constraints.txt" in run
    assert test.endswith("-m pytest")
    assert test in (ROOT / ".ci" / "run").read_text(), ".ci/run must run the README's command"


def test_sample_output_is_what_crosscheck_run_prints(capsys):
    assert cli.main(["run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    sample = README.split("Real output of `crosscheck run`", 1)[1].split("```")[1].splitlines()
    # Timings (the last column of the models table) differ from run to run, and the precision
    # switches name this machine's thread counts; everything else must be exactly what the
    # tool prints.
    seconds = re.compile(r"│ +[0-9.]+ │$")

    def normal(lines):
        return [
            seconds.sub("│ seconds │", line.rstrip())
            for line in lines
            if line.strip() and not line.startswith("Precision switches of ")
        ]

    assert normal(sample) == normal(printed)
