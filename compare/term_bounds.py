"""How far one correct pass may round each loss and gradient element, from the size of its terms.

The synced rule of ``compare.tolerances`` judges a gradient element by ``rtol`` times its own
value plus ``rtol`` times the running maximum of the gradient's magnitude. That misses where
an element is the small difference of large terms: its rounding error is set by the terms, and
the terms may be far above both the element and every gradient seen so far. Measured false
alarms (all frameworks correct): identity layers on a diverging run (float32 grad:b1 off by
2.2e8 against an atol of 5.3e7), unscaled inputs up to 1680 (wine, breast_cancer, digits),
where ``Z = X W`` is a difference of terms in the thousands and the loss derivative ``A - Y``
a difference of outputs far above the residual, and half precision, where every stored tensor
carries ``eps = 9.8e-4`` of its terms.

This module bounds that error by a *running-error* pass (first-order error analysis with
absolute values), at the reference's state ``k`` on batch ``k``'s rows, in float64. Every
quantity ``x`` of the pass carries a bound ``e(x)`` on ``|computed x - exact x|`` for ONE
implementation that computes in ``dtype``:

* a sum of ``n`` terms accumulated in the working precision (float32 for the 16-bit types):
  ``u(n) = sqrt(max(n, 16)) eps_work`` times the sum of the terms' magnitudes (the
  probabilistic bound of ``compare.tolerances``, with its small-sum floor);
* a result stored in a 16-bit dtype is rounded once more, by half its rounding unit,
  ``s = eps / 2``, times the *result* (not its terms: rounding the sum does not see them);
* an elementwise rule (activation, derivative, loss derivative) rounds its result to within
  ``r = s + ELEMENTWISE_ROUNDINGS * eps_work`` of itself and passes its input's error on by
  its derivative;
* the inputs ``X``, targets ``Y`` and the state's parameters are the same numbers for every
  implementation (the given state), so they carry no error.

Forward, layer by layer (``|.|`` elementwise, products are matrix products of magnitudes):
``e(Z_l) = e(A_{l-1}) |W_l| + u(in) (|A_{l-1}| |W_l| + |b_l|) + s |Z_l|`` (twice ``s`` with
a bias, added after the product is rounded), ``e(A_l) = |f'(Z_l)| e(Z_l) + r |A_l|``.
The loss derivative ``G = dL/dA`` passes ``e(A_L)`` on by its own derivative in ``A`` (for the
mean squared errors ``c (A - Y)``: ``|c| e(A)``, whatever the cancellation of ``A - Y``;
infinite where ``2 |A - Y|``, which torch forms before the factor ``c``, overflows the working
precision; a loss's bound is infinite where its sum before the division does).
Backward: ``delta_l = G_l f'(Z_l)`` errs by ``e(G_l) |f'| + |G_l| e(f'(Z_l)) + r |delta_l|``,
where ``e(f')`` is the derivative's own error (``|f''| e(Z)``, or through ``A`` for the sigmoid
and tanh, whose derivatives are computed from their outputs, and the whole jump where a relu
kink lies within ``e(Z)`` of ``Z``); then
``e(dL/dW_l) = |A_{l-1}|^T e(delta_l) + e(A_{l-1})^T |delta_l| + u(R) |A_{l-1}|^T |delta_l|``
``+ s |dL/dW_l|``, ``e(dL/db_l) = sum_rows e(delta_l) + u(R) sum_rows |delta_l| + s |dL/db_l|``,
and ``e(G_{l-1}) = e(delta_l) |W_l|^T + u(out) |delta_l| |W_l|^T + s |G_{l-1}|``. The loss errs
by ``sum |G| e(A_L)`` plus ``u(R O) + s`` times the magnitude of its terms. A backward
intermediate is capped (infinite bound) where its magnitude times the loss's divisor exceeds
the dtype's largest number: the divisor is a scalar, which a correct implementation may apply
anywhere along the backward chain (XLA's simplifier moves scalar multiplies across dots), so
it may hold ``G_l`` unscaled (measured: bfloat16 unscaled wine, diverged, ``G_2`` up to 0.46 of
bfloat16's largest number, JAX's ``grad:W2`` inf where ``A_1`` was exactly 0 and NumPy's 0).

Two correct implementations each err by at most ``e``, so they differ by at most ``2 e``; the
allowance (``allowance``) is ``TERM_SAFETY`` times that. First-order analysis drops products of
errors, which are ``eps^2`` relative; the linearisation of ``f`` and ``f'`` over ``e(Z)`` is what
the safety factor covers, with the sum's ``sqrt(n)`` (the probabilistic, not the worst-case,
bound), measured against the false alarms this pass removes (see ``TERM_SAFETY``). It is
causal: state ``k``'s bound uses state ``k`` and batch ``k`` only.

A planted bug is still caught where it moves an element by more than the terms' rounding: a
gradient element of a wrong formula is wrong by a fraction of the terms themselves, thousands
of ``eps`` times them. The allowance is per element, so an element whose terms do not cancel
keeps the tolerance it had.

This module only computes numbers, in NumPy; it imports no framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from compare import tolerances
from implementations.contract import BCE_GRAD_EPS, LEAKY_RELU_SLOPE, Problem

#: An elementwise rule (activation, its derivative, the loss derivative) computes its result to
#: within a couple of rounding units (libm's exp, tanh and erf are within one or two ULPs of
#: the correctly rounded result, then one rounding to the stored dtype).
ELEMENTWISE_ROUNDINGS = 2.0

#: The allowance is this many times the difference two bounded implementations can make
#: (``2 e``). Measured on the float32 false alarms this pass removes (the greatest torch or
#: JAX difference from NumPy against ``2 e`` at that element): 2.7% (identity layers on a
#: diverging run, grad:W1), 1.8% (gelu on diverged weights, grad:W1, 0.31 of 39), 0.16%
#: (raw digits, grad:W2), 0.1% (raw wine, tanh, grad:W1): the bound adds every propagated
#: error's magnitude, the worst case. One times ``2 e`` is the derived bound; the
#: linearisation over ``e(Z)`` is far inside that margin.
TERM_SAFETY = 1.0

#: Elements of the largest array the pass holds at once (states x rows x widest layer): the
#: chunk's states are taken in groups of at most this size, so memory does not grow with them.
GROUP_ELEMENTS = 2**20

#: The GELU's constants (``implementations.contract``: torch's exact form and its tanh form).
_SQRT_HALF = 1 / math.sqrt(2)
_NORMAL_DENSITY = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_TANH_CUBIC = 0.044715


def _capped(magnitude: np.ndarray, dtype: str, unscaled: float = 1.0) -> np.ndarray:
    """``magnitude``, infinite where it (times ``unscaled``, the factor by which a correct
    implementation may hold it before a scaling it applies later) exceeds the dtype's largest
    finite number: there the computation may overflow, so every bound computed from it is
    infinite too."""
    return np.where(magnitude * unscaled > tolerances.LARGEST[dtype], np.inf, magnitude)


def working_dtype(dtype: str) -> str:
    """The dtype sums accumulate in: float32 for the 16-bit types (``implementations.contract``)."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def sum_rounding(terms: int, dtype: str) -> float:
    """``u(n)``: the rounding of a sum of ``terms`` terms accumulated in the working precision,
    relative to their magnitudes' sum."""
    eps_work = tolerances.EPS[working_dtype(dtype)]
    return math.sqrt(max(terms, tolerances.SYNCED_MIN_TERMS)) * eps_work


