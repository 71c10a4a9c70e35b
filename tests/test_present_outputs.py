"""What people and CI read of a CheckResult: the JSON report's values, the verdict line, the
JUnit XML, the Markdown summary and the terminal report, on results whose facts are known."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import presentation_results as made
import pytest
from rich.console import Console

from compare.present import json_report, junit, markdown, terminal, text

#: The keys DESIGN.md promises tools and CI scripts.
REPORT_KEYS = {"schema", "verdict", "recipe", "environment", "reference", "dtype", "frameworks"}
REPORT_KEYS |= {"comparisons"}
COMPARISON_KEYS = {
    "framework",
    "against",
    "mode",
    "quantity",
    "max_abs",
    "max_rel",
    "worst_step",
    "worst_index",
    "first_failing_step",
    "first_failing_index",
    "mismatched",
    "total",
    "rtol",
    "atol",
}


def _strict(text_: str) -> dict:
    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text_, parse_constant=refuse)


def _failing_result():
    good = made.comparison(made.AGREEING, made.EXPECTED, quantity="loss")
    bad = made.comparison(made.FAILING, made.EXPECTED, quantity="grad:W1")
    return made.result([good, bad]), good, bad


def test_the_report_holds_every_promised_key_with_the_results_values():
    result, good, bad = _failing_result()
    document = _strict(json_report.dumps(json_report.to_json(result, {"python": "3.11"})))
    assert set(document) >= REPORT_KEYS
    assert document["schema"] == json_report.SCHEMA
    assert document["verdict"] == "fail" and document["reference"] == "numpy"
    assert document["dtype"] == "float64" and document["environment"] == {"python": "3.11"}
    assert document["recipe"] == made.RECIPE.to_dict()
    assert document["frameworks"]["torch"] == {
        "final_loss": 0.123456789012,
        "train_accuracy": 0.7,
        "test_accuracy": 0.8,
        "seconds": 1.5,
    }
    loss, grad = document["comparisons"]
    assert set(grad) >= COMPARISON_KEYS
    # The numbers the arrays imply (see presentation_results): max_abs is the 0.5 at step 2,
    # max_rel the 10x at step 1, and the first failure is at step 1, element (0, 1).
    assert grad["max_abs"] == pytest.approx(0.5) and grad["max_rel"] == pytest.approx(10.0)
    assert (grad["worst_step"], grad["worst_index"]) == (2, [1, 0])
    assert (grad["first_failing_step"], grad["first_failing_index"]) == (1, [0, 1])
    assert (grad["mismatched"], grad["total"]) == (2, 12)
    assert (grad["rtol"], grad["atol"]) == (bad.rtol, bad.atol) == (1e-8, 1e-11)
    assert (grad["framework"], grad["against"], grad["mode"]) == ("torch", "numpy", "synced")
    assert grad["status"] == "FAIL" and grad["passed"] is False
    assert loss["first_failing_step"] is None and loss["status"] == "ok"
    assert loss["max_abs"] == pytest.approx(good.max_abs) and loss["max_abs"] > 0
    assert document["first_failure"]["quantity"] == "grad:W1"


def test_a_report_with_infinities_is_still_strict_json():
    nan = made.EXPECTED.copy()
    nan[0, 0, 0] = np.nan
    result = made.result([made.comparison(nan, made.EXPECTED)])
    document = _strict(json_report.dumps(json_report.to_json(result, {})))
    row = document["comparisons"][0]
    assert row["max_abs"] == "inf" and row["first_failing_step"] == 0


def test_the_verdict_line_names_framework_quantity_mode_step_and_element():
    result, _, _ = _failing_result()
    line = text.verdict_line(result)
    assert line.startswith("FAIL (1 of 2 comparisons): torch grad:W1 (synced) differs from numpy")
    assert "first at step 1, element (0, 1)" in line
    assert "2 of 12 elements outside rtol 1e-08, atol 1e-11" in line
    assert "greatest absolute difference 0.5 at step 2, element (1, 0)" in line


def test_a_passing_verdict_line_counts_the_comparisons():
    result = made.result([made.comparison(made.AGREEING, made.EXPECTED)])
    assert text.verdict_line(result) == (
        "PASS: torch agrees with numpy on all 1 comparisons, mode both, float64, 3 steps."
    )


def test_drift_that_is_only_reported_passes_and_says_so():
    drift = made.comparison(made.FAILING, made.EXPECTED, mode="independent", gating=False)
    result = made.result([drift])
    assert result.verdict == "pass"
    assert text.status(drift) == "drift"
    assert "1 beyond tolerance reported as drift or near-ties" in text.verdict_line(result)
    root = ET.fromstring(junit.check_result_xml("crosscheck run", result))
    assert root.get("failures") == "0", "reported drift must not fail the CI job"
    assert root.find(".//failure") is None, "reported drift must not be a failing case"


def test_a_failed_oracle_fails_the_verdict_line_the_junit_and_the_markdown():
    oracles = {"torch": [made.oracle(passed=False)], "numpy": [made.oracle("numpy")]}
    result = made.result(
        [made.comparison(made.AGREEING, made.EXPECTED)], made.precision(oracles=oracles)
    )
    assert result.verdict == "fail" and result.first_failure is None
    line = text.verdict_line(result)
    assert line == (
        "FAIL: torch's gradient fails the checker oracle at step 2: |error| 9.8e-06 "
        "(allowed 3.5e-07, finite-difference step 1e-06)"
    )
    root = ET.fromstring(junit.check_result_xml("crosscheck run", result))
    assert (root.get("tests"), root.get("failures")) == ("2", "1")
    failure = root.find(".//failure")
    assert failure is not None and "checker oracle" in failure.get("message")
    summary = markdown.run_markdown(result)
    assert "### crosscheck run: FAIL" in summary and "9.8e-06" in summary


def test_a_changed_precision_switch_fails_and_is_named():
    change = "torch: tf32 was False at the start, True after training"
    result = made.result(
        [made.comparison(made.AGREEING, made.EXPECTED)], made.precision(changes=[change])
    )
    assert text.verdict_line(result) == f"FAIL: a precision switch changed during the run: {change}"
    root = ET.fromstring(junit.check_result_xml("crosscheck run", result))
    assert root.get("failures") == "1"


def test_junit_has_one_case_per_comparison_and_failures_carry_the_message():
    result, _, bad = _failing_result()
    root = ET.fromstring(junit.check_result_xml("crosscheck run", result))
    cases = root.findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("crosscheck.torch.synced", "loss"),
        ("crosscheck.torch.synced", "grad:W1"),
    ]
    assert cases[0].find("failure") is None
    assert cases[1].find("failure").get("message") == text.failure_message(bad)
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert f"<!-- {junit.SCHEMA} -->" in junit.check_result_xml("x", result)[:200]


def test_markdown_states_the_verdict_and_the_first_failure():
    result, _, _ = _failing_result()
    summary = markdown.run_markdown(result)
    assert summary.startswith(f"<!-- {markdown.SCHEMA} -->\n### crosscheck run: FAIL\n")
    assert text.verdict_line(result) in summary
    assert "| torch | `grad:W1` | synced | numpy | 5.00e-01 | 1.00e+01 |" in summary
    passing = made.result([made.comparison(made.AGREEING, made.EXPECTED)])
    assert "### crosscheck run: PASS" in markdown.run_markdown(passing)


def _render(result, width: int = 200) -> str:
    stream = io.StringIO()
    terminal.render_check(Console(file=stream, width=width, color_system=None), result)
    return stream.getvalue()


def test_the_terminal_report_shows_oracles_with_their_thresholds_and_ends_with_the_verdict():
    oracles = {"torch": [made.oracle(), made.oracle(checker="taylor", passed=True)]}
    oracles["torch"][1] = made.OracleResult(
        framework="torch",
        checker="taylor",
        state=0,
        step=None,
        threshold=1.75,
        error=2.01,
        passed=True,
    )
    result, _, _ = _failing_result()
    result.precision = made.precision(oracles=oracles)
    printed = _render(result)
    assert "|error| 1.2e-08 (allowed 3.5e-07" in printed
    assert "remainder order 2.01 (needs at least 1.75)" in printed
    assert printed.strip().splitlines()[-1] == text.verdict_line(result)
    assert "Non-finite values: none in any framework." in printed
    assert "Precision switches of torch: threads=1, tf32=False" in printed


def test_near_ties_are_named_row_by_row():
    ties = {
        "torch": {
            "smallest_margin": 1.5e-9,
            "smallest_margin_row": 7,
            "disagreements": [
                {
                    "row": 7,
                    "class": 2,
                    "reference_class": 1,
                    "reference_margin": 1.5e-9,
                    "output_difference": 2e-9,
                    "near_tie": True,
                }
            ],
        }
    }
    result = made.result(
        [made.comparison(made.AGREEING, made.EXPECTED)], made.precision(near_ties=ties)
    )
    printed = _render(result)
    assert "torch predicts class 2 for test row 7, numpy class 1: a near-tie" in printed
    assert "Smallest top-1 margin on the test rows: torch 1.5e-09." in printed


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_terminal_report_cuts_no_number_at_any_width(width):
    result, good, bad = _failing_result()
    printed = _render(result, width)
    lines = printed.splitlines()
    for c in (good, bad):
        for cell in (text.scientific(c.max_abs), text.scientific(c.max_rel), c.quantity):
            assert any(cell in line for line in lines), f"{cell} cut at width {width}"
    assert max(len(line) for line in lines if "│" in line or "┃" in line) <= width
    assert "…" not in printed


def test_subnormals_flushed_to_zero_are_counted_in_the_report_and_the_terminal():
    tiny = np.finfo(np.float64).tiny
    expected = np.array([[1.0, tiny / 4, tiny / 8], [2.0, 3.0, tiny / 2]])
    flushed = np.where(np.abs(expected) < tiny, 0.0, expected)  # three subnormals flushed
    comparison = made.comparison(flushed, expected, quantity="state:m:W1")
    result = made.result([comparison])
    document = _strict(json_report.dumps(json_report.to_json(result, {})))
    assert document["comparisons"][0]["flushed"] == comparison.flushed == 3
    printed = _render(result)
    assert "flushed" in printed, "a flushed count gets a column"
    row = next(line for line in printed.splitlines() if "state:m:W1" in line)
    assert " 3 " in row, row
    plain = _render(made.result([made.comparison(made.AGREEING, made.EXPECTED)]))
    assert "flushed" not in plain, "no column where nothing was flushed"
