"""Binary cross-entropy at saturated sigmoid outputs: every implementation's derivative is the
contract's ``(A - Y) / max(A (1 - A), 1e-12)`` (torch's backward), not autodiff of the clamped
logs, and the conformance kit catches an implementation that differentiates the clamps."""

from __future__ import annotations

import numpy as np
import pytest

import implementations
from compare import testing
from implementations.contract import Optimizer

BUILT_INS = ("torch", "jax", "torch_nn", "flax_nnx")

#: Each JAX-side loss written the plain autodiff way (the code before issue 8): ``jax.grad`` of
#: the clamped logs, 0 where a clamp binds and ``1 / A`` where the floor binds.
AUTODIFF_OF_CLAMPS = {
    "jax": (
        "        per_element = binary_cross_entropy_terms(A, Y)\n",
        "        per_element = -(Y * clamped_log(A) + (1 - Y) * clamped_log1p_neg(A))\n",
    ),
    "flax_nnx": (
        "    return jnp.mean(binary_cross_entropy_terms(A, Y))\n",
        "    log_A = jnp.maximum(jnp.log(A), BCE_LOG_FLOOR)\n"
        "    log_not_A = jnp.maximum(jnp.log1p(-A), BCE_LOG_FLOOR)\n"
        "    return -jnp.mean(Y * log_A + (1 - Y) * log_not_A)\n",
    ),
}


def test_the_saturated_case_saturates():
    network, params, X, Y = testing.saturated_binary_cross_entropy()
    reference = implementations.load("numpy")
    problem = testing.Case(0, network, Optimizer("sgd"), "float64", 0).problem()
    A = reference.predict(problem, params, X)[0]
    below_floor = (A * (1 - A) < 1e-12) & (Y == 1)
    clamped = (np.log(A) < -100) & (Y == 1)
    assert below_floor.sum() >= 4 and clamped.sum() >= 2, "the case no longer saturates"
    assert np.max(A) < 1 - 1e-6, "an output near 1 makes honest implementations disagree"


@pytest.mark.parametrize("dtype", testing.SATURATED_DTYPES)
@pytest.mark.parametrize("name", BUILT_INS)
def test_saturated_derivative_is_the_contracts(name, dtype):
    pytest.importorskip("torch" if name.startswith("torch") else "jax")
    testing.check_saturated(
        implementations.load(name), name, dtype, implementations.load(testing.REFERENCE)
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(AUTODIFF_OF_CLAMPS))
def test_kit_catches_autodiff_of_the_clamped_logs(name, dtype):
    pytest.importorskip("jax")
    mutant = testing.mutate(implementations.load(name), [AUTODIFF_OF_CLAMPS[name]], "autodiff")
    with pytest.raises(AssertionError, match=r"saturated case.*grad:W1"):
        testing.check_saturated(mutant, name, dtype, implementations.load(testing.REFERENCE))