def storage_rounding(dtype: str) -> float:
    """``s``: the one rounding of a result computed in float32 to a 16-bit dtype, relative to
    the result (half its rounding unit); 0 where the dtype is the working precision (the sum's
    or the rule's own rounding is that rounding)."""
    return tolerances.EPS[dtype] / 2 if working_dtype(dtype) != dtype else 0.0


def _activation(name: str, Z: np.ndarray, eZ: np.ndarray, r: float):
    """``A``, ``f'(Z)``, ``e(A)`` and ``e(f')`` of one activation (float64)."""
    if name == "identity":
        return Z, np.ones_like(Z), eZ, np.zeros_like(Z)
    if name == "sigmoid":
        from scipy.special import expit

        A = expit(Z)  # accurate in both tails (1/2 (1 + tanh(Z/2)) is 0 below -37)
        dA = A * (1 - A)
        eA = dA * eZ + r * A
        return A, dA, eA, np.abs(1 - 2 * A) * eA + r * dA
    if name == "tanh":
        A = np.tanh(Z)
        dA = 1 - A * A
        eA = dA * eZ + r * np.abs(A)
        return A, dA, eA, 2 * np.abs(A) * eA + r * dA
    if name in ("relu", "leaky_relu"):
        slope = 0.0 if name == "relu" else LEAKY_RELU_SLOPE
        positive = Z > 0
        A = np.where(positive, Z, slope * Z)
        dA = np.where(positive, 1.0, slope)
        # Where Z is within its error of the kink, the derivative may take either side's value.
        return A, dA, dA * eZ + r * np.abs(A), np.where(np.abs(Z) <= eZ, 1.0 - slope, 0.0)
    if name == "gelu":
        from scipy.special import erf

        erf_Z = erf(Z * _SQRT_HALF)
        Phi = 0.5 * (1 + erf_Z)
        # Phi is formed as 1/2 (1 + erf) (torch, NumPy), or by erfc (JAX): the sum's terms,
        # not Phi, set its rounding, which is absolute where erf is near -1.
        Phi_terms = 0.5 * (1 + np.abs(erf_Z))
        phi = _NORMAL_DENSITY * np.exp(-0.5 * Z * Z)
        A, dA = Z * Phi, Phi + Z * phi
        second = phi * (2 - Z * Z)
        terms = Phi_terms + np.abs(Z * phi)
        eA = np.abs(dA) * eZ + r * np.abs(Z) * Phi_terms
        return A, dA, eA, np.abs(second) * eZ + r * terms
    if name == "gelu_tanh":
        inner = _SQRT_2_OVER_PI * (Z + _GELU_TANH_CUBIC * Z**3)
        t = np.tanh(inner)
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_CUBIC * Z * Z)
        d2u = _SQRT_2_OVER_PI * 6 * _GELU_TANH_CUBIC * Z
        sech2 = 1 - t * t
        A = 0.5 * Z * (1 + t)
        dA = 0.5 * (1 + t) + 0.5 * Z * sech2 * du
        second = sech2 * (du + 0.5 * Z * (d2u - 2 * t * du * du))
        half_terms = 0.5 * (1 + np.abs(t))  # the terms of 1/2 (1 + t), as Phi's above
        terms = half_terms + np.abs(0.5 * Z * sech2 * du)
        # sech^2 is formed as 1 - t^2 from the rounded t: t's own rounding, r |t|, becomes
        # 2 r t^2 of it, absolute, however small sech^2 is (measured: float64 iris, JAX's tanh
        # a few ulps from libm's near t = 1, grad:W2 2e-13 apart on an element of 0.034).
        e_sech2 = 2 * r * t * t
        e_dA = np.abs(second) * eZ + r * terms + np.abs(0.5 * Z * du) * e_sech2
        return A, dA, np.abs(dA) * eZ + r * np.abs(Z) * half_terms, e_dA
    raise ValueError(f"no rounding bound for activation {name!r}")


