"""The sigmoid of every implementation at saturated inputs: finite, right limits, no warnings."""

import warnings

import numpy as np
import pytest

import implementations

FRAMEWORKS = implementations.NAMES
SATURATED = np.array([-800.0, -50.0, -40.5, 40.5, 50.0, 800.0])


def _sigmoid(framework: str, Z: np.ndarray, dtype: str) -> np.ndarray:
    """Apply ``framework``'s own sigmoid in ``dtype`` and return float64."""
    if framework == "numpy":
        module = implementations.load("numpy")
        return module.sigmoid(Z.astype(module.numpy_dtype(dtype))).astype(np.float64)
    if framework == "torch":
        torch = pytest.importorskip("torch")
        module = implementations.load("torch")
        tensor = torch.tensor(Z, dtype=getattr(torch, dtype))
        return module.ACTIVATIONS["sigmoid"](tensor).double().numpy()
    pytest.importorskip("jax")
    module = implementations.load("jax")
    import jax.numpy as jnp

    return np.asarray(module.ACTIVATIONS["sigmoid"](jnp.asarray(Z, dtype=dtype)), np.float64)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sigmoid_is_finite_and_exact_at_saturated_inputs(framework, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning is a failure
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is exact
            values = _sigmoid(framework, SATURATED, dtype)
    assert np.all(np.isfinite(values)), f"{framework} {dtype} sigmoid not finite: {values}"
    assert np.all((values >= 0) & (values <= 1)), f"{framework} {dtype} outside [0, 1]: {values}"
    # Exact in float64: 1 / (1 + e^{-z}) written stably for each sign.
    E = np.exp(-np.abs(SATURATED))
    exact = np.where(SATURATED >= 0, 1 / (1 + E), E / (1 + E))
    np.testing.assert_allclose(
        values,
        exact,
        rtol=4 * {"float64": 2.3e-16, "float32": 1.2e-7, "float16": 1e-3, "bfloat16": 8e-3}[dtype],
        # Below the dtype's smallest normal number the result may flush to zero.
        atol={"float64": 0.0, "float32": 1.2e-38, "float16": 6.2e-5, "bfloat16": 1.2e-38}[dtype],
        err_msg=f"{framework} {dtype} sigmoid wrong at saturated inputs",
    )
    assert values[-1] == 1.0 and values[0] == 0.0, f"{framework} {dtype} limits: {values}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_saturated_network_trains_without_warnings(framework):
    if framework != "numpy":
        pytest.importorskip(framework)
    module = implementations.load(framework)
    from implementations.contract import Network

    net = Network((2, 2, 1), ("sigmoid", "sigmoid"))
    params = {"W1": np.full((2, 2), 100.0), "W2": np.array([[-100.0], [100.0]])}
    X = np.array([[1.0, 2.0], [-3.0, 8.0]])
    Y = np.array([[1.0], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in ("float64", "float32"):
            trajectory = module.train(net, params, X, Y, 0.1, 3, dtype)
            assert np.all(np.isfinite(trajectory.losses)), f"{framework} {dtype} loss not finite"
