"""The rounding bound of a gradient's terms (``compare.term_bounds``) and the allowances that
follow from it: the pass against a per-row loop, the bound against the float32 error it bounds,
an honest cancelling run that passes, and the same run with a planted gradient bug just above
the bound, which fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import sys

import numpy as np
import pytest

from compare import agreement, term_bounds, tolerances
from compare.check import check
from compare.recipe import Recipe
from implementations import numpy_manual
from implementations.contract import Batches, Network, Optimizer, Problem

_copies = itertools.count()


def _problem(widths, activations, loss="mse", biases=True, dtype="float32") -> Problem:
    return Problem(
        network=Network(tuple(widths), tuple(activations), biases=biases, loss=loss),
        optimizer=Optimizer("sgd", lr=0.1),
        dtype=dtype,
        batches=Batches(rows=0),
    )


def _draw(problem: Problem, rows: int, seed: int, input_scale: float):
    """Unscaled inputs (features up to ``input_scale``, as wine's and digits'), weights of one
    point, and targets: a state whose gradients are sums of large, cancelling terms."""
    rng = np.random.default_rng(seed)
    widths = problem.network.widths
    X = rng.uniform(0, input_scale, size=(rows, widths[0]))
    Y = np.eye(widths[-1])[rng.integers(0, widths[-1], rows)]
    params = {}
    for name, shape in problem.network.param_shapes.items():
        scale = 1 / math.sqrt(shape[0]) if name.startswith("W") else 0.1
        params[name] = rng.normal(0, scale, size=(1, *shape))
    return X, Y, params


def _underflow(x: float, dtype: str) -> float:
    """A value's error below the smallest normal number: flushed where below the computing
    precision's smallest normal, rounded to the dtype's subnormal spacing where stored below
    its own."""
    tiny = tolerances.TINY[dtype]
    rounded = tiny * tolerances.EPS[dtype] / 2 if 0 < abs(x) < tiny else 0.0
    return min(abs(x), tolerances.FLUSH_TINY[dtype]) + rounded


def _brute_force(problem: Problem, params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
    """The bound of ``compare.term_bounds``'s module docstring, one row and one element at a
    time, for tanh and identity layers and the mean squared error (no matrix products)."""
    net, dtype = problem.network, problem.dtype
    s = term_bounds.storage_rounding(dtype)
    r = s + term_bounds.ELEMENTWISE_ROUNDINGS * tolerances.EPS[term_bounds.working_dtype(dtype)]
    rows = len(X)
    W = [params[f"W{layer}"][0] for layer in range(1, net.layers + 1)]
    b = [params[f"b{layer}"][0] for layer in range(1, net.layers + 1)]
    grads = {f"grad:W{layer + 1}": np.zeros(w.shape) for layer, w in enumerate(W)}
    grads.update({f"grad:b{layer + 1}": np.zeros(w.shape[1]) for layer, w in enumerate(W)})
    # The gradients themselves (their stored rounding is s times them, after the row sum).
    values = {q: np.zeros(g.shape) for q, g in grads.items()}
    loss = 0.0
    for i in range(rows):
        A, eA = [list(X[i])], [[0.0] * len(X[i])]
        dA, e_dA = [], []
        for layer, (w, bias) in enumerate(zip(W, b, strict=True)):
            u = term_bounds.sum_rounding(w.shape[0], dtype)
            z = [
                sum(A[-1][j] * w[j, k] for j in range(w.shape[0])) + bias[k]
                for k in range(w.shape[1])
            ]
            m = [
                sum(abs(A[-1][j] * w[j, k]) for j in range(w.shape[0])) + abs(bias[k])
                for k in range(w.shape[1])
            ]
            ez = [
                sum(eA[-1][j] * abs(w[j, k]) for j in range(w.shape[0]))
                + u * m[k]
                + s * (abs(z[k] - bias[k]) + abs(z[k]))
                + _underflow(z[k], dtype)
                for k in range(w.shape[1])
            ]
            if net.activations[layer] == "tanh":
                a = [math.tanh(v) for v in z]
                d = [1 - v * v for v in a]
                ea = [d[k] * ez[k] + r * abs(a[k]) for k in range(len(z))]
                ed = [2 * abs(a[k]) * ea[k] + r * d[k] for k in range(len(z))]
            else:
                a, d, ea, ed = z, [1.0] * len(z), ez, [0.0] * len(z)
            ea = [ea[k] + _underflow(a[k], dtype) for k in range(len(z))]
            ed = [ed[k] + _underflow(d[k], dtype) for k in range(len(z))]
            A.append(a)
            eA.append(ea)
            dA.append(d)
            e_dA.append(ed)
        c = 2 / (rows * len(Y[i]))
        G = [c * (A[-1][k] - Y[i][k]) for k in range(len(Y[i]))]
        eG = [
            c * (eA[-1][k] + r * abs(A[-1][k] - Y[i][k])) + _underflow(G[k], dtype)
            for k in range(len(Y[i]))
        ]
        loss += sum(abs(G[k]) * eA[-1][k] for k in range(len(G)))
        loss += (term_bounds.sum_rounding(rows * len(G), dtype) + s) * sum(
            c / 2 * (A[-1][k] - Y[i][k]) ** 2 for k in range(len(G))
        )
        u_rows = term_bounds.sum_rounding(rows, dtype)
        for layer in range(net.layers - 1, -1, -1):
            delta = [G[k] * dA[layer][k] for k in range(len(G))]
            e_delta = [
                eG[k] * abs(dA[layer][k]) + abs(G[k]) * e_dA[layer][k] + r * abs(delta[k])
                for k in range(len(G))
            ]
            for j in range(len(A[layer])):
                for k in range(len(delta)):
                    grads[f"grad:W{layer + 1}"][j, k] += abs(A[layer][j]) * (
                        e_delta[k] + u_rows * abs(delta[k])
                    ) + eA[layer][j] * abs(delta[k])
                    values[f"grad:W{layer + 1}"][j, k] += A[layer][j] * delta[k]
            for k in range(len(delta)):
                grads[f"grad:b{layer + 1}"][k] += e_delta[k] + u_rows * abs(delta[k])
                values[f"grad:b{layer + 1}"][k] += delta[k]
            w = W[layer]
            u = term_bounds.sum_rounding(w.shape[1], dtype)
            G = [sum(delta[k] * w[j, k] for k in range(w.shape[1])) for j in range(w.shape[0])]
            eG = [
                sum((e_delta[k] + u * abs(delta[k])) * abs(w[j, k]) for k in range(w.shape[1]))
                + s * abs(G[j])
                for j in range(w.shape[0])
            ]
    for q, value in values.items():
        grads[q] += s * np.abs(value)
    grads["loss"] = loss
    return grads


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_pass_matches_a_per_row_loop(dtype):
    problem = _problem((3, 4, 2), ("tanh", "identity"), dtype=dtype)
    X, Y, params = _draw(problem, rows=5, seed=1, input_scale=100.0)
    found = term_bounds.pass_bounds(problem, params, X, Y)
    expected = _brute_force(problem, params, X, Y)
    for q, value in expected.items():
        np.testing.assert_allclose(
            found[q][0], value, rtol=1e-12, err_msg=f"{q}: the vectorised pass is not the loop"
        )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    "activations", [("identity", "identity", "identity"), ("tanh", "sigmoid", "identity")]
)
def test_bound_holds_where_terms_cancel(dtype, activations):
    """NumPy's pass in ``dtype`` errs by at most the bound, element by element, on unscaled
    inputs where the gradient elements are the small difference of large terms; and the bound
    is far below the terms themselves (it does not pass anything)."""
    loss = "cross-entropy" if activations[-1] == "identity" and "tanh" in activations else "mse"
    problem = _problem((6, 5, 4, 3), activations, loss=loss, dtype=dtype)
    exact = dataclasses.replace(problem, dtype="float64")
    for seed in range(4):
        X, Y, params = _draw(problem, rows=40, seed=seed, input_scale=50.0)
        cast = numpy_manual.numpy_dtype(dtype)
        rounded = {k: v.astype(cast) for k, v in params.items()}
        state = {k: v.astype(np.float64) for k, v in rounded.items()}
        X_dtype = X.astype(cast)
        low = numpy_manual.evaluate(problem, rounded, X_dtype, Y.astype(cast))
        high = numpy_manual.evaluate(exact, state, X_dtype.astype(np.float64), Y)
        bound = term_bounds.pass_bounds(problem, state, X_dtype.astype(np.float64), Y)
        for name, value in high.grads.items():
            error = np.abs(low.grads[name].astype(np.float64) - value)
            q = f"grad:{name}"
            assert np.all(error <= bound[q]), (
                f"{dtype} {activations} seed {seed}: {q} errs by {error.max():.3g}, "
                f"beyond its bound at {np.argmax(error / bound[q])}"
            )
        error = abs(float(low.losses[0]) - float(high.losses[0]))
        assert error <= bound["loss"][0], f"loss errs by {error:.3g} > {bound['loss'][0]:.3g}"


def _numpy_copy():
    name = f"crosscheck_term_bounds_copy_{next(_copies)}"
    spec = importlib.util.spec_from_file_location(name, numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: Identity layers on raw digits (pixels up to 16, weights summing 64 of them), float32: the
#: gradient of W2 at step 0 is a sum of cancelling terms; torch and NumPy differed by 5.6e-7
#: on an element whose atol (rtol times the largest gradient) was 5.5e-7, a false alarm.
CANCELLING = dict(
    dataset="digits",
    hidden=[4, 4],
    activations=["identity", "identity", "tanh"],
    loss="half-mse",
    standardize=False,
    optimizer="adamw",
    lr=0.01,
    steps=1,
    dtype="float32",
    batch_size=64,
    batch_seed=13,
    init_seed=398,
    split_seed=7,
)


def test_honest_cancelling_run_passes():
    pytest.importorskip("torch")
    result = check(
        Recipe(**CANCELLING), frameworks=("numpy", "torch"), mode="synced", oracles=False
    )
    assert result.passed, f"a false alarm where terms cancel: {result.first_failure}"


def _planted(size: float, record: dict):
    """A NumPy copy whose grad:W2 is off by ``size`` times the element's whole tolerance at
    step 0 (the term allowance, where it exceeds the running-maximum atol, plus rtol |g|), at
    the element whose term allowance is largest against that atol."""
    module = _numpy_copy()
    honest = module.evaluate

    def evaluate(problem, params, X, Y, **options):
        found = honest(problem, params, X, Y, **options)
        wide = {k: np.asarray(v, np.float64) for k, v in params.items()}
        bounds = term_bounds.pass_bounds(
            problem, wide, np.asarray(X, np.float64), np.asarray(Y, np.float64)
        )
        allowance = term_bounds.allowance(bounds["grad:W2"])
        grad = found.grads["W2"].astype(np.float64)
        rows = np.shape(X)[-2]
        rtol = tolerances.synced_rtol(problem.dtype, rows)
        atol = rtol * np.abs(grad).max(axis=(-2, -1), keepdims=True)
        at = np.unravel_index(np.argmax(allowance / atol), allowance.shape)
        record["allowance"], record["atol"] = float(allowance[at]), float(atol[at[0], 0, 0])
        record["largest"] = float(np.abs(grad).max())
        shift = np.zeros_like(grad)
        shift[at] = size * (max(allowance[at], atol[at[0], 0, 0]) + rtol * abs(grad[at]))
        found.grads["W2"] = (grad + shift).astype(found.grads["W2"].dtype)
        return found

    module.evaluate = evaluate
    return module


def test_gradient_bug_just_above_the_term_bound_fails():
    record: dict = {}
    result = check(
        Recipe(**CANCELLING),
        frameworks=("numpy", "planted"),
        mode="synced",
        oracles=False,
        modules={"planted": _planted(2.0, record)},
    )
    assert record["allowance"] > record["atol"], "the planted element is not a cancelling one"
    # Measured: the term allowance there is 0.55% of the largest gradient element (the
    # first-order bound adds every propagated error's magnitude); twice as loose fails here.
    assert record["allowance"] < 0.01 * record["largest"], (
        f"the term allowance {record['allowance']:.3g} is loose against the gradient's scale "
        f"{record['largest']:.3g}"
    )
    failing = [c for c in result.comparisons if c.gating and not c.passed]
    assert any(c.quantity == "grad:W2" and c.first_failing_step == 0 for c in failing), (
        f"a grad:W2 off by twice its term bound passed: {[c.quantity for c in failing]}"
    )


def test_gradient_within_the_term_bound_passes():
    """The same plant at half the tolerance passes: the allowance is what the judge applies."""
    result = check(
        Recipe(**CANCELLING),
        frameworks=("numpy", "planted"),
        mode="synced",
        oracles=False,
        modules={"planted": _planted(0.5, {})},
    )
    assert result.passed, f"half the term allowance failed: {result.first_failure}"


def _adam(**changes) -> Optimizer:
    return Optimizer("adam", lr=1e-3, **changes)


def _allowance(optimizer: Optimizer, buffer: str, dtype: str, grad, *, v0=None, m0=None):
    grad = np.asarray(grad, dtype=np.float64)[None]
    zeros = np.zeros_like(grad)
    return tolerances.update_allowance(
        optimizer,
        buffer,
        dtype,
        grad=grad,
        grad_allowed=np.abs(grad) * 1e-4,
        param=zeros + 1.0,
        change=zeros,
        count=np.zeros(1),
        buffers={
            "m": zeros if m0 is None else np.asarray(m0)[None],
            "v": zeros if v0 is None else np.asarray(v0)[None],
        },
    )[0]


def test_float16_v_not_judged_only_where_g_squared_overflows():
    """optax squares g in float16 (inf for |g| >= 256), torch and NumPy in float32: v is not
    judged there, and judged as before where g^2 fits."""
    allowance = _allowance(_adam(), "v", "float16", [300.0, 200.0])
    assert np.isposinf(allowance[0]), "v of |g| = 300 (g^2 > 65504) is judged in float16"
    assert np.isfinite(allowance[1]) and allowance[1] < 1.0, f"v of g = 200: {allowance[1]}"
    assert np.isfinite(_allowance(_adam(), "v", "float32", [300.0])).all()


def test_adam_update_allows_for_v_underflow_only_near_zero():
    """float16's v of a gradient 0.005 underflows to one subnormal quantum or zero, which
    moves the update by up to lr m / eps; a v far above the quantum adds nothing."""
    optimizer = _adam(eps=1e-4)
    small, large = _allowance(optimizer, "param", "float16", [0.005, 0.5])
    m_hat = 0.005  # (1 - beta1) g / (1 - beta1) at the first step
    lr = optimizer.lr
    moved = lr * m_hat / optimizer.eps - lr * m_hat / (math.sqrt(6e-8 / 1e-3) + optimizer.eps)
    assert small >= moved, f"allowance {small:.3g} below the underflow's move {moved:.3g}"
    assert large < 0.01 * lr, f"a v far from underflow still allowed {large:.3g}"


def test_buffers_allow_each_flushed_term():
    """Each of a buffer's two terms may be flushed to zero below the CPU's tiny."""
    tiny = tolerances.FLUSH_TINY["float32"]
    for buffer in ("m", "v"):
        allowance = _allowance(_adam(), buffer, "float32", [0.0])
        assert allowance[0] >= 2 * tiny, f"{buffer}: {allowance[0]:.3g} < two flushed terms"
        assert allowance[0] < 3 * tiny, f"{buffer}: {allowance[0]:.3g} allows more than them"


def test_infinite_atol_is_not_judged_and_finite_atol_still_is():
    accumulator = agreement.SeriesAccumulator("float32", 1)
    expected = np.array([[np.nan, 1.0, 1.0]])
    actual = np.array([[np.inf, 2.0, 1.0]])
    accumulator.add(np.array([0]), actual, expected, np.array([[np.inf, np.inf, 0.5]]), 0.0)
    facts = accumulator.facts()
    assert facts["first_failing_step"] is None, "an element the dtype may overflow failed"
    assert facts["atol"] == 0.5, "the reported atol counts the elements not judged"
    accumulator = agreement.SeriesAccumulator("float32", 1)
    finite = np.array([[3.0e38, 2.0, 1.0]])
    accumulator.add(np.array([0]), finite, expected, np.array([[0.5, np.inf, 0.5]]), 0.0)
    facts = accumulator.facts()
    assert facts["first_failing_index"] == (0,), "a NaN reference matched 3e38 at a finite atol"


def test_elements_whose_terms_overflow_the_dtype_are_not_judged():
    """Where the magnitude of an element's terms exceeds the dtype's largest number, the sum
    may overflow or not depending on its order: the bound is infinite there, and only there."""
    problem = _problem((2, 2), ("identity",), loss="mse", biases=False, dtype="float16")
    X = np.array([[6e4, 1.0], [5e4, -1.0], [6e4, 0.5]])
    Y = np.full((3, 2), -10.0)
    params = {"W1": np.array([[[0.0, 0.0], [0.5, -0.5]]])}
    bound = term_bounds.pass_bounds(problem, params, X, Y)["grad:W1"][0]
    assert np.isposinf(bound[0]).all(), f"terms of 6e4 x delta judged in float16: {bound[0]}"
    assert np.isfinite(bound[1]).all() and (bound[1] < 1.0).all(), f"row 1: {bound[1]}"
    assert np.isfinite(
        term_bounds.pass_bounds(dataclasses.replace(problem, dtype="float32"), params, X, Y)[
            "grad:W1"
        ]
    ).all()


def test_an_mse_derivative_whose_power_rule_factor_overflows_is_not_judged():
    """torch's MseLossBackward forms 2 (A - Y) before the chain rule's 1 / (R O): where
    2 |A - Y| exceeds float32's largest number that element's gradient may be inf while the
    reference's (2 / (R O)) (A - Y) is finite, so its bound is infinite; an output whose
    2 |A - Y| fits (and ``R O`` times its gradient, ``test_backward_intermediates_before_the_
    loss_scaling_are_capped``) keeps a finite bound, far below a wrong gradient's error."""
    problem = _problem((1, 2), ("identity",), loss="mse", biases=False, dtype="float32")
    X = np.ones((2, 1))
    Y = np.zeros((2, 2))
    params = {"W1": np.array([[[2e38, 1e37]]])}
    with np.errstate(over="ignore"):
        torch_like = 2 * (X.astype(np.float32) @ params["W1"][0].astype(np.float32))
    assert np.isposinf(torch_like[:, 0]).all() and np.isfinite(torch_like[:, 1]).all()
    bounds = term_bounds.pass_bounds(problem, params, X, Y)
    bound = bounds["grad:W1"][0, 0]
    assert np.isposinf(bound[0]), f"2 |A - Y| = 4e38 judged: {bound[0]}"
    grad = 1e37  # column 1: sum over rows of (2 / 4) * 1e37
    assert np.isfinite(bound[1]) and term_bounds.allowance(bound[1]) < 1e-5 * grad, bound[1]
    assert np.isposinf(bounds["loss"][0]), "sum (A - Y)^2 = 1e77 formed before the division"


