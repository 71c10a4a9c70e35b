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


def test_independent_mode_below_float64_says_a_wrong_update_can_pass_there(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    wrong = str(Path(__file__).parent / "plugins" / "wrong_lr.py")
    base = [*RUN[:4], "20", "--frameworks", f"numpy,{wrong}"]
    # In float32 independent mode the wrong learning rate passes, and the run says why...
    assert cli.main([*base, "--dtype", "float32", "--mode", "independent"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Note: in float32, independent mode judges" in out and "--mode both" in out
    # ...the default mode catches it, and float64 independent mode judges drift: no note.
    assert cli.main([*base, "--dtype", "float32"]) == 1
    assert "independent mode judges" not in capsys.readouterr().out
    assert cli.main([*base, "--mode", "independent"]) == 1
    assert "independent mode judges" not in capsys.readouterr().out
