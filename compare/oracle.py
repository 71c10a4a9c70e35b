"""Gradient oracles that need no framework to be right: finite differences and the Taylor test.

Comparing frameworks with each other cannot catch a mistake they share. These checks judge each
framework's gradient against its own loss alone, in float64:

* **Finite differences, with each library's own checker**: ``scipy.optimize.check_grad`` for
  the NumPy implementation (its hand-written backward pass against forward differences of its
  loss), ``torch.autograd.gradcheck`` for PyTorch and ``jax.test_util.check_grads`` for JAX
  (both central differences of the framework's own forward pass).
* **The Taylor remainder test**, free of any step size to tune: for a correct gradient ``g``,
  ``r(h) = |L(w + h v) - L(w) - h <g, v>|`` is ``O(h^2)``, so halving ``h`` divides ``r`` by
  four; a wrong gradient leaves an ``O(h)`` term and the observed order drops to 1.

This module runs where the framework lives: inside ``compare.worker`` (or the harness's own
process with ``--in-process``). torch and JAX are imported only inside the functions that use
them, so importing this module imports neither.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

import numpy as np

from compare import tolerances
from implementations.contract import Network, Params

#: Step sizes of the Taylor test: ``TAYLOR_FIRST_STEP`` halved ``TAYLOR_HALVINGS`` times.
TAYLOR_FIRST_STEP = 1e-2
TAYLOR_HALVINGS = 12

EPS64 = float(np.finfo(np.float64).eps)


def _flatten(net: Network, params: Params) -> np.ndarray:
    return np.concatenate(
        [np.asarray(params[name], np.float64).ravel() for name in net.param_names]
    )


def _unflatten(net: Network, flat: np.ndarray) -> dict[str, np.ndarray]:
    params, offset = {}, 0
    for name, shape in net.param_shapes.items():
        size = shape[0] * shape[1]
        params[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    return params


def direction(net: Network) -> dict[str, np.ndarray]:
    """A fixed unit direction in weight space for the Taylor test.

    Deterministic (``cos(1), cos(2), ...``, normalised) rather than random: the frameworks and
    their checks draw no random numbers (``compare.weights`` is the only place that does), and
    any direction with a nonzero gradient component shows the order.
    """
    size = sum(a * b for a, b in net.param_shapes.values())
    flat = np.cos(np.arange(1.0, size + 1.0))
    return _unflatten(net, flat / np.linalg.norm(flat))


def taylor_test(
    module: ModuleType, net: Network, params: Params, X: np.ndarray, Y: np.ndarray
) -> dict[str, object]:
    """Observed order of the Taylor remainder of ``module``'s loss and gradient at ``params``.

    All points ``w + h v`` are evaluated in one batched ``loss_and_grads`` call, in float64.

    Returns:
        ``{"check": "taylor", "steps": [h...], "remainders": [r(h)...], "orders": [...],
        "observed_order": ..., "inconclusive": ..., "passed": ...}``: the observed order is
        the median of the orders of the three smallest steps whose remainder is above the
        rounding noise of the loss; with fewer than two such steps the test is inconclusive
        (reported, and not a failure). Passed: ``|order - 2| <= TAYLOR_ORDER_TOLERANCE``.
    """
    v = direction(net)
    hs = TAYLOR_FIRST_STEP * 0.5 ** np.arange(TAYLOR_HALVINGS + 1)
    batch = {
        name: np.concatenate(
            [np.asarray(params[name], np.float64)[None], params[name] + hs[:, None, None] * v[name]]
        )
        for name in net.param_names
    }
    losses, grads = module.loss_and_grads(net, batch, X, Y, "float64")
    slope = sum(float(np.sum(grads[name][0] * v[name])) for name in net.param_names)
    remainders = np.abs(losses[1:] - losses[0] - hs * slope)
    with np.errstate(divide="ignore", invalid="ignore"):
        orders = np.log2(remainders[:-1] / remainders[1:])
        # A remainder within a thousand roundings of the loss is noise, not a Taylor term (a
        # saturated network has almost no gradient or curvature left to measure).
        floor = tolerances.TAYLOR_NOISE_ROUNDINGS * EPS64 * abs(float(losses[0]))
        usable = np.isfinite(orders) & (remainders[1:] > floor)
    # The asymptotic order is that of the smallest steps still above the noise.
    smallest = orders[usable][-3:]
    observed = float(np.median(smallest)) if smallest.size >= 2 else math.nan
    return {
        "check": "taylor",
        "steps": [float(h) for h in hs],
        "remainders": [float(r) for r in remainders],
        "orders": [float(o) for o in orders],
        "observed_order": observed,
        "inconclusive": bool(math.isnan(observed)),
        "passed": bool(
            math.isnan(observed) or abs(observed - 2.0) <= tolerances.TAYLOR_ORDER_TOLERANCE
        ),
    }


def _scipy_check(module, net, params, X, Y) -> dict[str, object]:
    from scipy.optimize import check_grad

    def loss(flat: np.ndarray) -> float:
        batch = {k: w[None] for k, w in _unflatten(net, flat).items()}
        return float(module.loss_and_grads(net, batch, X, Y, "float64")[0][0])

    def gradient(flat: np.ndarray) -> np.ndarray:
        batch = {k: w[None] for k, w in _unflatten(net, flat).items()}
        grads = module.loss_and_grads(net, batch, X, Y, "float64")[1]
        return _flatten(net, {k: g[0] for k, g in grads.items()})

    flat = _flatten(net, params)
    error = check_grad(loss, gradient, flat, epsilon=tolerances.FINITE_DIFFERENCE_STEP)
    norm = float(np.linalg.norm(gradient(flat)))
    allowed = tolerances.FINITE_DIFFERENCE_ATOL + tolerances.FINITE_DIFFERENCE_RTOL * norm
    return {
        "check": "scipy.optimize.check_grad",
        "error": float(error),
        "gradient_norm": norm,
        "passed": bool(error <= allowed),
    }


def _torch_check(module, net, params, X, Y) -> dict[str, object]:
    import torch

    X_t = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    Y_t = torch.as_tensor(np.asarray(Y), dtype=torch.float64)
    inputs = tuple(
        torch.tensor(np.asarray(params[name]), dtype=torch.float64, requires_grad=True)
        for name in net.param_names
    )

    def loss(*weights: torch.Tensor) -> torch.Tensor:
        return module.loss(module.forward(net, list(weights), X_t), Y_t)

    passed = torch.autograd.gradcheck(
        loss,
        inputs,
        eps=tolerances.FINITE_DIFFERENCE_STEP,
        atol=tolerances.FINITE_DIFFERENCE_ATOL,
        rtol=tolerances.FINITE_DIFFERENCE_RTOL,
        raise_exception=False,
    )
    return {"check": "torch.autograd.gradcheck", "error": None, "passed": bool(passed)}


@functools.cache
def _jitted_jax_loss(forward, loss, net: Network):
    """The loss as one jitted function per implementation and network.

    The checker evaluates the loss many times at every sampled point; compiled once and reused
    it is compiled once, not at every point (measured: 1.9 s to 1.2 s for 4 points).
    """
    import jax

    return jax.jit(lambda weights, X, Y: loss(forward(net, weights, X), Y))


def _jax_check(module, net, params, X, Y) -> dict[str, object]:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    X_j = jnp.asarray(np.asarray(X), dtype=jnp.float64)
    Y_j = jnp.asarray(np.asarray(Y), dtype=jnp.float64)
    point = {name: jnp.asarray(np.asarray(params[name]), jnp.float64) for name in net.param_names}

    try:
        check_grads(
            functools.partial(_jitted_jax_loss(module.forward, module.loss, net), X=X_j, Y=Y_j),
            (point,),
            order=1,
            modes=("rev",),
            eps=tolerances.FINITE_DIFFERENCE_STEP,
            atol=tolerances.FINITE_DIFFERENCE_ATOL,
            rtol=tolerances.FINITE_DIFFERENCE_RTOL,
        )
    except AssertionError as failure:
        detail = next((line for line in str(failure).splitlines() if line.strip()), "")
        return {
            "check": "jax.test_util.check_grads",
            "error": None,
            "passed": False,
            "detail": detail,
        }
    return {"check": "jax.test_util.check_grads", "error": None, "passed": True}


#: Registry name -> the finite-difference check written with that library's own checker.
FINITE_DIFFERENCE_CHECKS = {"numpy": _scipy_check, "torch": _torch_check, "jax": _jax_check}


def check_points(
    name: str,
    module: ModuleType,
    net: Network,
    points: dict[int, Params],
    X: np.ndarray,
    Y: np.ndarray,
) -> list[dict[str, object]]:
    """Run the finite-difference check of framework ``name`` and the Taylor test at each point.

    Args:
        name: Registry name; picks the library checker (the Taylor test serves any framework).
        module: The implementation (anything meeting the contract).
        net: The network.
        points: Step -> the weights at that step (the reference's).
        X: Training inputs.
        Y: Training targets.

    Returns:
        One record per check and point, each with ``"step"`` and ``"passed"``.
    """
    checker = FINITE_DIFFERENCE_CHECKS.get(name)
    records = []
    for step, params in points.items():
        if checker is not None:
            records.append({"step": step, **checker(module, net, params, X, Y)})
        records.append({"step": step, **taylor_test(module, net, params, X, Y)})
    return records


def sample_steps(weights: dict[str, np.ndarray], count: int = 4) -> list[int]:
    """The initial state and ``count - 1`` more spread over a trajectory, finite ones only."""
    states = len(next(iter(weights.values())))
    spread = (round(i * (states - 1) / (count - 1)) for i in range(count)) if count > 1 else ()
    candidates = sorted({0, *spread})
    return [
        step
        for step in candidates
        if all(np.isfinite(series[step]).all() for series in weights.values())
    ]