def _underflow(x: np.ndarray, dtype: str) -> np.ndarray:
    """The absolute error a value may carry below the smallest normal number, which the
    relative roundings do not see: flushed to zero where it is below the smallest normal of
    the precision it is computed in (FTZ/DAZ, ``tolerances.FLUSH_TINY``), and rounded to the
    dtype's subnormal spacing (half of ``tiny * eps``) where it is stored below the dtype's
    smallest normal. It matters where a later factor amplifies it (measured: float32 unscaled
    wine, BCE at its gradient floor: NumPy's sigmoid of -93, 2.5e-41, times the floor's
    1e12, a grad:W1 of 3.6e-29 where torch and JAX flushed the output to 0)."""
    magnitude = np.abs(x)
    tiny = tolerances.TINY[dtype]
    rounded = np.where((magnitude > 0) & (magnitude < tiny), tiny * tolerances.EPS[dtype] / 2, 0.0)
    return np.minimum(magnitude, tolerances.FLUSH_TINY[dtype]) + rounded


def _derivative_reach(name: str, Z: np.ndarray) -> np.ndarray | None:
    """How far above ``|G|`` an intermediate of ``G f'(Z)`` may reach, where ``f'`` is a sum
    of products that the chain rule may multiply into ``G`` in any order (``None``: at most
    ``|G|``, as for the derivatives of sigmoid and tanh, taken from outputs within [0, 1], and
    of relu). GELU's ``Phi(Z) + Z phi(Z)``: autodiff's transposed product forms ``Z G`` before
    ``phi(Z)``, which is 0 far from 0, so ``Z G`` past the largest number gives inf times 0,
    NaN (measured: JAX's float32 vjp of gelu at ``Z = -9.5e9`` with ``G = 1.6e31`` is NaN, at
    ``G = 1e28`` it is 0); the tanh form also forms ``3 c Z^2``."""
    if name == "gelu":
        return np.maximum(1.0, np.abs(Z))
    if name == "gelu_tanh":
        return np.maximum(np.maximum(1.0, np.abs(Z)), 3 * _GELU_TANH_CUBIC * Z * Z)
    return None