def test_a_loss_whose_sum_before_the_division_overflows_is_not_judged():
    """torch sums the rows' cross-entropies, then divides by R: two rows of 3e38 overflow
    float32 where their mean does not; one such row (or float64) keeps a finite bound."""
    problem = _problem((1, 2), ("identity",), loss="cross-entropy", biases=False)
    params = {"W1": np.array([[[0.0, 3e38]]])}
    Y = np.array([[1.0, 0.0]])
    two = term_bounds.pass_bounds(problem, params, np.ones((2, 1)), np.repeat(Y, 2, axis=0))
    one = term_bounds.pass_bounds(problem, params, np.ones((1, 1)), Y)
    assert np.isposinf(two["loss"][0]), f"a sum of 6e38 judged: {two['loss'][0]}"
    assert np.isfinite(one["loss"][0]), f"a sum of 3e38: {one['loss'][0]}"
    wide = dataclasses.replace(problem, dtype="float64")
    assert np.isfinite(
        term_bounds.pass_bounds(wide, params, np.ones((2, 1)), np.repeat(Y, 2, axis=0))["loss"]
    ).all()


def test_a_gelu_derivative_whose_chain_rule_product_overflows_is_not_judged():
    """Autodiff's transposed GELU derivative forms ``Z G`` before ``phi(Z)``: far below 0,
    ``phi`` is 0 and ``Z G`` past float32's largest number makes the gradient NaN (JAX's vjp,
    measured), where the exact derivative is 0. That element is not judged; the same network
    with a ``G`` whose ``Z G`` fits keeps a finite bound."""
    problem = _problem((1, 1, 1), ("gelu", "identity"), loss="mse", biases=False)
    X, Y = np.ones((1, 1)), np.ones((1, 1))

    def bound(W2: float) -> float:
        params = {"W1": np.array([[[-9.5e9]]]), "W2": np.array([[[W2]]])}
        return term_bounds.pass_bounds(problem, params, X, Y)["grad:W1"][0, 0, 0]

    # G_1 = 2 (A_2 - Y) W2 = -2 W2, with A_1 = gelu(-9.5e9) = 0.
    assert np.isposinf(bound(1e31)), "Z G = 1.9e41 judged"
    assert np.isfinite(bound(1e27)), "Z G = 1.9e37 fits float32"
    jax = pytest.importorskip("jax")
    import functools

    gelu = functools.partial(jax.nn.gelu, approximate=False)
    for G, finite in ((-2e31, False), (-2e27, True)):
        _, vjp = jax.vjp(gelu, np.float32(-9.5e9))
        assert bool(np.isfinite(vjp(np.float32(G))[0])) is finite, G


