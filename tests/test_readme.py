"""The README stays true: CI runs its commands, its exit-status table is the command's, and its
sample output is what the tool prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compare import cli
from compare.cli import options

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
    # .ci/run runs the README's command, step by step; it may install more (a plugin it tests).
    ci = (ROOT / ".ci" / "run").read_text()
    ci_steps = [step for line in ci.splitlines() for step in line.split(" && ")]
    for step in test.split(" && "):
        assert any(ci_step.startswith(step) for ci_step in ci_steps), (
            f".ci/run must run the README's {step!r}"
        )


def test_the_exit_status_table_lists_every_status_the_command_uses():
    table = README.split("### Exit status", 1)[1].split("\n#", 1)[0]
    listed = {int(status) for status in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert listed == {int(status) for status in options.Exit}


@pytest.mark.slow
def test_sample_output_is_what_crosscheck_run_prints(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(options.PIPED_WIDTH))
    assert cli.main(["run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    sample = README.split("Real output of `crosscheck run`", 1)[1].split("```")[1].splitlines()
    # Timings (the last column of the models table) differ from run to run, and the precision
    # switches name this machine's libraries and threads; everything else must be exactly what
    # the tool prints.
    seconds = re.compile(r"│ +[0-9.]+ │$")

    def normal(lines):
        kept, switches = [], False
        for line in lines:
            if line.startswith("Precision switches of "):
                switches = True
            elif switches and not line.startswith("Precision switches unchanged"):
                continue  # a wrapped line of the switches
            else:
                switches = False
            if line.strip() and not line.startswith("Precision switches of "):
                kept.append(seconds.sub("│ seconds │", line.rstrip()))
        return kept

    assert normal(sample) == normal(printed)