def _summed_before_division(terms: np.ndarray, divisor: float, dtype: str) -> np.ndarray:
    """A loss's ``terms`` (already divided by ``divisor``), infinite for a whole point where
    their sum before the division, ``divisor sum |terms|``, exceeds the working precision's
    largest number: torch's loss sums the terms, then divides (``implementations.torch_autograd
    .loss``, in float32 for the 16-bit types, rounded once), so its loss may be inf where the
    mean is finite. (The mean past the dtype's own largest is ``pass_bounds``' cap.)"""
    summed = divisor * np.sum(terms, axis=(-2, -1), keepdims=True)
    return np.where(summed > tolerances.LARGEST[working_dtype(dtype)], np.inf, terms)


def _loss(name: str, A: np.ndarray, eA: np.ndarray, Y: np.ndarray, r: float, dtype: str):
    """``G = dL/dA``, ``e(G)``, the magnitudes of the loss's terms, per element, and the loss's
    divisor (``R O``, ``R``, ``2 / c``): the factor by which a backward intermediate may exceed
    its value (see ``pass_bounds``).

    The squared errors' intermediates are capped too (``_capped``), not only their scaled
    results: a correct implementation may form ``sum (A - Y)^2`` before dividing by its
    divisor (torch's loss: the sum, then ``/ (R O)``), and the power rule's ``2 (A - Y)``
    before the chain rule's ``1 / (R O)`` (torch's ``MseLossBackward``). Where ``2 |A - Y|``
    exceeds the dtype's largest number, that element's ``dL/dA`` may be infinite while the
    reference's ``c (A - Y)`` is finite (measured: float32 unscaled digits, momentum diverging,
    step 23: ``|A - Y|`` up to 1.9e38 below 3.4e38, torch's ``grad:W1`` inf, and ``0 * inf``,
    NaN, on the always-zero pixel), so ``e(G)`` is infinite there; where ``sum (A - Y)^2``
    exceeds it, so is the loss's bound. Every loss is a sum divided by its divisor (``R O``,
    ``R``, 2) and may be formed so (``_summed_before_division``).
    """
    rows, outputs = A.shape[-2:]
    if name in ("half-mse", "mse", "half-sse"):
        scale = {"half-mse": 1 / (rows * outputs), "mse": 2 / (rows * outputs), "half-sse": 1.0}
        c = scale[name]
        residual = A - Y
        terms = _summed_before_division(c / 2 * residual**2, 2 / c, dtype)
        eG = c * (eA + r * np.abs(residual))
        # Computed in the working precision (16-bit losses widened to float32), rounded once.
        doubled_overflows = 2 * np.abs(residual) > tolerances.LARGEST[working_dtype(dtype)]
        return c * residual, np.where(doubled_overflows, np.inf, eG), terms, 2 / c
    if name == "cross-entropy":
        shifted = A - np.max(A, axis=-1, keepdims=True)
        log_sum = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        s = np.exp(shifted - log_sum)
        total = np.sum(Y, axis=-1, keepdims=True)
        # d s_i = s_i (dA_i - sum_j s_j dA_j); log_softmax rounds relative to |shifted| + lse.
        es = s * (eA + np.sum(s * eA, axis=-1, keepdims=True) + r * (np.abs(shifted) + log_sum))
        G = (s * total - Y) / rows
        eG = (es * np.abs(total) + r * (s * np.abs(total) + np.abs(Y))) / rows
        terms = np.abs(Y) * (np.abs(shifted) + log_sum) / rows
        return G, eG, _summed_before_division(terms, rows, dtype), rows
    if name == "binary-cross-entropy":
        n = rows * outputs
        q = A * (1 - A)
        floored = q <= BCE_GRAD_EPS
        qf = np.maximum(q, BCE_GRAD_EPS)
        G = (A - Y) / qf / n
        slope = np.abs(1 / qf - np.where(floored, 0.0, (A - Y) * (1 - 2 * A) / qf**2)) / n
        with np.errstate(divide="ignore"):
            log_A = np.maximum(np.log(A), -100.0)
            log_1_minus_A = np.maximum(np.log1p(-A), -100.0)
        terms = (np.abs(Y * log_A) + np.abs((1 - Y) * log_1_minus_A)) / n
        return G, slope * eA + 3 * r * np.abs(G), _summed_before_division(terms, n, dtype), n
    raise ValueError(f"no rounding bound for loss {name!r}")