def test_backward_intermediates_before_the_loss_scaling_are_capped():
    """A correct implementation may apply the loss's ``1 / (R O)`` anywhere along the backward
    chain (XLA moves scalar multiplies across dots), so an intermediate may hold ``R O`` times
    its value: where that exceeds the largest number, the elements it reaches are not judged."""
    problem = _problem((1, 1, 4), ("identity", "identity"), loss="mse", biases=False)
    rows = 100
    X, Y = np.ones((rows, 1)), np.zeros((rows, 4))

    def bounds(w: float) -> dict:
        params = {"W1": np.array([[[1.0]]]), "W2": np.full((1, 1, 4), w)}
        return term_bounds.pass_bounds(problem, params, X, Y)

    # delta_2 = (2 / (R O)) w per element, G_1 = O delta_2 w = 2 w^2 / R per row, and
    # grad:W1 = 2 w^2: 2e36 fits float32, but R O times G_1's terms, 8e38, does not.
    overflowing = bounds(1e18)
    assert np.isposinf(overflowing["grad:W1"]).all(), overflowing["grad:W1"]
    assert np.isfinite(overflowing["grad:W2"]).all(), "delta_2 R O = 2e18 fits"
    assert np.isfinite(bounds(1e17)["grad:W1"]).all(), "R O 2 w^2 / R = 8e36 fits"


