"""``crosscheck run`` below float64 and at the edges of the number range: what the report
shows (synced mode, drift, oracles with thresholds, non-finite values), each run's exit status
asserted exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compare import cli

PLUGINS = Path(__file__).parent / "plugins"
AGAIN = str(PLUGINS / "numpy_again.py")


def _strict_json(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_float32_run_reports_both_modes_drift_and_oracles_with_thresholds(tmp_path, capsys):
    pytest.importorskip("torch")
    report = tmp_path / "report.json"
    argv = ["run", "--steps", "30", "--in-process", "--dtype", "float32"]
    code = cli.main([*argv, "--frameworks", "numpy,torch", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    for heading in ("Synced:", "Independent:", "Gradient oracles"):
        assert heading in out, f"{heading!r} missing from the report"
    document = _strict_json(report.read_text())
    assert document["mode"] == "both" and document["dtype"] == "float32"
    assert {row["mode"] for row in document["comparisons"]} == {"independent", "synced"}
    weight = next(
        row
        for row in document["comparisons"]
        if (row["framework"], row["mode"], row["quantity"]) == ("torch", "independent", "weight:W1")
    )
    assert weight["growth"][0][0] == 0 and set(weight["crossings"]) == {"1e-06", "0.0001", "0.01"}
    assert weight["max_ulp"] is not None
    for framework in ("numpy", "torch"):
        checkers = {oracle["checker"] for oracle in document["oracles"][framework]}
        assert "taylor" in checkers and len(checkers) == 2, checkers
        assert all(oracle["threshold"] > 0 for oracle in document["oracles"][framework])
    assert "allowed" in out and "needs at least" in out, "oracle thresholds must be shown"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_synced_mode_passes_against_a_real_framework(dtype, capsys):
    pytest.importorskip("torch")
    argv = ["run", "--steps", "20", "--in-process", "--mode", "synced", "--dtype", dtype]
    assert cli.main([*argv, "--frameworks", "numpy,torch"]) == 0, capsys.readouterr().out


def test_a_run_that_overflows_in_every_framework_agrees_and_says_where(tmp_path, capsys):
    report = tmp_path / "report.json"
    argv = ["run", "--steps", "30", "--in-process", "--frameworks", f"numpy,{AGAIN}"]
    argv += ["--lr", "1000", "--activation", "identity", "--report", str(report)]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Warning" not in captured.err, captured.err
    document = _strict_json(report.read_text())
    first = document["precision"]["nonfinite"]["first_nonfinite_step"]
    assert first["numpy"] is not None and first["numpy"] == first[AGAIN]
    printed = " ".join(captured.out.split())  # lines wrap at the console's width
    step = first["numpy"]
    assert (
        f"Non-finite values (NaN/Inf) first appear: numpy at step {step}, {AGAIN} at step {step}; "
        "they agree." in printed
    )
    assert code == (0 if document["verdict"] == "pass" else 1)
    assert document["verdict"] == "pass", "identical overflows agree"
