"""The run says when unscaled inputs saturate the first layer, and suggests --standardize."""

from __future__ import annotations

import json
from pathlib import Path

from compare import cli

HONEST = str(Path(__file__).parent / "plugins" / "numpy_again.py")
RUN = ["run", "--in-process", "--no-oracles", "--steps", "3", "--frameworks", f"numpy,{HONEST}"]


def test_unscaled_wine_gets_a_note_and_its_share_in_the_report(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")
    report = tmp_path / "report.json"
    assert cli.main([*RUN, "--dataset", "wine", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Note: 100% of the first layer's inputs Z1 saturate sigmoid" in out
    assert "--standardize" in out
    assert json.loads(report.read_text())["first_layer_saturation"] > 0.99


def test_standardized_or_unsaturated_data_gets_no_note(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main([*RUN, "--dataset", "wine", "--standardize"]) == 0
    assert "Note:" not in capsys.readouterr().out
    report = tmp_path / "report.json"
    assert cli.main([*RUN, "--report", str(report)]) == 0  # iris: 6% saturated at seed 10
    assert "Note:" not in capsys.readouterr().out
    assert json.loads(report.read_text())["first_layer_saturation"] < 0.5