def test_a_subnormal_output_amplified_by_the_bce_floor_is_allowed_its_flush():
    """float32 sigmoid of -93 is 2.5e-41, below the smallest normal number: NumPy keeps it, a
    CPU under FTZ/DAZ (torch's and XLA's kernels, measured on unscaled wine) flushes it to 0,
    and BCE's gradient floor multiplies it by 1e12 into a normal gradient. The bound covers
    that flush; a gradient wrong by more than the flushed value still fails."""
    problem = _problem((1, 1), ("sigmoid",), loss="binary-cross-entropy", biases=False)
    X, Y = np.ones((1, 1)), np.ones((1, 1))
    params = {"W1": np.array([[[-93.0]]])}
    _, grads = numpy_manual.loss_and_grads(
        problem, {"W1": params["W1"].astype(np.float32)}, X.astype(np.float32), Y.astype(np.float32)
    )
    reference = float(np.asarray(grads["grad:W1"], float).ravel()[0])
    assert 1e-30 < abs(reference) < 1e-27, reference  # (A - 1) / 1e-12 * A: about -2.5e-29
    allowed = term_bounds.allowance(term_bounds.pass_bounds(problem, params, X, Y)["grad:W1"])
    allowed = float(allowed.ravel()[0])
    assert abs(reference - 0.0) <= allowed, "a flushed output (gradient 0) is allowed"
    assert allowed < 10 * abs(reference), "a gradient wrong by ten times it is not"


