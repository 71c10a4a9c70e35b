"""``crosscheck run`` with dtypes and modes: exit codes, the drift table, the JSON and plots."""

import json
import subprocess
import sys

import pytest

from compare.cli import main

pytest.importorskip("torch")
pytest.importorskip("jax")

QUICK = ["run", "--steps", "30", "--in-process"]


def _strict_json(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_float32_run_reports_both_modes_drift_oracles_and_switches(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main([*QUICK, "--dtype", "float32", "--report", str(path), "--plots", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for heading in ("Synced:", "Drift of the independent trajectories", "Gradient oracles"):
        assert heading in out, f"{heading!r} missing from the report"
    assert "Precision switches unchanged during the run." in out
    document = _strict_json(path.read_text())
    assert document["mode"] == "both" and document["verdict"] == "pass"
    modes = {c["mode"] for c in document["comparisons"]}
    assert modes == {"independent", "synced"}
    weight = next(c for c in document["comparisons"] if c["quantity"] == "weight:W1")
    assert weight["growth"][0][0] == 0 and set(weight["crossings"]) == {"1e-06", "0.0001", "0.01"}
    assert weight["max_ulp"] is not None
    checks = {record["check"] for records in document["oracles"].values() for record in records}
    assert "taylor" in checks and "torch.autograd.gradcheck" in checks
    assert set(document["precision"]["switches"]) == {"numpy", "torch", "jax"}
    assert (tmp_path / "drift-independent.png").stat().st_size > 0
    assert (tmp_path / "drift-synced.png").stat().st_size > 0


def test_independent_mode_with_tight_rtol_fails_and_names_step_and_parameter(capsys):
    code = main([*QUICK, "--dtype", "float32", "--mode", "independent", "--rtol", "1e-12"])
    out = capsys.readouterr().out
    assert code == 1, out
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("FAIL") and "first at step" in verdict, verdict
    assert any(f"{kind}:W" in verdict for kind in ("grad", "weight")) or " loss " in verdict


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_synced_mode_passes(dtype, capsys):
    code = main([*QUICK, "--dtype", dtype, "--mode", "synced"])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
def test_learning_rate_1e3_gives_a_clean_report(activation, tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main([*QUICK, "--lr", "1000", "--activation", activation, "--report", str(path)])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    assert "Traceback" not in captured.err and "Warning" not in captured.err, captured.err
    document = _strict_json(path.read_text())
    steps = document["precision"]["nonfinite"]["first_nonfinite_step"]
    if activation == "identity":  # a linear network overflows within a few steps
        assert all(step is not None for step in steps.values()), steps
        assert "Non-finite values (NaN/Inf) first appear" in captured.out


def test_a_plots_path_that_is_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("")
    assert main([*QUICK, "--plots", str(taken)]) == 2
    assert "not a folder" in capsys.readouterr().err


def _crosscheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compare", "run", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
def test_done_means_float32_run_exits_0_with_the_drift_table():
    finished = _crosscheck("--dtype", "float32")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Drift of the independent trajectories" in finished.stdout


@pytest.mark.slow
def test_done_means_float32_independent_tight_rtol_exits_1():
    finished = _crosscheck("--dtype", "float32", "--mode", "independent", "--rtol", "1e-12")
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "first at step" in finished.stdout.strip().splitlines()[-1]


def test_an_unknown_mode_is_one_line_and_exit_2(capsys):
    assert main(["run", "--mode", "sideways"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mode" in err, err
