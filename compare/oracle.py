"""Gradient oracles that need no second framework: the Taylor test and each library's own
finite-difference checker, with thresholds that follow the error of the finite difference.

Comparing frameworks with each other cannot catch a mistake they share. These checks judge each
framework's gradient against its own loss, in float64, at a few of the reference's states:

* **The Taylor remainder test**, through the implementation's ``loss_and_grads``: for a correct
  gradient ``g``, ``r(h) = |L(w + h v) - L(w) - h <g, v>|`` shrinks like ``h^2`` (or faster,
  ``h^3``, where the loss has no curvature along ``v``); a wrong gradient leaves an ``O(h)`` term
  and the observed order drops to 1. Remainders within the rounding floor of the loss (its own
  noise, measured from the loss at a few nearby points, and the rounding its outputs carry
  in, ``compare.tolerances.taylor_noise_floor``)
  are not used; with fewer than two usable steps the test is inconclusive, reported and not a
  failure. The order is also read with the remainder's ``h^3`` term cancelled (``taylor_test``).
* **Each library's finite-difference checker**, through the implementation's optional
  ``gradient_check`` (``scipy.optimize.check_grad``, ``torch.autograd.gradcheck``,
  ``jax.test_util.check_grads``). This module chooses the step and the threshold: the loss's
  largest curvature is estimated by power iteration on finite differences of the gradient, the
  step balances truncation against rounding, and the threshold is a safety factor times the
  error that step implies (``compare.tolerances.finite_difference_plan``). Both are recorded.

Where the contract's gradient is by convention not the derivative of the loss, neither test
can judge it, and both are reported inconclusive with the reason and the count, never passed
or failed: binary cross-entropy's derivative is torch's ``(A - Y) / max(A (1 - A), 1e-12)``,
which departs from the clamped loss's derivative at an output whose ``A (1 - A)`` is below
the floor (the clamp of the logs binds only there too). Such an output at any point the
Taylor test visits (up to ``TAYLOR_FIRST_STEP`` along its direction) makes the check
inconclusive (``convention_departures``); everywhere else a wrong gradient still fails. The
synced step still compares that gradient with the reference's at every step.

This module runs where the framework lives, inside ``compare.worker``; it imports no framework
(each implementation imports its own checker).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from compare import tolerances
from implementations.contract import BCE_GRAD_EPS, Params, Problem, grad_quantity

#: Step sizes of the Taylor test: ``TAYLOR_FIRST_STEP`` halved ``TAYLOR_HALVINGS`` times.
TAYLOR_FIRST_STEP = 1e-2
TAYLOR_HALVINGS = 12

#: Power iterations for the curvature estimate, and the step of their gradient differences
#: (central differences: error ``step^2`` times the third derivative, far below the estimate).
CURVATURE_ITERATIONS = 4
CURVATURE_STEP = 1e-4

#: States the oracles check: the initial state and this many more spread over the run.
ORACLE_STATES = 4

#: Training rows the library finite-difference checkers use (evenly spaced through the data).
#: They cost one or two loss evaluations per parameter: on digits with 32 hidden units (2,410
#: parameters, 1,777 rows) all rows took 15-56 s per framework and state, so a run checked 4
#: states for minutes. A gradient formula that is wrong is wrong on any rows; the Taylor test
#: still runs on all of them.
CHECKER_ROWS = 32

EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class OracleResult:
    """One oracle check of one framework's gradient at one of the reference's states.

    Attributes:
        framework: The framework checked.
        checker: ``"taylor"`` or the library checker's name.
        state: The training state ``k`` whose (reference) parameters were checked.
        step: The finite-difference step (``None`` for the Taylor test).
        threshold: The largest error that passes: the finite-difference bound, or for the
            Taylor test the smallest accepted order.
        error: The checker's error (the observed order for the Taylor test), or ``None``.
        passed: Whether the gradient passed.
        inconclusive: Nothing could be judged (``reason`` says why); counts as passed.
        detail: The checker's own line, if any.
        facts: Supporting numbers (orders and remainders; curvature, truncation, rounding;
            ``convention_departures``, the outputs where the loss's derivative is by convention
            not the contract's gradient).
        reason: Why the check is inconclusive (empty when it is not).
    """

    framework: str
    checker: str
    state: int
    step: float | None
    threshold: float
    error: float | None
    passed: bool
    inconclusive: bool = False
    detail: str = ""
    facts: dict[str, object] = field(default_factory=dict)
    reason: str = ""


#: Why the Taylor test is inconclusive on a flat or saturated network.
ROUNDING_FLOOR_REASON = "the remainder sits at the rounding floor"


def departure_reason(count: int) -> str:
    """Why a check at ``count`` departing outputs is inconclusive, in one phrase."""
    return (
        f"binary cross-entropy's gradient is by convention not the loss's derivative at {count} "
        f"output{'s' if count != 1 else ''} within the checked steps (A (1 - A) below the "
        "1e-12 floor of torch's backward, where the logs' -100 clamp binds too)"
    )


def _sizes(problem: Problem) -> dict[str, tuple[int, ...]]:
    return problem.network.param_shapes


def flatten(problem: Problem, params: Params) -> np.ndarray:
    """Parameters without a point axis -> one float64 vector, layer by layer."""
    return np.concatenate(
        [np.asarray(params[name], np.float64).ravel() for name in problem.network.param_names]
    )


def unflatten(problem: Problem, flat: np.ndarray) -> dict[str, np.ndarray]:
    """One vector (or ``(P, size)`` vectors) -> parameters (with a point axis if given one)."""
    flat = np.asarray(flat, dtype=np.float64)
    lead = flat.shape[:-1]
    params, offset = {}, 0
    for name, shape in _sizes(problem).items():
        size = math.prod(shape)
        params[name] = flat[..., offset : offset + size].reshape(*lead, *shape)
        offset += size
    return params


def direction(problem: Problem) -> np.ndarray:
    """A fixed unit direction in parameter space for the Taylor test.

    Deterministic (``cos(1), cos(2), ...``, normalised) rather than random: nothing in a check
    draws random numbers but the recipe, and any direction with a gradient component shows the
    order.
    """
    flat = np.cos(np.arange(1.0, problem.network.size + 1.0))
    return flat / np.linalg.norm(flat)


def _evaluate(module: ModuleType, problem: Problem, points: np.ndarray, X, Y):
    """Loss ``(P,)`` and flat gradients ``(P, size)`` at ``points`` ``(P, size)``."""
    losses, grads = module.loss_and_grads(problem, unflatten(problem, points), X, Y)
    flat = np.concatenate(
        [
            np.asarray(grads[grad_quantity(name)], np.float64).reshape(len(points), -1)
            for name in problem.network.param_names
        ],
        axis=1,
    )
    return np.asarray(losses, dtype=np.float64), flat


def taylor_test(
    module: ModuleType, problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> dict[str, object]:
    """Observed order of the Taylor remainder of ``module``'s loss and gradient at ``params``.

    All points ``w + h v`` are evaluated in one batched ``loss_and_grads`` call, in float64.

    Returns:
        ``{"steps", "remainders", "orders", "observed_order", "inconclusive", "passed",
        "loss", "largest_gradient"}``: the observed order is the median of the orders of the three
        smallest steps whose remainder is above the rounding floor of the loss; passed when it
        is at least ``2 - TAYLOR_ORDER_TOLERANCE`` (no upper bound: a remainder that shrinks
        faster than ``h^2`` is a loss without curvature along ``v``, not a wrong gradient).
    """
    problem64 = dataclasses.replace(problem, dtype="float64")
    v = direction(problem)
    hs = taylor_steps()
    losses, grads = _evaluate(module, problem64, taylor_points(problem, params), X, Y)
    slope = float(grads[0] @ v)
    signed = losses[1:] - losses[0] - hs * slope
    # A remainder within the rounding floor is noise, not a Taylor term (a saturated network
    # has almost no gradient or curvature left to measure, and its outputs' rounding is large).
    noise = loss_noise(module, problem, params, X, Y)
    floor = tolerances.taylor_noise_floor(
        float(losses[0]), output_rounding(problem, params, X, Y), noise
    )
    orders, observed, used = _order(np.abs(signed), floor)
    # The same test with the remainder's h^3 term cancelled (see the docstring).
    cubic_free = 8 * signed[1:] - signed[:-1]
    cubic_free_orders, cubic_free_observed, _ = _order(
        np.abs(cubic_free), tolerances.CUBIC_FREE_NOISE * floor
    )
    inconclusive = math.isnan(observed) or not np.isfinite(losses[0])
    least = 2.0 - tolerances.TAYLOR_ORDER_TOLERANCE
    # The order that decides: the remainder's, else (where it fails) the cubic-free one's.
    order = cubic_free_observed if observed < least <= cubic_free_observed else observed
    return {
        "steps": [float(h) for h in hs],
        "remainders": [float(r) for r in np.abs(signed)],
        "orders": [float(o) for o in orders],
        "cubic_free_orders": [float(o) for o in cubic_free_orders],
        "order": order,
        "observed_order": observed,
        "cubic_free_order": cubic_free_observed,
        "noise_floor": floor,
        "loss_noise": noise,
        "inconclusive": bool(inconclusive),
        "passed": bool(inconclusive or observed >= least or cubic_free_observed >= least),
        "loss": float(losses[0]),
        "largest_gradient": float(np.max(np.abs(grads[0]), initial=0.0)),
        # The order compares remainders at steps used[i] and used[i] + 1.
        "largest_used_step": float(hs[used[0]]) if used.size else 0.0,
    }


def _order(remainders: np.ndarray, floor: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Orders ``log2(r(h) / r(h/2))`` of successive ``remainders``, the observed order (the
    median of the three smallest steps whose smaller remainder is above ``floor``; NaN with
    fewer than two) and the indices of the orders it used."""
    with np.errstate(divide="ignore", invalid="ignore"):
        orders = np.log2(remainders[:-1] / remainders[1:])
        usable = np.isfinite(orders) & (remainders[1:] > floor)
    used = np.flatnonzero(usable)[-3:]
    observed = float(np.median(orders[used])) if used.size >= 2 else math.nan
    return orders, observed, used


def loss_noise(module: ModuleType, problem: Problem, params: Params, X, Y) -> float:
    """The measured noise of one float64 evaluation of ``module``'s loss at ``params``
    (``compare.tolerances.measured_noise``): the loss at ``NOISE_POINTS`` points
    ``NOISE_SPACING`` apart along the Taylor direction, in one batched call."""
    problem64 = dataclasses.replace(problem, dtype="float64")
    offsets = tolerances.NOISE_SPACING * np.arange(tolerances.NOISE_POINTS)
    points = flatten(problem, params) + offsets[:, None] * direction(problem)
    losses, _ = _evaluate(module, problem64, points, X, Y)
    return tolerances.measured_noise(losses)


def output_rounding(problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray) -> float:
    """``eps * sum |dL/dA| |A|``: the rounding the network's outputs ``A`` carry into one loss
    at ``params``, each output off by one rounding (``eps |A|``) and the loss moving by
    ``dL/dA`` per unit of it. The NumPy reference's forward and loss derivative in float64 (the
    rounding of a float64 evaluation of the function, whoever evaluates it). Large where an
    output saturates toward its target (``compare.tolerances.finite_difference_plan``)."""
    from implementations import numpy_manual

    problem64 = dataclasses.replace(problem, dtype="float64")
    point = unflatten(problem, flatten(problem, params)[None])
    outputs = numpy_manual.forward(problem64, point, np.asarray(X, np.float64)[None])[-1].A
    derivative = numpy_manual.LOSSES[problem.network.loss].derivative(
        outputs, np.asarray(Y, np.float64)[None]
    )
    return EPS64 * float(np.sum(np.abs(derivative * outputs)))


def taylor_steps() -> np.ndarray:
    """The Taylor test's steps ``h``: ``TAYLOR_FIRST_STEP`` halved ``TAYLOR_HALVINGS`` times."""
    return TAYLOR_FIRST_STEP * 0.5 ** np.arange(TAYLOR_HALVINGS + 1)


def taylor_points(problem: Problem, params: Params) -> np.ndarray:
    """``(TAYLOR_HALVINGS + 2, size)``: the checked point ``w``, then every ``w + h v`` the
    Taylor test visits."""
    w = flatten(problem, params)
    return np.vstack([w, w + taylor_steps()[:, None] * direction(problem)])


def convention_departures(
    module: ModuleType, problem: Problem, points: np.ndarray, X: np.ndarray
) -> np.ndarray:
    """``(R, O)`` bool: the outputs where the contract's gradient is, by convention, not the
    derivative of the loss at any of ``points`` ``(P, size)`` (all ``False`` for other losses).

    Binary cross-entropy's derivative is ``(A - Y) / max(A (1 - A), BCE_GRAD_EPS)``: the
    unclamped loss's derivative, floored. It departs from the derivative of the (clamped) loss
    exactly where the floor binds; the logs' clamp at -100 binds only at ``A < e^-100`` or
    ``1 - A < e^-100``, inside that region. The outputs are the implementation's own
    ``predict`` in float64, where the oracles run.
    """
    if problem.network.loss != "binary-cross-entropy":
        return np.zeros((len(X), problem.network.widths[-1]), dtype=bool)
    problem64 = dataclasses.replace(problem, dtype="float64")
    outputs = np.asarray(module.predict(problem64, unflatten(problem, points), X), np.float64)
    with np.errstate(invalid="ignore"):
        below = (1 - outputs) * outputs < BCE_GRAD_EPS
    return below.any(axis=0)


#: Activations with a kink at 0, where the loss has no derivative (each library takes a one-sided
#: one: relu'(0) = 0, leaky_relu'(0) = slope).
KINKED = ("relu", "leaky_relu")


def kink_reason(count: int) -> str:
    """Why a check with ``count`` pre-activations at or across a kink is inconclusive."""
    return (
        f"the loss has a kink within the checked steps: {count} relu/leaky_relu "
        f"pre-activation{'s' if count != 1 else ''} at or across 0, where it has no derivative"
    )


def _no_derivative_reason(departures: int, kinked: int, otherwise: str = "") -> str:
    """Why a check is inconclusive: a kink, else BCE's convention, else ``otherwise``."""
    if kinked:
        return kink_reason(kinked)
    return departure_reason(departures) if departures else otherwise


def kinks(problem: Problem, points: np.ndarray, X: np.ndarray, reach: float = 0.0) -> int:
    """Pre-activations of the kinked layers (``KINKED``) that sit at their kink for ``points``
    ``(P, size)`` (the checked point first): exactly 0 or within ``reach`` of 0 at the checked
    point, or of another sign at any other point. 0 when no layer is kinked.

    A kink on the bfloat16 or float16 grid is common (small integers times a coarse weight grid
    sum to exactly 0), and there the remainder of a first-order expansion is ``O(h)`` for every
    implementation alike: the Taylor test and finite differences cannot judge the gradient.
    The pre-activations are the NumPy reference's forward in float64 (a kink is a property of
    the function, not of an implementation).
    """
    net = problem.network
    if not any(a in KINKED for a in net.activations):
        return 0
    from implementations import numpy_manual

    problem64 = dataclasses.replace(problem, dtype="float64")
    layers = numpy_manual.forward(problem64, unflatten(problem, points), np.asarray(X, np.float64))
    count = 0
    A_prev = np.asarray(X, np.float64)
    for activation, layer in zip(net.activations, layers, strict=True):
        Z = np.asarray(layer.Z)
        if activation in KINKED:
            at = Z[0]
            # Moving one weight by ``reach`` moves a pre-activation by at most reach * max|a|.
            scale = reach * np.max(np.abs(A_prev), axis=-1, keepdims=True) if reach else 0.0
            near = np.abs(at) <= scale
            crossed = (np.sign(Z[1:]) != np.sign(at)).any(axis=0) if len(Z) > 1 else False
            count += int(np.count_nonzero(near | crossed))
        A_prev = np.asarray(layer.A)[0]
    return count


def curvature(module: ModuleType, problem: Problem, params: Params, X, Y) -> float:
    """An estimate of the loss's largest curvature (the Hessian's spectral norm) at ``params``.

    Power iteration: ``H v`` by central differences of the gradient, ``CURVATURE_ITERATIONS``
    times from the Taylor direction. It bounds every coordinate's second derivative from below
    after a few iterations, which is why the threshold carries a safety factor.
    """
    problem64 = dataclasses.replace(problem, dtype="float64")
    w = flatten(problem, params)
    v = direction(problem)
    largest = 0.0
    for _ in range(CURVATURE_ITERATIONS):
        points = np.vstack([w + CURVATURE_STEP * v, w - CURVATURE_STEP * v])
        _, grads = _evaluate(module, problem64, points, X, Y)
        hv = (grads[0] - grads[1]) / (2 * CURVATURE_STEP)
        norm = float(np.linalg.norm(hv))
        if not math.isfinite(norm) or norm == 0:
            break
        largest = max(largest, norm)
        v = hv / norm
    return largest


def check(
    framework: str,
    module: ModuleType,
    problem: Problem,
    state: int,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
) -> list[OracleResult]:
    """The Taylor test and, if the implementation has one, its library's finite-difference
    check, at ``params`` (one point, no point axis).

    Args:
        framework: The framework's name (for the results).
        module: The implementation.
        problem: The problem (its dtype is ignored: oracles run in float64).
        state: The training state the parameters come from.
        params: Parameter name -> array, no point axis.
        X: Training inputs.
        Y: Training targets.
    """
    taylor = taylor_test(module, problem, params, X, Y)
    visited = taylor_points(problem, params)
    departing = convention_departures(module, problem, visited, X)
    departures = int(departing.sum())
    # A failed order where the used steps cross a relu kink is the kink's, not the gradient's.
    kinked = 0
    if not taylor["passed"] and taylor["largest_used_step"]:
        used = np.r_[True, taylor_steps() <= taylor["largest_used_step"]]
        kinked = kinks(problem, visited[used], X)
    reason = _no_derivative_reason(
        departures, kinked, ROUNDING_FLOOR_REASON if taylor["inconclusive"] else ""
    )
    results = [
        OracleResult(
            framework=framework,
            checker="taylor",
            state=state,
            step=None,
            threshold=2.0 - tolerances.TAYLOR_ORDER_TOLERANCE,
            error=None if math.isnan(taylor["order"]) else taylor["order"],
            passed=taylor["passed"] or bool(departures) or bool(kinked),
            inconclusive=taylor["inconclusive"] or bool(departures) or bool(kinked),
            facts={
                **{
                    k: taylor[k]
                    for k in (
                        "steps",
                        "remainders",
                        "orders",
                        "cubic_free_orders",
                        "cubic_free_order",
                        "noise_floor",
                        "loss_noise",
                    )
                },
                "convention_departures": departures,
                "kinks": kinked,
            },
            reason=reason,
        )
    ]
    gradient_check = getattr(module, "gradient_check", None)
    if gradient_check is None or not math.isfinite(taylor["loss"]):
        return results
    rows = checker_rows(len(X))
    departures = int(departing[rows].sum())
    X, Y = np.asarray(X)[rows], np.asarray(Y)[rows]
    problem64 = dataclasses.replace(problem, dtype="float64")
    losses, grads = _evaluate(module, problem64, flatten(problem, params)[None], X, Y)
    kappa = curvature(module, problem, params, X, Y)
    terms = int(np.size(Y))
    carried = output_rounding(problem, params, X, Y)
    noise = loss_noise(module, problem, params, X, Y)
    plan = tolerances.finite_difference_plan(float(losses[0]), kappa, terms, carried, noise)
    found = gradient_check(
        problem64, params, X, Y, step=plan["step"], atol=plan["atol"], rtol=plan["rtol"]
    )
    largest = float(np.max(np.abs(grads[0]), initial=0.0))
    error = found.get("error")
    checker_kinks = (
        0 if found["passed"] else kinks(problem, flatten(problem, params)[None], X, plan["step"])
    )
    results.append(
        OracleResult(
            framework=framework,
            checker=str(found["checker"]),
            state=state,
            step=plan["step"],
            threshold=plan["atol"] + plan["rtol"] * largest,
            error=None if error is None else float(error),
            passed=bool(found["passed"]) or bool(departures) or bool(checker_kinks),
            inconclusive=bool(departures) or bool(checker_kinks),
            detail=str(found.get("detail", "")),
            facts={
                "atol": plan["atol"],
                "rtol": plan["rtol"],
                "curvature": kappa,
                "truncation": plan["truncation"],
                "rounding": plan["rounding"],
                "output_rounding": carried,
                "loss_noise": noise,
                "rows": len(rows),
                "convention_departures": departures,
                "kinks": checker_kinks,
            },
            reason=_no_derivative_reason(departures, checker_kinks),
        )
    )
    return results


def checker_rows(n: int, count: int = CHECKER_ROWS) -> np.ndarray:
    """The training rows the library checkers use: all of them up to ``count``, else ``count``
    evenly spaced ones (deterministic: the oracles draw no random numbers)."""
    if n <= count:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(int))


def states_to_check(steps: int, record_every: int = 1, count: int = ORACLE_STATES) -> list[int]:
    """The initial state and ``count - 1`` more spread over the run, each one that is kept."""
    spread = {round(i * steps / (count - 1)) for i in range(count)} if count > 1 else {0}
    chosen = {s if s == steps else s - s % record_every for s in spread}
    return sorted(chosen)