def pass_bounds(
    problem: Problem,
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
) -> dict[str, np.ndarray]:
    """``e``, the bound on one implementation's rounding error of the loss and every gradient
    element, at ``n`` states (see the module docstring).

    Args:
        problem: The network, loss and dtype.
        params: ``{"W1": (n, in, out), "b1": (n, out), ...}`` (float64, values of the dtype).
        X: ``(R, in)`` or ``(n, R, in)``: each state's batch rows.
        Y: ``(R, O)`` or ``(n, R, O)``: their targets.

    Returns:
        ``{"loss": (n,), "grad:W1": (n, in, out), "grad:b1": (n, out), ...}`` (float64), ``inf``
        where the magnitude of a term the element depends on exceeds the dtype's largest finite
        number (``tolerances.LARGEST``): there the computation may overflow, and whether it
        gives inf, -inf, NaN or a finite number depends on the order of its sums.
    """
    net, dtype = problem.network, problem.dtype
    store = storage_rounding(dtype)
    work = working_dtype(dtype)
    r = store + ELEMENTWISE_ROUNDINGS * tolerances.EPS[work]
    rows = X.shape[-2]
    out: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):
        A, eA = X, np.zeros_like(X)
        inputs = []
        derivatives = []
        for layer, activation in enumerate(net.activations, start=1):
            W = params[f"W{layer}"]
            magnitude = np.abs(A) @ np.abs(W)
            Z = A @ W
            stored = np.abs(Z)  # the product, rounded to the dtype
            if net.biases:
                b = params[f"b{layer}"][..., None, :]
                Z = Z + b
                magnitude = magnitude + np.abs(b)
                stored = stored + np.abs(Z)  # and the sum with the bias, rounded again
            magnitude = _capped(magnitude, dtype)
            eZ = eA @ np.abs(W) + sum_rounding(W.shape[-2], dtype) * magnitude + store * stored
            eZ = eZ + _underflow(Z, dtype)
            inputs.append((A, eA))
            A, dA, eA, e_dA = _activation(activation, Z, eZ, r)
            eA, e_dA = eA + _underflow(A, dtype), e_dA + _underflow(dA, dtype)
            derivatives.append((dA, e_dA, _derivative_reach(activation, Z)))
        G, eG, terms, unscaled = _loss(net.loss, A, eA, Y, r, dtype)
        eG = eG + _underflow(G, dtype)
        loss_terms = _capped(np.sum(terms, axis=(-2, -1)), dtype)
        out["loss"] = (
            np.sum(np.abs(G) * eA, axis=(-2, -1))
            + (sum_rounding(G.shape[-2] * G.shape[-1], dtype) + store) * loss_terms
        )
        u_rows = sum_rounding(rows, dtype)
        for layer in range(net.layers, 0, -1):
            A_prev, eA_prev = inputs[layer - 1]
            dA, e_dA, reach = derivatives[layer - 1]
            delta = G * dA
            abs_delta = _capped(np.abs(delta), dtype, unscaled)
            e_delta = eG * np.abs(dA) + np.abs(G) * e_dA + r * abs_delta
            if reach is not None:
                # The chain rule's products may be formed in any order (_derivative_reach).
                overflows = np.maximum(np.abs(G), 1.0) * reach > tolerances.LARGEST[work]
                e_delta = np.where(overflows, np.inf, e_delta)
            A_prev_T = np.swapaxes(np.abs(A_prev), -1, -2)
            out[f"grad:W{layer}"] = (
                A_prev_T @ e_delta
                + u_rows * _capped(A_prev_T @ abs_delta, dtype, unscaled)
                + np.swapaxes(eA_prev, -1, -2) @ abs_delta
                + store * np.abs(np.swapaxes(A_prev, -1, -2) @ delta)
            )
            if net.biases:
                out[f"grad:b{layer}"] = (
                    np.sum(e_delta, axis=-2)
                    + u_rows * _capped(np.sum(abs_delta, axis=-2), dtype, unscaled)
                    + store * np.abs(np.sum(delta, axis=-2))
                )
            if layer > 1:
                W_T = np.swapaxes(np.abs(params[f"W{layer}"]), -1, -2)
                G = delta @ np.swapaxes(params[f"W{layer}"], -1, -2)
                eG = (
                    e_delta @ W_T
                    + sum_rounding(W_T.shape[-2], dtype) * _capped(abs_delta @ W_T, dtype, unscaled)
                    + store * np.abs(G)
                )
    return {q: np.where(np.isfinite(v), v, np.inf) for q, v in out.items()}


