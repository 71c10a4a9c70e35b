"""JUnit XML (``--junit-xml PATH``): one test case per comparison, for CI test reports.

A case's class name is ``crosscheck.<framework>.<mode>`` and its name the quantity, so a CI
page lists ``crosscheck.torch.synced / grad:W1`` (with ``against its own training`` added for
a framework's check of its own training loop). A comparison that fails the verdict carries
a ``<failure>`` whose message is ``text.failure_message``; one that is only reported (drift, a
near-tie: ``Comparison.gating`` false) is a passing case, because it does not fail the run. An
oracle that failed or a precision switch that changed fails the verdict without a failing
comparison; each is a case of its own, so the XML fails exactly when the command does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from compare.agreement import Comparison
from compare.present import text

#: Written in a comment at the top, so a rerun may replace its own earlier file.
SCHEMA = "crosscheck.junit/1"


def _case(suite: ET.Element, classname: str, name: str, failure: str | None, detail: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name)
    if failure is not None:
        element = ET.SubElement(case, "failure", message=failure, type="mismatch")
        element.text = detail


def to_junit_xml(
    suite: str, comparisons: Sequence[Comparison], extra_failures: Sequence[tuple[str, str]] = ()
) -> str:
    """The JUnit XML document.

    Args:
        suite: The test suite's name, e.g. ``"crosscheck run"``.
        comparisons: One test case each.
        extra_failures: ``(case name, message)`` of failures that are not comparisons (a failed
            oracle, a changed precision switch), each a failing case.
    """
    failures = sum(not c.passed and c.gating for c in comparisons) + len(extra_failures)
    tests = len(comparisons) + len(extra_failures)
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", name="crosscheck", **counts)
    root.append(ET.Comment(f" {SCHEMA} "))
    testsuite = ET.SubElement(root, "testsuite", name=suite, skipped="0", **counts)
    for c in comparisons:
        failing = not c.passed and c.gating
        name = c.quantity if c.against != c.framework else f"{c.quantity} against its own training"
        _case(
            testsuite,
            f"crosscheck.{c.framework}.{c.mode}",
            name,
            text.failure_message(c) if failing else None,
            f"{c.framework} {c.quantity} against {c.against} ({c.mode}): max abs "
            f"{text.number(c.max_abs, 6)}, max rel {text.number(c.max_rel, 6)}, worst at "
            f"{text.where(c.worst_step, c.worst_index)}, {c.mismatched} of {c.total} elements "
            f"outside {text.check_description(c)}",
        )
    for name, message in extra_failures:
        _case(testsuite, "crosscheck.verdict", name, message, message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def check_failures(result) -> list[tuple[str, str]]:
    """A ``CheckResult``'s failures that are not comparisons: failed oracles and changed
    precision switches, as ``(case name, message)``."""
    found = [
        (
            f"oracle {oracle.framework} {oracle.checker} step {oracle.state}",
            text.oracle_line(oracle),
        )
        for oracle in text.failed_oracles(result)
    ]
    found += [
        (f"precision switch {number}", change)
        for number, change in enumerate(result.precision.environment_changes, start=1)
    ]
    return found


def check_result_xml(suite: str, result) -> str:
    """A ``CheckResult`` as JUnit XML: its comparisons and its other failures."""
    return to_junit_xml(suite, result.comparisons, check_failures(result))