def test_gelu_tanh_derivative_allows_a_few_ulps_of_tanh_near_one():
    """``1 - t^2`` from a tanh a few ulps off (XLA's float64 tanh differs from libm's by up to 5
    ulps) differs absolutely by about ``eps``, however small ``1 - t^2`` is: the bound allows
    that, and still not a derivative that drops its ``sech^2`` term."""
    problem = _problem((1, 1, 1), ("gelu_tanh", "identity"), loss="mse", dtype="float64")
    X = np.linspace(6.0, 9.0, 16)[:, None]
    Y = np.zeros((16, 1))
    params = {"W1": np.ones((1, 1, 1)), "b1": np.zeros((1, 1)), "W2": np.ones((1, 1, 1))}
    params["b2"] = np.zeros((1, 1))
    allowed = term_bounds.allowance(term_bounds.pass_bounds(problem, params, X, Y)["grad:W1"])
    allowed = float(allowed.ravel()[0])
    Z = X[:, 0]
    c = math.sqrt(2 / math.pi)
    t = np.tanh(c * (Z + 0.044715 * Z**3))
    du = c * (1 + 3 * 0.044715 * Z * Z)
    A = 0.5 * Z * (1 + t)
    G = 2 * (A - Y[:, 0]) / len(Z)  # dL/dA_1 = dL/dA_2 (identity, W2 = 1)

    def grad(t_used: np.ndarray, sech2_term: bool = True) -> float:
        dA = 0.5 * (1 + t_used) + (0.5 * Z * (1 - t_used * t_used) * du if sech2_term else 0)
        return float(np.sum(Z * G * dA))

    exact = grad(t)
    few_ulps_off = grad(np.minimum(t * (1 - 5 * np.finfo(float).eps / 2), 1.0))
    assert few_ulps_off != exact
    assert abs(few_ulps_off - exact) <= allowed, (abs(few_ulps_off - exact), allowed)
    assert abs(grad(t, sech2_term=False) - exact) > 100 * allowed
