"""The JSON report of a ``CheckResult`` (``crosscheck run --report PATH``).

The keys listed in DESIGN.md are what tools and CI scripts read; keys may be added, never
renamed: ``schema``, ``verdict``, ``recipe`` (itself a valid recipe file), ``environment``,
``reference``, ``dtype``, ``frameworks.<name>.{final_loss, train_accuracy, test_accuracy,
seconds}``, ``comparisons[{framework, against, mode, quantity, max_abs, max_rel, worst_step,
worst_index, first_failing_step, first_failing_index, mismatched, total, rtol, atol}]``. Added
here: ``mode``, ``network``, ``verdict_line``, ``first_failure``, and per comparison
``passed``, ``gating``, ``status``, ``max_ulp``, ``growth``, ``crossings``, ``flushed``
(elements one side flushed from a subnormal to zero); ``precision`` (with ``amplification``
and ``drift_reported``: a float64 trajectory measured to amplify rounding),
``oracles`` and ``workers`` (framework -> the process id it ran in).

Every value is copied from the result; JSON has no NaN or infinity, so those are written as
the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from compare.agreement import Comparison
from compare.jsonable import json_number, json_ready
from compare.present import text

#: Identifies a report file (and lets ``--report`` replace only its own earlier reports).
SCHEMA = "crosscheck.report/1"


def comparison(c: Comparison) -> dict[str, Any]:
    """One comparison as its JSON object."""
    return {
        "framework": c.framework,
        "against": c.against,
        "mode": c.mode,
        "quantity": c.quantity,
        "max_abs": json_number(c.max_abs),
        "max_rel": json_number(c.max_rel),
        "worst_step": c.worst_step,
        "worst_index": list(c.worst_index),
        "first_failing_step": c.first_failing_step,
        "first_failing_index": (
            None if c.first_failing_index is None else list(c.first_failing_index)
        ),
        "mismatched": c.mismatched,
        "total": c.total,
        "rtol": c.rtol,
        "atol": c.atol,
        "passed": c.passed,
        "gating": c.gating,
        "status": text.status(c),
        "max_ulp": None if c.max_ulp is None else json_number(c.max_ulp),
        "growth": [[step, json_number(error)] for step, error in c.growth],
        "crossings": {f"{level:g}": step for level, step in c.crossings},
        "flushed": c.flushed,
    }


def to_json(result, environment: dict[str, str | None]) -> dict[str, Any]:
    """The report of ``result`` as JSON-ready data.

    Args:
        result: A ``compare.check.CheckResult``.
        environment: What it ran on (``compare.environment.describe()``).
    """
    failure = result.first_failure
    network = result.network
    return {
        "schema": SCHEMA,
        "verdict": result.verdict,
        "verdict_line": text.verdict_line(result),
        "first_failure": None if failure is None else comparison(failure),
        "recipe": json_ready(result.recipe.to_dict()),
        "network": {
            "widths": list(network.widths),
            "activations": list(network.activations),
            "biases": network.biases,
            "loss": network.loss,
        },
        "environment": environment,
        "reference": result.reference,
        "dtype": result.dtype,
        "mode": result.mode,
        "frameworks": json_ready(result.summaries),
        "comparisons": [comparison(c) for c in result.comparisons],
        "precision": json_ready(
            {
                "nonfinite": result.precision.nonfinite,
                "near_ties": result.precision.near_ties,
                "switches": result.precision.environment,
                "switches_changed": result.precision.environment_changes,
                "amplification": result.precision.amplification,
                "drift_reported": list(result.precision.drift_reported),
                "amplifying_from": result.precision.amplifying_from,
                "synced_diagnosis": list(result.precision.synced_diagnosis),
            }
        ),
        "workers": dict(result.workers),
        "first_layer_saturation": result.first_layer_saturation,
        "oracles": {
            framework: [json_ready(dataclasses.asdict(oracle)) for oracle in oracles]
            for framework, oracles in result.precision.oracles.items()
        },
    }


def dumps(document: dict[str, Any]) -> str:
    """The document as strict JSON text (no NaN), indented, ending in a newline."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
