"""The autograd plugin against crosscheck's conformance kit (``compare.testing``).

Run from the crosscheck repository after ``pip install ./examples/plugin-autograd``:
``python -m pytest examples/plugin-autograd/tests``.
"""

from __future__ import annotations

import pytest
from crosscheck_autograd import implementation

import implementations
from compare.testing import check_implementation, mutate


def test_registered_through_the_entry_point():
    assert implementations.load("autograd") is implementation


def test_conformance_quick():
    """Every activation, loss and optimizer once, float64 and float32: a few seconds."""
    check_implementation("autograd", quick=True)


def test_conformance_every_loss_with_every_optimizer():
    check_implementation("autograd")


def test_the_kit_catches_a_bug_planted_here():
    """A wrong Adam bias correction fails at the first update, with the quantity named."""
    broken = mutate(
        implementation,
        [
            (
                "correction2 = _per_point(1 - rule.beta2**t, p)",
                "correction2 = _per_point(1.0 + 0 * t, p)",
            )
        ],
        "no-second-moment-bias-correction",
    )
    with pytest.raises(AssertionError, match=r"synced step 0 -> state 1, weight:W1, point 0"):
        check_implementation(broken, quick=True)