def state_bounds(
    problem: Problem,
    states: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    steps: np.ndarray,
) -> dict[str, np.ndarray]:
    """``pass_bounds`` at ``n`` states, each on its own step's batch (``problem.batches``), in
    groups of at most ``GROUP_ELEMENTS`` (states of one batch length together: an epoch's last
    batch may be shorter).

    Args:
        problem: The network, loss, dtype and batch order.
        states: Quantity -> ``(n, ...)``: the states' parameters (``weight:W1``, ``bias:b1``).
        X: ``(N, in)``: every training input (float64).
        Y: ``(N, O)``: every training target.
        steps: ``(n,)``: the step of each state (its batch's rows).

    Returns:
        As ``pass_bounds``, for the ``n`` states in order.
    """
    net, batches = problem.network, problem.batches
    steps = [int(step) for step in steps]
    n = len(steps)
    params = {
        name: np.asarray(states[q], dtype=np.float64) for name, q in net.param_quantities.items()
    }
    out = {q: np.zeros((n, *shape)) for q, shape in _shapes(problem).items()}
    if batches.full:
        rows = [None] * n
        lengths = np.full(n, batches.rows)
    else:
        rows = [batches.indices(step) for step in steps]
        lengths = np.array([len(r) for r in rows])
    widest = max(net.widths)
    for length in np.unique(lengths):
        chosen = np.flatnonzero(lengths == length)
        group = max(1, GROUP_ELEMENTS // max(1, int(length) * widest))
        for start in range(0, len(chosen), group):
            at = chosen[start : start + group]
            if batches.full:
                X_rows, Y_rows = X, Y
            else:
                batch = np.stack([rows[i] for i in at])
                X_rows, Y_rows = X[batch], Y[batch]
            found = pass_bounds(problem, {k: v[at] for k, v in params.items()}, X_rows, Y_rows)
            for q, value in found.items():
                out[q][at] = value
    return out


def _shapes(problem: Problem) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"loss": ()}
    for name, shape in problem.network.param_shapes.items():
        shapes[f"grad:{name}"] = shape
    return shapes


def allowance(bound: np.ndarray) -> np.ndarray:
    """The allowed difference of two correct implementations whose errors are each within
    ``bound``: ``TERM_SAFETY * 2 * bound``."""
    return TERM_SAFETY * 2.0 * np.asarray(bound, dtype=np.float64)
